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

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::capture::Direction;

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

/// Cleartext HTTP/2 (`h2`).
pub struct Http2;

impl Dissector for Http2 {
    fn name(&self) -> &'static str {
        "h2"
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

/// The name of a frame type.
pub fn frame_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        0xa => "ALTSVC",
        0xc => "ORIGIN",
        0x10 => "PRIORITY_UPDATE",
        _ => return None,
    })
}

/// The name of an HTTP/2 error code.
pub fn error_code_name(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .copied()
}

/// The name of a SETTINGS identifier.
pub fn setting_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "HEADER_TABLE_SIZE",
        2 => "ENABLE_PUSH",
        3 => "MAX_CONCURRENT_STREAMS",
        4 => "INITIAL_WINDOW_SIZE",
        5 => "MAX_FRAME_SIZE",
        6 => "MAX_HEADER_LIST_SIZE",
        8 => "ENABLE_CONNECT_PROTOCOL",
        9 => "NO_RFC7540_PRIORITIES",
        _ => return None,
    })
}

/// The flag names of a frame type's flags byte, `|`-joined; `none` when zero.
pub fn flag_names(t: u8, flags: u8) -> String {
    let known: &[(u8, &str)] = match t {
        DATA => &[(FLAG_END_STREAM, "END_STREAM"), (FLAG_PADDED, "PADDED")],
        HEADERS => &[
            (FLAG_END_STREAM, "END_STREAM"),
            (FLAG_END_HEADERS, "END_HEADERS"),
            (FLAG_PADDED, "PADDED"),
            (FLAG_PRIORITY, "PRIORITY"),
        ],
        SETTINGS | PING => &[(FLAG_ACK, "ACK")],
        PUSH_PROMISE => &[(FLAG_END_HEADERS, "END_HEADERS"), (FLAG_PADDED, "PADDED")],
        CONTINUATION => &[(FLAG_END_HEADERS, "END_HEADERS")],
        _ => &[],
    };
    let mut parts = Vec::new();
    let mut rest = flags;
    for &(bit, name) in known {
        if flags & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("0x{rest:02x}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("|")
    }
}

/// The 9-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; FRAME_HEADER] = b.get(..FRAME_HEADER)?.try_into().ok()?;
        let sid = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        Some(FrameHeader {
            length: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// What both directions' decoders of one connection share.
#[derive(Default)]
struct Shared {
    /// The request `:path` of each stream the client opened.
    paths: HashMap<u32, String>,
}

/// Decoders for both directions of one connection, sharing what the client's requests
/// tell the server's responses.
pub fn connection_decoders(
    ctx: &Context,
    mode: BodyMode,
) -> (Box<dyn StreamDecoder>, Box<dyn StreamDecoder>) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    (
        Box::new(Http2Decoder::with_shared(
            Direction::ClientToServer,
            ctx,
            mode,
            shared.clone(),
        )),
        Box::new(Http2Decoder::with_shared(
            Direction::ServerToClient,
            ctx,
            mode,
            shared,
        )),
    )
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

impl Http2Decoder {
    /// A decoder of one direction on its own; a response decoder made this way does not
    /// know its requests' paths and decodes gRPC bodies without a schema.
    pub fn new(dir: Direction, ctx: &Context, mode: BodyMode) -> Self {
        Self::with_shared(dir, ctx, mode, Arc::new(Mutex::new(Shared::default())))
    }

    fn with_shared(
        dir: Direction,
        ctx: &Context,
        mode: BodyMode,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(MAX_HPACK_TABLE);
        Http2Decoder {
            dir,
            mode,
            ctx: ctx.clone(),
            preface_done: dir == Direction::ServerToClient,
            expect_settings: false,
            hpack,
            hpack_poisoned: None,
            pending_block: None,
            streams: HashMap::new(),
            buffered: 0,
            shared,
        }
    }

    fn is_request(&self) -> bool {
        self.dir == Direction::ClientToServer
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unframeable(skip: usize, reason: impl Into<String>) -> Framing {
    Framing::Unframeable {
        skip: skip.max(1),
        reason: reason.into(),
    }
}

/// The payload length a frame type must have, when it is fixed.
fn fixed_length(kind: u8) -> Option<usize> {
    match kind {
        PRIORITY => Some(5),
        RST_STREAM | WINDOW_UPDATE => Some(4),
        PING => Some(8),
        _ => None,
    }
}

impl StreamDecoder for Http2Decoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        if !self.preface_done {
            if buf.starts_with(PREFACE) {
                return Framing::Complete(PREFACE.len());
            }
            if PREFACE.starts_with(buf) {
                return Framing::NeedMore(Some(PREFACE.len()));
            }
            // No preface: a capture that starts mid-connection. Read frames.
            self.preface_done = true;
        }
        let Some(h) = FrameHeader::parse(buf) else {
            return Framing::NeedMore(Some(FRAME_HEADER));
        };
        // Garbage reads as frames of any length; refuse to wait for what cannot be HTTP/2.
        // What is skipped is everything buffered: framing resumes at the next packet.
        if self.expect_settings {
            self.expect_settings = false;
            if h.kind != SETTINGS || h.stream != 0 || h.length % 6 != 0 {
                return unframeable(
                    buf.len(),
                    "the connection preface must be followed by a SETTINGS frame",
                );
            }
        }
        if h.length > MAX_FRAME_SIZE {
            return unframeable(buf.len(), "frame longer than 16 MiB");
        }
        let implausible = match h.kind {
            DATA | HEADERS | PUSH_PROMISE | CONTINUATION => false,
            SETTINGS | GOAWAY => h.length > DEFAULT_MAX_FRAME_SIZE,
            k => match fixed_length(k) {
                Some(n) => h.length != n && h.length > DEFAULT_MAX_FRAME_SIZE,
                None => h.length > DEFAULT_MAX_FRAME_SIZE,
            },
        };
        if implausible {
            let kind = frame_type_name(h.kind).map_or_else(
                || format!("frame of unknown type 0x{:02x}", h.kind),
                |n| format!("{n} frame"),
            );
            return unframeable(
                buf.len(),
                format!(
                    "{kind} with an implausible length of {} bytes: not HTTP/2",
                    h.length
                ),
            );
        }
        let total = FRAME_HEADER + h.length;
        if buf.len() >= total {
            Framing::Complete(total)
        } else {
            Framing::NeedMore(Some(total))
        }
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        if !self.preface_done {
            self.preface_done = true;
            if msg == PREFACE {
                self.expect_settings = true;
                return Message::new(
                    "h2 preface",
                    Node::group("h2 preface", 0..msg.len()).with_children(vec![Node::new(
                        "magic",
                        0..msg.len(),
                        Value::Text(String::from_utf8_lossy(msg).into()),
                    )]),
                );
            }
        }
        self.expect_settings = false;
        self.decode_frame(msg)
    }
}

/// The tree and label being built for one frame.
struct Out {
    root: Node,
    label: String,
    derived: Vec<DerivedBuffer>,
}

fn u31_node(name: &'static str, b: &[u8], at: usize) -> Option<Node> {
    let v = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
    let mut n = Node::new(name, at..at + 4, Value::UInt(u64::from(v & 0x7fff_ffff)));
    if v & 0x8000_0000 != 0 {
        n.push(Node::new("reserved", at..at + 1, Value::Bool(true)));
    }
    Some(n)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn bytes_node(name: &'static str, b: &[u8], range: std::ops::Range<usize>) -> Node {
    let v = b.get(range.clone()).unwrap_or_default().to_vec();
    Node::new(name, range, Value::Bytes(v.into()))
}

fn header_node(h: &FrameHeader, msg: &[u8]) -> Node {
    let type_display = frame_type_name(h.kind)
        .map_or_else(|| format!("unknown (0x{:02x})", h.kind), str::to_string);
    let mut stream = Node::new("stream", 5..9, Value::UInt(u64::from(h.stream)));
    if h.reserved {
        stream.push(Node::new("reserved", 5..6, Value::Bool(true)));
    }
    let mut length = Node::new("length", 0..3, Value::UInt(h.length as u64));
    let actual = msg.len().saturating_sub(FRAME_HEADER);
    if actual != h.length {
        length = length.with_error(format!(
            "the frame length says {} bytes but {actual} follow",
            h.length
        ));
    }
    Node::group("header", 0..FRAME_HEADER).with_children(vec![
        length,
        Node::new("type", 3..4, Value::UInt(u64::from(h.kind))).with_display(type_display),
        Node::new("flags", 4..5, Value::UInt(u64::from(h.flags)))
            .with_display(flag_names(h.kind, h.flags)),
        stream,
    ])
}

/// Splits off PADDED framing: pushes `pad length` and returns the content range and the
/// padding range (both in message offsets), or `None` after pushing an error.
fn unpad(
    out: &mut Out,
    h: &FrameHeader,
    msg: &[u8],
    start: usize,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let end = msg.len();
    if !h.has(FLAG_PADDED) {
        return Some((start..end, end..end));
    }
    let Some(&pad) = msg.get(start) else {
        out.root.push(
            Node::new("pad length", start..end, Value::None)
                .with_error("PADDED frame without a pad length"),
        );
        return None;
    };
    let pad = usize::from(pad);
    let mut pad_node = Node::new("pad length", start..start + 1, Value::UInt(pad as u64));
    let content_start = start + 1;
    if pad > end - content_start {
        pad_node = pad_node.with_error(format!(
            "padding of {pad} bytes is longer than the {} bytes after the pad length",
            end - content_start
        ));
        out.root.push(pad_node);
        out.root
            .push(bytes_node("payload", msg, content_start..end).with_error("not decoded"));
        return None;
    }
    out.root.push(pad_node);
    Some((content_start..end - pad, end - pad..end))
}

fn push_padding(out: &mut Out, h: &FrameHeader, msg: &[u8], pad: std::ops::Range<usize>) {
    if h.has(FLAG_PADDED) {
        out.root.push(bytes_node("padding", msg, pad));
    }
}

fn priority_nodes(msg: &[u8], at: usize) -> Option<Node> {
    let dep = u32_at(msg, at)?;
    let weight = *msg.get(at + 4)?;
    Some(Node::group("priority", at..at + 5).with_children(vec![
            Node::new("exclusive", at..at + 1, Value::Bool(dep & 0x8000_0000 != 0)),
            Node::new(
                "stream dependency",
                at..at + 4,
                Value::UInt(u64::from(dep & 0x7fff_ffff)),
            ),
            Node::new("weight", at + 4..at + 5, Value::UInt(u64::from(weight)))
                .with_display(format!("{weight} (effective {})", u16::from(weight) + 1)),
        ]))
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

fn is_grpc_type(ct: &str) -> bool {
    ct.trim()
        .to_ascii_lowercase()
        .starts_with("application/grpc")
}

impl Http2Decoder {
    fn decode_frame(&mut self, msg: &[u8]) -> Message {
        let Some(h) = FrameHeader::parse(msg) else {
            return Message::new(
                "h2 ?",
                Node::new("h2 frame", 0..msg.len(), Value::Bytes(msg.into())).with_error(format!(
                    "{} bytes are too few for a frame header",
                    msg.len()
                )),
            );
        };
        let mut out = Out {
            root: Node::group("h2 frame", 0..msg.len()).with_children(vec![header_node(&h, msg)]),
            label: frame_type_name(h.kind)
                .map_or_else(|| format!("frame 0x{:02x}", h.kind), str::to_string),
            derived: Vec::new(),
        };
        if let Some(p) = &self.pending_block
            && h.kind != CONTINUATION
        {
            let reason = format!(
                "expected a CONTINUATION frame for stream {}; the header block is lost",
                p.stream
            );
            out.root
                .push(Node::new("continuation", 0..0, Value::None).with_error(reason.clone()));
            self.poison(reason);
            self.pending_block = None;
        }
        match h.kind {
            DATA => self.data(&mut out, &h, msg),
            HEADERS | PUSH_PROMISE => self.headers(&mut out, &h, msg),
            CONTINUATION => self.continuation(&mut out, &h, msg),
            PRIORITY => {
                check_stream(&mut out, &h, true);
                check_len(&mut out, &h, msg, 5);
                if let Some(mut p) = priority_nodes(msg, FRAME_HEADER) {
                    out.root.children.extend(std::mem::take(&mut p.children));
                }
                out.label = format!("PRIORITY s{}", h.stream);
            }
            RST_STREAM => {
                check_stream(&mut out, &h, true);
                check_len(&mut out, &h, msg, 4);
                let code = u32_at(msg, FRAME_HEADER);
                if let Some(code) = code {
                    out.root.push(error_code_node(code, FRAME_HEADER));
                    out.label = format!("RST_STREAM s{} {}", h.stream, error_code_text(code));
                }
                if let Some(s) = self.streams.remove(&h.stream) {
                    self.buffered = self.buffered.saturating_sub(s.buf.len());
                    if !s.buf.is_empty() {
                        out.root.push(
                            Node::new(
                                "discarded body bytes",
                                0..0,
                                Value::UInt(s.buf.len() as u64),
                            )
                            .derived(),
                        );
                    }
                }
                if !self.is_request() {
                    self.shared().paths.remove(&h.stream);
                }
            }
            SETTINGS => {
                check_stream(&mut out, &h, false);
                let payload = msg.len() - FRAME_HEADER;
                if h.has(FLAG_ACK) {
                    out.label = "SETTINGS ACK".into();
                    if payload != 0 {
                        out.root.push(
                            bytes_node("payload", msg, FRAME_HEADER..msg.len())
                                .with_error("a SETTINGS ACK must be empty"),
                        );
                    }
                } else {
                    let mut at = FRAME_HEADER;
                    while let Some(pair) = msg.get(at..at + 6) {
                        let id = u16::from_be_bytes([pair[0], pair[1]]);
                        let v = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
                        let name: Cow<'static, str> = match setting_name(id) {
                            Some(n) => Cow::Borrowed(n),
                            None => Cow::Owned(format!("setting 0x{id:04x}")),
                        };
                        out.root.push(
                            Node::new(name, at..at + 6, Value::UInt(u64::from(v)))
                                .with_tag(u32::from(id)),
                        );
                        at += 6;
                    }
                    if at < msg.len() {
                        out.root.push(
                            bytes_node("trailing bytes", msg, at..msg.len())
                                .with_error("SETTINGS payload is not a multiple of 6 bytes"),
                        );
                    }
                }
            }
            PING => {
                check_stream(&mut out, &h, false);
                let mut data = bytes_node("opaque data", msg, FRAME_HEADER..msg.len());
                if msg.len() - FRAME_HEADER != 8 {
                    data = data.with_error("PING data must be 8 bytes");
                }
                out.root.push(data);
                if h.has(FLAG_ACK) {
                    out.label = "PING ACK".into();
                }
            }
            GOAWAY => {
                check_stream(&mut out, &h, false);
                match (u31_node("last stream", msg, FRAME_HEADER), u32_at(msg, 13)) {
                    (Some(last), Some(code)) => {
                        out.root.push(last);
                        out.root.push(error_code_node(code, 13));
                        let mut debug = bytes_node("debug data", msg, 17..msg.len());
                        if let Ok(text) = std::str::from_utf8(&msg[17..])
                            && !text.is_empty()
                        {
                            debug = debug.with_display(format!("{text:?}"));
                        }
                        out.root.push(debug);
                        if code != 0 {
                            out.label = format!("GOAWAY {}", error_code_text(code));
                        }
                    }
                    _ => out.root.push(
                        bytes_node("payload", msg, FRAME_HEADER..msg.len())
                            .with_error("GOAWAY needs at least 8 bytes"),
                    ),
                }
            }
            WINDOW_UPDATE => {
                check_len(&mut out, &h, msg, 4);
                if let Some(mut inc) = u31_node("increment", msg, FRAME_HEADER) {
                    if inc.value.as_u64() == Some(0) {
                        inc = inc.with_error("a window increment of 0 is a protocol error");
                    }
                    out.root.push(inc);
                }
                if h.stream != 0 {
                    out.label = format!("WINDOW_UPDATE s{}", h.stream);
                }
            }
            _ => {
                out.root
                    .push(bytes_node("payload", msg, FRAME_HEADER..msg.len()));
                if h.stream != 0 {
                    out.label = format!("{} s{}", out.label, h.stream);
                }
            }
        }
        Message {
            label: out.label,
            tree: out.root,
            derived: out.derived,
        }
    }

    fn poison(&mut self, reason: String) {
        if self.hpack_poisoned.is_none() {
            self.hpack_poisoned = Some(reason);
        }
    }

    /// Decodes a complete header block with the direction's HPACK table.
    fn hpack_decode(&mut self, block: &[u8]) -> HeaderList {
        let mut headers = Vec::new();
        let res = self.hpack.decode_with_cb(block, |name, value| {
            let name = String::from_utf8_lossy(&name).into_owned();
            let value = match std::str::from_utf8(&value) {
                Ok(s) => Value::Text(s.into()),
                Err(_) => Value::Bytes(value.into()),
            };
            headers.push((name, value));
        });
        let error = match res {
            Ok(()) => None,
            Err(e) => {
                let what = hpack_error_text(&e);
                let reason = format!("HPACK decoding failed: {what}");
                self.poison(format!(
                    "an earlier header block of this direction failed to decode ({what})"
                ));
                Some(reason)
            }
        };
        HeaderList { headers, error }
    }

    fn headers(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
        check_stream(out, h, true);
        let name = if h.kind == HEADERS {
            "HEADERS"
        } else {
            "PUSH_PROMISE"
        };
        out.label = format!("{name} s{}", h.stream);
        let Some((content, pad)) = unpad(out, h, msg, FRAME_HEADER) else {
            self.poison(format!("a malformed {name} frame's header block was lost"));
            return;
        };
        let mut block_start = content.start;
        if h.kind == HEADERS && h.has(FLAG_PRIORITY) {
            match priority_nodes(msg, block_start).filter(|_| block_start + 5 <= content.end) {
                Some(p) => out.root.push(p),
                None => {
                    out.root.push(
                        bytes_node("priority", msg, block_start..content.end)
                            .with_error("PRIORITY flag set but fewer than 5 bytes"),
                    );
                    self.poison(format!("a malformed {name} frame's header block was lost"));
                    return;
                }
            }
            block_start += 5;
        }
        if h.kind == PUSH_PROMISE {
            match u31_node("promised stream", msg, block_start)
                .filter(|_| block_start + 4 <= content.end)
            {
                Some(p) => {
                    out.label = format!("PUSH_PROMISE s{} → s{}", h.stream, p.value.render());
                    out.root.push(p);
                }
                None => {
                    out.root.push(
                        bytes_node("promised stream", msg, block_start..content.end)
                            .with_error("PUSH_PROMISE needs a 4-byte promised stream id"),
                    );
                    self.poison("a malformed PUSH_PROMISE frame's header block was lost".into());
                    return;
                }
            }
            block_start += 4;
        }
        let range = block_start..content.end;
        let block = msg.get(range.clone()).unwrap_or_default();
        let end_stream = h.kind == HEADERS && h.has(FLAG_END_STREAM);
        if h.has(FLAG_END_HEADERS) {
            let list = self.hpack_decode(block);
            let node = self.block_node("header block", range, &list, None);
            out.root.push(node);
            push_padding(out, h, msg, pad);
            if h.kind == HEADERS {
                self.apply_headers(out, h.stream, &list, end_stream);
            }
        } else {
            out.root
                .push(bytes_node("header block", msg, range).with_display(format!(
                    "{} B, continued in CONTINUATION frames",
                    block.len()
                )));
            push_padding(out, h, msg, pad);
            out.label.push_str(" (continued)");
            self.pending_block = Some(PendingBlock {
                stream: h.stream,
                kind: h.kind,
                end_stream,
                frames: 1,
                bytes: block.to_vec(),
            });
        }
    }

    fn continuation(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
        check_stream(out, h, true);
        out.label = format!("CONTINUATION s{}", h.stream);
        let range = FRAME_HEADER..msg.len();
        let fragment = &msg[FRAME_HEADER..];
        let Some(mut pending) = self.pending_block.take() else {
            out.root.push(
                bytes_node("header block", msg, range)
                    .with_error("CONTINUATION without a preceding HEADERS or PUSH_PROMISE"),
            );
            self.poison("a CONTINUATION frame without its HEADERS could not be decoded".into());
            return;
        };
        if pending.stream != h.stream {
            out.root
                .push(bytes_node("header block", msg, range).with_error(format!(
                    "CONTINUATION for stream {} while the header block of stream {} is open",
                    h.stream, pending.stream
                )));
            self.poison("a header block interrupted by another stream was lost".into());
            return;
        }
        if pending.bytes.len() + fragment.len() > MAX_HEADER_BLOCK {
            out.root
                .push(bytes_node("header block", msg, range).with_error(format!(
                    "header block larger than {MAX_HEADER_BLOCK} bytes; not decoded"
                )));
            self.poison("an oversized header block was not decoded".into());
            return;
        }
        pending.bytes.extend_from_slice(fragment);
        pending.frames += 1;
        if !h.has(FLAG_END_HEADERS) {
            out.root
                .push(bytes_node("header block", msg, range).with_display(format!(
                    "{} B fragment, {} B collected so far",
                    fragment.len(),
                    pending.bytes.len()
                )));
            out.label.push_str(" (continued)");
            self.pending_block = Some(pending);
            return;
        }
        let list = self.hpack_decode(&pending.bytes);
        let note = format!(
            "{} B block collected from {} frames",
            pending.bytes.len(),
            pending.frames
        );
        let node = self.block_node("header block", range, &list, Some(note));
        out.root.push(node);
        let mut block_tree = Node::group("header block", 0..pending.bytes.len());
        for (name, value) in &list.headers {
            block_tree.push(
                Node::new(
                    Cow::Owned(name.clone()),
                    0..pending.bytes.len(),
                    value.clone(),
                )
                .derived(),
            );
        }
        if let Some(e) = &list.error {
            block_tree.push(
                Node::new("hpack error", 0..pending.bytes.len(), Value::None).with_error(e.clone()),
            );
        }
        out.derived.push(DerivedBuffer {
            name: format!("stream {} header block", h.stream),
            bytes: pending.bytes,
            tree: block_tree,
        });
        if pending.kind == HEADERS {
            self.apply_headers(out, h.stream, &list, pending.end_stream);
        }
    }

    /// The `header block` node: the block's bytes, with the decoded headers as derived
    /// children (each covering the whole block: HPACK bytes do not map to headers).
    fn block_node(
        &self,
        name: &'static str,
        range: std::ops::Range<usize>,
        list: &HeaderList,
        note: Option<String>,
    ) -> Node {
        let mut node = Node::group(name, range.clone());
        if let Some(note) = note {
            node.set_display(Some(note));
        }
        if let Some(reason) = &self.hpack_poisoned
            && list.error.is_none()
        {
            node.push(
                Node::new("hpack table", range.clone(), Value::None)
                    .derived()
                    .with_error(format!(
                        "the HPACK table is out of sync: {reason}; these headers may be wrong"
                    )),
            );
        }
        for (hname, value) in &list.headers {
            let mut n =
                Node::new(Cow::Owned(hname.clone()), range.clone(), value.clone()).derived();
            match (hname.as_str(), value.as_text()) {
                ("grpc-status", Some(v)) => {
                    if let Ok(code) = v.trim().parse::<u64>() {
                        n.set_display(Some(format!("{code} ({})", grpc::status_name(code))));
                    }
                }
                ("grpc-message", Some(v)) => {
                    let decoded = grpc::percent_decode(v);
                    if decoded != v {
                        n.set_display(Some(format!("{decoded:?}")));
                    }
                }
                _ => {}
            }
            node.push(n);
        }
        if let Some(e) = &list.error {
            node.push(Node::new("hpack error", range, Value::None).with_error(e.clone()));
        }
        node
    }

    /// Records a decoded HEADERS block in the stream's state, and finishes the label.
    fn apply_headers(&mut self, out: &mut Out, stream: u32, list: &HeaderList, end_stream: bool) {
        if let (Some(m), Some(p)) = (list.get(":method"), list.get(":path")) {
            out.label = format!("{} {m} {p}", out.label);
        } else if let Some(s) = list.get(":status") {
            out.label = format!("{} {s}", out.label);
        } else if list.get("grpc-status").is_none() && list.error.is_none() {
            out.label.push_str(" trailers");
        }
        if let Some(status) = list.get("grpc-status") {
            match status.trim().parse::<u64>() {
                Ok(0) => out.label.push_str(" grpc-status 0 OK"),
                Ok(code) => {
                    out.label = format!(
                        "{} grpc error {code} {}",
                        out.label,
                        grpc::status_name(code)
                    );
                    if let Some(m) = list.get("grpc-message") {
                        out.label = format!("{}: {}", out.label, grpc::percent_decode(m));
                    }
                }
                Err(_) => out.label = format!("{} grpc-status {status:?}", out.label),
            }
        }
        if list.error.is_some() {
            out.label.push_str(" (HPACK error)");
        }
        if stream != 0 {
            if let Some(state) = self.stream_state(out, stream) {
                if let Some(m) = list.get(":method") {
                    state.method = Some(m.to_string());
                }
                if let Some(p) = list.get(":path") {
                    state.path = Some(p.to_string());
                }
                if let Some(c) = list.get("content-type") {
                    state.content_type = Some(c.to_string());
                }
                if let Some(e) = list.get("grpc-encoding") {
                    state.encoding = Some(e.to_string());
                }
            }
            if self.is_request()
                && let Some(p) = list.get(":path")
            {
                let mut shared = self.shared();
                if shared.paths.len() >= MAX_STREAMS {
                    shared.paths.clear();
                }
                shared.paths.insert(stream, p.to_string());
            }
        }
        if end_stream {
            self.end_stream(out, stream);
        }
    }

    /// The state of `stream`, created when new; `None` (with an error node) past the cap.
    fn stream_state(&mut self, out: &mut Out, stream: u32) -> Option<&mut StreamState> {
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_STREAMS {
            out.root.push(
                Node::new("stream state", 0..0, Value::None)
                    .derived()
                    .with_error(format!(
                        "more than {MAX_STREAMS} open streams: stream {stream} is not reassembled"
                    )),
            );
            return None;
        }
        Some(self.streams.entry(stream).or_default())
    }

    fn grpc_body(&self, state: &StreamState) -> bool {
        match (self.mode, &state.content_type) {
            (_, Some(ct)) => is_grpc_type(ct),
            (BodyMode::Grpc, None) => true,
            (BodyMode::Auto, None) => false,
        }
    }

    fn data(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
        check_stream(out, h, true);
        out.label = format!("DATA s{}", h.stream);
        let Some((content, pad)) = unpad(out, h, msg, FRAME_HEADER) else {
            return;
        };
        let data = msg.get(content.clone()).unwrap_or_default();
        out.label = format!("DATA s{} ({} B)", h.stream, data.len());
        out.root.push(bytes_node("data", msg, content));
        push_padding(out, h, msg, pad);
        if h.stream == 0 {
            return;
        }
        let end_stream = h.has(FLAG_END_STREAM);
        let mut buffered = self.buffered;
        let Some(state) = self.stream_state(out, h.stream) else {
            return;
        };
        if !state.overflow && !data.is_empty() {
            if state.buf.len() + data.len() > MAX_STREAM_BUFFER
                || buffered + data.len() > MAX_TOTAL_BUFFER
            {
                state.overflow = true;
                buffered -= state.buf.len().min(buffered);
                state.buf = Vec::new();
                out.root.push(
                    Node::new("reassembly", 0..0, Value::None)
                        .derived()
                        .with_error(format!(
                            "stream {} body exceeds the buffering limit ({MAX_STREAM_BUFFER} B per \
                             stream, {MAX_TOTAL_BUFFER} B in all); no longer reassembled",
                            h.stream
                        )),
                );
            } else {
                state.buf.extend_from_slice(data);
                buffered += data.len();
            }
        }
        self.buffered = buffered;
        let grpc = self
            .streams
            .get(&h.stream)
            .is_some_and(|s| self.grpc_body(s));
        if grpc {
            self.emit_grpc(out, h.stream, end_stream);
        }
        if end_stream {
            self.end_stream(out, h.stream);
        }
    }

    /// The request path of a stream (from the paired client decoder on the response side).
    fn path_of(&self, stream: u32) -> Option<String> {
        if self.is_request() {
            self.streams.get(&stream).and_then(|s| s.path.clone())
        } else {
            self.shared().paths.get(&stream).cloned()
        }
    }

    /// Emits the complete gRPC messages buffered for `stream`; at the end of the stream,
    /// also what is left (as a truncated message).
    fn emit_grpc(&mut self, out: &mut Out, stream: u32, end_stream: bool) {
        let path = self.path_of(stream);
        let is_request = self.is_request();
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        if state.overflow {
            return;
        }
        let (mut n, err) = grpc::complete_prefix(&state.buf);
        if let Some(e) = err {
            out.root.push(
                Node::new("gRPC", 0..0, Value::None)
                    .derived()
                    .with_error(format!("{e}; stream {stream} is no longer reassembled")),
            );
            n = state.buf.len();
            state.overflow = true;
        } else if end_stream && n < state.buf.len() {
            out.root.push(
                Node::new("gRPC", 0..0, Value::None)
                    .derived()
                    .with_error(format!(
                        "stream {stream} ended inside a gRPC message ({} bytes left over)",
                        state.buf.len() - n
                    )),
            );
            n = state.buf.len();
        }
        if n == 0 {
            return;
        }
        let body: Vec<u8> = state.buf.drain(..n).collect();
        self.buffered = self.buffered.saturating_sub(n);
        let first = state.messages + 1;
        let opts = grpc::Options {
            path: path.as_deref(),
            is_request,
            encoding: state.encoding.as_deref(),
            first_index: first,
        };
        let decoded = grpc::decode_messages(&body, &opts, &self.ctx);
        let count = decoded.nodes.len();
        state.messages += count;
        state.emitted += n;
        let name = if count == 1 {
            format!("stream {stream} gRPC message {first}")
        } else {
            format!(
                "stream {stream} gRPC messages {first}-{}",
                first + count.saturating_sub(1)
            )
        };
        if let Some(t) = decoded.types.first() {
            let short = t.rsplit('.').next().unwrap_or(t);
            out.label = format!("{} {short}", out.label);
        }
        let mut tree = Node::group("gRPC", 0..body.len()).with_children(decoded.nodes);
        if let Some(p) = &path {
            tree.set_display(Some(p.clone()));
        }
        out.derived.push(DerivedBuffer {
            name,
            bytes: body,
            tree,
        });
        for mut d in decoded.derived {
            d.name = format!("stream {stream} {}", d.name);
            out.derived.push(d);
        }
    }

    /// The stream ended (END_STREAM) in this direction: emits a non-gRPC body and forgets
    /// the stream.
    fn end_stream(&mut self, out: &mut Out, stream: u32) {
        if !self.is_request() {
            self.shared().paths.remove(&stream);
        }
        let Some(state) = self.streams.remove(&stream) else {
            return;
        };
        self.buffered = self.buffered.saturating_sub(state.buf.len());
        if state.overflow || state.buf.is_empty() {
            return;
        }
        if self.grpc_body(&state) {
            // What a HEADERS with END_STREAM finds left over after gRPC DATA.
            out.root.push(
                Node::new("gRPC", 0..0, Value::None)
                    .derived()
                    .with_error(format!(
                        "stream {stream} ended inside a gRPC message ({} bytes left over)",
                        state.buf.len()
                    )),
            );
        }
        let tree = body_tree(&state.buf, state.content_type.as_deref());
        out.derived.push(DerivedBuffer {
            name: format!("stream {stream} body"),
            bytes: state.buf,
            tree,
        });
    }
}

/// A non-gRPC body: JSON when it parses, text for text types, else bytes.
fn body_tree(body: &[u8], content_type: Option<&str>) -> Node {
    let trimmed = body.trim_ascii_start();
    if matches!(trimmed.first(), Some(b'{' | b'[')) {
        let tree = json::tree(body, "body");
        if json::is_valid(&tree) {
            return tree;
        }
    }
    let texty = content_type.is_some_and(|c| {
        let c = c.to_ascii_lowercase();
        c.starts_with("text/") || c.contains("json") || c.contains("xml") || c.contains("form")
    });
    match std::str::from_utf8(body) {
        Ok(s) if texty => Node::new("body", 0..body.len(), Value::Text(s.into())),
        _ => Node::new("body", 0..body.len(), Value::Bytes(body.into())),
    }
}

fn hpack_error_text(e: &loona_hpack::decoder::DecoderError) -> String {
    use loona_hpack::decoder::{
        DecoderError as E, IntegerDecodingError as I, StringDecodingError as S,
    };
    match e {
        E::HeaderIndexOutOfBounds => "header table index out of range".into(),
        E::IntegerDecodingError(I::NotEnoughOctets)
        | E::StringDecodingError(S::NotEnoughOctets) => {
            "the block ends inside a header (truncated)".into()
        }
        E::IntegerDecodingError(I::TooManyOctets | I::ValueTooLarge) => "integer too large".into(),
        E::StringDecodingError(S::HuffmanDecoderError(h)) => format!("bad Huffman code ({h:?})"),
        E::InvalidMaxDynamicSize => {
            format!("dynamic table size update beyond the {MAX_HPACK_TABLE}-byte limit")
        }
        E::SizeUpdateAtEnd => "dynamic table size update at the end of the block".into(),
        other => format!("{other:?}"),
    }
}

fn error_code_text(code: u32) -> String {
    error_code_name(code).map_or_else(|| format!("0x{code:x}"), str::to_string)
}

fn error_code_node(code: u32, at: usize) -> Node {
    Node::new("error code", at..at + 4, Value::UInt(u64::from(code))).with_display(
        error_code_name(code).map_or_else(|| format!("unknown (0x{code:x})"), str::to_string),
    )
}

/// Adds an error when the stream id is zero for a stream frame, or not zero for a
/// connection frame.
fn check_stream(out: &mut Out, h: &FrameHeader, needs_stream: bool) {
    let wrong = if needs_stream {
        (h.stream == 0).then_some("this frame type needs a stream id other than 0")
    } else {
        (h.stream != 0).then_some("this frame type must be on stream 0")
    };
    if let Some(reason) = wrong
        && let Some(s) = out.root.find_mut(&["header", "stream"])
    {
        s.set_error(Some(reason.into()));
    }
}

/// Adds an error when a fixed-size frame has another length.
fn check_len(out: &mut Out, h: &FrameHeader, msg: &[u8], want: usize) {
    let have = msg.len().saturating_sub(FRAME_HEADER);
    if have != want {
        out.root.push(
            bytes_node("payload", msg, FRAME_HEADER..msg.len()).with_error(format!(
                "{} payload must be {want} bytes, not {have}",
                frame_type_name(h.kind).unwrap_or("frame")
            )),
        );
    }
}

fn bad(field: &str, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

fn uint_field(tree: &Node, path: &[&str], max: u64) -> Result<u64, EncodeError> {
    let name = path.join(".");
    let node = tree
        .find(path)
        .ok_or_else(|| EncodeError::Missing(name.clone()))?;
    let v = node
        .value
        .as_u64()
        .ok_or_else(|| bad(&name, "not an unsigned number"))?;
    if v > max {
        return Err(bad(&name, format!("{v} is larger than {max}")));
    }
    Ok(v)
}

fn bytes_field<'a>(tree: &'a Node, name: &str) -> Result<&'a [u8], EncodeError> {
    match &tree
        .child(name)
        .ok_or_else(|| EncodeError::Missing(name.into()))?
        .value
    {
        Value::Bytes(b) => Ok(b),
        Value::Text(s) => Ok(s.as_bytes()),
        _ => Err(bad(name, "not bytes")),
    }
}

fn reserved_bit(node: Option<&Node>) -> u32 {
    let set = node
        .and_then(|n| n.child("reserved"))
        .is_some_and(|r| r.value == Value::Bool(true));
    if set { 0x8000_0000 } else { 0 }
}

fn put_u31(out: &mut Vec<u8>, tree: &Node, name: &str) -> Result<(), EncodeError> {
    let v = uint_field(tree, &[name], 0x7fff_ffff)? as u32;
    out.extend_from_slice(&(v | reserved_bit(tree.child(name))).to_be_bytes());
    Ok(())
}

/// Rebuilds a frame (or the preface) from a tree as [`Http2Decoder`] made it, with the
/// length recomputed from the payload. HEADERS, PUSH_PROMISE and CONTINUATION are not
/// editable (their header blocks depend on the connection's HPACK state).
pub fn encode_frame(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    if tree.name == "h2 preface" {
        return Ok(PREFACE.to_vec());
    }
    let kind = uint_field(tree, &["header", "type"], 0xff)? as u8;
    let flags = uint_field(tree, &["header", "flags"], 0xff)? as u8;
    let stream = uint_field(tree, &["header", "stream"], 0x7fff_ffff)? as u32;
    let stream = stream | reserved_bit(tree.find(&["header", "stream"]));
    let mut payload = Vec::new();
    let padded = flags & FLAG_PADDED != 0;
    match kind {
        HEADERS | PUSH_PROMISE | CONTINUATION => {
            return Err(EncodeError::NotEditable("HTTP/2 header-block"));
        }
        DATA => {
            let padding = if padded {
                bytes_field(tree, "padding")?
            } else {
                &[]
            };
            if padded {
                let n = u8::try_from(padding.len())
                    .map_err(|_| bad("padding", "longer than 255 bytes"))?;
                payload.push(n);
            }
            payload.extend_from_slice(bytes_field(tree, "data")?);
            payload.extend_from_slice(padding);
        }
        SETTINGS => {
            for c in &tree.children {
                if c.name == "header" {
                    continue;
                }
                if c.name == "payload" || c.name == "trailing bytes" {
                    return Err(bad(
                        &c.name,
                        "malformed SETTINGS payloads cannot be encoded",
                    ));
                }
                let id = c
                    .tag
                    .and_then(|t| u16::try_from(t).ok())
                    .ok_or_else(|| bad(&c.name, "no 16-bit setting identifier (tag)"))?;
                let v = c
                    .value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad(&c.name, "not a 32-bit unsigned value"))?;
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&v.to_be_bytes());
            }
        }
        PING => {
            let data = bytes_field(tree, "opaque data")?;
            if data.len() != 8 {
                return Err(bad("opaque data", "PING data must be 8 bytes"));
            }
            payload.extend_from_slice(data);
        }
        RST_STREAM => {
            let code = uint_field(tree, &["error code"], u64::from(u32::MAX))? as u32;
            payload.extend_from_slice(&code.to_be_bytes());
        }
        GOAWAY => {
            put_u31(&mut payload, tree, "last stream")?;
            let code = uint_field(tree, &["error code"], u64::from(u32::MAX))? as u32;
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(bytes_field(tree, "debug data")?);
        }
        WINDOW_UPDATE => put_u31(&mut payload, tree, "increment")?,
        PRIORITY => {
            let dep = uint_field(tree, &["stream dependency"], 0x7fff_ffff)? as u32;
            let exclusive = tree
                .child("exclusive")
                .is_some_and(|e| e.value == Value::Bool(true));
            let dep = dep | if exclusive { 0x8000_0000 } else { 0 };
            payload.extend_from_slice(&dep.to_be_bytes());
            payload.push(uint_field(tree, &["weight"], 0xff)? as u8);
        }
        _ => payload.extend_from_slice(bytes_field(tree, "payload")?),
    }
    if payload.len() > MAX_FRAME_SIZE {
        return Err(bad("length", "payload longer than 2^24 - 1 bytes"));
    }
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}
