//! Stream bodies: DATA reassembly per stream, gRPC messages and other bodies as derived
//! buffers.

use super::decode::{bytes_node, check_stream, push_padding, unpad};
use super::*;

fn is_grpc_type(ct: &str) -> bool {
    ct.trim()
        .to_ascii_lowercase()
        .starts_with("application/grpc")
}

impl Http2Decoder {
    /// The state of `stream`, created when new; `None` (with an error node) past the cap.
    pub(super) fn stream_state(&mut self, out: &mut Out, stream: u32) -> Option<&mut StreamState> {
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

    pub(super) fn data(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
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
    pub(super) fn end_stream(&mut self, out: &mut Out, stream: u32) {
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
