//! Protobuf decoding into a field tree with exact byte ranges, with or without a schema.

use std::borrow::Cow;
use std::ops::Range;

use prost_reflect::MessageDescriptor;

use super::names::{INDICES, NUMBERS, number_name, packed_ty_name, scalar_wire, ty_name};
use super::plan::{FieldPlan, MsgPlan, PoolPlan, Ty, plan_for};
use super::scan::{read_canonical, scan_fields};

use super::wire::{
    MAX_FIELD_NUMBER, WIRE_END_GROUP, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_START_GROUP,
    WIRE_VARINT, read_fixed, read_varint, zigzag_decode,
};
use crate::dissect::{Node, Value};

/// Most children a body's vector is sized for in advance.
const MAX_RESERVE: usize = 4096;

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
/// `bytes`, `message`, `packed varint`, `group`). Elements of packed fields are children
/// named `[0]`, `[1]`, ... Fields the schema does not know, or whose wire type does not
/// match it, are decoded without the schema and named by number. Malformed bytes end the
/// message with a node named `invalid` (kind `raw`, the rest of the bytes as its value,
/// `error` set), which [`super::encode_message`] writes back verbatim.
pub fn decode_message_in(
    buf: &[u8],
    range: Range<usize>,
    desc: Option<&MessageDescriptor>,
) -> Node {
    let end = range.end.min(buf.len());
    let start = range.start.min(end);
    let buf = &buf[..end];
    let mut root = Node::group("message", start..end).with_kind("message");
    let planned = desc.and_then(plan_for);
    if let Some(d) = desc {
        root.set_display(Some(d.full_name().to_owned()));
    }
    let ctx = Ctx {
        plan: planned.as_ref().map(|(p, _)| &**p),
    };
    let msg = planned.as_ref().map(|(_, i)| *i);
    root.children = ctx.fields(buf, start, msg, 0, None, None).nodes;
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
    /// A field was decoded; decoding goes on here.
    Next(usize),
    /// The end-group tag of the group being decoded; the body ends here.
    End(usize),
}

/// The rest of a message from `start`, shown raw with the reason it could not be decoded.
fn invalid(buf: &[u8], start: usize, reason: &'static str) -> Node {
    let rest = buf.get(start..).unwrap_or_default();
    Node::new("invalid", start..buf.len(), Value::Bytes(rest.into()))
        .with_kind("raw")
        .with_error(reason)
}

/// Appends a node and returns it for further filling. The node is written straight into
/// the vector's spare capacity: `Vec::push` takes the node by value, so it is built on the
/// stack before the push may grow the vector and then copied (a libc `memcpy` call for a
/// struct this size, the largest single cost of decoding before this was done).
///
/// The value comes from a closure run after the vector has grown. A value made before is
/// live across the `reserve` call, whose unwinding path would drop it, so it is kept in a
/// stack slot and copied into the node from there; and a value assigned afterwards is
/// written to the stack first too, to drop the one it replaces. Either way the copy reads
/// back whole what was just written in parts, which stalls store forwarding on every node.
#[inline(always)]
fn put<'o>(
    out: &'o mut Vec<Node>,
    name: &'static str,
    range: Range<usize>,
    tag: Option<u32>,
    kind: &'static str,
    value: impl FnOnce() -> Value,
) -> &'o mut Node {
    if out.len() == out.capacity() {
        out.reserve(1);
    }
    let len = out.len();
    if let Some(slot) = out.spare_capacity_mut().first_mut() {
        slot.write(Node::leaf(name, range, value(), tag, kind));
        // SAFETY: the slot at index `len` (the first spare one, which `reserve` guaranteed
        // exists) was fully initialised by the `write` just above, so the first `len + 1`
        // elements are initialised.
        unsafe { out.set_len(len + 1) };
    }
    &mut out[len]
}

/// [`put`] of a node named by its field number. The name is passed to `put` as a plain
/// static string and only replaced afterwards in the rare case it has to be owned: a
/// `Cow` chosen before the call is materialised on the stack and copied, with a
/// store-forwarding stall on every node.
#[inline(always)]
fn put_number<'o>(
    out: &'o mut Vec<Node>,
    number: u32,
    range: Range<usize>,
    tag: Option<u32>,
    kind: &'static str,
    value: impl FnOnce() -> Value,
) -> &'o mut Node {
    let table = usize::try_from(number).ok().and_then(|i| NUMBERS.get(i));
    let node = put(out, table.copied().unwrap_or(""), range, tag, kind, value);
    if table.is_none() {
        node.name = Cow::Owned(number.to_string());
    }
    node
}

/// [`put`] of the next packed element, named by its index (see [`put_number`]).
#[inline(always)]
fn put_element<'o>(
    out: &'o mut Vec<Node>,
    range: Range<usize>,
    kind: &'static str,
    value: impl FnOnce() -> Value,
) -> &'o mut Node {
    let i = out.len();
    let table = INDICES.get(i);
    let node = put(out, table.copied().unwrap_or(""), range, None, kind, value);
    if table.is_none() {
        node.name = Cow::Owned(format!("[{i}]"));
    }
    node
}

/// Decoding state shared by every level: the schema plan, if any.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    plan: Option<&'p PoolPlan>,
}

impl<'p> Ctx<'p> {
    fn msg_plan(&self, msg: Option<u32>) -> Option<&'p MsgPlan> {
        self.plan.zip(msg).and_then(|(p, i)| p.msg(i))
    }

    /// Decodes fields from `pos` to the end of `buf` (callers slice `buf` to the body's end).
    /// `counted` is the number of fields when the caller has already counted them.
    fn fields(
        self,
        buf: &[u8],
        mut pos: usize,
        msg: Option<u32>,
        depth: usize,
        group: Option<u32>,
        counted: Option<usize>,
    ) -> Fields {
        let end = buf.len();
        let plan = self.msg_plan(msg);
        let mut nodes = Vec::with_capacity(match (counted, group) {
            (Some(n), _) => n,
            (None, Some(_)) => 0,
            // Bounded: hostile bytes could claim more than any real body has.
            (None, None) => scan_fields::<false>(buf.get(pos..).unwrap_or_default())
                .fields
                .min(MAX_RESERVE),
        });
        while pos < end {
            let tag_start = pos;
            let step =
                read_varint(buf, pos)
                    .map_err(|e| e.reason("tag"))
                    .and_then(|(key, after_tag)| {
                        let number = key >> 3;
                        let wire = (key & 7) as u8;
                        if number == 0 {
                            return Err("field number 0");
                        }
                        // Below 2^29, so it fits the node's 32-bit tag.
                        let number = u32::try_from(number)
                            .ok()
                            .filter(|&n| u64::from(n) <= MAX_FIELD_NUMBER)
                            .ok_or("field number above 2^29-1")?;
                        if wire == WIRE_END_GROUP {
                            return if group == Some(number) {
                                Ok(Step::End(after_tag))
                            } else {
                                Err("end-group tag without a matching start-group")
                            };
                        }
                        let field = plan.and_then(|p| p.field(number));
                        // The node goes straight into `nodes` (no moves of the large struct).
                        self.field_at(
                            buf, tag_start, after_tag, number, wire, field, depth, &mut nodes,
                        )
                        .map(Step::Next)
                    });
            match step {
                Ok(Step::Next(next)) => pos = next,
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

    /// The display of a scalar whose value [`scalar_value`] gives, where it has one: the
    /// name of an enum value, or `NaN` for a float kept as its bits.
    #[inline(always)]
    fn scalar_display(self, ty: Ty, raw: u64) -> Option<&'static str> {
        match ty {
            Ty::Enum(e) => i32::try_from(raw as i64)
                .ok()
                .zip(self.plan.and_then(|p| p.enum_plan(e)))
                .and_then(|(n, e)| e.name(n)),
            Ty::Float if f32::from_bits(raw as u32).is_nan() => Some("NaN"),
            _ => None,
        }
    }

    /// Decodes the field whose tag starts at `tag_start` into `out`; returns the position
    /// after it.
    #[allow(clippy::too_many_arguments)]
    fn field_at(
        self,
        buf: &[u8],
        tag_start: usize,
        p: usize,
        number: u32,
        wire: u8,
        field: Option<&FieldPlan>,
        depth: usize,
        out: &mut Vec<Node>,
    ) -> Result<usize, &'static str> {
        match wire {
            WIRE_VARINT => {
                let (v, next) = read_varint(buf, p).map_err(|e| e.reason("value"))?;
                self.scalar_node(out, tag_start..next, number, wire, v, field);
                Ok(next)
            }
            WIRE_FIXED64 => {
                let b = read_fixed::<8>(buf, p).ok_or("truncated fixed64 value")?;
                let next = p + 8;
                let v = u64::from_le_bytes(b);
                self.scalar_node(out, tag_start..next, number, wire, v, field);
                Ok(next)
            }
            WIRE_FIXED32 => {
                let b = read_fixed::<4>(buf, p).ok_or("truncated fixed32 value")?;
                let next = p + 4;
                let v = u64::from(u32::from_le_bytes(b));
                self.scalar_node(out, tag_start..next, number, wire, v, field);
                Ok(next)
            }
            WIRE_LEN => {
                let (len, data_start) = read_varint(buf, p).map_err(|e| e.reason("length"))?;
                let data_end = usize::try_from(len)
                    .ok()
                    .and_then(|l| data_start.checked_add(l))
                    .filter(|&e| e <= buf.len())
                    .ok_or("length beyond the end of the message")?;
                self.len_node(
                    out, buf, tag_start, number, data_start, data_end, field, depth,
                );
                Ok(data_end)
            }
            WIRE_START_GROUP => {
                if depth >= MAX_DEPTH {
                    return Err("groups nested more than 64 deep");
                }
                let (name, msg) = match field {
                    Some(
                        f @ FieldPlan {
                            ty: Ty::Message(m),
                            group: true,
                            ..
                        },
                    ) => (Cow::Borrowed(f.name), Some(*m)),
                    _ => (number_name(number), None),
                };
                let inner = self.fields(buf, p, msg, depth + 1, Some(number), None);
                if !inner.closed {
                    return Err("group without its end-group tag");
                }
                let range = tag_start..inner.end;
                let node = put(out, "", range, Some(number), "group", || Value::None);
                node.name = name;
                node.children = inner.nodes;
                Ok(inner.end)
            }
            6 => Err("invalid wire type 6"),
            _ => Err("invalid wire type 7"),
        }
    }

    /// A varint or fixed-width field.
    #[inline(always)]
    fn scalar_node(
        self,
        out: &mut Vec<Node>,
        range: Range<usize>,
        number: u32,
        wire: u8,
        raw: u64,
        field: Option<&FieldPlan>,
    ) {
        if let Some(f) = field
            && scalar_wire(f.ty) == Some(wire)
        {
            let node = put(out, f.name, range, Some(number), ty_name(f.ty), || {
                scalar_value(f.ty, raw)
            });
            if let Some(d) = self.scalar_display(f.ty, raw) {
                node.set_display(Some(d.to_owned()));
            }
            return;
        }
        let kind = match wire {
            WIRE_VARINT => "varint",
            WIRE_FIXED64 => "fixed64",
            _ => "fixed32",
        };
        put_number(out, number, range, Some(number), kind, || Value::UInt(raw));
    }

    /// A length-delimited field: typed by the schema where it says so, else guessed.
    #[allow(clippy::too_many_arguments)]
    fn len_node(
        self,
        out: &mut Vec<Node>,
        buf: &[u8],
        tag_start: usize,
        number: u32,
        ds: usize,
        de: usize,
        field: Option<&FieldPlan>,
        depth: usize,
    ) {
        let range = tag_start..de;
        let data = buf.get(ds..de).unwrap_or_default();
        let tag = Some(number);
        if let Some(f) = field {
            let name = f.name;
            match f.ty {
                Ty::String => {
                    match utf8(data) {
                        Ok(s) => {
                            put(out, name, range, tag, "string", || Value::Text(s.into()));
                        }
                        Err(_) => {
                            put(out, name, range, tag, "string", || {
                                Value::Bytes(data.into())
                            })
                            .set_error(Some("string field is not valid UTF-8".to_owned()));
                        }
                    }
                    return;
                }
                Ty::Bytes => {
                    put(out, name, range, tag, "bytes", || Value::Bytes(data.into()));
                    return;
                }
                Ty::Message(m) if !f.group => {
                    if depth >= MAX_DEPTH {
                        put(out, name, range, tag, "message", || {
                            Value::Bytes(data.into())
                        })
                        .set_error(Some("messages nested more than 64 deep".to_owned()));
                        return;
                    }
                    let children = self
                        .fields(&buf[..de], ds, Some(m), depth + 1, None, None)
                        .nodes;
                    put(out, name, range, tag, "message", || Value::None).children = children;
                    return;
                }
                ty if f.list => {
                    if let Some(children) = self.packed_typed(buf, ds, de, ty) {
                        let kind = packed_ty_name(ty).unwrap_or("packed");
                        put(out, name, range, tag, kind, || Value::None).children = children;
                        return;
                    }
                }
                _ => {}
            }
        }
        self.guess_len(out, buf, range, number, ds, de, depth);
    }

    /// The elements of a packed repeated scalar field of type `ty`; None when the bytes are
    /// not a whole number of elements.
    fn packed_typed(self, buf: &[u8], ds: usize, de: usize, ty: Ty) -> Option<Vec<Node>> {
        packed_ty_name(ty)?;
        let elem_kind = ty_name(ty);
        let mut children = Vec::new();
        let mut pos = ds;
        let body = buf.get(..de)?;
        match scalar_wire(ty)? {
            WIRE_VARINT => {
                let count = body.get(ds..)?.iter().filter(|&&b| b < 0x80).count();
                children.reserve(count);
                while pos < de {
                    let (raw, next) = read_varint(body, pos).ok()?;
                    let node = put_element(&mut children, pos..next, elem_kind, || {
                        scalar_value(ty, raw)
                    });
                    if let Some(d) = self.scalar_display(ty, raw) {
                        node.set_display(Some(d.to_owned()));
                    }
                    pos = next;
                }
            }
            width => {
                let size = if width == WIRE_FIXED64 { 8 } else { 4 };
                if !(de - ds).is_multiple_of(size) {
                    return None;
                }
                children.reserve((de - ds) / size);
                while pos < de {
                    let raw = if size == 8 {
                        u64::from_le_bytes(read_fixed::<8>(body, pos)?)
                    } else {
                        u64::from(u32::from_le_bytes(read_fixed::<4>(body, pos)?))
                    };
                    let range = pos..pos + size;
                    let node =
                        put_element(&mut children, range, elem_kind, || scalar_value(ty, raw));
                    if let Some(d) = self.scalar_display(ty, raw) {
                        node.set_display(Some(d.to_owned()));
                    }
                    pos += size;
                }
            }
        }
        Some(children)
    }

    /// Without a schema: a nested message if the bytes parse completely as one (and are not
    /// plain text), else printable UTF-8 text, else packed varints if they parse exactly,
    /// else bytes.
    #[allow(clippy::too_many_arguments)]
    fn guess_len(
        self,
        out: &mut Vec<Node>,
        buf: &[u8],
        range: Range<usize>,
        number: u32,
        ds: usize,
        de: usize,
        depth: usize,
    ) {
        let data = buf.get(ds..de).unwrap_or_default();
        let tag = Some(number);
        let text = as_text(data);
        let counted = if depth < MAX_DEPTH && !data.is_empty() && text.is_none() {
            Some(scan_fields::<true>(data))
                .filter(|s| s.complete)
                .map(|s| s.fields)
        } else {
            None
        };
        if let Some(n) = counted {
            let children = self
                .fields(&buf[..de], ds, None, depth + 1, None, Some(n))
                .nodes;
            put_number(out, number, range, tag, "message", || Value::None).children = children;
        } else if let Some(text) = text {
            put_number(out, number, range, tag, "string", || {
                Value::Text(text.into())
            });
        } else if let Some(children) = packed_varints(data, ds) {
            put_number(out, number, range, tag, "packed varint", || Value::None).children =
                children;
        } else {
            put_number(out, number, range, tag, "bytes", || {
                Value::Bytes(data.into())
            });
        }
    }
}

/// A raw scalar as read from the wire (varint value, or fixed bits), typed.
#[inline(always)]
fn scalar_value(ty: Ty, raw: u64) -> Value {
    match ty {
        Ty::Int32 | Ty::Int64 | Ty::Enum(_) | Ty::Sfixed64 => Value::Int(raw as i64),
        Ty::Uint32 | Ty::Uint64 | Ty::Fixed32 | Ty::Fixed64 => Value::UInt(raw),
        Ty::Sint32 | Ty::Sint64 => Value::Int(zigzag_decode(raw)),
        // A bool written as 2 or more keeps its number, so it re-encodes to the same bytes.
        Ty::Bool if raw <= 1 => Value::Bool(raw == 1),
        Ty::Bool => Value::UInt(raw),
        Ty::Sfixed32 => Value::Int(i64::from(raw as u32 as i32)),
        Ty::Double => Value::Float(f64::from_bits(raw)),
        Ty::Float => {
            let f = f32::from_bits(raw as u32);
            if f.is_nan() {
                // f32 -> f64 may not keep a NaN's payload bits: keep the bits themselves
                // (shown as `NaN`, see `scalar_display`).
                Value::UInt(raw)
            } else {
                Value::Float(f64::from(f))
            }
        }
        Ty::String | Ty::Bytes | Ty::Message(_) => Value::UInt(raw),
    }
}

/// `data` as text if it is valid UTF-8. Field strings are short and nearly always ASCII,
/// which is checked inline here rather than through the general validator's call.
#[inline(always)]
fn utf8(data: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if data.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(data) });
    }
    std::str::from_utf8(data)
}

/// `data` as text if it is printable UTF-8 (tabs and line breaks allowed).
fn as_text(data: &[u8]) -> Option<&str> {
    let printable = |b: u8| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r');
    if data.iter().all(|&b| printable(b)) {
        // SAFETY: printable ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(data) });
    }
    if data
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    std::str::from_utf8(data).ok().filter(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
    })
}

/// Packed varints, if `data` is exactly a sequence of canonical varints.
fn packed_varints(data: &[u8], base: usize) -> Option<Vec<Node>> {
    if data.is_empty() || data.last().is_some_and(|&b| b >= 0x80) {
        return None;
    }
    let mut children = Vec::with_capacity(data.iter().filter(|&&b| b < 0x80).count());
    let mut pos = 0;
    while pos < data.len() {
        let (v, next) = read_canonical(data, pos)?;
        put_element(&mut children, base + pos..base + next, "varint", || {
            Value::UInt(v)
        });
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
