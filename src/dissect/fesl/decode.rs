//! One direction's decoder: frames packets, collects fragments, and builds the tree.

use super::tree::{Facts, error_node, header_nodes, label_of, payload_tree, txn_of};
use super::*;

/// One direction's decoder: frames packets and collects fragments.
#[derive(Default)]
pub struct FeslDecoder {
    fragments: Reassembler,
    /// The payload builder's stack, kept between messages to save an allocation.
    scratch: Vec<Node>,
}

impl FeslDecoder {
    pub fn new() -> Self {
        FeslDecoder::default()
    }

    fn fragment(
        &mut self,
        command: [u8; 4],
        number: u32,
        facts: &Facts,
        root: &mut Node,
        derived: &mut Vec<DerivedBuffer>,
    ) -> String {
        let cmd = std::str::from_utf8(&command).unwrap_or("????");
        let set_error =
            |root: &mut Node, key: &str, e: String| match root.find_mut(&["payload", key]) {
                Some(n) => n.set_error(Some(e)),
                None => {
                    if let Some(p) = root.child_mut("payload") {
                        p.set_error(Some(e));
                    }
                }
            };
        let (Some(data), Some(size)) = (&facts.data, &facts.size) else {
            set_error(root, "data", "fragment without data or size".into());
            return format!("{cmd} fragment");
        };
        let Ok(size) = size.parse::<usize>() else {
            set_error(root, "size", "fragment size is not a number".into());
            return format!("{cmd} fragment");
        };
        let progress = self.fragments.push(command, number, data, size);
        let mut info = Node::group("fragment", 0..0).derived();
        let (index, total, txn) = match progress {
            Err(e) => {
                let key = if e.to_string().contains("differs") || size > MAX_REASSEMBLED {
                    "size"
                } else {
                    "data"
                };
                set_error(root, key, e.to_string());
                return format!("{cmd} fragment");
            }
            Ok(Progress::Partial {
                index,
                total,
                collected,
            }) => {
                info.push(Node::new("collected", 0..0, Value::UInt(collected as u64)).derived());
                (index, total, self.fragments.peek_txn(command, number))
            }
            Ok(Progress::Done { index, text }) => {
                let mut rfacts = Facts::default();
                let mut tree = payload_tree(&text, 0, false, &mut rfacts, &mut self.scratch);
                if let Some(ds) = &facts.decoded_size
                    && ds.parse::<usize>().ok() != Some(text.len())
                {
                    tree.set_error(Some(format!(
                        "decodedSize {ds} but {} bytes were decoded",
                        text.len()
                    )));
                }
                if let Some(e) = error_node(&rfacts) {
                    tree.children.push(e);
                }
                let label = label_of(cmd, txn_of(&tree), &rfacts, cmd == "ferr");
                derived.push(DerivedBuffer {
                    name: "reassembled".into(),
                    bytes: text,
                    tree,
                });
                info.push(Node::new("index", 0..0, Value::UInt(u64::from(index))).derived());
                info.push(Node::new("of", 0..0, Value::UInt(u64::from(index))).derived());
                root.push(info);
                return format!("{label} fragment {index}/{index}");
            }
        };
        info.children.insert(
            0,
            Node::new("index", 0..0, Value::UInt(u64::from(index))).derived(),
        );
        if let Some(t) = total {
            info.children.insert(
                1,
                Node::new("of", 0..0, Value::UInt(u64::from(t))).derived(),
            );
        }
        root.push(info);
        let mut label = String::from(cmd);
        if let Some(t) = txn {
            label.push(' ');
            label.push_str(&t);
        }
        label.push_str(" fragment ");
        label.push_str(&index.to_string());
        if let Some(t) = total {
            label.push('/');
            label.push_str(&t.to_string());
        }
        label
    }

    /// Decodes one packet (what [`frame`] delimited).
    pub fn decode_packet(&mut self, msg: &[u8]) -> Message {
        let mut root = Node::group("fesl", 0..msg.len());
        if msg.len() < HEADER_LEN {
            root.push(
                Node::new("truncated", 0..msg.len(), Value::Bytes(msg.into()))
                    .with_error(FeslError::Short.to_string()),
            );
            return Message::new("fesl truncated", root);
        }
        let header = header_nodes(msg);
        let command = [msg[0], msg[1], msg[2], msg[3]];
        let cmd = String::from_utf8_lossy(&command);
        let tag = Tag::from_u8(msg[4]);
        let number = u32::from_be_bytes([0, msg[5], msg[6], msg[7]]);
        let mut facts = Facts::default();
        let payload = payload_tree(
            &msg[HEADER_LEN..],
            HEADER_LEN,
            true,
            &mut facts,
            &mut self.scratch,
        );
        root.children.reserve_exact(3);
        root.push(header);
        root.push(payload);
        let mut derived = Vec::new();
        let label = if tag.is_some_and(Tag::is_fragment) {
            self.fragment(command, number, &facts, &mut root, &mut derived)
        } else {
            if let Some(e) = error_node(&facts) {
                root.push(e);
            }
            let txn = root.child("payload").and_then(txn_of);
            label_of(&cmd, txn, &facts, cmd == "ferr")
        };
        Message {
            label,
            tree: root,
            derived,
        }
    }
}

impl StreamDecoder for FeslDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        frame(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        self.decode_packet(msg)
    }
}
