//! HTTP/2 in cleartext (h2 as a tap records it after terminating TLS, or h2c), with HPACK
//! header decoding, per-stream body reassembly, and gRPC bodies decoded by [`super::grpc`].
//!
//! Messages: the client's 24-byte connection preface (label `h2 preface`), then one message
//! per frame (`HEADERS s1 POST /pkg.Svc/Method`, `DATA s1 (120 B)`, `SETTINGS`,
//! `RST_STREAM s3 CANCEL`, ...). Tree of a frame:
//!
//! ```text
//! h2 frame
//!   header            0..9
//!     length          u24
//!     type            u8, display DATA / HEADERS / ...
//!     flags           u8, display END_STREAM|END_HEADERS (or none)
//!     stream          u31 (a child `reserved` when the reserved bit is set)
//!   pad length        (PADDED)
//!   priority          (HEADERS with PRIORITY; PRIORITY frames): exclusive, stream dependency, weight
//!   data              DATA payload
//!   header block      HEADERS / PUSH_PROMISE / CONTINUATION fragment; its children are the
//!                     decoded headers as derived nodes (name = header name, value = text),
//!                     since HPACK bytes do not map to headers one to one
//!   promised stream   PUSH_PROMISE
//!   <SETTING_NAME>    SETTINGS: one node per pair (tag = identifier, value = value)
//!   error code        RST_STREAM, GOAWAY (display = the error's name)
//!   last stream, debug data     GOAWAY
//!   opaque data       PING
//!   increment         WINDOW_UPDATE
//!   payload           unknown frame types
//!   padding           (PADDED)
//! ```
//!
//! Each direction keeps its own HPACK decoder (one [`Http2Decoder`] per direction); an HPACK
//! error leaves the dynamic table out of sync, so later header blocks of that direction
//! carry an error saying so. DATA is reassembled per stream: gRPC messages are emitted as
//! derived buffers (`stream 1 gRPC message 1`) on the DATA frame that completes them, other
//! bodies (`stream 1 body`, JSON-decoded when they parse) when the stream ends.
//!
//! The two directions' decoders of a connection share the request paths, so responses are
//! decoded with the method's output type; see [`Http2Decoder::new`] for how they pair.
//!
//! Encoding: the preface and the SETTINGS, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY, DATA,
//! PRIORITY and unknown-type frames are rebuilt from the tree with the length recomputed.
//! HEADERS, PUSH_PROMISE and CONTINUATION are not editable: their header block depends on
//! the HPACK state of the whole connection.

mod body;
mod decode;
mod encode;
mod frame;
mod headers;

pub use decode::connection_decoders;
pub use encode::encode_frame;
pub use frame::{FrameHeader, error_code_name, flag_names, frame_type_name, setting_name};

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};

use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
    grpc, json,
};

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 9;
/// The largest frame payload HTTP/2 allows (the SETTINGS_MAX_FRAME_SIZE ceiling, 2^24 - 1;
/// also the largest a 24-bit length can say).
pub const MAX_FRAME_SIZE: usize = (1 << 24) - 1;
/// SETTINGS_MAX_FRAME_SIZE's initial value: control frames and unknown frame types longer
/// than this are taken as garbage rather than waited for.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;
/// Largest header block collected over CONTINUATION frames.
pub const MAX_HEADER_BLOCK: usize = 16 * 1024 * 1024;
/// Largest dynamic table a peer may ask the HPACK decoder for.
pub const MAX_HPACK_TABLE: usize = 1024 * 1024;
/// Body bytes buffered per stream before reassembly gives up on it.
pub const MAX_STREAM_BUFFER: usize = 64 * 1024 * 1024;
/// Body bytes buffered over all streams of a direction.
pub const MAX_TOTAL_BUFFER: usize = 256 * 1024 * 1024;
/// Streams tracked at once per direction.
pub const MAX_STREAMS: usize = 1000;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "h2";

/// The filter fields h2 registers.
const FIELDS: [FieldDef; 4] = [
    FieldDef {
        name: "http.method",
        aliases: &["h2.method", "http2.method"],
        ty: FieldType::Text,
        help: "the request method",
        paths: &[FieldPath::Anywhere(":method")],
    },
    FieldDef {
        name: "http.path",
        aliases: &[
            "h2.path",
            "h2.target",
            "h2.uri",
            "http2.path",
            "http2.target",
            "http2.uri",
        ],
        ty: FieldType::Text,
        help: "the request target",
        paths: &[FieldPath::Anywhere(":path")],
    },
    FieldDef {
        name: "http.status",
        aliases: &["h2.status", "h2.code", "http2.status", "http2.code"],
        ty: FieldType::Number,
        help: "the response status code",
        paths: &[FieldPath::Anywhere(":status")],
    },
    FieldDef {
        name: "http.host",
        aliases: &["h2.host", "http2.host"],
        ty: FieldType::Text,
        help: "the `:authority` pseudo-header",
        paths: &[FieldPath::Anywhere(":authority")],
    },
];

/// Cleartext HTTP/2 (`h2`).
pub struct Http2;

impl Dissector for Http2 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
    }

    fn filter_namespaces(&self) -> &'static [&'static str] {
        &["http", "http2"]
    }

    fn detect(&self, first: &[u8], dir: Direction) -> bool {
        dir == Direction::ClientToServer
            && if first.len() >= PREFACE.len() {
                first.starts_with(PREFACE)
            } else {
                first.len() >= 8 && PREFACE.starts_with(first)
            }
    }

    fn decoder(&self, dir: Direction, ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(Http2Decoder::new(dir, ctx, BodyMode::Auto))
    }

    fn connection_decoders(
        &self,
        ctx: &Context,
    ) -> (Box<dyn StreamDecoder>, Box<dyn StreamDecoder>) {
        connection_decoders(ctx, BodyMode::Auto)
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_frame(tree)
    }
}

/// How DATA bodies are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// gRPC when the stream's `content-type` is `application/grpc*`, else bytes or JSON.
    Auto,
    /// gRPC unless the stream's `content-type` is known and is not gRPC.
    Grpc,
}

/// What both directions' decoders of one connection share.
#[derive(Default)]
struct Shared {
    /// The request `:path` of each stream the client opened.
    paths: HashMap<u32, String>,
}

/// A header block being collected over CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    kind: u8,
    end_stream: bool,
    frames: usize,
    bytes: Vec<u8>,
}

/// What a direction knows of one stream.
#[derive(Default)]
struct StreamState {
    method: Option<String>,
    path: Option<String>,
    content_type: Option<String>,
    encoding: Option<String>,
    /// Body bytes received and not yet emitted.
    buf: Vec<u8>,
    /// Body bytes emitted so far (offset of `buf[0]` in the body).
    emitted: usize,
    /// gRPC messages emitted so far.
    messages: usize,
    /// Set once the body outgrew the buffer caps: nothing more is buffered.
    overflow: bool,
}

/// The decoder of one direction of an HTTP/2 connection.
pub struct Http2Decoder {
    dir: Direction,
    mode: BodyMode,
    ctx: Context,
    /// False until the client preface (client direction) or the first frame was seen.
    preface_done: bool,
    /// Set after the client preface: the next frame must be SETTINGS.
    expect_settings: bool,
    hpack: loona_hpack::Decoder<'static>,
    /// Why the HPACK table is out of sync, once it is.
    hpack_poisoned: Option<String>,
    pending_block: Option<PendingBlock>,
    streams: HashMap<u32, StreamState>,
    buffered: usize,
    shared: Arc<Mutex<Shared>>,
}

/// The tree and label being built for one frame.
struct Out {
    root: Node,
    label: String,
    derived: Vec<DerivedBuffer>,
}

/// Decoded headers of one block.
struct HeaderList {
    headers: Vec<(String, Value)>,
    error: Option<String>,
}

impl HeaderList {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_text())
    }
}
