//! Values: quoting and percent-escaping.

use super::*;

/// Whether the canonical encoding escapes this byte.
fn must_escape(b: u8) -> bool {
    b < 0x20 || b == 0x7f || matches!(b, b'%' | b'"' | b':' | b'=')
}

/// Appends `value` escaped as retail servers do: `%xx` (lowercase) for `%`, `"`, `:`, `=`
/// and control characters, inside double quotes when `quote`.
pub fn push_value(out: &mut Vec<u8>, value: &str, quote: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if quote {
        out.push(b'"');
    }
    let bytes = value.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if must_escape(b) {
            out.extend_from_slice(&bytes[from..i]);
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            from = i + 1;
        }
    }
    out.extend_from_slice(&bytes[from..]);
    if quote {
        out.push(b'"');
    }
}

/// Whether a value is written in double quotes (it contains a space).
pub fn needs_quotes(value: &str) -> bool {
    value.contains(' ')
}

/// Undoes percent-escaping (either hex case). `None` for a malformed escape or escaped
/// bytes that are not UTF-8.
pub fn unescape(raw: &str) -> Result<Cow<'_, str>, UnescapeError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|&c| hex_digit(c));
            let lo = b.get(i + 2).and_then(|&c| hex_digit(c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(UnescapeError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| UnescapeError::NotUtf8)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnescapeError {
    BadEscape,
    NotUtf8,
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// How a value stood on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Quoting {
    /// No quotes, no space.
    Plain,
    /// In double quotes.
    Quoted,
    /// Has a space but no quotes.
    Bare,
}
