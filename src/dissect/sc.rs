//! Star Citizen diffusion frames: `[payload_len: u32 LE][magic ef be ad de][payload]`, the
//! payload a protobuf message whose field 1 is the message name (`diff.service.online`,
//! `cmsg_ls_req_dests`, `heartbeat`, ...).
//!
//! Tree: `diffusion` → `length` (u32 LE), `magic`, `payload` (the protobuf message, typed by
//! `proto/sc/diffusion.proto` when the schemas are loaded, see [`message_type`], else decoded
//! without a schema). Label: the message name from field 1.

use std::borrow::Cow;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::capture::Direction;

use super::protobuf::{decode_message_in, encode_message, top_level_string};
use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value};

/// The frame magic: 0xDEADBEEF little-endian.
pub const MAGIC: [u8; 4] = [0xef, 0xbe, 0xad, 0xde];
/// Length prefix and magic.
pub const HEADER_LEN: usize = 8;
/// Largest payload accepted; a larger length is taken as garbage and resynchronised past.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// The protobuf package of `proto/sc/diffusion.proto`.
pub const PACKAGE: &str = "sc.diffusion.v1";
/// The type used for a name [`message_type`] does not know.
pub const FALLBACK_TYPE: &str = "DiffusionMessage";

/// Which message type of [`PACKAGE`] a payload is, by its field-1 name and direction (the
/// table documented in `proto/sc/diffusion.proto`).
pub fn message_type(name: &str, dir: Direction) -> Option<&'static str> {
    use Direction::{ClientToServer as C2S, ServerToClient as S2C};
    Some(match (name, dir) {
        ("diff.service.online", C2S) => "ServiceDiscoveryRequest",
        ("diff.service.online", S2C) => "ServiceList",
        ("cmsg_ls_req_dests", C2S) => "LobbyDestinationsRequest",
        ("cmsg_ls_req_dests", S2C) => "LobbyDestinations",
        ("cmsg_set_region_id", C2S) => "RegionSetup",
        ("cmsg_set_region_id", S2C) => "RegionConfirmation",
        ("heartbeat", C2S) => "Heartbeat",
        ("heartbeat_ack", S2C) => "HeartbeatAck",
        _ => return None,
    })
}

/// Every name [`message_type`] knows.
const NAMES: [&str; 5] = [
    "diff.service.online",
    "cmsg_ls_req_dests",
    "cmsg_set_region_id",
    "heartbeat",
    "heartbeat_ack",
];

pub struct StarCitizen;

impl Dissector for StarCitizen {
    fn name(&self) -> &'static str {
        "sc"
    }

    fn default_ports(&self) -> &'static [u16] {
        &[8000, 8001]
    }

    fn detect(&self, first: &[u8], _dir: Direction) -> bool {
        first.len() >= HEADER_LEN
            && first.get(4..8) == Some(&MAGIC[..])
            && payload_len(first) <= MAX_PAYLOAD
    }

    fn decoder(&self, dir: Direction, ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(ScDecoder::new(dir, ctx.schemas.as_ref()))
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        let payload = tree
            .child("payload")
            .ok_or_else(|| EncodeError::Missing("payload".into()))?;
        let body = encode_message(payload)?;
        if body.len() > MAX_PAYLOAD {
            return Err(EncodeError::BadField {
                field: "payload".into(),
                reason: format!("{} bytes is more than the 16 MiB maximum", body.len()),
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The payload length of a frame header (at least 4 bytes).
fn payload_len(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => 0,
    }
}

/// Whether the magic bytes present so far match.
fn magic_ok(buf: &[u8]) -> bool {
    buf.iter().skip(4).zip(MAGIC).all(|(a, b)| *a == b)
}

/// Whether a frame could start at `buf[0]`, as far as the bytes there tell.
fn plausible_start(buf: &[u8]) -> bool {
    magic_ok(buf) && (buf.len() < HEADER_LEN || payload_len(buf) <= MAX_PAYLOAD)
}

/// How many bytes to skip to reach the next place a frame could start (at least 1).
fn resync(buf: &[u8]) -> usize {
    (1..buf.len())
        .find(|&s| plausible_start(&buf[s..]))
        .unwrap_or(buf.len())
        .max(1)
}

/// One direction of a diffusion connection.
pub struct ScDecoder {
    /// Message types by field-1 name, resolved in the loaded schemas for this direction.
    types: Vec<(&'static str, MessageDescriptor)>,
    fallback: Option<MessageDescriptor>,
}

impl ScDecoder {
    pub fn new(dir: Direction, schemas: Option<&DescriptorPool>) -> Self {
        let lookup =
            |ty: &str| schemas.and_then(|p| p.get_message_by_name(&format!("{PACKAGE}.{ty}")));
        let types = NAMES
            .into_iter()
            .filter_map(|name| Some((name, lookup(message_type(name, dir)?)?)))
            .collect();
        ScDecoder {
            types,
            fallback: lookup(FALLBACK_TYPE),
        }
    }

    fn type_of(&self, name: Option<&str>) -> Option<&MessageDescriptor> {
        name.and_then(|n| self.types.iter().find(|(t, _)| *t == n).map(|(_, d)| d))
            .or(self.fallback.as_ref())
    }
}

impl StreamDecoder for ScDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        if !plausible_start(buf) {
            let reason = if magic_ok(buf) {
                format!(
                    "payload length {} is more than the 16 MiB maximum",
                    payload_len(buf)
                )
            } else {
                "no diffusion magic (ef be ad de) at offset 4".to_owned()
            };
            return Framing::Unframeable {
                skip: resync(buf),
                reason,
            };
        }
        if buf.len() < HEADER_LEN {
            return Framing::NeedMore(Some(HEADER_LEN));
        }
        let total = HEADER_LEN + payload_len(buf);
        if buf.len() < total {
            Framing::NeedMore(Some(total))
        } else {
            Framing::Complete(total)
        }
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        let mut root = Node::group("diffusion", 0..msg.len());
        if msg.len() < HEADER_LEN {
            root.push(
                Node::new("header", 0..msg.len(), Value::Bytes(msg.into()))
                    .with_kind("raw")
                    .with_error("frame shorter than its 8-byte header"),
            );
            return Message::new("diffusion", root);
        }
        let declared = payload_len(msg);
        let actual = msg.len() - HEADER_LEN;
        let mut length = Node::new("length", 0..4, Value::UInt(declared as u64)).with_kind("u32le");
        if declared != actual {
            length = length.with_error(format!(
                "says {declared} payload bytes, the frame has {actual}"
            ));
        }
        let mut magic = Node::new("magic", 4..8, Value::Bytes(msg[4..8].into()))
            .with_display("DEADBEEF")
            .with_kind("bytes");
        if msg[4..8] != MAGIC {
            magic = magic
                .with_display(hex::encode(&msg[4..8]))
                .with_error("not the diffusion magic ef be ad de");
        }
        let payload_bytes = &msg[HEADER_LEN..];
        let name = top_level_string(payload_bytes, 1);
        let desc = self.type_of(name);
        let mut payload = decode_message_in(msg, HEADER_LEN..msg.len(), desc);
        payload.name = Cow::Borrowed("payload");
        root.children = vec![length, magic, payload];
        let label = match name {
            Some(n) if !n.is_empty() => n.chars().take(64).collect(),
            _ => "diffusion".to_owned(),
        };
        Message::new(label, root)
    }
}
