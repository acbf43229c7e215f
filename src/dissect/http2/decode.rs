//! Decoding one frame into its tree, per frame type; header blocks and bodies are decoded in
//! [`super::headers`] and [`super::body`].

use super::*;

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

    pub(super) fn is_request(&self) -> bool {
        self.dir == Direction::ClientToServer
    }

    pub(super) fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn u31_node(name: &'static str, b: &[u8], at: usize) -> Option<Node> {
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

pub(super) fn bytes_node(name: &'static str, b: &[u8], range: std::ops::Range<usize>) -> Node {
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
pub(super) fn unpad(
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

pub(super) fn push_padding(
    out: &mut Out,
    h: &FrameHeader,
    msg: &[u8],
    pad: std::ops::Range<usize>,
) {
    if h.has(FLAG_PADDED) {
        out.root.push(bytes_node("padding", msg, pad));
    }
}

pub(super) fn priority_nodes(msg: &[u8], at: usize) -> Option<Node> {
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

impl Http2Decoder {
    pub(super) fn decode_frame(&mut self, msg: &[u8]) -> Message {
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
pub(super) fn check_stream(out: &mut Out, h: &FrameHeader, needs_stream: bool) {
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
