//! Header blocks: HPACK decoding with the direction's table, CONTINUATION collection, and
//! what the headers tell a stream.

use super::decode::{bytes_node, check_stream, priority_nodes, push_padding, u31_node, unpad};
use super::*;

impl Http2Decoder {
    pub(super) fn poison(&mut self, reason: String) {
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

    pub(super) fn headers(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
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

    pub(super) fn continuation(&mut self, out: &mut Out, h: &FrameHeader, msg: &[u8]) {
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
