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

mod build;
mod decode;
mod encode;
mod frame;
mod packets;
mod referral;
mod wire;

pub use build::{
    Connect, auth_grant, auth_token, chat_message, connect_accept, disconnect, ping, pong,
    proxy_ping, proxy_pong, server_auth_token,
};
pub use decode::{decode_message, decompress};
pub use encode::{encode_message, encode_payload, encode_tree, packet};
pub use frame::{frame, frame_at};
pub use packets::{
    FixedField, FixedType, GLOBAL_MAX, Layout, PACKETS, PacketSpec, VarField, VarType, by_name,
    lookup,
};
pub use referral::{Referral, ReferralError, referral_data, verify_referral};
pub use wire::{parse_uuid, read_varint, uuid_text, write_varint};

use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder};
use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};
use frame::{header, plausible};

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

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "hytale";

/// The filter fields hytale registers.
const FIELDS: [FieldDef; 1] = [FieldDef {
    name: "hytale.packet",
    aliases: &["hytale.name"],
    ty: FieldType::Text,
    help: "the packet name (`Connect`, `AuthGrant`, ...)",
    paths: &[FieldPath::RootName],
}];

/// The Hytale dissector.
pub struct Hytale;

impl Dissector for Hytale {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
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
