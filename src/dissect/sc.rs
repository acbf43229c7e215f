//! Star Citizen diffusion, written once: the framing, parsing and encoding here are what the
//! diffusion server, the scripted client and the samples use, and the dissector is built on
//! them.
//!
//! A frame is `[payload_len: u32 LE][magic ef be ad de][payload]`:
//!
//! - [`frame`] (or [`frame_within`], with a smaller limit) says whether a buffer starts with a
//!   whole frame ([`Framing::Complete`]), needs more bytes ([`Framing::NeedMore`], with the
//!   total once the header is in), or cannot start one ([`Framing::Unframeable`]: wrong magic,
//!   or a length over the limit, with how far to skip to the next plausible start);
//! - [`parse_frame`] takes one complete frame and gives its payload, [`message_name`] the
//!   payload's name;
//! - [`write_frame`] frames a payload and [`write_message`] a prost message of [`pb`].
//!
//! The payload is a protobuf message whose field 1 is the message name
//! (`diff.service.online`, `cmsg_ls_req_dests`, `heartbeat`, ...); [`message_type`] says which
//! type of `proto/sc/diffusion.proto` ([`pb::diffusion`]) it is in each direction.
//!
//! Tree of one frame:
//!
//! ```text
//! diffusion                 whole frame
//!   length   12 (u32le)     0..4, with an error when it disagrees with the frame
//!   magic    DEADBEEF       4..8, with an error when it is not ef be ad de
//!   payload                 8..end: the protobuf message, typed by the loaded schemas
//!     message_name "heartbeat"  (or decoded without a schema)
//! ```
//!
//! Label: the message name from field 1 (at most 64 characters), else `diffusion`. Encoding
//! an edited tree re-encodes the payload and writes a fresh header around it.

use std::borrow::Cow;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::capture::Direction;

use super::protobuf::{decode_message_in, encode_message, top_level_string};
use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value};

pub mod pb;

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
        Ok(write_frame(&body))
    }
}

/// Where the first frame of `buf` ends, with payloads up to [`MAX_PAYLOAD`].
pub fn frame(buf: &[u8]) -> Framing {
    frame_within(buf, MAX_PAYLOAD)
}

/// [`frame`] with payloads up to `max_payload`: a longer length is unframeable, as is a
/// wrong magic (as soon as its first byte is in). The skip of [`Framing::Unframeable`] is
/// the distance to the next place a frame could start, for readers that resynchronise.
pub fn frame_within(buf: &[u8], max_payload: usize) -> Framing {
    if !plausible_start(buf, max_payload) {
        let reason = if magic_ok(buf) {
            format!(
                "payload length {} is more than the {} maximum",
                payload_len(buf),
                size_text(max_payload)
            )
        } else {
            "no diffusion magic (ef be ad de) at offset 4".to_owned()
        };
        return Framing::Unframeable {
            skip: resync(buf, max_payload),
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

/// What is wrong with a frame given to [`parse_frame`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its 8-byte header")]
    Short,
    #[error("not the diffusion magic ef be ad de")]
    Magic,
    #[error("says {declared} payload bytes, the frame has {actual}")]
    Length { declared: usize, actual: usize },
}

/// The payload of one whole frame (as [`frame`] delimited it).
pub fn parse_frame(msg: &[u8]) -> Result<&[u8], FrameError> {
    if msg.len() < HEADER_LEN {
        return Err(FrameError::Short);
    }
    if msg[4..8] != MAGIC {
        return Err(FrameError::Magic);
    }
    let (declared, actual) = (payload_len(msg), msg.len() - HEADER_LEN);
    if declared != actual {
        return Err(FrameError::Length { declared, actual });
    }
    Ok(&msg[HEADER_LEN..])
}

/// The message name of a payload (field 1), if it has a readable one.
pub fn message_name(payload: &[u8]) -> Option<&str> {
    top_level_string(payload, 1)
}

/// One frame around `payload`.
pub fn write_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(payload);
    out
}

/// One frame around a message, encoded straight after the header.
pub fn write_message(msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&MAGIC);
    msg.encode_raw(&mut out);
    out
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
fn plausible_start(buf: &[u8], max_payload: usize) -> bool {
    magic_ok(buf) && (buf.len() < HEADER_LEN || payload_len(buf) <= max_payload)
}

/// How many bytes to skip to reach the next place a frame could start (at least 1).
fn resync(buf: &[u8], max_payload: usize) -> usize {
    (1..buf.len())
        .find(|&s| plausible_start(&buf[s..], max_payload))
        .unwrap_or(buf.len())
        .max(1)
}

/// A limit as people say it: `16 MiB`, else in bytes.
fn size_text(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
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
        frame(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        let mut root = Node::group("diffusion", 0..msg.len());
        if msg.len() < HEADER_LEN {
            root.push(
                Node::new("header", 0..msg.len(), Value::Bytes(msg.into()))
                    .with_kind("raw")
                    .with_error(FrameError::Short.to_string()),
            );
            return Message::new("diffusion", root);
        }
        let declared = payload_len(msg);
        let actual = msg.len() - HEADER_LEN;
        let mut length = Node::new("length", 0..4, Value::UInt(declared as u64)).with_kind("u32le");
        if declared != actual {
            length = length.with_error(FrameError::Length { declared, actual }.to_string());
        }
        let mut magic = Node::new("magic", 4..8, Value::Bytes(msg[4..8].into()))
            .with_display("DEADBEEF")
            .with_kind("bytes");
        if msg[4..8] != MAGIC {
            magic = magic
                .with_display(hex::encode(&msg[4..8]))
                .with_error(FrameError::Magic.to_string());
        }
        let payload_bytes = &msg[HEADER_LEN..];
        let name = message_name(payload_bytes);
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
