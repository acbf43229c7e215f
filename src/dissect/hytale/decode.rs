//! Decoding one frame into its tree: the header, decompression and the table-driven fields.

use super::frame::header;
use super::referral::{check_referral_identity, referral_tree};
use super::wire::{bit_of, le_i32, le_i64, read_varint, uuid_text};
use super::{
    FixedField, FixedType, GLOBAL_MAX, HEADER_LEN, KIND_FRAME, KIND_PAYLOAD, Layout, PacketSpec,
    VarField, VarType, lookup,
};
use crate::dissect::{DerivedBuffer, Message, Node, Value};

/// Decodes one frame (as [`frame_at`] delimited it). `secret` is the referral HMAC secret.
pub fn decode_message(msg: &[u8], secret: Option<&[u8]>) -> Message {
    let Some((len, id)) = header(msg) else {
        let root = Node::new("frame", 0..msg.len(), Value::Bytes(msg.into()))
            .with_kind(KIND_FRAME)
            .with_error(format!(
                "frame header needs {HEADER_LEN} bytes, got {}",
                msg.len()
            ));
        return Message::new("truncated", root);
    };
    let spec = lookup(id);
    let label = match spec {
        Some(s) => s.name.to_string(),
        None => format!("Unknown {id}"),
    };
    let mut root = Node::group(label.clone(), 0..msg.len())
        .with_kind(KIND_FRAME)
        .with_tag(id_tag(id));

    let mut length = Node::new("length", 0..4, Value::Int(len.into())).with_kind("i32le");
    let declared = usize::try_from(len).ok();
    match (declared, spec) {
        (None, _) => length = length.with_error("negative payload length"),
        (Some(n), Some(s)) if n > s.max() => {
            length = length.with_error(format!(
                "payload length {n} exceeds the maximum {} for {} (a server closes the connection)",
                s.max(),
                s.name
            ));
        }
        (Some(n), None) if n > GLOBAL_MAX => {
            length = length.with_error(format!("payload length {n} exceeds {GLOBAL_MAX}"));
        }
        _ => {}
    }
    root.push(length);
    let id_display = match spec {
        Some(s) => format!("{id} ({})", s.name),
        None => format!("{id} (unknown)"),
    };
    root.push(
        Node::new("id", 4..8, Value::Int(id.into()))
            .with_kind("i32le")
            .with_display(id_display),
    );

    let available = msg.len() - HEADER_LEN;
    let payload_len = declared.unwrap_or(available).min(available);
    let payload = msg.get(HEADER_LEN..HEADER_LEN + payload_len).unwrap_or(&[]);
    let range = HEADER_LEN..HEADER_LEN + payload_len;
    let mut derived = Vec::new();
    let mut payload_node = match spec {
        Some(s) if s.compressed => {
            let mut node =
                Node::new("payload", range, Value::Bytes(payload.into())).with_kind("zstd");
            match decompress(payload, s.max()) {
                Ok(plain) => {
                    node = node.with_display(format!(
                        "zstd, {} bytes, {} decompressed",
                        payload.len(),
                        plain.len()
                    ));
                    let tree = payload_tree(s, &plain, secret);
                    derived.push(DerivedBuffer {
                        name: "decompressed".into(),
                        bytes: plain,
                        tree,
                    });
                }
                Err(e) => node = node.with_error(e),
            }
            node
        }
        Some(
            s @ PacketSpec {
                layout: Some(layout),
                ..
            },
        ) => Node::group("payload", range)
            .with_kind("fields")
            .with_children(decode_fields(s, layout, payload, HEADER_LEN, secret)),
        _ => Node::new("payload", range, Value::Bytes(payload.into())).with_kind("raw"),
    };
    if let Some(n) = declared.filter(|&n| n > available) {
        payload_node = payload_node.with_error(format!(
            "truncated: {available} of {n} payload bytes present"
        ));
    }
    root.push(payload_node);
    if let Some(extra) = msg
        .get(HEADER_LEN + payload_len..)
        .filter(|r| !r.is_empty())
    {
        root.push(
            Node::new(
                "trailing",
                HEADER_LEN + payload_len..msg.len(),
                Value::Bytes(extra.into()),
            )
            .with_error(format!("{} bytes after the frame", extra.len())),
        );
    }
    Message {
        label,
        tree: root,
        derived,
    }
}

fn id_tag(id: i32) -> u32 {
    id.cast_unsigned()
}

pub(super) fn id_from_tag(tag: u32) -> i32 {
    tag.cast_signed()
}

/// The tree of a decompressed payload (ranges within `plain`).
fn payload_tree(spec: &PacketSpec, plain: &[u8], secret: Option<&[u8]>) -> Node {
    let root = Node::group(spec.name, 0..plain.len())
        .with_kind(KIND_PAYLOAD)
        .with_tag(id_tag(spec.id));
    match &spec.layout {
        Some(layout) => root.with_children(decode_fields(spec, layout, plain, 0, secret)),
        None => root.with_children(vec![
            Node::new("data", 0..plain.len(), Value::Bytes(plain.into())).with_kind("raw"),
        ]),
    }
}

/// Decompresses a payload that must be exactly one zstd frame stating a content size of at
/// most `cap`.
pub fn decompress(payload: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe;
    let size = match zstd_safe::get_frame_content_size(payload) {
        Ok(Some(n)) => n,
        Ok(None) => return Err("the zstd frame does not state its content size".into()),
        Err(_) => return Err("not a zstd frame".into()),
    };
    if size > cap as u64 {
        return Err(format!(
            "decompressed size {size} exceeds the maximum {cap}"
        ));
    }
    let frame_len = zstd_safe::find_frame_compressed_size(payload)
        .map_err(|_| "truncated or corrupt zstd frame".to_string())?;
    if frame_len != payload.len() {
        return Err(format!(
            "{} bytes after the zstd frame",
            payload.len().saturating_sub(frame_len)
        ));
    }
    // `size <= cap`, so this allocates at most `cap` bytes.
    let plain = zstd::bulk::decompress(payload, size as usize).map_err(|e| format!("zstd: {e}"))?;
    if plain.len() as u64 != size {
        return Err(format!(
            "zstd frame states {size} bytes but holds {}",
            plain.len()
        ));
    }
    Ok(plain)
}

/// Decodes a payload `p` laid out per `layout`; `base` is where `p` starts in the buffer the
/// ranges refer to.
fn decode_fields(
    spec: &PacketSpec,
    layout: &Layout,
    p: &[u8],
    base: usize,
    secret: Option<&[u8]>,
) -> Vec<Node> {
    let mut out = Vec::new();
    let mut bits = 0u8;
    if layout.null_bits {
        let Some(&b) = p.first() else {
            out.push(
                Node::new("nullBits", base..base, Value::None).with_error(format!(
                    "empty payload; {} needs the null-bit byte",
                    spec.name
                )),
            );
            return out;
        };
        bits = b;
        out.push(null_bits_node(layout, b, base));
    }
    for f in layout.fixed {
        let end = f.offset + f.ty.size();
        match p.get(f.offset..end) {
            Some(b) => out.push(decode_fixed(f, b, base + f.offset)),
            None => {
                out.push(
                    Node::new(
                        f.name,
                        base + f.offset.min(p.len())..base + p.len(),
                        Value::None,
                    )
                    .with_error(format!(
                        "truncated: the field needs payload bytes {}..{end}, the payload has {}",
                        f.offset,
                        p.len()
                    )),
                );
                return out;
            }
        }
    }
    if p.len() < layout.fixed_size {
        out.push(
            Node::new("fixed part", base + p.len()..base + p.len(), Value::None).with_error(
                format!(
                    "truncated: the fixed part is {} bytes, the payload {}",
                    layout.fixed_size,
                    p.len()
                ),
            ),
        );
        return out;
    }
    let mut end = layout.fixed_size;
    match layout.var {
        [] => {}
        [one] => {
            if one.null_bit.is_none_or(|b| bit_of(bits, b)) {
                let (node, e) = decode_var(one, p, layout.fixed_size, base, secret);
                end = e;
                out.push(node);
            }
        }
        many => {
            let table = layout.fixed_size;
            let block = layout.var_block_start();
            let mut offsets = Node::group("offsets", base + table..base + block.min(p.len()));
            if p.len() < block {
                out.push(offsets.with_error(format!(
                    "truncated: the offset table needs payload bytes {table}..{block}, the payload has {}",
                    p.len()
                )));
                return out;
            }
            end = block;
            let mut fields = Vec::new();
            for (i, vf) in many.iter().enumerate() {
                let at = table + 4 * i;
                let off = le_i32(p, at).unwrap_or(-1);
                let mut on = Node::new(
                    format!("{}Offset", vf.name),
                    base + at..base + at + 4,
                    Value::Int(off.into()),
                )
                .with_kind("i32le");
                let present = vf.null_bit.map(|b| bit_of(bits, b));
                match (present, off) {
                    (Some(false), -1) => on = on.with_display("-1 (absent)"),
                    (Some(false), _) => {
                        on = on.with_error(format!(
                            "offset set but the null bit of {} is clear",
                            vf.name
                        ));
                    }
                    (Some(true), -1) => {
                        on = on.with_error(format!(
                            "the null bit of {} is set but its offset is -1",
                            vf.name
                        ));
                    }
                    (None, -1) => {
                        on = on.with_error(format!("{} is required but its offset is -1", vf.name));
                    }
                    (_, o) => match usize::try_from(o).ok().map(|o| block + o) {
                        Some(pos) if pos < p.len() => {
                            on = on.with_display(format!("{o} (byte {})", base + pos));
                            let (node, e) = decode_var(vf, p, pos, base, secret);
                            end = end.max(e);
                            fields.push(node);
                        }
                        _ => {
                            on = on.with_error(format!(
                                "offset {o} points outside the variable block ({} bytes)",
                                p.len() - block
                            ));
                        }
                    },
                }
                offsets.push(on);
            }
            out.push(offsets);
            out.append(&mut fields);
        }
    }
    if let Some(rest) = p.get(end..).filter(|r| !r.is_empty()) {
        out.push(
            Node::new(
                "trailing",
                base + end..base + p.len(),
                Value::Bytes(rest.into()),
            )
            .with_error(format!("{} bytes after the last field", rest.len())),
        );
    }
    check_referral_identity(&mut out);
    out
}

fn null_bits_node(layout: &Layout, b: u8, base: usize) -> Node {
    let set: Vec<&str> = layout
        .var
        .iter()
        .filter(|v| v.null_bit.is_some_and(|bit| bit_of(b, bit)))
        .map(|v| v.name)
        .collect();
    let mut display = format!("{b:#010b}");
    if !set.is_empty() {
        display.push_str(&format!(" ({})", set.join(", ")));
    }
    let unknown = b & !layout.known_bits();
    if unknown != 0 {
        display.push_str(&format!(" undefined bits {unknown:#010b}"));
    }
    Node::new("nullBits", base..base + 1, Value::UInt(b.into()))
        .with_kind("u8")
        .with_display(display)
}

pub(super) fn time_text(secs: i64, nanos: u32) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn decode_fixed(f: &FixedField, b: &[u8], at: usize) -> Node {
    let range = at..at + b.len();
    let arr = |n: usize| b.get(..n).unwrap_or(&[]);
    match f.ty {
        FixedType::U8 => Node::new(
            f.name,
            range,
            Value::UInt(arr(1).first().copied().unwrap_or(0).into()),
        )
        .with_kind("u8"),
        FixedType::Enum8(names) => {
            let v = b.first().copied().unwrap_or(0);
            let node = Node::new(f.name, range, Value::UInt(v.into())).with_kind("u8");
            match names.get(usize::from(v)) {
                Some(name) => node.with_display(format!("{v} ({name})")),
                None => node.with_error(format!("unknown value {v}")),
            }
        }
        FixedType::I16 => {
            let v = i16::from_le_bytes(arr(2).try_into().unwrap_or_default());
            Node::new(f.name, range, Value::Int(v.into())).with_kind("i16le")
        }
        FixedType::I32 => Node::new(f.name, range, Value::Int(le_i32(b, 0).unwrap_or(0).into()))
            .with_kind("i32le"),
        FixedType::I64 => {
            Node::new(f.name, range, Value::Int(le_i64(b, 0).unwrap_or(0))).with_kind("i64le")
        }
        FixedType::I64Be => {
            let v = i64::from_be_bytes(arr(8).try_into().unwrap_or_default());
            Node::new(f.name, range, Value::Int(v)).with_kind("i64be")
        }
        FixedType::UuidBe => {
            let u: [u8; 16] = arr(16).try_into().unwrap_or_default();
            Node::new(f.name, range, Value::Text(uuid_text(&u).into())).with_kind("uuid")
        }
        FixedType::Ascii(n) => {
            let raw = arr(n);
            let trimmed = raw
                .iter()
                .rposition(|&c| c != 0)
                .map_or(&raw[..0], |last| &raw[..=last]);
            if trimmed.is_ascii() {
                let text = String::from_utf8_lossy(trimmed).into_owned();
                Node::new(f.name, range, Value::Text(text.into())).with_kind("ascii")
            } else {
                Node::new(f.name, range, Value::Bytes(trimmed.into()))
                    .with_kind("ascii")
                    .with_error("not ASCII")
            }
        }
        FixedType::Instant => {
            let secs = le_i64(b, 0).unwrap_or(0);
            let nanos = le_i32(b, 8).unwrap_or(0);
            let mut nanos_node =
                Node::new("nanos", at + 8..at + 12, Value::Int(nanos.into())).with_kind("i32le");
            let ok_nanos = u32::try_from(nanos).ok().filter(|&n| n < 1_000_000_000);
            if ok_nanos.is_none() {
                nanos_node = nanos_node.with_error("nanoseconds outside 0..1000000000");
            }
            let mut node = Node::group(f.name, range)
                .with_kind("instant")
                .with_children(vec![
                    Node::new("seconds", at..at + 8, Value::Int(secs)).with_kind("i64le"),
                    nanos_node,
                ]);
            if let Some(t) = ok_nanos.and_then(|n| time_text(secs, n)) {
                node = node.with_display(t);
            }
            node
        }
    }
}

/// What [`read_prefixed`] found.
enum Prefixed<'a> {
    /// The `length` node, the bytes, and where they end.
    Ok(Node, &'a [u8], usize),
    /// An error node for the whole field, and where reading stopped.
    Bad(Node, usize),
}

/// A VarInt length and the bytes it announces, at most `max` of them.
fn read_prefixed<'a>(
    name: &'static str,
    p: &'a [u8],
    pos: usize,
    base: usize,
    max: usize,
) -> Prefixed<'a> {
    let (len, vlen) = match read_varint(p, pos) {
        Ok(v) => v,
        Err((n, reason)) => {
            let end = pos + n;
            let node = Node::new(name, base + pos..base + end, Value::None)
                .with_error(format!("length: {reason}"));
            return Prefixed::Bad(node, end);
        }
    };
    let start = pos + vlen;
    let length =
        Node::new("length", base + pos..base + start, Value::UInt(len as u64)).with_kind("varint");
    let left = p.len().saturating_sub(start);
    let err = |reason: String, end: usize| {
        let node = Node::new(name, base + pos..base + end, Value::None)
            .with_children(vec![length.clone()])
            .with_error(reason);
        Prefixed::Bad(node, end)
    };
    if len > max {
        return err(format!("length {len} exceeds the maximum {max}"), start);
    }
    if len > left {
        return err(
            format!("length {len} runs past the end ({left} bytes left)"),
            p.len(),
        );
    }
    let bytes = p.get(start..start + len).unwrap_or(&[]);
    Prefixed::Ok(length, bytes, start + len)
}

fn decode_var(
    vf: &VarField,
    p: &[u8],
    pos: usize,
    base: usize,
    secret: Option<&[u8]>,
) -> (Node, usize) {
    match vf.ty {
        VarType::Str { max, ascii } => decode_string(vf.name, p, pos, base, max, ascii),
        VarType::Bytes { max } => match read_prefixed(vf.name, p, pos, base, max) {
            Prefixed::Ok(length, bytes, end) => (
                Node::new(vf.name, base + pos..base + end, Value::Bytes(bytes.into()))
                    .with_kind("bytes")
                    .with_children(vec![length]),
                end,
            ),
            Prefixed::Bad(node, end) => (node, end),
        },
        VarType::Referral { max } => match read_prefixed(vf.name, p, pos, base, max) {
            Prefixed::Ok(length, bytes, end) => {
                let data_at = base + end - bytes.len();
                (
                    Node::new(vf.name, base + pos..base + end, Value::Bytes(bytes.into()))
                        .with_kind("referral")
                        .with_children(vec![length, referral_tree(bytes, data_at, secret)]),
                    end,
                )
            }
            Prefixed::Bad(node, end) => (node, end),
        },
        VarType::HostPort { max_host } => {
            let Some(pb) = p.get(pos..pos + 2) else {
                let end = p.len();
                let node = Node::new(vf.name, base + pos..base + end, Value::None)
                    .with_error("truncated: the port needs 2 bytes");
                return (node, end);
            };
            let port = u16::from_le_bytes([pb[0], pb[1]]);
            let port_node = Node::new("port", base + pos..base + pos + 2, Value::UInt(port.into()))
                .with_kind("i16le");
            let (host, end) = decode_string("host", p, pos + 2, base, max_host, false);
            let mut node = Node::group(vf.name, base + pos..base + end)
                .with_kind("hostport")
                .with_children(vec![port_node, host]);
            if let Some(h) = node.child("host").and_then(|h| h.value.as_text()) {
                node.set_display(Some(format!("{h}:{port}")));
            }
            (node, end)
        }
    }
}

fn decode_string(
    name: &'static str,
    p: &[u8],
    pos: usize,
    base: usize,
    max: usize,
    ascii: bool,
) -> (Node, usize) {
    let max_bytes = if ascii { max } else { max.saturating_mul(4) };
    let (length, bytes, end) = match read_prefixed(name, p, pos, base, max_bytes) {
        Prefixed::Ok(length, bytes, end) => (length, bytes, end),
        Prefixed::Bad(node, end) => return (node, end),
    };
    let range = base + pos..base + end;
    let kind = if ascii { "ascii" } else { "string" };
    let node = match std::str::from_utf8(bytes) {
        Ok(s) if ascii && !s.is_ascii() => {
            Node::new(name, range, Value::Bytes(bytes.into())).with_error("not ASCII")
        }
        Ok(s) if !ascii && s.chars().count() > max => Node::new(name, range, Value::Text(s.into()))
            .with_error(format!("more than {max} characters")),
        Ok(s) => Node::new(name, range, Value::Text(s.into())),
        Err(e) => Node::new(name, range, Value::Bytes(bytes.into()))
            .with_error(format!("invalid UTF-8: {e}")),
    };
    (node.with_kind(kind).with_children(vec![length]), end)
}
