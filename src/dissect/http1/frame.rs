//! Framing: where a head ends, how its body is delimited (chunked, Content-Length, until
//! close), and upgrades.

use super::chunked::{ChunkState, parse_chunked};
use super::decode::decode_message;
use super::*;

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `METHOD SP target SP HTTP/1.x`
pub(super) fn request_line_ok(line: &[u8]) -> bool {
    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == 0 || line.get(method_len) != Some(&b' ') {
        return false;
    }
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    sp > method_len && line[sp + 1..].starts_with(b"HTTP/1.")
}

pub(super) fn status_start(b: &[u8]) -> bool {
    b.len() >= 13
        && b.starts_with(b"HTTP/1.")
        && b[8] == b' '
        && b[9..12].iter().all(u8::is_ascii_digit)
        && matches!(b[12], b' ' | b'\r' | b'\n')
}

/// Position just after the first `\n`, or the buffer's end.
fn next_line(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |p| p + 1)
}

/// The end of the head (just after the blank line), if present.
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        // The line that ends here is blank when it is "" or "\r".
        let line_start = i;
        if nl == line_start || (nl == line_start + 1 && buf[line_start] == b'\r') {
            if line_start == 0 {
                // A blank first line is not a head.
                return None;
            }
            return Some(nl + 1);
        }
        i = nl + 1;
    }
    None
}

/// Why the start of `buf` cannot be a message of this direction, if it cannot.
fn implausible_start(buf: &[u8], dir: Direction) -> Option<&'static str> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    let line = trim_cr(&buf[..line_end.unwrap_or(buf.len())]);
    match dir {
        Direction::ServerToClient => {
            let n = line.len().min(7);
            if line[..n] != b"HTTP/1."[..n] || (line_end.is_some() && line.len() < 12) {
                return Some("not an HTTP/1.x status line");
            }
        }
        Direction::ClientToServer => {
            let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
            let complete = line_end.is_some() || method_len < line.len();
            if method_len == 0 || method_len > 32 {
                return Some("not an HTTP/1.x request line");
            }
            if complete && line.get(method_len) != Some(&b' ') {
                return Some("not an HTTP/1.x request line");
            }
            if line_end.is_some() && !request_line_ok(line) {
                return Some("not an HTTP/1.x request line");
            }
        }
    }
    None
}

/// What the headers say about the body.
#[derive(Debug, PartialEq)]
pub(super) enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
    /// Content-Length unusable (invalid, conflicting or too big): only the head is framed.
    BadLength(String),
}

pub(super) fn body_kind<'h>(
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    dir: Direction,
    status: Option<u16>,
) -> BodyKind {
    let mut chunked = false;
    let mut length: Option<Result<u64, String>> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| "invalid Content-Length".to_string());
            length = match (length, parsed) {
                (Some(Ok(a)), Ok(b)) if a != b => Some(Err("conflicting Content-Length".into())),
                (Some(Err(e)), _) => Some(Err(e)),
                (_, p) => Some(p),
            };
        }
    }
    if let Some(code) = status
        && (code < 200 || code == 204 || code == 304)
    {
        return BodyKind::None;
    }
    if chunked {
        return BodyKind::Chunked;
    }
    match length {
        Some(Ok(n)) if n as u128 > MAX_BODY as u128 => {
            BodyKind::BadLength(format!("Content-Length {n} exceeds 64 MiB"))
        }
        Some(Ok(n)) => BodyKind::Length(n as usize),
        Some(Err(e)) => BodyKind::BadLength(e),
        None if dir == Direction::ServerToClient => BodyKind::UntilClose,
        None => BodyKind::None,
    }
}

impl Http1Decoder {
    fn frame_http(&mut self, buf: &[u8]) -> Framing {
        if let Some(reason) = implausible_start(buf, self.dir) {
            return Framing::Unframeable {
                skip: next_line(buf),
                reason: reason.into(),
            };
        }
        let limit = buf.len().min(MAX_HEAD);
        let Some(head) = head_end(&buf[..limit]) else {
            if buf.len() >= MAX_HEAD {
                let skip = buf
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(buf.len(), |p| p + 4);
                return Framing::Unframeable {
                    skip,
                    reason: "HTTP head larger than 64 KiB".into(),
                };
            }
            return Framing::NeedMore(None);
        };
        let nlines = buf[..head].iter().filter(|&&b| b == b'\n').count();
        let mut headers = vec![httparse::EMPTY_HEADER; nlines.min(MAX_HEADERS)];
        let (kind, status) = match self.dir {
            Direction::ClientToServer => {
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf[..head]) {
                    Ok(httparse::Status::Complete(_)) => {
                        if req
                            .headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
                        {
                            self.maybe_upgraded = true;
                        }
                        let hs = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
                        (body_kind(hs, self.dir, None), None)
                    }
                    _ => return Framing::Complete(head),
                }
            }
            Direction::ServerToClient => {
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&buf[..head]) {
                    Ok(httparse::Status::Complete(_)) => {
                        let hs = resp.headers.iter().map(|h| (h.name.as_bytes(), h.value));
                        (body_kind(hs, self.dir, resp.code), resp.code)
                    }
                    _ => return Framing::Complete(head),
                }
            }
        };
        if status == Some(101) {
            self.upgraded = true;
        }
        match kind {
            BodyKind::None | BodyKind::BadLength(_) => Framing::Complete(head),
            BodyKind::Length(n) => {
                if status.is_some() && status_start(&buf[head..]) {
                    // A response to HEAD: the next response follows the head directly.
                    return Framing::Complete(head);
                }
                let total = head + n;
                if buf.len() >= total {
                    Framing::Complete(total)
                } else {
                    Framing::NeedMore(Some(total))
                }
            }
            BodyKind::Chunked => {
                let c = parse_chunked(buf, head);
                match c.state {
                    ChunkState::Done => Framing::Complete(c.end),
                    ChunkState::NeedMore => Framing::NeedMore(None),
                    ChunkState::Bad { at, .. } => Framing::Complete(c.end.max(at).max(head)),
                }
            }
            BodyKind::UntilClose => {
                if status_start(&buf[head..]) {
                    return Framing::Complete(head);
                }
                Framing::NeedMore(None)
            }
        }
    }
}

impl StreamDecoder for Http1Decoder {
    fn finish(&mut self, rest: &[u8]) -> Option<Message> {
        // Only a response whose head is whole and whose body runs until the close is
        // complete now; anything else really was cut short.
        if self.dir != Direction::ServerToClient || self.upgraded {
            return None;
        }
        let head = head_end(&rest[..rest.len().min(MAX_HEAD)])?;
        let nlines = rest[..head].iter().filter(|&&b| b == b'\n').count();
        let mut headers = vec![httparse::EMPTY_HEADER; nlines.min(MAX_HEADERS)];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = resp.parse(&rest[..head]) else {
            return None;
        };
        let hs = resp.headers.iter().map(|h| (h.name.as_bytes(), h.value));
        (body_kind(hs, self.dir, resp.code) == BodyKind::UntilClose).then(|| self.decode(rest))
    }

    fn frame(&mut self, buf: &[u8]) -> Framing {
        if buf.is_empty() {
            return Framing::NeedMore(None);
        }
        if self.upgraded || (self.maybe_upgraded && implausible_start(buf, self.dir).is_some()) {
            self.upgraded = true;
            return Framing::Complete(buf.len());
        }
        self.frame_http(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        if self.upgraded && implausible_start(msg, self.dir).is_some() {
            let node = Node::group("http", 0..msg.len()).with_children(vec![Node::new(
                "upgraded data",
                0..msg.len(),
                Value::Bytes(msg.into()),
            )]);
            return Message::new("upgraded data", node);
        }
        let mut m = decode_message(msg, self.dir);
        let keys = JwtKeys::default();
        jwt::annotate(&mut m.tree, msg, &keys);
        for d in &mut m.derived {
            jwt::annotate(&mut d.tree, &d.bytes, &keys);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
