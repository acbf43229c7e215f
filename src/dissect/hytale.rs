//! Hytale game packets: `[payload_len: i32 LE][packet_id: i32 LE][payload]` frames carried on
//! the QUIC stream (or the insecure TCP transport), decoded through the table-driven packet
//! registry in [`packets`], plus the Numdrassl proxy's HMAC-signed referral data.
//!
//! Tree shape of one frame (root named after the packet, `kind` `hytale`, `tag` the id):
//!
//! ```text
//! Connect                      [0..n]
//!   length                     [0..4]   i32 LE payload length
//!   id                         [4..8]   i32 LE packet id, shown with the name
//!   payload                    [8..n]   kind `fields` (decoded), `raw` or `zstd`
//!     nullBits                          which optional fields are present
//!     protocolCrc ... uuid              fixed fields at their fixed offsets
//!     offsets                           the i32 offset table (packets with >1 variable field)
//!       usernameOffset ...
//!     username                          variable fields: value, with a `length` child
//!     referralData                      bytes, with `length` and a `referral` sub-tree
//!     referralSource                    `port`, `host`
//!     trailing                          (error) bytes after the last field
//! ```
//!
//! A compressed payload is one Zstandard frame: the on-wire tree shows it as bytes (kind
//! `zstd`) and [`Message::derived`] holds a buffer `decompressed` whose tree (root `kind`
//! `hytale-payload`, `tag` the id) has the decoded fields. [`Hytale::encode`] takes either
//! tree: the on-wire one re-emits the compressed bytes as they are, the decompressed one is
//! re-encoded and recompressed (see [`encode_message`]).
//!
//! Framing: a negative length, or one above [`GLOBAL_MAX`], cannot delimit anything and is an
//! unframeable span (framing resumes at the next plausible header). A length above the
//! packet's registered maximum but within the global cap still delimits the frame exactly,
//! so the frame is decoded with an error on `length` (a real server closes the connection
//! there): that keeps the stream in step and shows what the oversized packet carried.

mod packets;

pub use packets::{
    FixedField, FixedType, GLOBAL_MAX, Layout, PACKETS, PacketSpec, VarField, VarType, by_name,
    lookup,
};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
};
use crate::capture::Direction;

/// Bytes of the frame header (length + id).
pub const HEADER_LEN: usize = 8;
/// Zstandard level used when (re)compressing payloads.
pub const ZSTD_LEVEL: i32 = 3;
/// The only referral data version.
pub const REFERRAL_VERSION: i32 = 1;
/// Longest string (bytes) in referral data.
pub const REFERRAL_MAX_STRING: usize = 256;
/// Shortest possible referral data: empty strings.
pub const REFERRAL_MIN_LEN: usize = 68;
/// How far a referral timestamp may be from now.
pub const REFERRAL_MAX_SKEW_SECS: i64 = 300;
/// Game server and Numdrassl proxy ports.
pub const DEFAULT_PORTS: [u16; 2] = [5520, 24322];

/// `kind` of a frame's root node.
pub const KIND_FRAME: &str = "hytale";
/// `kind` of the root of a decompressed payload's tree.
pub const KIND_PAYLOAD: &str = "hytale-payload";

type HmacSha256 = Hmac<Sha256>;

/// The Hytale dissector.
pub struct Hytale;

impl Dissector for Hytale {
    fn name(&self) -> &'static str {
        "hytale"
    }

    fn default_ports(&self) -> &'static [u16] {
        &DEFAULT_PORTS
    }

    /// The first frame a client sends is Connect (or the proxy's ProxyPing); a server opens
    /// with AuthGrant, ConnectAccept, ServerAuthToken, Disconnect or ProxyPong. The length
    /// must fit that packet's registered sizes.
    fn detect(&self, first: &[u8], dir: Direction) -> bool {
        let Some((len, id)) = header(first) else {
            return false;
        };
        let openers: &[i32] = match dir {
            Direction::ClientToServer => &[0, 998],
            Direction::ServerToClient => &[1, 11, 13, 14, 999],
        };
        openers.contains(&id) && plausible(len, id)
    }

    fn decoder(&self, _dir: Direction, ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(HytaleDecoder::new(ctx))
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_tree(tree)
    }

    /// A compressed packet is edited as its decompressed payload, which `encode_tree`
    /// compresses again.
    fn edit_tree(&self, msg: &Message) -> Node {
        match msg.derived.iter().find(|d| d.name == "decompressed") {
            Some(d) => d.tree.clone(),
            None => msg.tree.clone(),
        }
    }
}

/// One direction of a Hytale stream. Frames carry no state between them; the decoder only
/// keeps the referral secret.
pub struct HytaleDecoder {
    secret: Option<Vec<u8>>,
}

impl HytaleDecoder {
    pub fn new(ctx: &Context) -> Self {
        HytaleDecoder {
            secret: ctx.hytale_referral_secret.clone(),
        }
    }
}

impl StreamDecoder for HytaleDecoder {
    #[inline]
    fn frame(&mut self, buf: &[u8]) -> Framing {
        frame_at(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        decode_message(msg, self.secret.as_deref())
    }
}

// ---------------------------------------------------------------------------------------
// Framing

fn header(buf: &[u8]) -> Option<(i32, i32)> {
    let [a, b, c, d, e, f, g, h, ..] = *buf else {
        return None;
    };
    Some((
        i32::from_le_bytes([a, b, c, d]),
        i32::from_le_bytes([e, f, g, h]),
    ))
}

/// Whether a header with this length and id could start a registered packet.
fn plausible(len: i32, id: i32) -> bool {
    let Some(spec) = lookup(id) else {
        return false;
    };
    usize::try_from(len).is_ok_and(|len| len >= spec.fixed_size() && len <= spec.max())
}

/// Where the frame at the start of `buf` ends.
#[inline]
pub fn frame_at(buf: &[u8]) -> Framing {
    let [a, b, c, d, ..] = *buf else {
        return Framing::NeedMore(Some(HEADER_LEN));
    };
    let len = i32::from_le_bytes([a, b, c, d]);
    let Ok(len) = usize::try_from(len) else {
        return Framing::Unframeable {
            skip: resync(buf),
            reason: format!("negative payload length {len}"),
        };
    };
    if len > GLOBAL_MAX {
        return Framing::Unframeable {
            skip: resync(buf),
            reason: format!("payload length {len} exceeds the {GLOBAL_MAX}-byte limit"),
        };
    }
    let total = HEADER_LEN + len;
    if buf.len() >= total {
        Framing::Complete(total)
    } else {
        Framing::NeedMore(Some(total))
    }
}

/// How many bytes to skip after an unframeable header: up to the next plausible header of
/// a registered packet, else all but the last 7 bytes (which may start a header).
fn resync(buf: &[u8]) -> usize {
    let limit = buf.len().saturating_sub(HEADER_LEN - 1);
    (1..limit)
        .find(|&k| {
            buf.get(k..)
                .and_then(header)
                .is_some_and(|(len, id)| plausible(len, id))
        })
        .unwrap_or(limit.max(1))
}

// ---------------------------------------------------------------------------------------
// Decoding

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

fn id_from_tag(tag: u32) -> i32 {
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

fn le_i32(p: &[u8], at: usize) -> Option<i32> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

fn le_i64(p: &[u8], at: usize) -> Option<i64> {
    let b = p.get(at..at.checked_add(8)?)?;
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

fn bit_of(bits: u8, bit: u8) -> bool {
    bits & (1u8 << (bit & 7)) != 0
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

fn time_text(secs: i64, nanos: u32) -> Option<String> {
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

/// Canonical lowercase UUID text of 16 big-endian bytes.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses UUID text (hyphens optional) into 16 big-endian bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let compact: String = s.chars().filter(|&c| c != '-').collect();
    if compact.len() != 32 {
        return None;
    }
    hex::decode(compact).ok()?.try_into().ok()
}

/// Reads a VarInt at `at`: `Ok((value, byte count))`, or the bytes it spans and the reason.
pub fn read_varint(p: &[u8], at: usize) -> Result<(usize, usize), (usize, String)> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let Some(&byte) = p.get(at + i) else {
            return Err((i, "VarInt runs past the end".into()));
        };
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return match i32::try_from(v) {
                Ok(n) => Ok((n as usize, i + 1)),
                Err(_) => Err((i + 1, format!("VarInt {v} is negative or above 2^31-1"))),
            };
        }
    }
    Err((5, "VarInt longer than 5 bytes".into()))
}

/// Appends a VarInt.
pub fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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

// ---------------------------------------------------------------------------------------
// Referral data

/// The player facts the proxy signs for a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referral {
    /// 16 bytes, most significant first (as in the Connect packet).
    pub uuid: [u8; 16],
    pub username: String,
    pub backend: String,
    /// `"/<ip>:<port>"` or `"unknown"`.
    pub remote_address: String,
    /// Unix seconds.
    pub timestamp: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferralError {
    #[error("referral data is {0} bytes, shorter than the minimum {REFERRAL_MIN_LEN}")]
    TooShort(usize),
    #[error("referral data version {0}, expected {REFERRAL_VERSION}")]
    Version(i32),
    #[error("referral {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error(
        "referral timestamp {timestamp} is {skew} s from now (limit {REFERRAL_MAX_SKEW_SECS} s)"
    )]
    Expired { timestamp: i32, skew: i64 },
    #[error("referral HMAC does not match")]
    BadHmac,
    #[error("referral {0} does not match")]
    Mismatch(&'static str),
}

impl Referral {
    /// The checks a backend makes after the HMAC: uuid and username equal to the Connect
    /// packet's, backend name equal (ignoring case) to its own.
    pub fn check_player(
        &self,
        uuid: &[u8; 16],
        username: &str,
        backend: &str,
    ) -> Result<(), ReferralError> {
        if &self.uuid != uuid {
            return Err(ReferralError::Mismatch("uuid"));
        }
        if self.username != username {
            return Err(ReferralError::Mismatch("username"));
        }
        if !self.backend.eq_ignore_ascii_case(backend) {
            return Err(ReferralError::Mismatch("backend name"));
        }
        Ok(())
    }
}

fn referral_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never takes the fallback.
    HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

fn put_ref_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Builds signed referral data (strings over 256 bytes make backends refuse it).
pub fn referral_data(secret: &[u8], r: &Referral) -> Vec<u8> {
    let (msb, lsb) = uuid_halves(&r.uuid);
    let mut out = Vec::with_capacity(
        REFERRAL_MIN_LEN + r.username.len() + r.backend.len() + r.remote_address.len(),
    );
    out.extend_from_slice(&REFERRAL_VERSION.to_le_bytes());
    out.extend_from_slice(&msb.to_le_bytes());
    out.extend_from_slice(&lsb.to_le_bytes());
    put_ref_string(&mut out, &r.username);
    put_ref_string(&mut out, &r.backend);
    put_ref_string(&mut out, &r.remote_address);
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    let mut mac = referral_mac(secret);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

fn uuid_halves(u: &[u8; 16]) -> (i64, i64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&u[..8]);
    lo.copy_from_slice(&u[8..]);
    (i64::from_be_bytes(hi), i64::from_be_bytes(lo))
}

fn uuid_from_halves(msb: i64, lsb: i64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&msb.to_be_bytes());
    u[8..].copy_from_slice(&lsb.to_be_bytes());
    u
}

/// A referral string at `at`: `(length, text bytes start, end)`.
fn ref_string(d: &[u8], at: usize) -> Result<(i32, usize, usize), String> {
    let len = le_i32(d, at).ok_or("truncated length")?;
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= REFERRAL_MAX_STRING)
        .ok_or(format!("length {len} outside 0..={REFERRAL_MAX_STRING}"))?;
    let start = at + 4;
    if d.len() < start + n {
        return Err(format!("length {n} runs past the end"));
    }
    Ok((len, start, start + n))
}

/// Checks referral data the way a backend does, in its order: minimum length, version,
/// string lengths, timestamp within 300 s of `now` (unix seconds), HMAC (constant time).
/// The caller then checks uuid, username and backend name ([`Referral::check_player`]).
pub fn verify_referral(data: &[u8], secret: &[u8], now: i64) -> Result<Referral, ReferralError> {
    if data.len() < REFERRAL_MIN_LEN {
        return Err(ReferralError::TooShort(data.len()));
    }
    let version = le_i32(data, 0).unwrap_or(0);
    if version != REFERRAL_VERSION {
        return Err(ReferralError::Version(version));
    }
    let msb = le_i64(data, 4).unwrap_or(0);
    let lsb = le_i64(data, 12).unwrap_or(0);
    let mut at = 20;
    let mut strings = Vec::with_capacity(3);
    for field in ["username", "backend name", "remote address"] {
        let (_, start, end) =
            ref_string(data, at).map_err(|reason| ReferralError::Malformed { field, reason })?;
        let s = std::str::from_utf8(data.get(start..end).unwrap_or(&[])).map_err(|e| {
            ReferralError::Malformed {
                field,
                reason: format!("invalid UTF-8: {e}"),
            }
        })?;
        strings.push(s.to_string());
        at = end;
    }
    let malformed = |field, reason: &str| ReferralError::Malformed {
        field,
        reason: reason.into(),
    };
    let timestamp = le_i32(data, at).ok_or(malformed("timestamp", "truncated"))?;
    let signed = at + 4;
    let tag = data
        .get(signed..signed + 32)
        .ok_or(malformed("hmac", "truncated"))?;
    if data.len() != signed + 32 {
        return Err(malformed("hmac", "bytes after the HMAC"));
    }
    let skew = (now - i64::from(timestamp)).abs();
    if skew > REFERRAL_MAX_SKEW_SECS {
        return Err(ReferralError::Expired { timestamp, skew });
    }
    let mut mac = referral_mac(secret);
    mac.update(data.get(..signed).unwrap_or(&[]));
    mac.verify_slice(tag).map_err(|_| ReferralError::BadHmac)?;
    let mut it = strings.into_iter();
    Ok(Referral {
        uuid: uuid_from_halves(msb, lsb),
        username: it.next().unwrap_or_default(),
        backend: it.next().unwrap_or_default(),
        remote_address: it.next().unwrap_or_default(),
        timestamp,
    })
}

/// The `referral` sub-tree of referral data `d` found at `at` of the message.
fn referral_tree(d: &[u8], at: usize, secret: Option<&[u8]>) -> Node {
    let mut node = Node::group("referral", at..at + d.len()).with_kind("referral");
    if d.len() < REFERRAL_MIN_LEN {
        node = node.with_error(format!(
            "{} bytes, shorter than the minimum {REFERRAL_MIN_LEN}",
            d.len()
        ));
    }
    let r = |a: usize, b: usize| at + a..at + b;
    let Some(version) = le_i32(d, 0) else {
        return node;
    };
    let mut v = Node::new("version", r(0, 4), Value::Int(version.into())).with_kind("i32le");
    if version != REFERRAL_VERSION {
        v = v.with_error(format!("expected version {REFERRAL_VERSION}"));
    }
    node.push(v);
    let (Some(msb), Some(lsb)) = (le_i64(d, 4), le_i64(d, 12)) else {
        if node.error().is_none() {
            node.set_error(Some("truncated uuid".into()));
        }
        return node;
    };
    node.push(Node::new("uuidMsb", r(4, 12), Value::Int(msb)).with_kind("i64le"));
    node.push(Node::new("uuidLsb", r(12, 20), Value::Int(lsb)).with_kind("i64le"));
    node.push(
        Node::new(
            "uuid",
            r(4, 20),
            Value::Text(uuid_text(&uuid_from_halves(msb, lsb)).into()),
        )
        .derived(),
    );
    let mut pos = 20;
    for name in ["username", "backendName", "remoteAddress"] {
        match ref_string(d, pos) {
            Ok((len, start, end)) => {
                let bytes = d.get(start..end).unwrap_or(&[]);
                let len_node =
                    Node::new("length", r(pos, start), Value::Int(len.into())).with_kind("i32le");
                let s = match std::str::from_utf8(bytes) {
                    Ok(s) => Node::new(name, r(pos, end), Value::Text(s.into())),
                    Err(e) => Node::new(name, r(pos, end), Value::Bytes(bytes.into()))
                        .with_error(format!("invalid UTF-8: {e}")),
                };
                node.push(s.with_kind("string").with_children(vec![len_node]));
                pos = end;
            }
            Err(reason) => {
                let end = (pos + 4).min(d.len());
                node.push(Node::new(name, r(pos, end), Value::None).with_error(reason));
                return node;
            }
        }
    }
    let Some(ts) = le_i32(d, pos) else {
        node.push(Node::new("timestamp", r(pos, d.len()), Value::None).with_error("truncated"));
        return node;
    };
    let mut ts_node =
        Node::new("timestamp", r(pos, pos + 4), Value::Int(ts.into())).with_kind("i32le");
    if let Some(t) = time_text(ts.into(), 0) {
        ts_node = ts_node.with_display(format!("{ts} ({t})"));
    }
    node.push(ts_node);
    let signed = pos + 4;
    let Some(tag) = d.get(signed..signed + 32) else {
        node.push(
            Node::new(
                "hmac",
                r(signed, d.len()),
                Value::Bytes(d.get(signed..).unwrap_or(&[]).into()),
            )
            .with_error("truncated: HMAC-SHA256 needs 32 bytes"),
        );
        return node;
    };
    node.push(
        Node::new("hmac", r(signed, signed + 32), Value::Bytes(tag.into()))
            .with_kind("hmac-sha256"),
    );
    if let Some(extra) = d.get(signed + 32..).filter(|e| !e.is_empty()) {
        node.push(
            Node::new(
                "trailing",
                r(signed + 32, d.len()),
                Value::Bytes(extra.into()),
            )
            .with_error(format!("{} bytes after the HMAC", extra.len())),
        );
    }
    if let Some(secret) = secret {
        let mut mac = referral_mac(secret);
        mac.update(d.get(..signed).unwrap_or(&[]));
        let ok = mac.verify_slice(tag).is_ok();
        let mut check = Node::new("hmac valid", r(signed, signed + 32), Value::Bool(ok)).derived();
        if !ok {
            check = check.with_error("HMAC does not match the configured referral secret");
        }
        node.push(check);
    }
    node
}

/// Adds derived checks that the referral's uuid and username equal the packet's own.
fn check_referral_identity(fields: &mut [Node]) {
    let uuid = fields
        .iter()
        .find(|n| n.name == "uuid")
        .and_then(|n| n.value.as_text().map(str::to_owned));
    let username = fields
        .iter()
        .find(|n| n.name == "username")
        .and_then(|n| n.value.as_text().map(str::to_owned));
    for field in fields.iter_mut().filter(|n| n.kind() == Some("referral")) {
        let Some(referral) = field.child_mut("referral") else {
            continue;
        };
        let mut checks = Vec::new();
        for (name, theirs, ours) in [
            (
                "uuid matches Connect",
                referral.child("uuid"),
                uuid.as_deref(),
            ),
            (
                "username matches Connect",
                referral.child("username"),
                username.as_deref(),
            ),
        ] {
            let (Some(theirs), Some(ours)) = (theirs, ours) else {
                continue;
            };
            let ok = theirs.value.as_text() == Some(ours);
            let mut check = Node::new(name, theirs.range.clone(), Value::Bool(ok)).derived();
            if !ok {
                check = check.with_error(format!(
                    "referral has {}, the packet {ours:?}",
                    theirs.value.render()
                ));
            }
            checks.push(check);
        }
        referral.children.extend(checks);
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

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

// ---------------------------------------------------------------------------------------
// Builders (for the emulator, the proxy and tests)

/// `[len i32 LE][id i32 LE][payload]`, the payload as given.
pub fn frame(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &i32::try_from(payload.len())
            .unwrap_or(i32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(payload);
    out
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

fn int(name: &'static str, v: i64) -> Node {
    Node::new(name, 0..0, Value::Int(v))
}

fn text(name: &'static str, s: &str) -> Node {
    Node::new(name, 0..0, Value::Text(s.into()))
}

fn bytes(name: &'static str, b: &[u8]) -> Node {
    Node::new(name, 0..0, Value::Bytes(b.into()))
}

fn instant(secs: i64, nanos: i32) -> Node {
    Node::group("instant", 0..0)
        .with_children(vec![int("seconds", secs), int("nanos", nanos.into())])
}

fn build(id: i32, fields: Vec<Node>) -> Result<Vec<u8>, EncodeError> {
    let payload = encode_payload(id, &fields)?;
    packet(id, &payload)
}

/// The fields of a Connect packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    pub protocol_crc: i32,
    pub protocol_build_number: i32,
    /// ASCII, at most 20 bytes.
    pub client_version: String,
    /// 0 game, 1 editor.
    pub client_type: u8,
    pub uuid: [u8; 16],
    pub username: String,
    pub identity_token: Option<String>,
    pub language: String,
    pub referral_data: Option<Vec<u8>>,
    /// `(port, host)`.
    pub referral_source: Option<(u16, String)>,
}

impl Connect {
    /// The whole frame.
    pub fn build(&self) -> Result<Vec<u8>, EncodeError> {
        let mut f = vec![
            int("protocolCrc", self.protocol_crc.into()),
            int("protocolBuildNumber", self.protocol_build_number.into()),
            text("clientVersion", &self.client_version),
            int("clientType", self.client_type.into()),
            text("uuid", &uuid_text(&self.uuid)),
            text("username", &self.username),
            text("language", &self.language),
        ];
        if let Some(t) = &self.identity_token {
            f.push(text("identityToken", t));
        }
        if let Some(d) = &self.referral_data {
            f.push(bytes("referralData", d));
        }
        if let Some((port, host)) = &self.referral_source {
            f.push(Node::group("referralSource", 0..0).with_children(vec![
                Node::new("port", 0..0, Value::UInt((*port).into())),
                text("host", host),
            ]));
        }
        build(0, f)
    }
}

fn two_strings(
    id: i32,
    a: (&'static str, Option<&str>),
    b: (&'static str, Option<&str>),
) -> Result<Vec<u8>, EncodeError> {
    let f = [a, b]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| text(name, v)))
        .collect();
    build(id, f)
}

/// AuthGrant (11) frame.
pub fn auth_grant(
    authorization_grant: Option<&str>,
    server_identity_token: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    two_strings(
        11,
        ("authorizationGrant", authorization_grant),
        ("serverIdentityToken", server_identity_token),
    )
}

/// AuthToken (12) frame.
pub fn auth_token(
    access_token: Option<&str>,
    server_authorization_grant: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    two_strings(
        12,
        ("accessToken", access_token),
        ("serverAuthorizationGrant", server_authorization_grant),
    )
}

/// ServerAuthToken (13) frame.
pub fn server_auth_token(
    server_access_token: Option<&str>,
    password_challenge: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut f = Vec::new();
    if let Some(t) = server_access_token {
        f.push(text("serverAccessToken", t));
    }
    if let Some(c) = password_challenge {
        f.push(bytes("passwordChallenge", c));
    }
    build(13, f)
}

/// ConnectAccept (14) frame.
pub fn connect_accept(password_challenge: Option<&[u8]>) -> Result<Vec<u8>, EncodeError> {
    build(
        14,
        password_challenge
            .map(|c| bytes("passwordChallenge", c))
            .into_iter()
            .collect(),
    )
}

/// Disconnect (1) frame; `reason_type` 0 disconnect, 1 crash.
pub fn disconnect(reason_type: u8, reason: &str) -> Result<Vec<u8>, EncodeError> {
    build(
        1,
        vec![
            int("reasonType", reason_type.into()),
            text("reason", reason),
        ],
    )
}

/// ChatMessage (211) frame.
pub fn chat_message(message: &str) -> Result<Vec<u8>, EncodeError> {
    build(211, vec![text("message", message)])
}

/// Ping (2) frame; `last` = last ping raw, direct, tick.
pub fn ping(id: i32, secs: i64, nanos: i32, last: [i32; 3]) -> Result<Vec<u8>, EncodeError> {
    build(
        2,
        vec![
            int("id", id.into()),
            instant(secs, nanos),
            int("lastPingRaw", last[0].into()),
            int("lastPingDirect", last[1].into()),
            int("lastPingTick", last[2].into()),
        ],
    )
}

/// Pong (3) frame.
pub fn pong(
    id: i32,
    secs: i64,
    nanos: i32,
    pong_type: u8,
    queue_size: i16,
) -> Result<Vec<u8>, EncodeError> {
    build(
        3,
        vec![
            int("id", id.into()),
            instant(secs, nanos),
            int("type", pong_type.into()),
            int("packetQueueSize", queue_size.into()),
        ],
    )
}

/// The proxy's ProxyPing (998) frame.
pub fn proxy_ping(nonce: i64, timestamp: i64) -> Vec<u8> {
    proxy_frame(998, nonce, timestamp)
}

/// The proxy's ProxyPong (999) frame.
pub fn proxy_pong(nonce: i64, timestamp: i64) -> Vec<u8> {
    proxy_frame(999, nonce, timestamp)
}

fn proxy_frame(id: i32, nonce: i64, timestamp: i64) -> Vec<u8> {
    let mut p = nonce.to_be_bytes().to_vec();
    p.extend_from_slice(&timestamp.to_be_bytes());
    frame(id, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_limits() {
        let mut b = Vec::new();
        write_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        assert_eq!(read_varint(&b, 0), Ok((300, 2)));
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x07], 0).is_ok());
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0).map_err(|e| e.0),
            Err(5)
        );
        assert_eq!(read_varint(&[0x80; 6], 0).map_err(|e| e.0), Err(5));
        assert_eq!(read_varint(&[0x80], 0).map_err(|e| e.0), Err(1));
    }

    #[test]
    fn uuid_text_round_trip() {
        let u: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(parse_uuid(&uuid_text(&u)), Some(u));
        assert_eq!(uuid_text(&u), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
