//! HTTP/1.x: requests on the client direction, responses on the server direction.
//!
//! Framing: the head is found and checked with `httparse` (at most [`MAX_HEAD`] bytes, else
//! the span is unframeable); the body is framed by `Transfer-Encoding: chunked` (to the end
//! of the trailers), else by `Content-Length` (at most [`MAX_BODY`]), else it is empty for
//! requests and for 1xx/204/304 responses. A response with neither length nor chunking runs
//! until the connection closes: it stays `NeedMore` until the driver reports the close
//! ([`StreamDecoder::finish`]), and is incomplete if the capture ends first. Responses to
//! `HEAD` carry a `Content-Length` but no body; the server-side decoder cannot see the
//! request, so when the bytes after such a head are the start of the next response
//! (`HTTP/1.x NNN `) the body is taken as empty. After `101 Switching Protocols` (server
//! side) or an `Upgrade` request whose next bytes are not HTTP (client side), the rest of
//! the direction is framed as opaque `upgraded data` messages.
//!
//! Tree (root `http`):
//! - `request line` {`method`, `target`, `version`} or `status line` {`version`, `code`,
//!   `reason`}; `kind` holds a line ending other than CRLF.
//! - `headers`: one node per header, named as written, value `Text` (`Bytes` plus an error
//!   when not UTF-8), range = the value bytes exactly; `kind` keeps unusual spacing/line
//!   ending (`<before>|<after>|<eol>`) for byte-exact re-encoding. Lines without a colon are
//!   error nodes named `header line`.
//! - `body` (when non-empty), value `Bytes` of the body as on the wire. A chunked body has
//!   `chunk` children {`size`, `data`}, then `last chunk` and `trailers`; the de-chunked
//!   bytes go to a derived buffer `body`. A gzip/deflate body is decompressed (at most
//!   [`MAX_DECODED`]) into a derived buffer `body (decoded)`. A JSON body is decoded with
//!   [`super::json::tree`] as a `json` child (inline, ranges in the message) or in the
//!   derived buffer's tree; an urlencoded form body becomes a `form` child with one node per
//!   field (value percent-decoded, range = the raw value).
//!
//! JWTs anywhere in the tree (bearer tokens, JSON members, form fields) are annotated by
//! [`super::jwt::annotate`] without keys; the driver may annotate again with keys.
//!
//! Encoding rebuilds the message from the tree: header spacing and line endings as decoded,
//! `Content-Length` recomputed when the body length changed, chunk sizes recomputed from
//! the chunk data. An edited `json` or `form` child replaces the body with its
//! serialization (compact JSON); unedited messages come back byte for byte. Edits inside
//! derived buffers (de-chunked or decompressed bodies) are not encoded.

use std::borrow::Cow;
use std::io::Read as _;
use std::ops::Range;

use crate::capture::Direction;

use super::jwt::{self, JwtKeys};
use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
    json,
};

/// Longest request/status line plus headers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest body (by Content-Length or chunked).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest decompressed body.
pub const MAX_DECODED: usize = 64 * 1024 * 1024;
/// Most headers in one head.
pub const MAX_HEADERS: usize = 1024;

pub struct Http1;

impl Dissector for Http1 {
    fn name(&self) -> &'static str {
        "http"
    }

    fn default_ports(&self) -> &'static [u16] {
        &[80, 8080, 9000]
    }

    fn detect(&self, first: &[u8], dir: Direction) -> bool {
        let line_end = first
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(first.len());
        let line = trim_cr(&first[..line_end]);
        if line.starts_with(b"HTTP/1.") {
            return dir == Direction::ServerToClient || line.len() > 12;
        }
        let method_len = first.iter().take_while(|&&b| is_tchar(b)).count();
        if method_len == 0 || method_len > 32 || first.get(method_len) != Some(&b' ') {
            return false;
        }
        // The first line must be complete to tell HTTP/1 from the HTTP/2 preface.
        line_end < first.len() && request_line_ok(line)
    }

    fn decoder(&self, dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(Http1Decoder {
            dir,
            upgraded: false,
            maybe_upgraded: false,
        })
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode(tree)
    }

    fn edit_tree(&self, msg: &Message) -> Node {
        edit_tree(msg)
    }
}

/// The kinds a body node has in an edit tree where it holds the body decoded: the body's
/// content encoding, and whether the wire body is chunked.
const EDIT_KINDS: [(&str, Option<&str>, bool); 5] = [
    ("dechunked", None, true),
    ("decoded gzip", Some("gzip"), false),
    ("decoded deflate", Some("deflate"), false),
    ("decoded gzip, chunked", Some("gzip"), true),
    ("decoded deflate, chunked", Some("deflate"), true),
];

/// The message's tree with its body replaced by the decoded (de-chunked, decompressed) body
/// and its JSON or form fields, so an edit there reaches [`encode`], which compresses and
/// chunks the body again. Two children not on the wire keep the original wire body and
/// decoded bytes, so an unchanged body goes out exactly as it came in.
pub fn edit_tree(msg: &Message) -> Node {
    let mut tree = msg.tree.clone();
    let decoded = msg
        .derived
        .iter()
        .find(|d| d.name == "body (decoded)")
        .or_else(|| msg.derived.iter().find(|d| d.name == "body"));
    let encoding = tree
        .child("headers")
        .and_then(|h| header_value(h, "content-encoding"))
        .map(|e| match e.trim().to_ascii_lowercase().as_str() {
            "x-gzip" => "gzip".to_owned(),
            other => other.to_owned(),
        });
    let Some(body) = tree
        .children
        .iter_mut()
        .find(|c| c.name == "body" && !c.derived)
    else {
        return tree;
    };
    let chunked = body.kind() == Some("chunked");
    // Trailers and chunk extensions have no place in the decoded body: such a body stays
    // edited as its chunks.
    let plain_end = body
        .child("trailers")
        .is_none_or(|t| t.children.is_empty() && t.kind().is_none())
        && body
            .child("last chunk")
            .is_none_or(|l| l.value.as_text() == Some("0\r\n"));
    let Some(decoded) = decoded.filter(|_| !body.has_error() && plain_end) else {
        return tree;
    };
    let Some(kind) = EDIT_KINDS
        .iter()
        .find(|(_, enc, ch)| *enc == encoding.as_deref() && *ch == chunked)
        .map(|(kind, _, _)| *kind)
    else {
        return tree;
    };
    let mut children = decoded.tree.children.clone();
    children.push(Node::new("wire body", 0..0, body.value.clone()).derived());
    children.push(
        Node::new(
            "decoded body",
            0..0,
            Value::Bytes(decoded.bytes.clone().into()),
        )
        .derived(),
    );
    *body = Node::new(
        "body",
        body.range.clone(),
        Value::Bytes(decoded.bytes.clone().into()),
    )
    .with_kind(kind)
    .with_children(children);
    tree
}

/// The wire bytes of a body from an edit tree (see [`edit_tree`]).
fn decoded_body_wire(
    body: &Node,
    encoding: Option<&str>,
    chunked: bool,
) -> Result<Vec<u8>, EncodeError> {
    let plain = body_bytes(body)?;
    let original = body.children.iter().filter(|c| c.derived);
    let (mut wire, mut before) = (None, None);
    for c in original {
        match c.name.as_ref() {
            "wire body" => wire = Some(value_bytes(&c.value)),
            "decoded body" => before = Some(value_bytes(&c.value)),
            _ => {}
        }
    }
    if let (Some(wire), Some(before)) = (wire, before)
        && before == plain
    {
        return Ok(wire);
    }
    let packed = match encoding {
        None => plain,
        Some(enc) => compress(enc, &plain).map_err(|e| EncodeError::BadField {
            field: "body".into(),
            reason: format!("{enc}: {e}"),
        })?,
    };
    if !chunked {
        return Ok(packed);
    }
    // One chunk, then the last chunk.
    let mut out = format!("{:x}\r\n", packed.len()).into_bytes();
    if !packed.is_empty() {
        out.extend_from_slice(&packed);
        out.extend_from_slice(b"\r\n");
    } else {
        out.clear();
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Ok(out)
}

fn compress(encoding: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
        _ => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
    }
}

struct Http1Decoder {
    dir: Direction,
    /// The server switched protocols: everything after is opaque.
    upgraded: bool,
    /// The client asked for an upgrade: bytes that are not a request are opaque.
    maybe_upgraded: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `METHOD SP target SP HTTP/1.x`
fn request_line_ok(line: &[u8]) -> bool {
    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == 0 || line.get(method_len) != Some(&b' ') {
        return false;
    }
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    sp > method_len && line[sp + 1..].starts_with(b"HTTP/1.")
}

fn status_start(b: &[u8]) -> bool {
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
fn head_end(buf: &[u8]) -> Option<usize> {
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
enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
    /// Content-Length unusable (invalid, conflicting or too big): only the head is framed.
    BadLength(String),
}

fn body_kind<'h>(
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

struct Chunk {
    /// The size line without its line ending.
    line: Range<usize>,
    digits: Range<usize>,
    size: usize,
    data: Range<usize>,
    /// The whole chunk, size line to the line ending after the data.
    all: Range<usize>,
    /// The line endings after the size line and after the data.
    eols: (Range<usize>, Range<usize>),
}

enum ChunkState {
    Done,
    NeedMore,
    Bad { at: usize, reason: String },
}

struct Chunked {
    chunks: Vec<Chunk>,
    /// `0` line with its line ending.
    last: Option<Range<usize>>,
    /// Trailer lines (without line endings), then the final blank line.
    trailers: Vec<Range<usize>>,
    blank: Option<Range<usize>>,
    end: usize,
    state: ChunkState,
}

/// The next line from `at`: (content range without EOL, EOL range), or None if incomplete.
fn line_at(buf: &[u8], at: usize) -> Option<(Range<usize>, Range<usize>)> {
    let p = buf.get(at..)?.iter().position(|&b| b == b'\n')?;
    let nl = at + p;
    let content_end = if nl > at && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((at..content_end, content_end..nl + 1))
}

fn parse_chunked(buf: &[u8], start: usize) -> Chunked {
    let mut c = Chunked {
        chunks: Vec::new(),
        last: None,
        trailers: Vec::new(),
        blank: None,
        end: start,
        state: ChunkState::NeedMore,
    };
    let mut at = start;
    let mut total = 0usize;
    loop {
        let Some((line, eol)) = line_at(buf, at) else {
            if buf.len().saturating_sub(at) > 4096 {
                c.state = ChunkState::Bad {
                    at,
                    reason: "chunk size line too long".into(),
                };
            }
            return c;
        };
        let text = &buf[line.clone()];
        let ndigits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = text[ndigits..].trim_ascii_start();
        if ndigits == 0 || ndigits > 16 || !(rest.is_empty() || rest.starts_with(b";")) {
            c.state = ChunkState::Bad {
                at,
                reason: "invalid chunk size".into(),
            };
            c.end = eol.end;
            return c;
        }
        let digits = line.start..line.start + ndigits;
        let size = std::str::from_utf8(&buf[digits.clone()])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size.filter(|&s| total.saturating_add(s) <= MAX_BODY) else {
            c.state = ChunkState::Bad {
                at,
                reason: "chunked body exceeds 64 MiB".into(),
            };
            c.end = eol.end;
            return c;
        };
        total += size;
        if size == 0 {
            c.last = Some(line.start..eol.end);
            at = eol.end;
            // Trailers until a blank line.
            loop {
                let Some((tl, teol)) = line_at(buf, at) else {
                    if buf.len().saturating_sub(at) > MAX_HEAD {
                        c.state = ChunkState::Bad {
                            at,
                            reason: "trailers exceed 64 KiB".into(),
                        };
                    }
                    return c;
                };
                if tl.is_empty() {
                    c.blank = Some(teol.clone());
                    c.end = teol.end;
                    c.state = ChunkState::Done;
                    return c;
                }
                if tl.end - start > MAX_HEAD + MAX_BODY {
                    c.state = ChunkState::Bad {
                        at,
                        reason: "trailers too long".into(),
                    };
                    return c;
                }
                c.trailers.push(tl);
                at = teol.end;
            }
        }
        let data = eol.end..eol.end.saturating_add(size);
        if data.end > buf.len() {
            return c;
        }
        let data_eol = match buf.get(data.end..) {
            Some([b'\r', b'\n', ..]) => data.end..data.end + 2,
            Some([b'\n', ..]) => data.end..data.end + 1,
            Some([] | [b'\r']) => return c,
            _ => {
                c.state = ChunkState::Bad {
                    at: data.end,
                    reason: "chunk data not followed by a line ending".into(),
                };
                c.end = data.end;
                return c;
            }
        };
        c.chunks.push(Chunk {
            line: line.clone(),
            digits,
            size,
            data: data.clone(),
            all: line.start..data_eol.end,
            eols: (eol, data_eol.clone()),
        });
        at = data_eol.end;
        c.end = at;
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

/// Text when UTF-8, else bytes.
fn text_or_bytes(b: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(b) {
        Ok(s) => (Value::Text(s.into()), true),
        Err(_) => (Value::Bytes(b.into()), false),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One header line as a node (also used for trailers).
fn header_node(msg: &[u8], line: Range<usize>, eol: Range<usize>) -> Node {
    let text = &msg[line.clone()];
    let eol_text = &msg[eol.clone()];
    let raw = |reason: &str| {
        let (v, _) = text_or_bytes(text);
        let mut n = Node::new("header line", line.clone(), v)
            .with_kind(format!("raw|{}", lossy(eol_text)))
            .with_error(reason.to_string());
        if text.is_empty() {
            n.range = line.start..eol.end;
        }
        n
    };
    if text.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return raw("obsolete line folding");
    }
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        return raw("header line without colon");
    };
    let name = &text[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return raw("invalid header name");
    }
    let after = &text[colon + 1..];
    let pre = after
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let value_part = &after[pre..];
    let post = value_part
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let value = &value_part[..value_part.len() - post];
    let vstart = line.start + colon + 1 + pre;
    let range = vstart..vstart + value.len();
    let (v, utf8) = text_or_bytes(value);
    let mut n = Node::new(Cow::Owned(lossy(name)), range, v);
    let pre_s = lossy(&after[..pre]);
    let post_s = lossy(&value_part[value.len()..]);
    let eol_s = lossy(eol_text);
    if (pre_s.as_str(), post_s.as_str(), eol_s.as_str()) != (" ", "", "\r\n") {
        n.set_kind(Some(Cow::Owned(format!("{pre_s}|{post_s}|{eol_s}"))));
    }
    if !utf8 {
        n.set_display(Some(lossy(value)));
        n.set_error(Some("header value is not valid UTF-8".into()));
    }
    n
}

fn header_value<'a>(headers: &'a Node, name: &str) -> Option<&'a str> {
    headers
        .children
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| h.value.as_text())
}

fn decode_message(msg: &[u8], dir: Direction) -> Message {
    let mut root = Node::group("http", 0..msg.len());
    let head = head_end(msg);
    let head_len = head.unwrap_or(msg.len());
    // Start line.
    let (line, eol) = line_at(msg, 0).unwrap_or((0..msg.len(), msg.len()..msg.len()));
    let text = &msg[line.clone()];
    let mut label;
    let mut status = None;
    let mut start = match dir {
        Direction::ClientToServer => {
            let mut n = Node::group("request line", line.clone());
            let sp1 = text.iter().position(|&b| b == b' ');
            let sp2 = text.iter().rposition(|&b| b == b' ');
            match (sp1, sp2) {
                (Some(a), Some(b)) if b > a => {
                    let o = line.start;
                    n.push(Node::new(
                        "method",
                        o..o + a,
                        Value::Text(lossy(&text[..a]).into()),
                    ));
                    n.push(Node::new(
                        "target",
                        o + a + 1..o + b,
                        Value::Text(lossy(&text[a + 1..b]).into()),
                    ));
                    n.push(Node::new(
                        "version",
                        o + b + 1..line.end,
                        Value::Text(lossy(&text[b + 1..]).into()),
                    ));
                    let target = lossy(&text[a + 1..b]);
                    let short: String = target.chars().take(80).collect();
                    label = format!("{} {short}", lossy(&text[..a]));
                    if !request_line_ok(text) {
                        n.set_error(Some("malformed request line".into()));
                    }
                }
                _ => {
                    n.value = Value::Text(lossy(text).into());
                    n.set_error(Some("malformed request line".into()));
                    label = "malformed request".into();
                }
            }
            n
        }
        Direction::ServerToClient => {
            let mut n = Node::group("status line", line.clone());
            let o = line.start;
            label = "malformed response".into();
            if status_start(&msg[line.start..eol.end.max(line.end)]) || status_start(text) {
                n.push(Node::new(
                    "version",
                    o..o + 8,
                    Value::Text(lossy(&text[..8]).into()),
                ));
                let code: u16 = std::str::from_utf8(&text[9..12])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                status = Some(code);
                n.push(Node::new("code", o + 9..o + 12, Value::UInt(code as u64)));
                let reason = if text.len() > 12 {
                    let r = lossy(&text[13..]);
                    n.push(Node::new(
                        "reason",
                        o + 13..line.end,
                        Value::Text(r.clone().into()),
                    ));
                    r
                } else {
                    String::new()
                };
                label = format!("{code} {reason}").trim_end().to_string();
            } else {
                n.value = Value::Text(lossy(text).into());
                n.set_error(Some("malformed status line".into()));
            }
            n
        }
    };
    if &msg[eol.clone()] != b"\r\n" {
        start.set_kind(Some(Cow::Owned(lossy(&msg[eol.clone()]))));
    }
    root.push(start);
    // Headers.
    let mut headers = Node::group("headers", eol.end..head_len);
    let mut at = eol.end;
    let mut blank_eol = None;
    while at < head_len {
        let Some((l, e)) = line_at(msg, at) else {
            break;
        };
        if l.is_empty() {
            blank_eol = Some(e.clone());
            break;
        }
        headers.push(header_node(msg, l, e.clone()));
        at = e.end;
    }
    if let Some(b) = &blank_eol
        && &msg[b.clone()] != b"\r\n"
    {
        headers.set_kind(Some(Cow::Owned(lossy(&msg[b.clone()]))));
    }
    if head.is_none() {
        headers.set_error(Some(
            "truncated head: no blank line after the headers".into(),
        ));
    }
    // Cross-check with httparse.
    let nlines = msg[..head_len].iter().filter(|&&b| b == b'\n').count();
    let mut hbuf = vec![httparse::EMPTY_HEADER; nlines.min(MAX_HEADERS)];
    let parsed = match dir {
        Direction::ClientToServer => httparse::Request::new(&mut hbuf)
            .parse(&msg[..head_len])
            .map(|_| ()),
        Direction::ServerToClient => httparse::Response::new(&mut hbuf)
            .parse(&msg[..head_len])
            .map(|_| ()),
    };
    let hs: Vec<(&[u8], &[u8])> = headers
        .children
        .iter()
        .filter(|h| h.error().is_none())
        .map(|h| (h.name.as_bytes(), msg.get(h.range.clone()).unwrap_or(&[])))
        .collect();
    let kind = body_kind(hs.into_iter(), dir, status);
    if let Err(e) = parsed
        && !root.has_error()
        && !headers.has_error()
    {
        headers.set_error(Some(format!("invalid head: {e}")));
    }
    if let BodyKind::BadLength(reason) = &kind {
        if let Some(h) = headers
            .children
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            h.set_error(Some(format!("{reason}; body not framed")));
        } else {
            headers.set_error(Some(reason.clone()));
        }
    }
    let content_type = header_value(&headers, "content-type").map(str::to_ascii_lowercase);
    let encoding = header_value(&headers, "content-encoding").map(str::to_ascii_lowercase);
    root.push(headers);
    let mut derived = Vec::new();
    if head_len < msg.len() {
        let body_range = head_len..msg.len();
        let mut body = Node::new(
            "body",
            body_range.clone(),
            Value::Bytes(msg[head_len..].into()),
        );
        let plain = if kind == BodyKind::Chunked {
            body.set_kind(Some("chunked".into()));
            let (bytes, complete) = chunk_nodes(msg, head_len, &mut body);
            if !complete && body.error().is_none() {
                body.set_error(Some("chunked body incomplete".into()));
            }
            let mut t =
                Node::new("body", 0..bytes.len(), Value::Bytes(bytes.clone().into())).derived();
            if encoding.is_none() {
                add_body_children(&mut t, &bytes, content_type.as_deref(), 0);
            }
            derived.push(DerivedBuffer {
                name: "body".into(),
                bytes: bytes.clone(),
                tree: t,
            });
            bytes
        } else {
            if encoding.is_none() {
                add_body_children(
                    &mut body,
                    &msg[head_len..],
                    content_type.as_deref(),
                    head_len,
                );
            }
            msg[head_len..].to_vec()
        };
        if let Some(enc) = encoding.as_deref() {
            match decompress(enc, &plain) {
                Some(Ok(bytes)) => {
                    let mut t =
                        Node::new("body", 0..bytes.len(), Value::Bytes(bytes.clone().into()))
                            .derived();
                    add_body_children(&mut t, &bytes, content_type.as_deref(), 0);
                    derived.push(DerivedBuffer {
                        name: "body (decoded)".into(),
                        bytes,
                        tree: t,
                    });
                }
                Some(Err(e)) => {
                    body.set_error(Some(format!("{enc} body: {e}")));
                }
                None => {}
            }
        }
        root.push(body);
    } else if let BodyKind::Length(n) = kind
        && n > 0
        && status.is_none()
    {
        root.push(
            Node::new("body", head_len..head_len, Value::None)
                .with_error(format!("body missing: Content-Length {n}")),
        );
    }
    if label.is_empty() {
        label = "http".into();
    }
    Message {
        label,
        tree: root,
        derived,
    }
}

/// Adds the chunk nodes under `body`; returns the de-chunked bytes and whether the body
/// ended properly.
fn chunk_nodes(msg: &[u8], start: usize, body: &mut Node) -> (Vec<u8>, bool) {
    let c = parse_chunked(msg, start);
    let mut out = Vec::new();
    for ch in &c.chunks {
        out.extend_from_slice(&msg[ch.data.clone()]);
        let raw_line = lossy(&msg[ch.line.clone()]);
        let mut size = Node::new("size", ch.digits.clone(), Value::UInt(ch.size as u64))
            .with_display(format!("0x{:x} ({})", ch.size, ch.size));
        let canonical = format!("{:x}", ch.size);
        if raw_line != canonical {
            size.set_kind(Some(Cow::Owned(raw_line)));
        }
        let mut node = Node::group("chunk", ch.all.clone()).with_children(vec![
            size,
            Node::new(
                "data",
                ch.data.clone(),
                Value::Bytes(msg[ch.data.clone()].into()),
            ),
        ]);
        let e1 = lossy(&msg[ch.eols.0.clone()]);
        let e2 = lossy(&msg[ch.eols.1.clone()]);
        if (e1.as_str(), e2.as_str()) != ("\r\n", "\r\n") {
            node.set_kind(Some(Cow::Owned(format!("{e1}|{e2}"))));
        }
        body.push(node);
    }
    if let Some(last) = &c.last {
        body.push(Node::new(
            "last chunk",
            last.clone(),
            Value::Text(lossy(&msg[last.clone()]).into()),
        ));
        let mut trailers = Node::group("trailers", last.end..c.end.max(last.end));
        let mut at = last.end;
        for t in &c.trailers {
            let eol = line_at(msg, t.start).map_or(t.end..t.end, |(_, e)| e);
            trailers.push(header_node(msg, t.clone(), eol.clone()));
            at = eol.end;
        }
        let _ = at;
        if let Some(b) = &c.blank
            && &msg[b.clone()] != b"\r\n"
        {
            trailers.set_kind(Some(Cow::Owned(lossy(&msg[b.clone()]))));
        }
        body.push(trailers);
    }
    let done = matches!(c.state, ChunkState::Done);
    let complete = done && c.end == msg.len();
    match c.state {
        ChunkState::Bad { at, reason } => {
            let end = c.end.max(at + 1).min(msg.len()).max(at.min(msg.len()));
            body.push(
                Node::new(
                    "chunk",
                    at.min(msg.len())..end,
                    Value::Bytes(msg[at.min(msg.len())..end].into()),
                )
                .with_error(reason),
            );
        }
        _ if !complete && c.end < msg.len() && done => {
            body.push(
                Node::new("trailing data", c.end..msg.len(), Value::None)
                    .with_error("bytes after the last chunk"),
            );
        }
        _ => {}
    }
    (out, done)
}

fn decompress(enc: &str, data: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let enc = enc.trim();
    let read = |r: &mut dyn std::io::Read| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        r.take(MAX_DECODED as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        if out.len() > MAX_DECODED {
            return Err("decompressed body exceeds 64 MiB".into());
        }
        Ok(out)
    };
    Some(match enc {
        "gzip" | "x-gzip" => read(&mut flate2::read::GzDecoder::new(data)),
        "deflate" => read(&mut flate2::read::ZlibDecoder::new(data))
            .or_else(|_| read(&mut flate2::read::DeflateDecoder::new(data))),
        "identity" => return None,
        _ => return None,
    })
}

fn is_json(content_type: Option<&str>, body: &[u8]) -> bool {
    content_type.is_some_and(|t| t.contains("json"))
        || matches!(body.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// JSON or form children of a body whose bytes start at `offset` in their buffer.
fn add_body_children(body: &mut Node, bytes: &[u8], content_type: Option<&str>, offset: usize) {
    if bytes.is_empty() {
        return;
    }
    if is_json(content_type, bytes) {
        let mut t = json::tree(bytes, "json");
        let declared = content_type.is_some_and(|t| t.contains("json"));
        if !declared && t.has_error() {
            // Only sniffed as JSON, and it is not: leave the body as bytes.
            return;
        }
        t.offset_ranges(offset);
        body.push(t);
    } else if content_type.is_some_and(|t| t.contains("application/x-www-form-urlencoded")) {
        let mut t = form_tree(bytes);
        t.offset_ranges(offset);
        body.push(t);
    }
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn percent_encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `a=1&b=2` as a `form` group: one node per field, named by the decoded key, value the
/// decoded value, range the raw value.
fn form_tree(bytes: &[u8]) -> Node {
    let mut node = Node::group("form", 0..bytes.len()).with_kind("form");
    let mut at = 0;
    for part in bytes.split(|&b| b == b'&') {
        let end = at + part.len();
        if !part.is_empty() {
            let (k, v, vr) = match part.iter().position(|&b| b == b'=') {
                Some(eq) => (&part[..eq], &part[eq + 1..], at + eq + 1..end),
                None => (part, &part[part.len()..], end..end),
            };
            let name = lossy(&percent_decode(k));
            let (value, _) = text_or_bytes(&percent_decode(v));
            let mut n = Node::new(Cow::Owned(name), vr, value);
            if !part.contains(&b'=') {
                n.set_kind(Some("novalue".into()));
            }
            node.push(n);
        }
        at = end + 1;
    }
    node
}

fn form_fields(node: &Node) -> Vec<(String, Vec<u8>, bool)> {
    node.children
        .iter()
        .filter(|c| !c.derived)
        .map(|c| {
            let v = value_bytes(&c.value);
            (c.name.to_string(), v, c.kind() == Some("novalue"))
        })
        .collect()
}

fn encode_form(node: &Node) -> Vec<u8> {
    form_fields(node)
        .iter()
        .map(|(k, v, novalue)| {
            if *novalue && v.is_empty() {
                percent_encode(k.as_bytes())
            } else {
                format!("{}={}", percent_encode(k.as_bytes()), percent_encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::None => Vec::new(),
        Value::Bool(b) => b.to_string().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.to_vec(),
    }
}

fn field_text(node: &Node, name: &str) -> Result<Vec<u8>, EncodeError> {
    let n = node
        .child(name)
        .ok_or_else(|| EncodeError::Missing(format!("{} {name}", node.name)))?;
    let b = value_bytes(&n.value);
    if b.iter().any(|&c| c == b'\r' || c == b'\n') {
        return Err(EncodeError::BadField {
            field: name.into(),
            reason: "line break in a start-line field".into(),
        });
    }
    Ok(b)
}

/// Whether a node or any non-derived node below it is an error.
fn wire_error(node: &Node) -> Option<&Node> {
    if node.error().is_some() {
        return Some(node);
    }
    node.children
        .iter()
        .filter(|c| !c.derived)
        .find_map(wire_error)
}

fn header_bytes(
    out: &mut Vec<u8>,
    h: &Node,
    override_value: Option<&[u8]>,
) -> Result<(), EncodeError> {
    let kind = h.kind().unwrap_or(" ||\r\n");
    let value = override_value.map_or_else(|| value_bytes(&h.value), <[u8]>::to_vec);
    if value.iter().any(|&c| c == b'\r' || c == b'\n') {
        return Err(EncodeError::BadField {
            field: h.name.to_string(),
            reason: "line break in a header value".into(),
        });
    }
    if let Some(eol) = kind.strip_prefix("raw|") {
        out.extend_from_slice(&value);
        out.extend_from_slice(eol.as_bytes());
        return Ok(());
    }
    let mut parts = kind.splitn(3, '|');
    let pre = parts.next().unwrap_or(" ");
    let post = parts.next().unwrap_or("");
    let eol = parts.next().unwrap_or("\r\n");
    out.extend_from_slice(h.name.as_bytes());
    out.push(b':');
    out.extend_from_slice(pre.as_bytes());
    out.extend_from_slice(&value);
    out.extend_from_slice(post.as_bytes());
    out.extend_from_slice(eol.as_bytes());
    Ok(())
}

/// The body bytes an (edited) `body` node stands for, chunked framing excluded.
fn body_bytes(body: &Node) -> Result<Vec<u8>, EncodeError> {
    let raw = value_bytes(&body.value);
    if let Some(j) = body
        .child("json")
        .filter(|j| !j.derived && wire_error(j).is_none())
    {
        let edited = json::to_value(j)?;
        let original = json::to_value(&json::tree(&raw, "json")).ok();
        if original.as_ref() != Some(&edited) {
            return json::encode_tree(j);
        }
    } else if let Some(f) = body.child("form").filter(|f| !f.derived)
        && form_fields(&form_tree(&raw)) != form_fields(f)
    {
        return Ok(encode_form(f));
    }
    Ok(raw)
}

fn encode_chunked(out: &mut Vec<u8>, body: &Node) -> Result<(), EncodeError> {
    for c in body.children.iter().filter(|c| !c.derived) {
        match c.name.as_ref() {
            "chunk" => {
                let data = c
                    .child("data")
                    .map(|d| value_bytes(&d.value))
                    .ok_or_else(|| EncodeError::Missing("chunk data".into()))?;
                if data.is_empty() {
                    // An empty chunk would end the body; leave it out.
                    continue;
                }
                let size = c.child("size");
                let line = match size {
                    Some(s)
                        if s.value.as_u64() == Some(data.len() as u64) && s.kind().is_some() =>
                    {
                        s.kind().unwrap_or_default().to_string()
                    }
                    _ => format!("{:x}", data.len()),
                };
                let kind = c.kind().unwrap_or("\r\n|\r\n");
                let (e1, e2) = kind.split_once('|').unwrap_or(("\r\n", "\r\n"));
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(e1.as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(e2.as_bytes());
            }
            "last chunk" => out.extend_from_slice(&value_bytes(&c.value)),
            "trailers" => {
                for t in c.children.iter().filter(|t| !t.derived) {
                    header_bytes(out, t, None)?;
                }
                out.extend_from_slice(c.kind().unwrap_or("\r\n").as_bytes());
            }
            _ => {}
        }
    }
    if body.child("last chunk").is_none() {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(())
}

/// Rebuilds an HTTP/1.x message from its (possibly edited) tree.
pub fn encode(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    if let Some(r) = tree.child("request line") {
        out.extend(field_text(r, "method")?);
        out.push(b' ');
        out.extend(field_text(r, "target")?);
        out.push(b' ');
        out.extend(field_text(r, "version")?);
        out.extend_from_slice(r.kind().unwrap_or("\r\n").as_bytes());
    } else if let Some(s) = tree.child("status line") {
        out.extend(field_text(s, "version")?);
        out.push(b' ');
        let code = s
            .child("code")
            .and_then(|c| c.value.as_u64())
            .filter(|c| (100..1000).contains(c))
            .ok_or_else(|| EncodeError::BadField {
                field: "code".into(),
                reason: "status code must be 100..=999".into(),
            })?;
        out.extend_from_slice(code.to_string().as_bytes());
        if s.child("reason").is_some() {
            out.push(b' ');
            out.extend(field_text(s, "reason")?);
        }
        out.extend_from_slice(s.kind().unwrap_or("\r\n").as_bytes());
    } else {
        return Err(EncodeError::Missing("request line or status line".into()));
    }
    let headers = tree
        .child("headers")
        .ok_or_else(|| EncodeError::Missing("headers".into()))?;
    let body = tree.child("body");
    let edit_kind = body.and_then(|b| EDIT_KINDS.iter().find(|(k, _, _)| b.kind() == Some(*k)));
    let chunked = match edit_kind {
        Some((_, _, chunked)) => *chunked,
        None => body.is_some_and(|b| b.kind() == Some("chunked")),
    };
    let body_plain = match (body, edit_kind) {
        (Some(b), Some((_, encoding, chunked))) => Some(decoded_body_wire(b, *encoding, *chunked)?),
        (Some(b), None) if !chunked => Some(body_bytes(b)?),
        _ => None,
    };
    for h in headers.children.iter().filter(|h| !h.derived) {
        let mut over = None;
        if h.name.eq_ignore_ascii_case("content-length") && !chunked {
            let len = body_plain.as_ref().map_or(0, Vec::len);
            let current = std::str::from_utf8(&value_bytes(&h.value))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok());
            if current != Some(len) {
                over = Some(len.to_string().into_bytes());
            }
        }
        header_bytes(&mut out, h, over.as_deref())?;
    }
    out.extend_from_slice(headers.kind().unwrap_or("\r\n").as_bytes());
    if let Some(b) = body {
        if let Some(p) = body_plain {
            out.extend(p);
        } else if chunked {
            encode_chunked(&mut out, b)?;
        }
    }
    Ok(out)
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

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a+b%20c%zz%4"), b"a b c%zz%4");
    }
}
