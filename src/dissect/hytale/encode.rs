//! Encoding an edited tree back to a frame, with lengths fixed up and payloads recompressed.

use super::decode::id_from_tag;
use super::frame::frame;
use super::wire::{parse_uuid, write_varint};
use super::{FixedField, FixedType, KIND_PAYLOAD, Layout, VarField, VarType, ZSTD_LEVEL, lookup};
use crate::dissect::{EncodeError, Message, Node, Value};

/// Encodes a frame's tree (the on-wire tree, or the `decompressed` tree of a compressed
/// packet, which is recompressed).
pub fn encode_tree(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    if tree.kind() == Some(KIND_PAYLOAD) {
        let id = tree
            .tag
            .map(id_from_tag)
            .ok_or_else(|| EncodeError::Missing("packet id (tag)".into()))?;
        let payload = encode_payload(id, &tree.children)?;
        return packet(id, &payload);
    }
    let id_node = wire_child(tree, "id")?;
    let id = id_node
        .value
        .as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| bad("id", "not an i32"))?;
    let payload_node = wire_child(tree, "payload")?;
    match payload_node.kind() {
        Some("fields") => {
            let payload = encode_payload(id, &payload_node.children)?;
            packet(id, &payload)
        }
        _ => match &payload_node.value {
            Value::Bytes(b) => Ok(frame(id, b)),
            _ => Err(bad("payload", "expected bytes")),
        },
    }
}

/// Encodes a whole message: from its `decompressed` tree when it has one (so edits there are
/// recompressed), else from its tree.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    match msg.derived.iter().find(|d| d.name == "decompressed") {
        Some(d) => encode_tree(&d.tree),
        None => encode_tree(&msg.tree),
    }
}

fn bad(field: &str, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn wire_child<'a>(n: &'a Node, name: &str) -> Result<&'a Node, EncodeError> {
    n.children
        .iter()
        .find(|c| !c.derived && c.name == name)
        .ok_or_else(|| EncodeError::Missing(name.to_string()))
}

/// The uncompressed payload of packet `id` from its field nodes.
pub fn encode_payload(id: i32, fields: &[Node]) -> Result<Vec<u8>, EncodeError> {
    match lookup(id).and_then(|s| s.layout) {
        Some(layout) => encode_fields(&layout, fields),
        None => match fields
            .iter()
            .find(|c| !c.derived && c.name == "data")
            .map(|c| &c.value)
        {
            Some(Value::Bytes(b)) => Ok(b.to_vec()),
            _ => Err(EncodeError::Missing("data".into())),
        },
    }
}

fn encode_fields(layout: &Layout, fields: &[Node]) -> Result<Vec<u8>, EncodeError> {
    let find = |name: &str| fields.iter().find(|n| !n.derived && n.name == name);
    let mut out = vec![0u8; layout.fixed_size];
    for f in layout.fixed {
        let node = find(f.name).ok_or_else(|| EncodeError::Missing(f.name.into()))?;
        let slot = out
            .get_mut(f.offset..f.offset + f.ty.size())
            .ok_or_else(|| bad(f.name, "outside the fixed part"))?;
        write_fixed(slot, f, node)?;
    }
    let mut bits = 0u8;
    let mut encoded = Vec::with_capacity(layout.var.len());
    for vf in layout.var {
        match (find(vf.name), vf.null_bit) {
            (Some(node), bit) => {
                if let Some(b) = bit {
                    bits |= 1u8 << (b & 7);
                }
                encoded.push(Some(encode_var(vf, node)?));
            }
            (None, Some(_)) => encoded.push(None),
            (None, None) => return Err(EncodeError::Missing(vf.name.into())),
        }
    }
    if layout.null_bits {
        let keep = find("nullBits")
            .and_then(|n| n.value.as_u64())
            .map_or(0, |v| v as u8 & !layout.known_bits());
        if let Some(b) = out.first_mut() {
            *b = bits | keep;
        }
    }
    if layout.var.len() == 1 {
        if let Some(Some(b)) = encoded.first() {
            out.extend_from_slice(b);
        }
    } else if layout.var.len() > 1 {
        let mut block = Vec::new();
        for e in &encoded {
            let off = match e {
                Some(b) => {
                    let off = i32::try_from(block.len())
                        .map_err(|_| bad("offsets", "block over 2 GiB"))?;
                    block.extend_from_slice(b);
                    off
                }
                None => -1,
            };
            out.extend_from_slice(&off.to_le_bytes());
        }
        out.extend_from_slice(&block);
    }
    if let Some(Value::Bytes(b)) = find("trailing").map(|t| &t.value) {
        out.extend_from_slice(b);
    }
    Ok(out)
}

fn int_in<T: TryFrom<i64>>(node: &Node, name: &str) -> Result<T, EncodeError> {
    node.value
        .as_i64()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| {
            bad(
                name,
                format!(
                    "{} is not a {}",
                    node.value.render(),
                    std::any::type_name::<T>()
                ),
            )
        })
}

fn write_fixed(slot: &mut [u8], f: &FixedField, node: &Node) -> Result<(), EncodeError> {
    let bytes: Vec<u8> = match f.ty {
        FixedType::U8 | FixedType::Enum8(_) => vec![int_in::<u8>(node, f.name)?],
        FixedType::I16 => int_in::<i16>(node, f.name)?.to_le_bytes().to_vec(),
        FixedType::I32 => int_in::<i32>(node, f.name)?.to_le_bytes().to_vec(),
        FixedType::I64 => int_in::<i64>(node, f.name)?.to_le_bytes().to_vec(),
        FixedType::I64Be => int_in::<i64>(node, f.name)?.to_be_bytes().to_vec(),
        FixedType::UuidBe => match &node.value {
            Value::Text(s) => parse_uuid(s)
                .ok_or_else(|| bad(f.name, "not a UUID"))?
                .to_vec(),
            Value::Bytes(b) if b.len() == 16 => b.to_vec(),
            _ => return Err(bad(f.name, "expected UUID text")),
        },
        FixedType::Ascii(n) => {
            let mut b = match &node.value {
                Value::Text(s) if s.is_ascii() => s.as_bytes().to_vec(),
                Value::Text(_) => return Err(bad(f.name, "not ASCII")),
                Value::Bytes(b) => b.to_vec(),
                _ => return Err(bad(f.name, "expected text")),
            };
            if b.len() > n {
                return Err(bad(f.name, format!("{} bytes, at most {n}", b.len())));
            }
            b.resize(n, 0);
            b
        }
        FixedType::Instant => {
            let secs: i64 = int_in(wire_child(node, "seconds")?, "seconds")?;
            let nanos: i32 = int_in(wire_child(node, "nanos")?, "nanos")?;
            let mut b = secs.to_le_bytes().to_vec();
            b.extend_from_slice(&nanos.to_le_bytes());
            b
        }
    };
    if bytes.len() != slot.len() {
        return Err(bad(f.name, "wrong size"));
    }
    slot.copy_from_slice(&bytes);
    Ok(())
}

fn value_bytes<'a>(node: &'a Node, name: &str) -> Result<&'a [u8], EncodeError> {
    match &node.value {
        Value::Text(s) => Ok(s.as_bytes()),
        Value::Bytes(b) => Ok(b),
        _ => Err(bad(name, "expected text or bytes")),
    }
}

fn prefixed(name: &str, body: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= i32::MAX as u32)
        .ok_or_else(|| bad(name, "longer than 2^31-1 bytes"))?;
    let mut out = Vec::with_capacity(body.len() + 5);
    write_varint(&mut out, len);
    out.extend_from_slice(body);
    Ok(out)
}

fn encode_var(vf: &VarField, node: &Node) -> Result<Vec<u8>, EncodeError> {
    match vf.ty {
        VarType::Str { .. } | VarType::Bytes { .. } => {
            prefixed(vf.name, value_bytes(node, vf.name)?)
        }
        VarType::Referral { .. } => {
            let sub = node
                .children
                .iter()
                .find(|c| !c.derived && c.name == "referral")
                .filter(|r| !wire_error(r));
            match sub {
                Some(r) => prefixed(vf.name, &encode_referral(r)?),
                None => prefixed(vf.name, value_bytes(node, vf.name)?),
            }
        }
        VarType::HostPort { .. } => {
            let port = wire_child(node, "port")?
                .value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad("port", "not 0..=65535"))?;
            let host = wire_child(node, "host")?;
            let mut out = port.to_le_bytes().to_vec();
            out.extend_from_slice(&prefixed("host", value_bytes(host, "host")?)?);
            Ok(out)
        }
    }
}

/// Whether a node or any on-wire node below it has an error.
fn wire_error(n: &Node) -> bool {
    n.error().is_some() || n.children.iter().any(|c| !c.derived && wire_error(c))
}

/// Referral bytes from an (edited) `referral` sub-tree; the HMAC is copied, not recomputed.
fn encode_referral(r: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    out.extend_from_slice(&int_in::<i32>(wire_child(r, "version")?, "version")?.to_le_bytes());
    out.extend_from_slice(&int_in::<i64>(wire_child(r, "uuidMsb")?, "uuidMsb")?.to_le_bytes());
    out.extend_from_slice(&int_in::<i64>(wire_child(r, "uuidLsb")?, "uuidLsb")?.to_le_bytes());
    for name in ["username", "backendName", "remoteAddress"] {
        let b = value_bytes(wire_child(r, name)?, name)?;
        let len = i32::try_from(b.len()).map_err(|_| bad(name, "too long"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&int_in::<i32>(wire_child(r, "timestamp")?, "timestamp")?.to_le_bytes());
    out.extend_from_slice(value_bytes(wire_child(r, "hmac")?, "hmac")?);
    Ok(out)
}

/// A frame for packet `id`, compressing the payload when the registry says so.
pub fn packet(id: i32, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if lookup(id).is_some_and(|s| s.compressed) {
        let z = zstd::bulk::compress(payload, ZSTD_LEVEL)
            .map_err(|e| bad("payload", format!("zstd: {e}")))?;
        Ok(frame(id, &z))
    } else {
        Ok(frame(id, payload))
    }
}
