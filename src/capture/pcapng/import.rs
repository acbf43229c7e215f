//! Import: reads a file's blocks in order and rebuilds connections and packets from their
//! frames, exactly from gamewire's own records and best-effort from other tools' traffic.
//!
//! The file stays whole (about 800 lines): it is one importer state machine, and every
//! block handler updates the same flow table and pending claims, so splitting it by handler
//! would spread one set of invariants over several files.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pcap_file::Endianness;
use pcap_file::pcapng::PcapNgParser;

use super::blocks::{
    BLOCK_EPB, BLOCK_IDB, BLOCK_PB, BLOCK_SHB, BLOCK_SPB, Epb, Framing, Interface, block_len,
    check_version, parse_epb, read_u32,
};
use super::records::{Comment, ConnRecord, PacketRecord, Record, classify_comment};
use super::wire::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Wire, decode_frame};
use super::{Imported, PcapngError, SHB_MAGIC};
use crate::capture::model::{
    Connection, ConnectionId, Direction, PacketFlags, Timestamp, Transport, UNKNOWN_ADDR,
};
use crate::capture::store::StoreData;

pub(super) fn import_named(
    bytes: &[u8],
    path: &Path,
    skip_bad: bool,
) -> Result<Imported, PcapngError> {
    let mut importer = Importer::new(path, skip_bad);
    read_blocks(bytes, &mut importer)?;
    importer.finish()
}

fn read_blocks<'a>(bytes: &'a [u8], imp: &mut Importer<'a>) -> Result<(), PcapngError> {
    if bytes.is_empty() {
        return Err(imp.error(0, "empty file, not a pcapng capture".into()));
    }
    if !bytes.starts_with(&SHB_MAGIC) {
        return Err(imp.error(
            0,
            format!(
                "not a pcapng file (it starts with {})",
                crate::capture::model::describe_start(bytes)
            ),
        ));
    }
    // Nothing precedes the first section header, so damage there is always an error.
    let first_len = match block_len(bytes, Endianness::Big) {
        Ok(len) => len,
        Err(Framing::Cut(reason) | Framing::Corrupt(reason)) => return Err(imp.error(0, reason)),
    };
    let (_, mut parser) = PcapNgParser::new(&bytes[..first_len])
        .map_err(|e| imp.error(0, format!("bad section header block: {e}")))?;
    check_version(&parser).map_err(|reason| imp.error(0, reason))?;
    let mut rest = &bytes[first_len..];
    while !rest.is_empty() {
        let offset = (bytes.len() - rest.len()) as u64;
        let len = match block_len(rest, parser.section().endianness) {
            Ok(len) => len,
            Err(framing) => return imp.broken_framing(offset, framing),
        };
        let (block, after) = rest.split_at(len);
        if !imp.on_block(offset, block, &mut parser)? {
            return Ok(());
        }
        rest = after;
    }
    Ok(())
}

// -- assembly ---------------------------------------------------------------------------------

/// A conversation, independent of direction: the two endpoints in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct FlowKey {
    udp: bool,
    low: SocketAddr,
    high: SocketAddr,
}

impl FlowKey {
    fn new(udp: bool, a: SocketAddr, b: SocketAddr) -> Self {
        FlowKey {
            udp,
            low: a.min(b),
            high: a.max(b),
        }
    }
}

/// One direction of a conversation: the flow and its sender.
type FlowDir = (FlowKey, SocketAddr);

#[derive(Clone, Copy)]
struct Origin {
    offset: u64,
    ts: Timestamp,
}

struct Slot {
    conn: Connection,
    /// The id in the connection record, for gamewire files.
    recorded: Option<u64>,
    /// A foreign TCP connection that saw FIN or RST: a later SYN starts a new connection.
    ended: bool,
}

/// A record whose parts are still arriving.
struct Assembly {
    next: u32,
    count: u32,
    text: String,
    origin: Origin,
    flow: Option<FlowDir>,
}

/// The bytes of one gamewire packet, collected from the frames of its direction.
struct Claim<'a> {
    key: String,
    record: Option<PacketRecord>,
    data: Cow<'a, [u8]>,
    origin: Origin,
}

impl<'a> Claim<'a> {
    fn push(&mut self, payload: &'a [u8]) {
        if payload.is_empty() {
            return;
        }
        if self.data.is_empty() {
            self.data = Cow::Borrowed(payload);
        } else {
            self.data.to_mut().extend_from_slice(payload);
        }
    }
}

struct Pending<'a> {
    /// The recorded packet id: a gamewire file's packets get their ids back in this order.
    recorded: Option<u64>,
    slot: usize,
    direction: Direction,
    ts: Timestamp,
    data: Cow<'a, [u8]>,
    label: Option<String>,
    flags: PacketFlags,
    original: Option<Vec<u8>>,
    offset: u64,
}

struct Importer<'a> {
    path: PathBuf,
    skip_bad: bool,
    problems: Vec<String>,
    /// Frames skipped for a reason that repeats: how many, and the first one's offset.
    skipped: BTreeMap<&'static str, (u64, u64)>,
    cut_short: bool,
    /// Interfaces of the current section; `None` for one whose description was unreadable.
    interfaces: Vec<Option<Interface>>,
    slots: Vec<Slot>,
    recorded_slots: HashMap<u64, usize>,
    flows: HashMap<FlowKey, usize>,
    assemblies: HashMap<String, Assembly>,
    claims: HashMap<FlowDir, Claim<'a>>,
    claim_keys: HashMap<String, FlowDir>,
    packets: Vec<Pending<'a>>,
}

impl<'a> Importer<'a> {
    fn new(path: &Path, skip_bad: bool) -> Self {
        Importer {
            path: path.to_owned(),
            skip_bad,
            problems: Vec::new(),
            skipped: BTreeMap::new(),
            cut_short: false,
            interfaces: Vec::new(),
            slots: Vec::new(),
            recorded_slots: HashMap::new(),
            flows: HashMap::new(),
            assemblies: HashMap::new(),
            claims: HashMap::new(),
            claim_keys: HashMap::new(),
            packets: Vec::new(),
        }
    }

    fn error(&self, offset: u64, reason: String) -> PcapngError {
        PcapngError::Malformed {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Damage at `offset`: an error, or with `skip_bad` a problem line and carry on.
    fn damaged(&mut self, offset: u64, reason: String) -> Result<(), PcapngError> {
        if self.skip_bad {
            self.problems.push(format!("offset {offset}: {reason}"));
            Ok(())
        } else {
            Err(self.error(offset, reason))
        }
    }

    fn skip_frame(&mut self, offset: u64, reason: &'static str) {
        let entry = self.skipped.entry(reason).or_insert((0, offset));
        entry.0 += 1;
    }

    fn broken_framing(&mut self, offset: u64, framing: Framing) -> Result<(), PcapngError> {
        let kept = self.packets.len();
        match framing {
            Framing::Cut(reason) => {
                self.cut_short = true;
                self.problems.push(format!(
                    "offset {offset}: {reason}: the file was cut short; kept the {kept} packets before it"
                ));
                Ok(())
            }
            Framing::Corrupt(reason) => self.damaged(
                offset,
                format!("{reason}; stopped reading there, kept the {kept} packets before it"),
            ),
        }
    }

    /// Handles one block with sound lengths; false when reading must stop.
    fn on_block(
        &mut self,
        offset: u64,
        block: &'a [u8],
        parser: &mut PcapNgParser,
    ) -> Result<bool, PcapngError> {
        let endianness = parser.section().endianness;
        let kind = read_u32(block, 0, endianness).unwrap_or(0);
        let body = block.get(8..block.len() - 4).unwrap_or(&[]);
        match kind {
            BLOCK_SHB => {
                if let Err(e) = parser.next_raw_block(block) {
                    self.damaged(offset, format!("bad section header block: {e}"))?;
                    return Ok(false);
                }
                self.interfaces.clear();
                if let Err(reason) = check_version(parser) {
                    self.damaged(offset, reason)?;
                    return Ok(false);
                }
            }
            BLOCK_IDB => match Interface::parse(body, endianness) {
                Ok(interface) => self.interfaces.push(Some(interface)),
                Err(reason) => {
                    self.interfaces.push(None);
                    self.damaged(offset, format!("bad interface description block: {reason}"))?;
                }
            },
            BLOCK_EPB => match parse_epb(body, endianness) {
                Ok(epb) => self.on_epb(offset, epb)?,
                Err(reason) => self.damaged(offset, reason)?,
            },
            BLOCK_SPB | BLOCK_PB => {
                self.skip_frame(offset, "simple or obsolete packet blocks (not supported)");
            }
            // Name resolution, statistics, secrets, custom blocks: nothing to import.
            _ => {}
        }
        Ok(true)
    }

    fn on_epb(&mut self, offset: u64, epb: Epb<'a>) -> Result<(), PcapngError> {
        let interface = match self.interfaces.get(epb.interface as usize) {
            Some(Some(i)) => i,
            Some(None) => {
                self.skip_frame(offset, "packets of an unreadable interface description");
                return Ok(());
            }
            None => {
                return self.damaged(
                    offset,
                    format!(
                        "packet of interface {}, which no interface description block defines",
                        epb.interface
                    ),
                );
            }
        };
        let origin = Origin {
            offset,
            ts: interface.timestamp(epb.raw_ts),
        };
        let (wire, cut) = decode_frame(interface.linktype, epb.data);
        if cut {
            self.skip_frame(
                offset,
                "frames cut short by the capture's snapshot length (kept what was captured)",
            );
        }
        self.on_frame(origin, wire, &epb.comments)
    }

    fn on_frame(
        &mut self,
        origin: Origin,
        wire: Wire<'a>,
        comments: &[&str],
    ) -> Result<(), PcapngError> {
        let flow = match &wire {
            Wire::Tcp { src, dst, .. } => Some((FlowKey::new(false, *src, *dst), *src, *dst)),
            Wire::Udp { src, dst, .. } => Some((FlowKey::new(true, *src, *dst), *src, *dst)),
            Wire::Note => None,
            Wire::Skip(reason) => {
                self.skip_frame(origin.offset, reason);
                None
            }
        };
        let flow_dir = flow.map(|(key, src, _)| (key, src));
        let mut ours = false;
        for comment in comments {
            ours |= self.on_comment(origin, flow_dir, comment)?;
        }
        match wire {
            Wire::Tcp {
                src,
                dst,
                flags,
                payload,
            } => self.on_payload(origin, (src, dst), Some(flags), payload, ours),
            Wire::Udp { src, dst, payload } => {
                self.on_payload(origin, (src, dst), None, payload, ours)
            }
            Wire::Note | Wire::Skip(_) => Ok(()),
        }
    }

    /// Returns whether the comment is one of ours.
    fn on_comment(
        &mut self,
        origin: Origin,
        flow: Option<FlowDir>,
        comment: &str,
    ) -> Result<bool, PcapngError> {
        match classify_comment(comment) {
            Comment::Foreign => return Ok(false),
            Comment::Marker => {}
            Comment::BadPart => {
                self.damaged(origin.offset, "unreadable gamewire comment header".into())?;
            }
            Comment::Whole(json) => match serde_json::from_str::<Record>(json) {
                Ok(record) => self.on_record(record, origin, flow, true)?,
                Err(e) => self.damaged(origin.offset, format!("bad gamewire record: {e}"))?,
            },
            Comment::Part {
                key,
                index,
                count,
                text,
            } => self.on_part(origin, flow, key, (index, count), text)?,
        }
        Ok(true)
    }

    fn on_part(
        &mut self,
        origin: Origin,
        flow: Option<FlowDir>,
        key: &str,
        (index, count): (u32, u32),
        text: &str,
    ) -> Result<(), PcapngError> {
        if index == 1 {
            if self.assemblies.remove(key).is_some() {
                self.damaged(
                    origin.offset,
                    format!("gamewire record {key} starts again before it was complete"),
                )?;
            }
            if key.starts_with('p')
                && let Some(flow) = flow
            {
                self.open_claim(flow, key.to_owned(), origin, None)?;
            }
            self.assemblies.insert(
                key.to_owned(),
                Assembly {
                    next: 1,
                    count,
                    text: String::new(),
                    origin,
                    flow,
                },
            );
        }
        let Some(assembly) = self.assemblies.get_mut(key) else {
            return self.damaged(
                origin.offset,
                format!("part {index} of {count} of gamewire record {key} without its beginning"),
            );
        };
        if assembly.next != index || assembly.count != count {
            let expected = (assembly.next, assembly.count);
            self.assemblies.remove(key);
            return self.damaged(
                origin.offset,
                format!(
                    "part {index} of {count} of gamewire record {key} where part {} of {} was due",
                    expected.0, expected.1
                ),
            );
        }
        assembly.text.push_str(text);
        assembly.next += 1;
        if index < count {
            return Ok(());
        }
        let Some(done) = self.assemblies.remove(key) else {
            return Ok(());
        };
        match serde_json::from_str::<Record>(&done.text) {
            Ok(record) => self.on_record(record, done.origin, done.flow, false),
            Err(e) => self.damaged(
                done.origin.offset,
                format!("bad gamewire record {key}: {e}"),
            ),
        }
    }

    /// A complete record. `whole` when it came in one comment on the current frame, which is
    /// then the first frame of its packet.
    fn on_record(
        &mut self,
        record: Record,
        origin: Origin,
        flow: Option<FlowDir>,
        whole: bool,
    ) -> Result<(), PcapngError> {
        match record {
            Record::Connection(r) => self.on_connection_record(r, origin, flow.map(|f| f.0)),
            Record::Packet(r) => {
                let key = format!("p{}", r.id);
                if whole {
                    return match flow {
                        Some(flow) => self.open_claim(flow, key, origin, Some(r)),
                        None => self.finish_packet(r, Cow::Borrowed(&[]), origin, None),
                    };
                }
                match self.claim_keys.get(&key).copied() {
                    Some(flow) => {
                        if let Some(claim) = self.claims.get_mut(&flow) {
                            claim.record = Some(r);
                        }
                        self.try_finish(flow)
                    }
                    None => self.finish_packet(r, Cow::Borrowed(&[]), origin, None),
                }
            }
        }
    }

    fn on_connection_record(
        &mut self,
        r: ConnRecord,
        origin: Origin,
        flow: Option<FlowKey>,
    ) -> Result<(), PcapngError> {
        if self.recorded_slots.contains_key(&r.id) {
            return self.damaged(
                origin.offset,
                format!("a second record of connection {}", r.id),
            );
        }
        let index = self.slots.len();
        self.slots.push(Slot {
            conn: Connection {
                id: ConnectionId(0),
                client: r.client,
                server: if r.server_unknown {
                    UNKNOWN_ADDR
                } else {
                    r.server
                },
                transport: r.transport,
                tls: r.tls,
                protocol: r.protocol,
                route: r.route,
                opened: r.opened,
                closed: r.closed,
                close_reason: r.close_reason,
            },
            recorded: Some(r.id),
            ended: false,
        });
        self.recorded_slots.insert(r.id, index);
        if let Some(flow) = flow {
            self.flows.insert(flow, index);
        }
        Ok(())
    }

    fn open_claim(
        &mut self,
        flow: FlowDir,
        key: String,
        origin: Origin,
        record: Option<PacketRecord>,
    ) -> Result<(), PcapngError> {
        if let Some(old) = self.claims.remove(&flow) {
            self.claim_keys.remove(&old.key);
            self.damaged(
                old.origin.offset,
                format!(
                    "gamewire packet {} is incomplete: packet {key} starts at offset {} in the same direction",
                    &old.key[1..],
                    origin.offset
                ),
            )?;
        }
        self.claim_keys.insert(key.clone(), flow);
        self.claims.insert(
            flow,
            Claim {
                key,
                record,
                data: Cow::Borrowed(&[]),
                origin,
            },
        );
        Ok(())
    }

    /// Completes the packet collected on `flow` once its record and all its bytes are in.
    fn try_finish(&mut self, flow: FlowDir) -> Result<(), PcapngError> {
        let Some(claim) = self.claims.get(&flow) else {
            return Ok(());
        };
        let Some(record) = &claim.record else {
            return Ok(());
        };
        let expected = if record.segments == 0 { 0 } else { record.len };
        if claim.data.len() < expected {
            return Ok(());
        }
        let Some(claim) = self.claims.remove(&flow) else {
            return Ok(());
        };
        self.claim_keys.remove(&claim.key);
        let Some(record) = claim.record else {
            return Ok(());
        };
        if claim.data.len() > expected {
            return self.damaged(
                claim.origin.offset,
                format!(
                    "gamewire packet {} holds {} bytes in its frames but its record says {expected}",
                    record.id,
                    claim.data.len()
                ),
            );
        }
        self.finish_packet(record, claim.data, claim.origin, Some(flow.0))
    }

    fn finish_packet(
        &mut self,
        record: PacketRecord,
        stream_bytes: Cow<'a, [u8]>,
        origin: Origin,
        flow: Option<FlowKey>,
    ) -> Result<(), PcapngError> {
        match self.packet_from_record(record, stream_bytes, origin) {
            Ok(pending) => {
                if let Some(flow) = flow {
                    self.flows.insert(flow, pending.slot);
                }
                self.packets.push(pending);
                Ok(())
            }
            Err(reason) => self.damaged(origin.offset, reason),
        }
    }

    fn packet_from_record(
        &self,
        r: PacketRecord,
        stream_bytes: Cow<'a, [u8]>,
        origin: Origin,
    ) -> Result<Pending<'a>, String> {
        let id = r.id;
        let slot = *self.recorded_slots.get(&r.conn).ok_or_else(|| {
            format!(
                "gamewire packet {id} belongs to connection {}, which has no record before it",
                r.conn
            )
        })?;
        let data = if r.segments == 0 {
            let bytes = hex::decode(r.data.as_deref().unwrap_or(""))
                .map_err(|e| format!("gamewire packet {id}: bad data: {e}"))?;
            if bytes.len() != r.len {
                return Err(format!(
                    "gamewire packet {id} holds {} bytes in its record but says {}",
                    bytes.len(),
                    r.len
                ));
            }
            Cow::Owned(bytes)
        } else if stream_bytes.len() == r.len {
            stream_bytes
        } else {
            return Err(format!(
                "gamewire packet {id} holds {} bytes in TCP/UDP frames but its record says {}",
                stream_bytes.len(),
                r.len
            ));
        };
        let original = r
            .original
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|e| format!("gamewire packet {id}: bad original bytes: {e}"))?;
        let mut flags = PacketFlags(r.other_flags);
        for name in &r.flags {
            flags |= PacketFlags::from_name(name)
                .ok_or_else(|| format!("gamewire packet {id}: unknown flag \"{name}\""))?;
        }
        Ok(Pending {
            recorded: Some(id),
            slot,
            direction: r.dir,
            ts: r.ts.unwrap_or(origin.ts),
            data,
            label: r.label,
            flags,
            original,
            offset: origin.offset,
        })
    }

    fn on_payload(
        &mut self,
        origin: Origin,
        (src, dst): (SocketAddr, SocketAddr),
        tcp_flags: Option<u8>,
        payload: &'a [u8],
        ours: bool,
    ) -> Result<(), PcapngError> {
        let key = FlowKey::new(tcp_flags.is_none(), src, dst);
        if let Some(claim) = self.claims.get_mut(&(key, src)) {
            claim.push(payload);
            return self.try_finish((key, src));
        }
        if ours {
            // A handshake or carrier frame of a gamewire connection, or a segment of a packet
            // whose damage is already reported: no traffic of its own.
            return Ok(());
        }
        let slot = self.foreign_slot(key, (src, dst), tcp_flags, origin.ts);
        // An empty TCP segment carries no data; an empty UDP datagram is a message.
        if !payload.is_empty() || tcp_flags.is_none() {
            let conn = &self.slots[slot].conn;
            let direction = if src == conn.client {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            self.packets.push(Pending {
                recorded: None,
                slot,
                direction,
                ts: origin.ts,
                data: Cow::Borrowed(payload),
                label: None,
                flags: PacketFlags::empty(),
                original: None,
                offset: origin.offset,
            });
        }
        if let Some(flags) = tcp_flags {
            self.track_close(slot, flags, origin.ts);
        }
        Ok(())
    }

    fn foreign_slot(
        &mut self,
        key: FlowKey,
        (src, dst): (SocketAddr, SocketAddr),
        tcp_flags: Option<u8>,
        ts: Timestamp,
    ) -> usize {
        let flags = tcp_flags.unwrap_or(0);
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if let Some(&slot) = self.flows.get(&key) {
            let s = &self.slots[slot];
            let reused = syn && !ack && s.recorded.is_none() && s.ended;
            if !reused {
                return slot;
            }
        }
        let (client, server) = if syn && ack { (dst, src) } else { (src, dst) };
        let transport = if tcp_flags.is_some() {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let index = self.slots.len();
        self.slots.push(Slot {
            conn: Connection::new(client, server, transport, ts),
            recorded: None,
            ended: false,
        });
        self.flows.insert(key, index);
        index
    }

    fn track_close(&mut self, slot: usize, flags: u8, ts: Timestamp) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.recorded.is_some() || flags & (TCP_FIN | TCP_RST) == 0 {
            return;
        }
        s.ended = true;
        s.conn.closed = Some(ts);
        if flags & TCP_RST != 0 {
            s.conn.close_reason = Some("reset".into());
        }
    }

    /// Reports what never completed, then builds the store.
    fn finish(mut self) -> Result<Imported, PcapngError> {
        let mut leftovers: Vec<(u64, String)> = self
            .claims
            .values()
            .map(|c| {
                (
                    c.origin.offset,
                    format!(
                        "gamewire packet {} is incomplete at the end of the file",
                        &c.key[1..]
                    ),
                )
            })
            .chain(self.assemblies.iter().map(|(key, a)| {
                (
                    a.origin.offset,
                    format!("gamewire record {key} is incomplete at the end of the file"),
                )
            }))
            .collect();
        leftovers.sort();
        leftovers.dedup();
        for (offset, reason) in leftovers {
            if self.cut_short {
                self.problems.push(format!("offset {offset}: {reason}"));
            } else {
                self.damaged(offset, reason)?;
            }
        }
        for (reason, (count, first)) in std::mem::take(&mut self.skipped) {
            self.problems.push(format!(
                "offset {first}: skipped {count} frame(s): {reason} (the first is here)"
            ));
        }
        self.build()
    }

    fn build(mut self) -> Result<Imported, PcapngError> {
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        // Recorded connections first, in their recorded order; then foreign ones as met.
        order.sort_by_key(|&i| (self.slots[i].recorded.is_none(), self.slots[i].recorded, i));
        let mut new_ids = vec![ConnectionId(0); self.slots.len()];
        let mut data = StoreData::new();
        for &i in &order {
            new_ids[i] = data.add_connection(self.slots[i].conn.clone());
        }
        let mut packets = std::mem::take(&mut self.packets);
        if packets.iter().all(|p| p.recorded.is_some()) {
            // Stable, so a recorded id that appears twice keeps file order.
            packets.sort_by_key(|p| p.recorded);
        }
        for p in packets {
            let appended = data.append_parts(
                new_ids[p.slot],
                p.direction,
                p.ts,
                &p.data,
                p.label.as_deref(),
                p.flags,
                p.original.as_deref(),
            );
            if let Err(e) = appended {
                self.damaged(p.offset, format!("packet not imported: {e}"))?;
            }
        }
        Ok(Imported {
            data,
            problems: self.problems,
        })
    }
}
