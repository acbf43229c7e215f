//! Payload lines: `key=value` parsing, the terminator, and the pairs of a payload.

use super::value::Quoting;
use super::*;

/// One line of a payload text.
pub(super) enum Line<'a> {
    Pair {
        key: &'a str,
        /// Where the key's last `.` is (its group path ends there).
        dot: Option<usize>,
        value: Cow<'a, str>,
        quoting: Quoting,
    },
    Bad {
        raw: &'a [u8],
        error: FeslError,
    },
}

/// Parses one line; `checked` is the line as text when the caller already validated UTF-8.
/// One pass over the bytes finds `=`, the key's last `.`, and what the value needs.
pub(super) fn parse_line<'a>(raw: &'a [u8], checked: Option<&'a str>, line: usize) -> Line<'a> {
    let bad = |error| Line::Bad { raw, error };
    let (mut eq, mut dot) = (None, None);
    let (mut nul, mut space, mut pct) = (false, false, false);
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'=' if eq.is_none() => eq = Some(i),
            b'.' if eq.is_none() => dot = Some(i),
            b' ' => space |= eq.is_some(),
            b'%' => pct |= eq.is_some(),
            0 => nul = true,
            _ => {}
        }
    }
    let s = match checked {
        Some(s) => s,
        None => match std::str::from_utf8(raw) {
            Ok(s) => s,
            Err(_) => return bad(FeslError::NotUtf8 { line }),
        },
    };
    if nul {
        return bad(FeslError::EmbeddedNul { line });
    }
    let Some((key, raw_value)) = eq.and_then(|eq| Some((s.get(..eq)?, s.get(eq + 1..)?))) else {
        return bad(FeslError::NoEquals { line });
    };
    let v = raw_value.as_bytes();
    let (inner, quoting) = if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        (raw_value.get(1..v.len() - 1).unwrap_or(""), Quoting::Quoted)
    } else if space {
        (raw_value, Quoting::Bare)
    } else {
        (raw_value, Quoting::Plain)
    };
    let value = if pct {
        match unescape(inner) {
            Ok(v) => v,
            Err(UnescapeError::BadEscape) => return bad(FeslError::BadEscape { line }),
            Err(UnescapeError::NotUtf8) => return bad(FeslError::EscapedNotUtf8 { line }),
        }
    } else {
        Cow::Borrowed(inner)
    };
    Line::Pair {
        key,
        dot,
        value,
        quoting,
    }
}

/// How a payload text ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// `\n\0`, what clients send.
    Client,
    /// `\0` straight after the last value, what retail servers send.
    Server,
    /// `\n` without NUL (a reassembled client message).
    Newline,
    /// Nothing.
    None,
}

impl End {
    pub(super) fn of(payload: &[u8]) -> (End, usize) {
        let n = payload.len();
        if payload.ends_with(b"\n\0") {
            (End::Client, n - 2)
        } else if payload.ends_with(b"\0") {
            (End::Server, n - 1)
        } else if payload.ends_with(b"\n") {
            (End::Newline, n - 1)
        } else {
            (End::None, n)
        }
    }

    pub(super) fn kind(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Server => "server",
            End::Newline => "newline",
            End::None => "none",
        }
    }

    pub(super) fn from_kind(kind: Option<&str>) -> End {
        match kind {
            Some("server") => End::Server,
            Some("newline") => End::Newline,
            Some("none") => End::None,
            _ => End::Client,
        }
    }

    pub(super) fn bytes(self) -> &'static [u8] {
        match self {
            End::Client => b"\n\0",
            End::Server => b"\0",
            End::Newline => b"\n",
            End::None => b"",
        }
    }
}

/// Calls `f(range, line)` for every line of `text` (split on `\n`; no line for empty text).
pub(super) fn for_each_line<'a>(text: &'a [u8], mut f: impl FnMut(Range<usize>, &'a [u8])) {
    if text.is_empty() {
        return;
    }
    let mut start = 0;
    loop {
        match text[start..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                f(start..start + n, &text[start..start + n]);
                start += n + 1;
            }
            None => {
                f(start..text.len(), &text[start..]);
                return;
            }
        }
    }
}

/// Parses a payload (`key=value` lines, a final NUL with or without `\n` before it) into
/// unescaped pairs in wire order.
pub fn parse_payload(payload: &[u8]) -> Result<Vec<(String, String)>, FeslError> {
    let (end, text_len) = End::of(payload);
    if matches!(end, End::None | End::Newline) {
        return Err(FeslError::NoTerminator);
    }
    parse_text(&payload[..text_len])
}

/// A reassembled payload without the terminator a sender may have encoded with it (client
/// payloads end `\n\0`, and some senders base64 the `\n` or even the NUL too).
pub fn joined_text(text: &[u8]) -> &[u8] {
    let text = text.strip_suffix(b"\0").unwrap_or(text);
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// Parses payload text without its terminator (e.g. a reassembled fragment payload).
pub fn parse_text(text: &[u8]) -> Result<Vec<(String, String)>, FeslError> {
    let mut out = Vec::new();
    let mut err = None;
    let mut n = 0;
    let whole = std::str::from_utf8(text).ok();
    for_each_line(text, |r, raw| {
        n += 1;
        if err.is_some() {
            return;
        }
        match parse_line(raw, whole.and_then(|w| w.get(r)), n) {
            Line::Pair { key, value, .. } => out.push((key.to_owned(), value.into_owned())),
            Line::Bad { error, .. } => err = Some(error),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
