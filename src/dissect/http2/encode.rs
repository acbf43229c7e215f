//! Encoding an edited frame tree back to bytes, with the length recomputed.

use super::*;

fn bad(field: &str, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

fn uint_field(tree: &Node, path: &[&str], max: u64) -> Result<u64, EncodeError> {
    let name = path.join(".");
    let node = tree
        .find(path)
        .ok_or_else(|| EncodeError::Missing(name.clone()))?;
    let v = node
        .value
        .as_u64()
        .ok_or_else(|| bad(&name, "not an unsigned number"))?;
    if v > max {
        return Err(bad(&name, format!("{v} is larger than {max}")));
    }
    Ok(v)
}

fn bytes_field<'a>(tree: &'a Node, name: &str) -> Result<&'a [u8], EncodeError> {
    match &tree
        .child(name)
        .ok_or_else(|| EncodeError::Missing(name.into()))?
        .value
    {
        Value::Bytes(b) => Ok(b),
        Value::Text(s) => Ok(s.as_bytes()),
        _ => Err(bad(name, "not bytes")),
    }
}

fn reserved_bit(node: Option<&Node>) -> u32 {
    let set = node
        .and_then(|n| n.child("reserved"))
        .is_some_and(|r| r.value == Value::Bool(true));
    if set { 0x8000_0000 } else { 0 }
}

fn put_u31(out: &mut Vec<u8>, tree: &Node, name: &str) -> Result<(), EncodeError> {
    let v = uint_field(tree, &[name], 0x7fff_ffff)? as u32;
    out.extend_from_slice(&(v | reserved_bit(tree.child(name))).to_be_bytes());
    Ok(())
}

/// Rebuilds a frame (or the preface) from a tree as [`Http2Decoder`] made it, with the
/// length recomputed from the payload. HEADERS, PUSH_PROMISE and CONTINUATION are not
/// editable (their header blocks depend on the connection's HPACK state).
pub fn encode_frame(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    if tree.name == "h2 preface" {
        return Ok(PREFACE.to_vec());
    }
    let kind = uint_field(tree, &["header", "type"], 0xff)? as u8;
    let flags = uint_field(tree, &["header", "flags"], 0xff)? as u8;
    let stream = uint_field(tree, &["header", "stream"], 0x7fff_ffff)? as u32;
    let stream = stream | reserved_bit(tree.find(&["header", "stream"]));
    let mut payload = Vec::new();
    let padded = flags & FLAG_PADDED != 0;
    match kind {
        HEADERS | PUSH_PROMISE | CONTINUATION => {
            return Err(EncodeError::NotEditable("HTTP/2 header-block"));
        }
        DATA => {
            let padding = if padded {
                bytes_field(tree, "padding")?
            } else {
                &[]
            };
            if padded {
                let n = u8::try_from(padding.len())
                    .map_err(|_| bad("padding", "longer than 255 bytes"))?;
                payload.push(n);
            }
            payload.extend_from_slice(bytes_field(tree, "data")?);
            payload.extend_from_slice(padding);
        }
        SETTINGS => {
            for c in &tree.children {
                if c.name == "header" {
                    continue;
                }
                if c.name == "payload" || c.name == "trailing bytes" {
                    return Err(bad(
                        &c.name,
                        "malformed SETTINGS payloads cannot be encoded",
                    ));
                }
                let id = c
                    .tag
                    .and_then(|t| u16::try_from(t).ok())
                    .ok_or_else(|| bad(&c.name, "no 16-bit setting identifier (tag)"))?;
                let v = c
                    .value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad(&c.name, "not a 32-bit unsigned value"))?;
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&v.to_be_bytes());
            }
        }
        PING => {
            let data = bytes_field(tree, "opaque data")?;
            if data.len() != 8 {
                return Err(bad("opaque data", "PING data must be 8 bytes"));
            }
            payload.extend_from_slice(data);
        }
        RST_STREAM => {
            let code = uint_field(tree, &["error code"], u64::from(u32::MAX))? as u32;
            payload.extend_from_slice(&code.to_be_bytes());
        }
        GOAWAY => {
            put_u31(&mut payload, tree, "last stream")?;
            let code = uint_field(tree, &["error code"], u64::from(u32::MAX))? as u32;
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(bytes_field(tree, "debug data")?);
        }
        WINDOW_UPDATE => put_u31(&mut payload, tree, "increment")?,
        PRIORITY => {
            let dep = uint_field(tree, &["stream dependency"], 0x7fff_ffff)? as u32;
            let exclusive = tree
                .child("exclusive")
                .is_some_and(|e| e.value == Value::Bool(true));
            let dep = dep | if exclusive { 0x8000_0000 } else { 0 };
            payload.extend_from_slice(&dep.to_be_bytes());
            payload.push(uint_field(tree, &["weight"], 0xff)? as u8);
        }
        _ => payload.extend_from_slice(bytes_field(tree, "payload")?),
    }
    if payload.len() > MAX_FRAME_SIZE {
        return Err(bad("length", "payload longer than 2^24 - 1 bytes"));
    }
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}
