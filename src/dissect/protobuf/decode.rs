//! Protobuf decoding into a field tree with exact byte ranges, with or without a schema.

use std::borrow::Cow;
use std::ops::Range;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::wire::{
    MAX_FIELD_NUMBER, WIRE_END_GROUP, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_START_GROUP,
    WIRE_VARINT, read_fixed, read_varint, varint_len, zigzag_decode,
};
use crate::dissect::{Node, Value};

/// Messages and groups nested deeper than this are shown as bytes (or, for groups, as an
/// error), so hostile nesting cannot overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Decodes a whole buffer as one protobuf message. See [`decode_message_in`].
pub fn decode_message(bytes: &[u8], desc: Option<&MessageDescriptor>) -> Node {
    decode_message_in(bytes, 0..bytes.len(), desc)
}

/// Decodes `buf[range]` as one protobuf message; node ranges are positions in `buf`, so a
/// dissector can decode a payload in place inside its frame.
///
/// The root is named `message` (kind `message`; display = the message type's full name when
/// `desc` is given). Each field occurrence is one child whose range covers its tag and value,
/// `tag` = field number and `kind` = its protobuf type (`int32`, `string`, `message`,
/// `packed sint64`, ... or, without a schema, `varint`, `fixed64`, `fixed32`, `string`,
/// `bytes`, `message`, `packed varint`, `group`). Malformed bytes end the message with a node
/// named `invalid` (kind `raw`, the rest of the bytes as its value, `error` set).
pub fn decode_message_in(
    buf: &[u8],
    range: Range<usize>,
    desc: Option<&MessageDescriptor>,
) -> Node {
    let end = range.end.min(buf.len());
    let start = range.start.min(end);
    let buf = &buf[..end];
    let mut root = Node::group("message", start..end).with_kind("message");
    if let Some(d) = desc {
        root.display = Some(d.full_name().to_owned());
    }
    root.children = fields(buf, start, desc, 0, None).nodes;
    root
}

/// The fields of one message (or group) body.
struct Fields {
    nodes: Vec<Node>,
    /// Position after the body (after the end-group tag for a group).
    end: usize,
    /// For a group: whether its end-group tag was found.
    closed: bool,
}

enum Step {
    Field(Node, usize),
    End(usize),
}

/// Decodes fields from `pos` to the end of `buf` (callers slice `buf` to the body's end).
fn fields(
    buf: &[u8],
    mut pos: usize,
    desc: Option<&MessageDescriptor>,
    depth: usize,
    group: Option<u64>,
) -> Fields {
    let end = buf.len();
    let mut nodes = Vec::new();
    while pos < end {
        let tag_start = pos;
        let result =
            read_varint(buf, pos)
                .map_err(|e| e.reason("tag"))
                .and_then(|(key, after_tag)| {
                    let number = key >> 3;
                    let wire = (key & 7) as u8;
                    if number == 0 {
                        return Err("field number 0");
                    }
                    if number > MAX_FIELD_NUMBER {
                        return Err("field number above 2^29-1");
                    }
                    if wire == WIRE_END_GROUP {
                        return if group == Some(number) {
                            Ok(Step::End(after_tag))
                        } else {
                            Err("end-group tag without a matching start-group")
                        };
                    }
                    let field =
                        desc.and_then(|d| u32::try_from(number).ok().and_then(|n| d.get_field(n)));
                    field_at(
                        buf,
                        tag_start,
                        after_tag,
                        number,
                        wire,
                        field.as_ref(),
                        depth,
                    )
                    .map(|(node, next)| Step::Field(node, next))
                });
        match result {
            Ok(Step::Field(node, next)) => {
                nodes.push(node);
                pos = next;
            }
            Ok(Step::End(after)) => {
                // The end-group tag of the group being decoded.
                return Fields {
                    nodes,
                    end: after,
                    closed: true,
                };
            }
            Err(reason) => {
                nodes.push(invalid(buf, tag_start, reason));
                return Fields {
                    nodes,
                    end,
                    closed: false,
                };
            }
        }
    }
    Fields {
        nodes,
        end,
        closed: false,
    }
}

/// The rest of a message from `start`, shown raw with the reason it could not be decoded.
fn invalid(buf: &[u8], start: usize, reason: &'static str) -> Node {
    let rest = buf.get(start..).unwrap_or_default();
    Node {
        name: Cow::Borrowed("invalid"),
        value: Value::Bytes(rest.to_vec()),
        range: start..buf.len(),
        error: Some(reason.to_owned()),
        kind: Some(Cow::Borrowed("raw")),
        ..Default::default()
    }
}

#[inline]
fn leaf(
    name: Cow<'static, str>,
    range: Range<usize>,
    value: Value,
    number: u64,
    kind: &'static str,
) -> Node {
    Node {
        name,
        value,
        range,
        tag: Some(number),
        kind: Some(Cow::Borrowed(kind)),
        ..Default::default()
    }
}

/// Names of fields 0..=32 without a schema, and of packed elements `[0]`..`[31]`, without
/// allocating.
const NUMBERS: [&str; 33] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
];
const INDICES: [&str; 32] = [
    "[0]", "[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]", "[8]", "[9]", "[10]", "[11]", "[12]",
    "[13]", "[14]", "[15]", "[16]", "[17]", "[18]", "[19]", "[20]", "[21]", "[22]", "[23]", "[24]",
    "[25]", "[26]", "[27]", "[28]", "[29]", "[30]", "[31]",
];

fn number_name(n: u64) -> Cow<'static, str> {
    match NUMBERS.get(n as usize) {
        Some(s) if n < NUMBERS.len() as u64 => Cow::Borrowed(s),
        _ => Cow::Owned(n.to_string()),
    }
}

fn index_name(i: usize) -> Cow<'static, str> {
    match INDICES.get(i) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(format!("[{i}]")),
    }
}

fn field_name(f: &FieldDescriptor) -> Cow<'static, str> {
    Cow::Owned(f.name().to_owned())
}

/// The protobuf type name of a field kind (what `kind` holds).
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) => "message",
        Kind::Enum(_) => "enum",
    }
}

fn packed_kind_name(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Double => "packed double",
        Kind::Float => "packed float",
        Kind::Int32 => "packed int32",
        Kind::Int64 => "packed int64",
        Kind::Uint32 => "packed uint32",
        Kind::Uint64 => "packed uint64",
        Kind::Sint32 => "packed sint32",
        Kind::Sint64 => "packed sint64",
        Kind::Fixed32 => "packed fixed32",
        Kind::Fixed64 => "packed fixed64",
        Kind::Sfixed32 => "packed sfixed32",
        Kind::Sfixed64 => "packed sfixed64",
        Kind::Bool => "packed bool",
        Kind::Enum(_) => "packed enum",
        Kind::String | Kind::Bytes | Kind::Message(_) => return None,
    })
}

/// The wire type a scalar kind is written with (None for length-delimited kinds).
fn scalar_wire(kind: &Kind) -> Option<u8> {
    match kind {
        Kind::Int32
        | Kind::Int64
        | Kind::Uint32
        | Kind::Uint64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Bool
        | Kind::Enum(_) => Some(WIRE_VARINT),
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => Some(WIRE_FIXED64),
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => Some(WIRE_FIXED32),
        Kind::String | Kind::Bytes | Kind::Message(_) => None,
    }
}

/// A raw scalar as read from the wire (varint value, or fixed bits).
fn typed_scalar(kind: &Kind, raw: u64) -> (Value, Option<String>) {
    match kind {
        Kind::Int32 | Kind::Int64 => (Value::Int(raw as i64), None),
        Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => (Value::UInt(raw), None),
        Kind::Sint32 | Kind::Sint64 => (Value::Int(zigzag_decode(raw)), None),
        // A bool written as 2 or more keeps its number, so it re-encodes to the same bytes.
        Kind::Bool if raw <= 1 => (Value::Bool(raw == 1), None),
        Kind::Bool => (Value::UInt(raw), None),
        Kind::Enum(e) => {
            let n = raw as i64;
            let name = i32::try_from(n)
                .ok()
                .and_then(|n| e.get_value(n))
                .map(|v| v.name().to_owned());
            (Value::Int(n), name)
        }
        Kind::Sfixed32 => (Value::Int(i64::from(raw as u32 as i32)), None),
        Kind::Sfixed64 => (Value::Int(raw as i64), None),
        Kind::Double => (Value::Float(f64::from_bits(raw)), None),
        Kind::Float => {
            let f = f32::from_bits(raw as u32);
            if f.is_nan() {
                // f32 -> f64 may not keep a NaN's payload bits: keep the bits themselves.
                (Value::UInt(raw), Some("NaN".to_owned()))
            } else {
                (Value::Float(f64::from(f)), None)
            }
        }
        Kind::String | Kind::Bytes | Kind::Message(_) => (Value::UInt(raw), None),
    }
}

/// Decodes the field whose tag starts at `tag_start`; returns it and the position after it.
fn field_at(
    buf: &[u8],
    tag_start: usize,
    p: usize,
    number: u64,
    wire: u8,
    field: Option<&FieldDescriptor>,
    depth: usize,
) -> Result<(Node, usize), &'static str> {
    match wire {
        WIRE_VARINT => {
            let (v, next) = read_varint(buf, p).map_err(|e| e.reason("value"))?;
            Ok((scalar_node(tag_start..next, number, wire, v, field), next))
        }
        WIRE_FIXED64 => {
            let b = read_fixed::<8>(buf, p).ok_or("truncated fixed64 value")?;
            let next = p + 8;
            let v = u64::from_le_bytes(b);
            Ok((scalar_node(tag_start..next, number, wire, v, field), next))
        }
        WIRE_FIXED32 => {
            let b = read_fixed::<4>(buf, p).ok_or("truncated fixed32 value")?;
            let next = p + 4;
            let v = u64::from(u32::from_le_bytes(b));
            Ok((scalar_node(tag_start..next, number, wire, v, field), next))
        }
        WIRE_LEN => {
            let (len, data_start) = read_varint(buf, p).map_err(|e| e.reason("length"))?;
            let data_end = usize::try_from(len)
                .ok()
                .and_then(|l| data_start.checked_add(l))
                .filter(|&e| e <= buf.len())
                .ok_or("length beyond the end of the message")?;
            let node = len_node(buf, tag_start, number, data_start, data_end, field, depth);
            Ok((node, data_end))
        }
        WIRE_START_GROUP => {
            if depth >= MAX_DEPTH {
                return Err("groups nested more than 64 deep");
            }
            let (name, desc) = match field.map(|f| (f, f.kind())) {
                Some((f, Kind::Message(m))) if f.is_group() => (field_name(f), Some(m)),
                _ => (number_name(number), None),
            };
            let inner = fields(buf, p, desc.as_ref(), depth + 1, Some(number));
            if !inner.closed {
                return Err("group without its end-group tag");
            }
            let mut node = leaf(name, tag_start..inner.end, Value::None, number, "group");
            node.children = inner.nodes;
            Ok((node, inner.end))
        }
        6 => Err("invalid wire type 6"),
        _ => Err("invalid wire type 7"),
    }
}

/// A varint or fixed-width field.
fn scalar_node(
    range: Range<usize>,
    number: u64,
    wire: u8,
    raw: u64,
    field: Option<&FieldDescriptor>,
) -> Node {
    if let Some(f) = field {
        let kind = f.kind();
        if scalar_wire(&kind) == Some(wire) {
            let (value, display) = typed_scalar(&kind, raw);
            let mut node = leaf(field_name(f), range, value, number, kind_name(&kind));
            node.display = display;
            return node;
        }
    }
    let kind = match wire {
        WIRE_VARINT => "varint",
        WIRE_FIXED64 => "fixed64",
        _ => "fixed32",
    };
    leaf(number_name(number), range, Value::UInt(raw), number, kind)
}

/// A length-delimited field: typed by the schema where it says so, else guessed.
fn len_node(
    buf: &[u8],
    tag_start: usize,
    number: u64,
    ds: usize,
    de: usize,
    field: Option<&FieldDescriptor>,
    depth: usize,
) -> Node {
    let range = tag_start..de;
    let data = buf.get(ds..de).unwrap_or_default();
    if let Some(f) = field {
        let kind = f.kind();
        match &kind {
            Kind::String => {
                return match std::str::from_utf8(data) {
                    Ok(s) => leaf(
                        field_name(f),
                        range,
                        Value::Text(s.to_owned()),
                        number,
                        "string",
                    ),
                    Err(_) => leaf(
                        field_name(f),
                        range,
                        Value::Bytes(data.to_vec()),
                        number,
                        "string",
                    )
                    .with_error("string field is not valid UTF-8"),
                };
            }
            Kind::Bytes => {
                return leaf(
                    field_name(f),
                    range,
                    Value::Bytes(data.to_vec()),
                    number,
                    "bytes",
                );
            }
            Kind::Message(m) if !f.is_group() => {
                let mut node = leaf(field_name(f), range, Value::None, number, "message");
                if depth >= MAX_DEPTH {
                    node.value = Value::Bytes(data.to_vec());
                    return node.with_error("messages nested more than 64 deep");
                }
                node.children = fields(&buf[..de], ds, Some(m), depth + 1, None).nodes;
                if m.is_map_entry() {
                    node.display = map_entry_display(&node.children);
                }
                return node;
            }
            _ if f.is_list() => {
                if let Some(node) = packed_typed(buf, range.clone(), number, ds, de, f, &kind) {
                    return node;
                }
            }
            _ => {}
        }
    }
    guess_len(buf, range, number, ds, de, depth)
}

fn map_entry_display(children: &[Node]) -> Option<String> {
    let key = children.iter().rev().find(|c| c.tag == Some(1));
    let value = children.iter().rev().find(|c| c.tag == Some(2));
    let key = key.map_or(Cow::Borrowed(""), |k| k.display_value());
    match value {
        Some(v) if v.children.is_empty() => Some(format!("{key} → {}", v.display_value())),
        _ => Some(key.into_owned()),
    }
}

/// A packed repeated scalar field with the schema's element type; None when the bytes are
/// not a whole number of elements.
fn packed_typed(
    buf: &[u8],
    range: Range<usize>,
    number: u64,
    ds: usize,
    de: usize,
    f: &FieldDescriptor,
    kind: &Kind,
) -> Option<Node> {
    let packed_kind = packed_kind_name(kind)?;
    let elem_kind = kind_name(kind);
    let mut children = Vec::new();
    let mut pos = ds;
    match scalar_wire(kind)? {
        WIRE_VARINT => {
            children.reserve((de - ds).min(1024));
            while pos < de {
                let (raw, next) = read_varint(&buf[..de], pos).ok()?;
                let (value, display) = typed_scalar(kind, raw);
                let mut n = leaf(
                    index_name(children.len()),
                    pos..next,
                    value,
                    number,
                    elem_kind,
                );
                n.tag = None;
                n.display = display;
                children.push(n);
                pos = next;
            }
        }
        width => {
            let size = if width == WIRE_FIXED64 { 8 } else { 4 };
            if (de - ds) % size != 0 {
                return None;
            }
            children.reserve((de - ds) / size);
            while pos < de {
                let raw = if size == 8 {
                    u64::from_le_bytes(read_fixed::<8>(buf, pos)?)
                } else {
                    u64::from(u32::from_le_bytes(read_fixed::<4>(buf, pos)?))
                };
                let (value, display) = typed_scalar(kind, raw);
                let mut n = leaf(
                    index_name(children.len()),
                    pos..pos + size,
                    value,
                    number,
                    elem_kind,
                );
                n.tag = None;
                n.display = display;
                children.push(n);
                pos += size;
            }
        }
    }
    let mut node = leaf(field_name(f), range, Value::None, number, packed_kind);
    node.children = children;
    Some(node)
}

/// Without a schema: a nested message if the bytes parse completely as one (and are not
/// plain text), else printable UTF-8 text, else packed varints if they parse exactly, else
/// bytes.
fn guess_len(
    buf: &[u8],
    range: Range<usize>,
    number: u64,
    ds: usize,
    de: usize,
    depth: usize,
) -> Node {
    let data = buf.get(ds..de).unwrap_or_default();
    let name = number_name(number);
    if depth < MAX_DEPTH && !data.is_empty() && looks_like_message(data) && !is_text(data) {
        let mut node = leaf(name, range, Value::None, number, "message");
        node.children = fields(&buf[..de], ds, None, depth + 1, None).nodes;
        return node;
    }
    if is_text(data) {
        // is_text checked UTF-8.
        let text = std::str::from_utf8(data).unwrap_or_default();
        return leaf(name, range, Value::Text(text.to_owned()), number, "string");
    }
    if let Some(children) = packed_varints(data, ds, number) {
        let mut node = leaf(name, range, Value::None, number, "packed varint");
        node.children = children;
        return node;
    }
    leaf(name, range, Value::Bytes(data.to_vec()), number, "bytes")
}

/// Whether `data` is printable UTF-8 text (tabs and line breaks allowed).
fn is_text(data: &[u8]) -> bool {
    if data
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return true;
    }
    if data
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return false;
    }
    match std::str::from_utf8(data) {
        Ok(s) => s
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')),
        Err(_) => false,
    }
}

/// Reads a varint only if it is in its shortest form (so re-encoding gives the same bytes).
#[inline]
fn read_canonical(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    let (v, next) = read_varint(data, pos).ok()?;
    (next - pos == varint_len(v)).then_some((v, next))
}

/// Whether `data` parses completely as one message body of fields with wire types 0, 1, 2
/// and 5 in canonical form (the plausibility test of the schemaless guess). Only this level
/// is checked; nested bodies are guessed again when they are decoded.
fn looks_like_message(data: &[u8]) -> bool {
    let mut pos = 0;
    while pos < data.len() {
        let Some((key, p)) = read_canonical(data, pos) else {
            return false;
        };
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return false;
        }
        pos = match (key & 7) as u8 {
            WIRE_VARINT => match read_canonical(data, p) {
                Some((_, next)) => next,
                None => return false,
            },
            WIRE_FIXED64 => p + 8,
            WIRE_FIXED32 => p + 4,
            WIRE_LEN => match read_canonical(data, p) {
                Some((len, next)) => {
                    match usize::try_from(len).ok().and_then(|l| next.checked_add(l)) {
                        Some(e) => e,
                        None => return false,
                    }
                }
                None => return false,
            },
            _ => return false,
        };
        if pos > data.len() {
            return false;
        }
    }
    true
}

/// Packed varints, if `data` is exactly a sequence of canonical varints.
fn packed_varints(data: &[u8], base: usize, number: u64) -> Option<Vec<Node>> {
    if data.is_empty() || data.last().is_some_and(|&b| b >= 0x80) {
        return None;
    }
    let mut children = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (v, next) = read_canonical(data, pos)?;
        let mut n = leaf(
            index_name(children.len()),
            base + pos..base + next,
            Value::UInt(v),
            number,
            "varint",
        );
        n.tag = None;
        children.push(n);
        pos = next;
    }
    Some(children)
}

/// The string in field `number` at the top level of a message body, if it is there as a
/// length-delimited field with valid UTF-8 (e.g. a message name keyed on by a dissector).
pub fn top_level_string(bytes: &[u8], number: u64) -> Option<&str> {
    let mut pos = 0;
    while pos < bytes.len() {
        let (key, p) = read_varint(bytes, pos).ok()?;
        let wire = (key & 7) as u8;
        pos = match wire {
            WIRE_VARINT => read_varint(bytes, p).ok()?.1,
            WIRE_FIXED64 => p.checked_add(8)?,
            WIRE_FIXED32 => p.checked_add(4)?,
            WIRE_LEN => {
                let (len, ds) = read_varint(bytes, p).ok()?;
                let de = ds.checked_add(usize::try_from(len).ok()?)?;
                let data = bytes.get(ds..de)?;
                if key >> 3 == number {
                    return std::str::from_utf8(data).ok();
                }
                de
            }
            _ => return None,
        };
    }
    None
}
