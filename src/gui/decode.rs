//! Decoding for the panes, kept off the frame: a worker thread labels every packet of the
//! shown capture (and keeps up with a live store as it grows), and the selected packet's
//! messages are decoded in full, with trees, on demand and cached.
//!
//! The worker keeps only a short summary per packet (label, message count, error); a tree per
//! message for millions of packets would cost far more memory than the capture itself.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;

use crate::capture::{CaptureStore, ConnectionId, PacketId, StoreData};
use crate::dissect::session::LiveDecode;
use crate::dissect::stream::Decoded;
use crate::dissect::{Context, Node, Registry};

/// Packets decoded per hold of the store's read lock: small enough that a tap appending
/// live traffic never waits long, large enough that the lock is not taken per packet.
const CHUNK: usize = 4096;
/// How often a caught-up worker looks for new packets in a live store.
const IDLE_POLL: Duration = Duration::from_millis(40);
/// Packets either side of the selected one decoded to show its tree. Whole connections can
/// hold millions of packets; stream protocols resynchronise within a few messages.
const TREE_WINDOW: usize = 2000;

/// What the table shows of one packet's decode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketSummary {
    /// Label of the first message that starts in the packet.
    pub label: Option<Arc<str>>,
    /// Further messages starting in the same packet.
    pub more: u32,
    /// Some message starting here has an error node.
    pub error: bool,
}

impl PacketSummary {
    /// `acct NuLogin`, or `acct NuLogin +2` when two more messages start in the packet.
    pub fn text(&self) -> Option<String> {
        let label = self.label.as_deref()?;
        Some(if self.more > 0 {
            format!("{label} +{}", self.more)
        } else {
            label.to_owned()
        })
    }
}

/// The worker's results, read by the panes once per frame.
#[derive(Default)]
pub struct Summaries {
    packets: Vec<Option<PacketSummary>>,
    protocols: HashMap<ConnectionId, &'static str>,
    /// Packets of the store the worker has gone through.
    pub done: usize,
}

impl Summaries {
    pub fn packet(&self, id: PacketId) -> Option<&PacketSummary> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.packets.get(i))
            .and_then(Option::as_ref)
    }

    /// The dissector chosen for a connection, once its first packet was decoded.
    pub fn protocol(&self, conn: ConnectionId) -> Option<&'static str> {
        self.protocols.get(&conn).copied()
    }
}

/// The background labeller of one store. Dropping it stops the thread.
pub struct Labeller {
    store: Arc<CaptureStore>,
    summaries: Arc<RwLock<Summaries>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Labeller {
    /// Starts labelling `store`; `wake` is called whenever new labels are ready.
    /// `live`: the store keeps growing (the engine's), so a connection ends only when it
    /// closes; else it ends with the file.
    pub fn start(
        store: Arc<CaptureStore>,
        context: Arc<Context>,
        live: bool,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let summaries = Arc::new(RwLock::new(Summaries::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (store, summaries, stop) = (store.clone(), summaries.clone(), stop.clone());
            std::thread::Builder::new()
                .name("gamewire-gui-decode".into())
                .spawn(move || run(&store, &context, live, &summaries, &stop, &wake))
                .map_err(|e| tracing::error!("cannot start the decoding thread: {e}"))
                .ok()
        };
        Labeller {
            store,
            summaries,
            stop,
            thread,
        }
    }

    pub fn is_for(&self, store: &Arc<CaptureStore>) -> bool {
        Arc::ptr_eq(&self.store, store)
    }

    pub fn summaries(&self) -> parking_lot::RwLockReadGuard<'_, Summaries> {
        self.summaries.read()
    }

    /// Whether packets of the store are still waiting for their labels.
    pub fn is_behind(&self) -> bool {
        self.thread.is_some() && self.summaries.read().done < self.store.read().packet_count()
    }
}

impl Drop for Labeller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    store: &CaptureStore,
    context: &Arc<Context>,
    live: bool,
    summaries: &RwLock<Summaries>,
    stop: &AtomicBool,
    wake: &(impl Fn() + Send),
) {
    let mut decode = LiveDecode::new(Registry::shared(), context.clone(), None);
    let mut labels: HashMap<String, Arc<str>> = HashMap::new();
    let mut next = 0usize;
    let mut out: Vec<Decoded> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (end, finished) = {
            let data = store.read();
            let end = data.packet_count().min(next + CHUNK);
            for index in next..end {
                decode.packet(&data, PacketId(index as u64), &mut out);
            }
            // A closed connection's last messages run until the close; a file's
            // connections end where the file does, and it gains no packets.
            let file_done = end == data.packet_count() && !live;
            let mut finished = false;
            for conn in decode.unfinished() {
                let closed = data.connection(conn).is_some_and(|c| c.closed.is_some());
                if closed || file_done {
                    decode.finish(&data, conn, closed, &mut out);
                    finished = true;
                }
            }
            (end, finished)
        };
        let found: Vec<(PacketId, PacketSummary)> = out
            .drain(..)
            .map(|d| {
                let label = match labels.get(&d.message.label) {
                    Some(l) => l.clone(),
                    None => {
                        let l: Arc<str> = Arc::from(d.message.label.as_str());
                        labels.insert(d.message.label.clone(), l.clone());
                        l
                    }
                };
                let summary = PacketSummary {
                    label: Some(label),
                    more: 0,
                    error: d.message.is_error(),
                };
                (d.packet, summary)
            })
            .collect();
        let progressed = end > next || finished || !found.is_empty();
        next = end;
        if progressed {
            let mut s = summaries.write();
            merge(&mut s, found, &mut decode);
            s.done = next;
            drop(s);
            wake();
        } else {
            std::thread::sleep(IDLE_POLL);
        }
    }
}

fn merge(s: &mut Summaries, found: Vec<(PacketId, PacketSummary)>, decode: &mut LiveDecode) {
    for (conn, protocol) in decode.take_chosen() {
        if let Some(p) = protocol {
            s.protocols.insert(conn, p);
        }
    }
    for (id, summary) in found {
        let Ok(i) = usize::try_from(id.0) else {
            continue;
        };
        if s.packets.len() <= i {
            s.packets.resize(i + 1, None);
        }
        match &mut s.packets[i] {
            Some(existing) => {
                existing.more += 1;
                existing.error |= summary.error;
            }
            slot @ None => *slot = Some(summary),
        }
    }
}

/// Which buffer of a message a tree node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The message's bytes as on the wire.
    Wire,
    /// One of the message's derived buffers (a reassembled message, a decompressed body).
    Derived(usize),
}

/// A node of the selected packet's decode: message index, buffer, and child-index path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub message: usize,
    pub buffer: Buffer,
    pub path: Vec<usize>,
}

/// The selected packet's messages with their trees.
pub struct PacketDecode {
    pub packet: PacketId,
    pub protocol: Option<&'static str>,
    /// Messages that start in the packet; each knows its offset in it.
    pub messages: Vec<Decoded>,
    /// A message that began in an earlier packet and continues into this one.
    pub continued: Option<Decoded>,
    /// Packets of the connection when decoded: a live connection that grew is decoded again.
    pub connection_packets: usize,
}

impl PacketDecode {
    /// Decodes the messages of `packet`, from a window of its connection around it.
    /// `chosen`: the dissector the labeller chose for the packet's connection, if it has.
    pub fn of(
        registry: &Registry,
        context: &Context,
        data: &StoreData,
        packet: PacketId,
        chosen: Option<&'static str>,
    ) -> Option<PacketDecode> {
        let p = data.packet(packet)?;
        let around = crate::dissect::session::decode_around(
            registry,
            context,
            data,
            packet,
            chosen,
            TREE_WINDOW,
        )?;
        let mut decode = PacketDecode {
            packet,
            protocol: around.protocol,
            messages: Vec::new(),
            continued: None,
            connection_packets: around.connection_packets,
        };
        let window = &around.window;
        let position = |id: PacketId| window.iter().position(|&w| w == id);
        for d in around.messages {
            if d.packet == packet {
                decode.messages.push(d);
            } else if d.direction == p.direction && position(d.packet) < position(packet) {
                decode.continued = Some(d);
            }
        }
        // Only the message right before this packet can continue into it, and only if this
        // packet holds no message start of its own before its end.
        if let Some(c) = &decode.continued {
            let reaches = data
                .packet(c.packet)
                .is_some_and(|start| c.offset + c.bytes.len() > start.data.len());
            if !reaches || decode.messages.first().is_some_and(|m| m.offset == 0) {
                decode.continued = None;
            }
        }
        Some(decode)
    }

    /// The message a reference points into, and the tree and bytes of its buffer.
    pub fn buffer(&self, node: &NodeRef) -> Option<(&Decoded, &Node, &[u8])> {
        let m = self.messages.get(node.message)?;
        match node.buffer {
            Buffer::Wire => Some((m, &m.message.tree, &m.bytes)),
            Buffer::Derived(i) => {
                let b = m.message.derived.get(i)?;
                Some((m, &b.tree, &b.bytes))
            }
        }
    }

    pub fn node(&self, node: &NodeRef) -> Option<&Node> {
        let (_, tree, _) = self.buffer(node)?;
        node.path.iter().try_fold(tree, |n, &i| n.children.get(i))
    }

    /// The bytes of the packet a node covers, or for a derived buffer its bytes in that
    /// buffer. Empty for nodes not on the wire.
    pub fn highlight(&self, node: &NodeRef) -> Option<Range<usize>> {
        let n = self.node(node)?;
        if n.derived && node.buffer == Buffer::Wire {
            return None;
        }
        let (m, _, _) = self.buffer(node)?;
        Some(match node.buffer {
            Buffer::Wire => m.offset + n.range.start..m.offset + n.range.end,
            Buffer::Derived(_) => n.range.clone(),
        })
    }

    /// The deepest node on the wire covering byte `offset` of the packet.
    pub fn node_at(&self, offset: usize) -> Option<NodeRef> {
        self.messages.iter().enumerate().find_map(|(i, m)| {
            let inner = offset.checked_sub(m.offset)?;
            let path = m.message.tree.deepest_at(inner)?;
            Some(NodeRef {
                message: i,
                buffer: Buffer::Wire,
                path,
            })
        })
    }

    /// The deepest node of a derived buffer covering byte `offset` of it.
    pub fn node_at_in(&self, message: usize, buffer: usize, offset: usize) -> Option<NodeRef> {
        let b = self.messages.get(message)?.message.derived.get(buffer)?;
        Some(NodeRef {
            message,
            buffer: Buffer::Derived(buffer),
            path: b.tree.deepest_at(offset)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Connection, Direction, NewPacket, Timestamp, Transport};
    use crate::dissect::fesl::{Tag, write_packet};

    fn fesl_store(chunks: &[Vec<u8>]) -> Arc<CaptureStore> {
        let store = Arc::new(CaptureStore::new());
        let mut c = Connection::new(
            "127.0.0.1:50000".parse().expect("addr"),
            "127.0.0.1:18800".parse().expect("addr"),
            Transport::Tcp,
            Timestamp(0),
        );
        c.protocol = Some("fesl".into());
        let c = store.add_connection(c);
        for (i, chunk) in chunks.iter().enumerate() {
            store
                .append(NewPacket::new(
                    c,
                    Direction::ClientToServer,
                    Timestamp(i as i64),
                    chunk.clone(),
                ))
                .expect("append");
        }
        store
    }

    fn login() -> Vec<u8> {
        write_packet(
            b"acct",
            Tag::SingleClient,
            1,
            &[("TXN", "NuLogin"), ("nuid", "a@b.c")],
            true,
        )
    }

    fn wait(l: &Labeller) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while l.is_behind() {
            assert!(std::time::Instant::now() < deadline, "labeller stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_worker_labels_packets_and_follows_a_growing_store() {
        let both = [login(), login()].concat();
        let store = fesl_store(&[both]);
        let l = Labeller::start(store.clone(), Arc::new(Context::default()), true, || {});
        wait(&l);
        let s = l
            .summaries()
            .packet(PacketId(0))
            .cloned()
            .expect("labelled");
        assert_eq!(s.text().as_deref(), Some("acct NuLogin +1"));
        assert_eq!(l.summaries().protocol(ConnectionId(0)), Some("fesl"));

        // A message split over two packets is labelled on the packet it starts in.
        let m = login();
        for part in [&m[..5], &m[5..]] {
            store
                .append(NewPacket::new(
                    ConnectionId(0),
                    Direction::ClientToServer,
                    Timestamp(9),
                    part.to_vec(),
                ))
                .expect("append");
        }
        wait(&l);
        let s = l.summaries();
        assert_eq!(
            s.packet(PacketId(1)).and_then(PacketSummary::text),
            Some("acct NuLogin".into())
        );
        assert!(s.packet(PacketId(2)).is_none());
    }

    #[test]
    fn a_tree_node_maps_to_its_bytes_and_a_byte_back_to_the_node() {
        let m = login();
        let store = fesl_store(&[[b"".as_slice(), &m, &m].concat()]);
        let data = store.read();
        let d = PacketDecode::of(
            &Registry::shared(),
            &Context::default(),
            &data,
            PacketId(0),
            None,
        )
        .expect("decoded");
        assert_eq!(d.messages.len(), 2);
        let second = d.node_at(m.len() + 13).expect("a node");
        assert_eq!(second.message, 1);
        let range = d.highlight(&second).expect("on the wire");
        assert!(range.start >= m.len() && range.contains(&(m.len() + 13)));
    }
}
