//! Encoding a message tree back to bytes, with Content-Length and chunk sizes recomputed.

use super::edit::{EDIT_KINDS, decoded_body_wire};
use super::form::{encode_form, form_fields, form_tree};
use super::*;

pub(super) fn value_bytes(v: &Value) -> Vec<u8> {
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
pub(super) fn body_bytes(body: &Node) -> Result<Vec<u8>, EncodeError> {
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

/// A new HTTP/1.1 message: `start` is the request or status line (`POST /login HTTP/1.1`,
/// `HTTP/1.1 200 OK`), the headers follow in order and `Content-Length` is set from `body`.
pub fn write_message(start: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(start.len() + 64 + headers.len() * 32 + body.len());
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(b"\r\n");
    let length = body.len().to_string();
    for (name, value) in headers.iter().chain([&("Content-Length", length.as_str())]) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
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
