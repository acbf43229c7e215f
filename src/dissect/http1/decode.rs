//! Decoding one message into its tree: start line, headers, chunks, and the body's
//! decompressed, JSON and form views.

use super::chunked::{ChunkState, line_at, parse_chunked};
use super::form::form_tree;
use super::frame::{BodyKind, body_kind, head_end, is_tchar, request_line_ok, status_start};
use super::*;

/// Text when UTF-8, else bytes.
pub(super) fn text_or_bytes(b: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(b) {
        Ok(s) => (Value::Text(s.into()), true),
        Err(_) => (Value::Bytes(b.into()), false),
    }
}

pub(super) fn lossy(b: &[u8]) -> String {
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

pub(super) fn header_value<'a>(headers: &'a Node, name: &str) -> Option<&'a str> {
    headers
        .children
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| h.value.as_text())
}

pub(super) fn decode_message(msg: &[u8], dir: Direction) -> Message {
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
