//! The in-memory capture store.
//!
//! Producers (taps, proxies, importers) append from many threads; readers take a read guard
//! and see a consistent snapshot. Packet bytes live in large chunks rather than one `Vec`
//! per packet, so a million small packets cost one allocation per few megabytes and the
//! memory in use stays close to the raw bytes.
//!
//! The file stays whole (about 670 lines of code, then its tests): the chunked byte
//! storage, the per-connection indexes, label interning and the locking of
//! [`CaptureStore`] keep one set of invariants that every method maintains together.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::arena::{Arena, ByteSource, Span};
use super::gwcap::{Journal, JournalError};
use super::model::{
    Connection, ConnectionId, Direction, NewPacket, Packet, PacketFlags, PacketId, Timestamp,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("connection {0} does not exist in this capture")]
    UnknownConnection(ConnectionId),
    #[error("packet of {len} bytes is larger than the {max}-byte limit of one packet")]
    PacketTooLarge { len: usize, max: usize },
    #[error("label {0} is not defined")]
    UnknownLabel(u32),
    #[error("capture is full ({0} packets)")]
    Full(usize),
    #[error("could not take in the packet's bytes: {0}")]
    Source(String),
}

/// Largest single packet the store accepts. Reads from sockets are far smaller; this only
/// bounds what a malicious or corrupt import can make us allocate for one record.
pub const MAX_PACKET_LEN: usize = 256 * 1024 * 1024;
const NO_LABEL: u32 = 0;
const NO_ORIGINAL: u32 = u32::MAX;

/// 40 bytes per packet: the budget is 64 bytes of overhead per packet while a capture is open.
#[derive(Clone, Copy, Debug)]
struct PacketMeta {
    timestamp: i64,
    data: Span,
    connection: u32,
    label: u32,
    original: u32,
    direction: Direction,
    flags: PacketFlags,
}

/// Interned message labels; a capture has few distinct ones (`acct NuLogin`, ...).
#[derive(Default)]
struct Labels {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Labels {
    fn intern(&mut self, name: &str) -> (u32, bool) {
        if let Some(&id) = self.ids.get(name) {
            return (id, false);
        }
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        let id = self.names.len() as u32;
        self.ids.insert(name, id);
        (id, true)
    }

    fn get(&self, id: u32) -> Option<&str> {
        if id == NO_LABEL {
            return None;
        }
        self.names.get(id as usize - 1).map(|s| &**s)
    }
}

/// The store's contents. Obtained through [`CaptureStore::read`] or [`CaptureStore::write`].
pub struct StoreData {
    connections: Vec<Connection>,
    per_connection: Vec<Vec<u32>>,
    packets: Vec<PacketMeta>,
    originals: Vec<Span>,
    arena: Arena,
    labels: Labels,
    raw_bytes: u64,
    /// True while every packet's timestamp is >= the one before it, which is the normal case
    /// for live capture; time-order iteration is then plain id order.
    time_ordered: bool,
    journal: Option<Journal>,
    journal_error: Option<String>,
}

/// A borrowed view of one stored packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketRef<'a> {
    pub id: PacketId,
    pub connection: ConnectionId,
    pub direction: Direction,
    pub timestamp: Timestamp,
    pub data: &'a [u8],
    pub label: Option<&'a str>,
    pub flags: PacketFlags,
    pub original: Option<&'a [u8]>,
}

impl PacketRef<'_> {
    pub fn to_packet(&self) -> Packet {
        Packet {
            id: self.id,
            connection: self.connection,
            direction: self.direction,
            timestamp: self.timestamp,
            data: self.data.to_vec(),
            label: self.label.map(str::to_owned),
            flags: self.flags,
            original: self.original.map(<[u8]>::to_vec),
        }
    }
}

impl Default for StoreData {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreData {
    pub fn new() -> Self {
        StoreData {
            connections: Vec::new(),
            per_connection: Vec::new(),
            packets: Vec::new(),
            originals: Vec::new(),
            arena: Arena::default(),
            labels: Labels::default(),
            raw_bytes: 0,
            time_ordered: true,
            journal: None,
            journal_error: None,
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub fn packet_count(&self) -> usize {
        self.packets.len()
    }

    /// Sum of the payload bytes of every packet (not counting originals of edited ones).
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Approximate heap use, for the memory budget in the benches.
    pub fn heap_bytes(&self) -> usize {
        self.arena.bytes_reserved()
            + self.packets.capacity() * std::mem::size_of::<PacketMeta>()
            + self
                .per_connection
                .iter()
                .map(|v| v.capacity() * 4)
                .sum::<usize>()
            + self.connections.capacity() * std::mem::size_of::<Connection>()
    }

    /// Whether new packet bytes go to a temporary file (see
    /// [`CaptureStore::keep_bytes_in_temp_file`]).
    pub fn keeps_bytes_in_temp_file(&self) -> bool {
        self.arena.is_file_backed()
    }

    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.connections.get(usize::try_from(id.0).ok()?)
    }

    pub fn packet(&self, id: PacketId) -> Option<PacketRef<'_>> {
        let index = usize::try_from(id.0).ok()?;
        let meta = self.packets.get(index)?;
        Some(self.packet_ref(index, meta))
    }

    fn packet_ref<'a>(&'a self, index: usize, meta: &PacketMeta) -> PacketRef<'a> {
        PacketRef {
            id: PacketId(index as u64),
            connection: ConnectionId(u64::from(meta.connection)),
            direction: meta.direction,
            timestamp: Timestamp(meta.timestamp),
            data: self.arena.get(meta.data),
            label: self.labels.get(meta.label),
            flags: meta.flags,
            original: (meta.original != NO_ORIGINAL)
                .then(|| self.arena.get(self.originals[meta.original as usize])),
        }
    }

    /// Every packet in id (arrival) order.
    pub fn packets(&self) -> impl ExactSizeIterator<Item = PacketRef<'_>> + '_ {
        self.packets
            .iter()
            .enumerate()
            .map(|(i, m)| self.packet_ref(i, m))
    }

    /// The packets of one connection in id order; empty for an unknown connection.
    pub fn packets_of(
        &self,
        id: ConnectionId,
    ) -> impl ExactSizeIterator<Item = PacketRef<'_>> + '_ {
        let ids: &[u32] = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.per_connection.get(i))
            .map_or(&[], Vec::as_slice);
        ids.iter().map(move |&i| {
            let i = i as usize;
            self.packet_ref(i, &self.packets[i])
        })
    }

    /// Packet ids sorted by (timestamp, id). Free when packets arrived in time order.
    pub fn time_order(&self) -> Vec<PacketId> {
        let mut ids: Vec<PacketId> = (0..self.packets.len() as u64).map(PacketId).collect();
        if !self.time_ordered {
            ids.sort_by_key(|id| (self.packets[id.0 as usize].timestamp, id.0));
        }
        ids
    }

    /// Every label in the capture, in first-use order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.names.iter().map(|s| &**s)
    }

    /// Adds a connection and returns its id. The id inside `conn` is ignored.
    pub fn add_connection(&mut self, mut conn: Connection) -> ConnectionId {
        let id = ConnectionId(self.connections.len() as u64);
        conn.id = id;
        self.journal_with(|j, _| j.write_connection(&conn));
        self.connections.push(conn);
        self.per_connection.push(Vec::new());
        id
    }

    /// Changes a connection in place (protocol found, TLS facts, close).
    pub fn update_connection(
        &mut self,
        id: ConnectionId,
        change: impl FnOnce(&mut Connection),
    ) -> Result<(), StoreError> {
        let index = usize::try_from(id.0).map_err(|_| StoreError::UnknownConnection(id))?;
        let conn = self
            .connections
            .get_mut(index)
            .ok_or(StoreError::UnknownConnection(id))?;
        change(conn);
        conn.id = id;
        let snapshot = conn.clone();
        self.journal_with(|j, _| j.write_connection(&snapshot));
        Ok(())
    }

    pub fn close_connection(
        &mut self,
        id: ConnectionId,
        at: Timestamp,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        self.update_connection(id, |c| {
            c.closed = Some(at);
            c.close_reason = reason;
        })
    }

    pub fn append(&mut self, packet: NewPacket) -> Result<PacketId, StoreError> {
        self.append_parts(
            packet.connection,
            packet.direction,
            packet.timestamp,
            &packet.data,
            packet.label.as_deref(),
            packet.flags,
            packet.original.as_deref(),
        )
    }

    /// Appends a copy of a packet of another capture, to `connection` of this one.
    pub fn append_copy(
        &mut self,
        connection: ConnectionId,
        p: &PacketRef<'_>,
    ) -> Result<PacketId, StoreError> {
        self.append_parts(
            connection,
            p.direction,
            p.timestamp,
            p.data,
            p.label,
            p.flags,
            p.original,
        )
    }

    /// `append` without requiring owned buffers, for importers that parse from a file buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn append_parts(
        &mut self,
        connection: ConnectionId,
        direction: Direction,
        timestamp: Timestamp,
        data: &[u8],
        label: Option<&str>,
        flags: PacketFlags,
        original: Option<&[u8]>,
    ) -> Result<PacketId, StoreError> {
        let label_id = match label {
            Some(name) => {
                let (id, fresh) = self.labels.intern(name);
                if fresh {
                    self.journal_with(|j, _| j.write_label(id, name));
                }
                id
            }
            None => NO_LABEL,
        };
        self.append_with_label_id(
            connection, direction, timestamp, data, label_id, flags, original,
        )
    }

    /// Appends a packet whose label is already interned (file loaders know the id).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append_with_label_id(
        &mut self,
        connection: ConnectionId,
        direction: Direction,
        timestamp: Timestamp,
        data: &[u8],
        label_id: u32,
        flags: PacketFlags,
        original: Option<&[u8]>,
    ) -> Result<PacketId, StoreError> {
        let conn_index = self.check_append(connection, data.len(), original.map(<[u8]>::len))?;
        if label_id != NO_LABEL && self.labels.get(label_id).is_none() {
            return Err(StoreError::UnknownLabel(label_id));
        }
        let original_index = match original {
            Some(bytes) => {
                let span = self.arena.push(bytes);
                self.originals.push(span);
                (self.originals.len() - 1) as u32
            }
            None => NO_ORIGINAL,
        };
        let span = self.arena.push(data);
        Ok(self.add_packet(
            conn_index,
            connection,
            direction,
            timestamp,
            span,
            label_id,
            flags,
            original_index,
        ))
    }

    /// Appends a packet of `len` bytes that `source` moves in itself (a tap's spliced pipe),
    /// unlabelled and unchanged.
    pub fn append_from(
        &mut self,
        connection: ConnectionId,
        direction: Direction,
        timestamp: Timestamp,
        len: usize,
        source: &mut dyn ByteSource,
    ) -> Result<PacketId, StoreError> {
        let conn_index = self.check_append(connection, len, None)?;
        let span = self
            .arena
            .push_from(len, source)
            .map_err(|e| StoreError::Source(e.to_string()))?;
        Ok(self.add_packet(
            conn_index,
            connection,
            direction,
            timestamp,
            span,
            NO_LABEL,
            PacketFlags::empty(),
            NO_ORIGINAL,
        ))
    }

    /// The index of `connection`, if a packet of these sizes may be added to it.
    fn check_append(
        &self,
        connection: ConnectionId,
        len: usize,
        original_len: Option<usize>,
    ) -> Result<usize, StoreError> {
        let conn_index = usize::try_from(connection.0)
            .ok()
            .filter(|&i| i < self.connections.len())
            .ok_or(StoreError::UnknownConnection(connection))?;
        for len in std::iter::once(len).chain(original_len) {
            if len > MAX_PACKET_LEN {
                return Err(StoreError::PacketTooLarge {
                    len,
                    max: MAX_PACKET_LEN,
                });
            }
        }
        if self.packets.len() >= u32::MAX as usize - 1 {
            return Err(StoreError::Full(self.packets.len()));
        }
        Ok(conn_index)
    }

    /// Indexes a packet whose bytes are in the arena, and journals it.
    #[allow(clippy::too_many_arguments)]
    fn add_packet(
        &mut self,
        conn_index: usize,
        connection: ConnectionId,
        direction: Direction,
        timestamp: Timestamp,
        span: Span,
        label_id: u32,
        flags: PacketFlags,
        original_index: u32,
    ) -> PacketId {
        let id = PacketId(self.packets.len() as u64);
        if let Some(last) = self.packets.last() {
            self.time_ordered &= timestamp.0 >= last.timestamp;
        }
        self.packets.push(PacketMeta {
            timestamp: timestamp.0,
            data: span,
            connection: conn_index as u32,
            label: label_id,
            original: original_index,
            direction,
            flags,
        });
        self.per_connection[conn_index].push(id.0 as u32);
        self.raw_bytes += u64::from(span.len);
        let original =
            (original_index != NO_ORIGINAL).then(|| self.originals[original_index as usize]);
        self.journal_with(|j, arena| {
            j.write_packet(
                id,
                connection,
                direction,
                timestamp,
                label_id,
                flags,
                arena.get(span),
                original.map(|o| arena.get(o)),
            )
        });
        id
    }

    /// Runs one journal write. A failing journal (disk full, file removed) is detached and its
    /// error kept, so capture continues in memory and nothing already captured is lost.
    /// The closure gets the arena too, for packet bytes already stored.
    fn journal_with(
        &mut self,
        write: impl FnOnce(&mut Journal, &Arena) -> Result<(), JournalError>,
    ) {
        if let Some(journal) = self.journal.as_mut()
            && let Err(e) = write(journal, &self.arena)
        {
            tracing::error!(error = %e, "capture file write failed; capture continues in memory");
            self.journal_error = Some(e.to_string());
            self.journal = None;
        }
    }

    pub(super) fn label_names(&self) -> &[Arc<str>] {
        &self.labels.names
    }

    pub(super) fn packet_label_id(&self, id: usize) -> u32 {
        self.packets[id].label
    }

    /// Interns a label under the id a file gave it; false when the id is out of sequence.
    pub(super) fn define_label(&mut self, id: u32, name: &str) -> bool {
        if id as usize != self.labels.names.len() + 1 {
            return false;
        }
        let (got, fresh) = self.labels.intern(name);
        fresh && got == id
    }

    /// Stores a connection under the id a file gave it: a new id must come next in sequence,
    /// an existing one is an update.
    pub(super) fn put_connection(&mut self, conn: Connection) -> bool {
        let Ok(index) = usize::try_from(conn.id.0) else {
            return false;
        };
        match index.cmp(&self.connections.len()) {
            std::cmp::Ordering::Less => {
                self.connections[index] = conn;
                true
            }
            std::cmp::Ordering::Equal => {
                self.connections.push(conn);
                self.per_connection.push(Vec::new());
                true
            }
            std::cmp::Ordering::Greater => false,
        }
    }

    pub(super) fn attach_journal(&mut self, journal: Journal) {
        self.journal = Some(journal);
        self.journal_error = None;
    }

    pub(super) fn journal_mut(&mut self) -> Option<&mut Journal> {
        self.journal.as_mut()
    }

    pub(super) fn detach_journal(&mut self) -> Option<Journal> {
        self.journal.take()
    }

    /// The error that stopped the capture file, if one did.
    pub fn journal_error(&self) -> Option<&str> {
        self.journal_error.as_deref()
    }

    pub fn is_journaling(&self) -> bool {
        self.journal.is_some()
    }

    pub(super) fn reserve(&mut self, packets: usize) {
        self.packets.reserve(packets);
    }

    /// Gives back what a loader over-reserved, so an open file costs what it holds.
    pub(super) fn shrink_to_fit(&mut self) {
        self.packets.shrink_to_fit();
        self.originals.shrink_to_fit();
        for ids in &mut self.per_connection {
            ids.shrink_to_fit();
        }
        self.arena.shrink_last();
    }
}

/// A capture shared between producer threads and readers.
pub struct CaptureStore {
    data: RwLock<StoreData>,
}

impl Default for CaptureStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CaptureStore {
    pub fn new() -> Self {
        CaptureStore {
            data: RwLock::new(StoreData::new()),
        }
    }

    /// A store whose packet bytes from now on go to a deleted temporary file in `dir`
    /// rather than fresh memory: several times cheaper to fill at line rate, and not bounded
    /// by RAM (see `arena.rs`). Falls back to memory, with the error, where the file cannot
    /// be made.
    pub fn keep_bytes_in_temp_file(&self, dir: &Path) -> std::io::Result<()> {
        self.data.write().arena.use_temp_file(dir)
    }

    pub fn from_data(data: StoreData) -> Self {
        CaptureStore {
            data: RwLock::new(data),
        }
    }

    pub fn into_data(self) -> StoreData {
        self.data.into_inner()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, StoreData> {
        self.data.read()
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, StoreData> {
        self.data.write()
    }

    pub fn add_connection(&self, conn: Connection) -> ConnectionId {
        self.data.write().add_connection(conn)
    }

    pub fn update_connection(
        &self,
        id: ConnectionId,
        change: impl FnOnce(&mut Connection),
    ) -> Result<(), StoreError> {
        self.data.write().update_connection(id, change)
    }

    pub fn close_connection(
        &self,
        id: ConnectionId,
        at: Timestamp,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        self.data.write().close_connection(id, at, reason)
    }

    pub fn append(&self, packet: NewPacket) -> Result<PacketId, StoreError> {
        self.data.write().append(packet)
    }

    /// Starts writing this capture to a new `.gwcap` file: everything already captured is
    /// written first, then every change as it happens. A background thread flushes the file
    /// every `flush_every` so that a crash loses at most that much.
    pub fn journal_to(
        self: &Arc<Self>,
        path: &Path,
        flush_every: Duration,
    ) -> Result<(), JournalError> {
        {
            let mut data = self.data.write();
            let journal = Journal::create(path, &data)?;
            data.attach_journal(journal);
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("gwcap-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(flush_every);
                    let Some(store) = weak.upgrade() else { break };
                    if !store.flush_journal() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no flusher thread; the capture file is flushed only on close");
        }
        Ok(())
    }

    /// Pushes buffered records to the file. Returns false when no journal is attached.
    pub fn flush_journal(&self) -> bool {
        let mut data = self.data.write();
        let result = match data.journal_mut() {
            Some(j) => j.flush(),
            None => return false,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "capture file flush failed; capture continues in memory");
            data.journal_error = Some(e.to_string());
            data.journal = None;
            return false;
        }
        true
    }

    /// Flushes and closes the capture file; capture goes on in memory.
    pub fn stop_journal(&self) -> Result<(), JournalError> {
        let journal = self.data.write().detach_journal();
        match journal {
            Some(j) => j.finish(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::model::Transport;

    fn conn() -> Connection {
        Connection::new(
            "127.0.0.1:50000".parse().unwrap(),
            "127.0.0.1:18800".parse().unwrap(),
            Transport::Tcp,
            Timestamp(1),
        )
    }

    /// A long live capture's journal file keeps only its newest bytes in the page cache, and
    /// every packet reads back from it.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_journal_file_leaves_the_page_cache_behind_it_and_loads_whole() {
        use crate::capture::page_window::{KEEP, STEP, on_tmpfs, resident_pages};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.gwcap");
        let store = Arc::new(CaptureStore::new());
        store.journal_to(&path, Duration::from_millis(50)).unwrap();
        let c = store.add_connection(conn());
        let packet = |i: usize| -> Vec<u8> { (0..256 * 1024).map(|j| (i * 7 + j) as u8).collect() };
        let count = ((KEEP + 4 * STEP) / (256 * 1024)) as usize;
        for i in 0..count {
            let p = NewPacket::new(c, Direction::ClientToServer, Timestamp(i as i64), packet(i));
            store.append(p).unwrap();
        }
        store.flush_journal();
        let file = std::fs::File::open(&path).unwrap();
        if !on_tmpfs(&file) {
            let len = file.metadata().unwrap().len() as usize;
            // The window, up to two steps of lag, and the write buffer.
            let most = (KEEP + 2 * STEP) as usize / 4096 + 64;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let cached = resident_pages(&file, len);
                if cached <= most {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{cached} pages of the journal cached, at most {most} expected"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        store.stop_journal().unwrap();
        let loaded = super::super::gwcap::load(&path).unwrap();
        assert!(loaded.damage.is_none());
        assert_eq!(loaded.data.packet_count(), count);
        for (i, p) in loaded.data.packets_of(c).enumerate() {
            assert!(p.data == packet(i), "packet {i} differs");
        }
    }

    #[test]
    fn ids_are_stable_and_sequential_across_threads() {
        let store = Arc::new(CaptureStore::new());
        let conns: Vec<_> = (0..4).map(|_| store.add_connection(conn())).collect();
        let threads: Vec<_> = conns
            .iter()
            .map(|&c| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..1000u32)
                        .map(|i| {
                            store
                                .append(NewPacket::new(
                                    c,
                                    Direction::ClientToServer,
                                    Timestamp(i64::from(i)),
                                    i.to_le_bytes().to_vec(),
                                ))
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<Vec<PacketId>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let data = store.read();
        assert_eq!(data.packet_count(), 4000);
        for (c, ids) in conns.iter().zip(&ids) {
            let of: Vec<_> = data.packets_of(*c).collect();
            assert_eq!(of.len(), 1000);
            // Each thread's packets keep their order and their ids point at their bytes.
            for (i, (p, id)) in of.iter().zip(ids).enumerate() {
                assert_eq!(p.id, *id);
                assert_eq!(p.data, (i as u32).to_le_bytes());
                assert_eq!(data.packet(*id).unwrap().connection, *c);
            }
        }
    }

    #[test]
    fn time_order_sorts_out_of_order_arrivals() {
        let mut data = StoreData::new();
        let c = data.add_connection(conn());
        for ts in [5, 3, 9, 3] {
            data.append(NewPacket::new(
                c,
                Direction::ServerToClient,
                Timestamp(ts),
                vec![ts as u8],
            ))
            .unwrap();
        }
        let order: Vec<u64> = data.time_order().iter().map(|p| p.0).collect();
        assert_eq!(order, vec![1, 3, 0, 2]);
    }

    #[test]
    fn appending_to_unknown_connection_is_an_error() {
        let mut data = StoreData::new();
        let err = data
            .append(NewPacket::new(
                ConnectionId(7),
                Direction::ClientToServer,
                Timestamp(0),
                vec![],
            ))
            .unwrap_err();
        assert_eq!(err, StoreError::UnknownConnection(ConnectionId(7)));
    }

    #[test]
    fn labels_and_originals_come_back() {
        let mut data = StoreData::new();
        let c = data.add_connection(conn());
        let mut p = NewPacket::new(c, Direction::ClientToServer, Timestamp(0), b"new".to_vec())
            .with_label("acct NuLogin");
        p.flags = PacketFlags::EDITED;
        p.original = Some(b"old".to_vec());
        let id = data.append(p).unwrap();
        let back = data.packet(id).unwrap();
        assert_eq!(back.label, Some("acct NuLogin"));
        assert_eq!(back.original, Some(&b"old"[..]));
        assert_eq!(back.data, b"new");
        assert!(back.flags.contains(PacketFlags::EDITED));
    }

    #[test]
    fn big_packets_get_their_own_chunk() {
        let mut data = StoreData::new();
        let c = data.add_connection(conn());
        let big = vec![0xAB; super::super::arena::CHUNK_SIZE + 10];
        let a = data
            .append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(0),
                b"x".to_vec(),
            ))
            .unwrap();
        let b = data
            .append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(0),
                big.clone(),
            ))
            .unwrap();
        let d = data
            .append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(0),
                b"y".to_vec(),
            ))
            .unwrap();
        assert_eq!(data.packet(a).unwrap().data, b"x");
        assert_eq!(data.packet(b).unwrap().data, &big[..]);
        assert_eq!(data.packet(d).unwrap().data, b"y");
    }
}
