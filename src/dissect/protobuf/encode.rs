//! Re-encoding a field tree from [`super::decode_message`] (possibly edited) to protobuf
//! bytes, with the lengths of nested messages and packed fields recomputed.

use super::wire::{
    MAX_FIELD_NUMBER, WIRE_END_GROUP, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_START_GROUP,
    WIRE_VARINT, put_tag, put_varint, varint_len, zigzag_encode,
};
use crate::dissect::{EncodeError, Node, Value};

/// Trees deeper than this are refused (decode never builds one).
const MAX_ENCODE_DEPTH: usize = 128;

/// Encodes the children of a message node (the root of a [`super::decode_message`] tree, or a
/// payload node a dissector renamed). Each child needs `tag` and `kind`; `raw` children
/// (undecodable rests) are written back verbatim; derived children are skipped.
pub fn encode_message(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(node.range.len());
    if node.children.is_empty()
        && let Value::Bytes(b) = &node.value
    {
        // A message kept as bytes (nesting too deep to decode).
        out.extend_from_slice(b);
        return Ok(out);
    }
    encode_fields(&node.children, &mut out, 0)?;
    Ok(out)
}

fn encode_fields(nodes: &[Node], out: &mut Vec<u8>, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_ENCODE_DEPTH {
        return Err(EncodeError::BadField {
            field: "message".into(),
            reason: "nested too deeply".into(),
        });
    }
    for n in nodes.iter().filter(|n| !n.derived) {
        encode_field(n, out, depth)?;
    }
    Ok(())
}

fn bad(n: &Node, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: n.name.to_string(),
        reason: reason.into(),
    }
}

fn encode_field(n: &Node, out: &mut Vec<u8>, depth: usize) -> Result<(), EncodeError> {
    let kind = n.kind().ok_or_else(|| bad(n, "no protobuf type (kind)"))?;
    if kind == "raw" {
        return match &n.value {
            Value::Bytes(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            _ => Err(bad(n, "raw bytes expected")),
        };
    }
    let number = n
        .tag
        .map(u64::from)
        .filter(|&t| (1..=MAX_FIELD_NUMBER).contains(&t))
        .ok_or_else(|| bad(n, "no valid field number (tag)"))?;
    match kind {
        "message" => {
            put_tag(out, number, WIRE_LEN);
            if n.children.is_empty()
                && let Value::Bytes(b) = &n.value
            {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
                return Ok(());
            }
            with_length(out, |out| encode_fields(&n.children, out, depth + 1))
        }
        "group" => {
            put_tag(out, number, WIRE_START_GROUP);
            encode_fields(&n.children, out, depth + 1)?;
            put_tag(out, number, WIRE_END_GROUP);
            Ok(())
        }
        _ => {
            if let Some(elem) = kind.strip_prefix("packed ") {
                put_tag(out, number, WIRE_LEN);
                return with_length(out, |out| {
                    n.children
                        .iter()
                        .filter(|c| !c.derived)
                        .try_for_each(|c| encode_value(elem, c, out))
                });
            }
            let wire = wire_of(kind).ok_or_else(|| bad(n, format!("unknown type {kind}")))?;
            put_tag(out, number, wire);
            encode_value(kind, n, out)
        }
    }
}

/// Writes what `body` appends, preceded by its length varint.
fn with_length(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    // Reserve one byte for the length, write the body, then widen the length if needed.
    let at = out.len();
    out.push(0);
    body(out)?;
    let len = out.len() - at - 1;
    let width = varint_len(len as u64);
    if width > 1 {
        let end = out.len();
        out.resize(end + width - 1, 0);
        out.copy_within(at + 1..end, at + width);
    }
    let mut len_bytes = Vec::with_capacity(width);
    put_varint(&mut len_bytes, len as u64);
    out[at..at + width].copy_from_slice(&len_bytes);
    Ok(())
}

fn wire_of(kind: &str) -> Option<u8> {
    Some(match kind {
        "varint" | "int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64" | "bool"
        | "enum" => WIRE_VARINT,
        "fixed64" | "sfixed64" | "double" => WIRE_FIXED64,
        "fixed32" | "sfixed32" | "float" => WIRE_FIXED32,
        "string" | "bytes" => WIRE_LEN,
        _ => return None,
    })
}

/// The value as 64 bits for a varint or fixed field (negative numbers two's complement).
fn bits(n: &Node) -> Result<u64, EncodeError> {
    match &n.value {
        Value::UInt(u) => Ok(*u),
        Value::Int(i) => Ok(*i as u64),
        Value::Bool(b) => Ok(u64::from(*b)),
        Value::Text(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .or_else(|_| s.parse::<i64>().map(|i| i as u64))
                .map_err(|_| bad(n, format!("{s:?} is not a number")))
        }
        _ => Err(bad(n, "a number is expected")),
    }
}

fn signed(n: &Node) -> Result<i64, EncodeError> {
    match &n.value {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| bad(n, "out of range")),
        _ => bits(n).map(|b| b as i64),
    }
}

fn float(n: &Node) -> Result<f64, EncodeError> {
    match &n.value {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Text(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| bad(n, format!("{s:?} is not a number"))),
        _ => Err(bad(n, "a floating-point number is expected")),
    }
}

/// Writes a value without its tag.
fn encode_value(kind: &str, n: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match kind {
        "varint" | "int32" | "int64" | "uint32" | "uint64" | "enum" => put_varint(out, bits(n)?),
        "bool" => match &n.value {
            Value::Bool(b) => put_varint(out, u64::from(*b)),
            _ => put_varint(out, bits(n)?),
        },
        "sint32" | "sint64" => put_varint(out, zigzag_encode(signed(n)?)),
        "fixed64" | "sfixed64" => out.extend_from_slice(&bits(n)?.to_le_bytes()),
        "double" => {
            let v = match &n.value {
                Value::UInt(u) => f64::from_bits(*u),
                _ => float(n)?,
            };
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        "fixed32" => {
            let v = u32::try_from(bits(n)?).map_err(|_| bad(n, "out of range for fixed32"))?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        "sfixed32" => {
            let v = i32::try_from(signed(n)?).map_err(|_| bad(n, "out of range for sfixed32"))?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        "float" => {
            let v = match &n.value {
                // The bits of a NaN, as decode keeps them.
                Value::UInt(u) => {
                    u32::try_from(*u).map_err(|_| bad(n, "out of range for float bits"))?
                }
                _ => (float(n)? as f32).to_bits(),
            };
            out.extend_from_slice(&v.to_le_bytes());
        }
        "string" | "bytes" => {
            let b: &[u8] = match &n.value {
                Value::Text(s) => s.as_bytes(),
                Value::Bytes(b) => b,
                _ => return Err(bad(n, "text or bytes expected")),
            };
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        other => return Err(bad(n, format!("unknown type {other}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_widened_when_the_body_passes_127_bytes() {
        let mut out = vec![0xaa];
        with_length(&mut out, |o| {
            o.extend_from_slice(&[7; 300]);
            Ok(())
        })
        .unwrap();
        assert_eq!(&out[..3], &[0xaa, 0xac, 0x02]);
        assert_eq!(out.len(), 3 + 300);
        assert!(out[3..].iter().all(|&b| b == 7));
    }
}
