//! The one way traffic enters a capture: taps and the HTTP proxy record through a
//! `Recorder`, which appends to the shared store and announces each change on a broadcast
//! channel (the engine's live log and the GUI listen there; a slow listener misses events,
//! never blocks a relay).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::capture::{
    ByteSource, CaptureStore, Connection, ConnectionId, Direction, PacketFlags, PacketId,
    StoreError, Timestamp, TlsInfo, Transport,
};

/// What changed in the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureEvent {
    Opened(ConnectionId),
    Packet {
        id: PacketId,
        connection: ConnectionId,
        direction: Direction,
        size: usize,
        flags: PacketFlags,
    },
    Updated(ConnectionId),
    Closed(ConnectionId),
}

#[derive(Clone)]
pub struct Recorder {
    store: Arc<CaptureStore>,
    events: broadcast::Sender<CaptureEvent>,
}

impl Recorder {
    pub fn new(store: Arc<CaptureStore>) -> Self {
        let (events, _) = broadcast::channel(65_536);
        Recorder { store, events }
    }

    pub fn store(&self) -> &Arc<CaptureStore> {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CaptureEvent> {
        self.events.subscribe()
    }

    /// Starts a connection; `route` names the tap or proxy that carries it.
    pub fn open(
        &self,
        route: &str,
        client: SocketAddr,
        server: SocketAddr,
        transport: Transport,
    ) -> ConnRecorder {
        let mut conn = Connection::new(client, server, transport, Timestamp::now());
        conn.route = Some(route.to_string());
        let id = self.store.add_connection(conn);
        let _ = self.events.send(CaptureEvent::Opened(id));
        ConnRecorder {
            recorder: self.clone(),
            id,
        }
    }
}

/// Records one connection. Cheap to clone: each relay direction holds one.
#[derive(Clone)]
pub struct ConnRecorder {
    recorder: Recorder,
    id: ConnectionId,
}

impl ConnRecorder {
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Records one read as it arrived.
    pub fn packet(&self, direction: Direction, data: &[u8]) -> Option<PacketId> {
        self.packet_with(direction, data, PacketFlags::empty(), None)
    }

    /// Records a packet that gamewire changed, dropped or made: `original` is what arrived.
    pub fn packet_with(
        &self,
        direction: Direction,
        data: &[u8],
        flags: PacketFlags,
        original: Option<&[u8]>,
    ) -> Option<PacketId> {
        let result = self.recorder.store.write().append_parts(
            self.id,
            direction,
            Timestamp::now(),
            data,
            None,
            flags,
            original,
        );
        self.announce(result, direction, data.len(), flags)
    }

    /// Records one read of `len` bytes that `source` moves into the capture itself.
    pub fn packet_from(
        &self,
        direction: Direction,
        len: usize,
        source: &mut dyn ByteSource,
    ) -> Option<PacketId> {
        let result = self.recorder.store.write().append_from(
            self.id,
            direction,
            Timestamp::now(),
            len,
            source,
        );
        self.announce(result, direction, len, PacketFlags::empty())
    }

    fn announce(
        &self,
        result: Result<PacketId, StoreError>,
        direction: Direction,
        size: usize,
        flags: PacketFlags,
    ) -> Option<PacketId> {
        match result {
            Ok(id) => {
                let _ = self.recorder.events.send(CaptureEvent::Packet {
                    id,
                    connection: self.id,
                    direction,
                    size,
                    flags,
                });
                Some(id)
            }
            Err(e) => {
                tracing::warn!(connection = self.id.0, "could not record a packet: {e}");
                None
            }
        }
    }

    pub fn set_tls(&self, tls: TlsInfo) {
        self.update(|c| c.tls = Some(tls));
    }

    pub fn set_protocol(&self, protocol: &str) {
        self.update(|c| c.protocol = Some(protocol.to_string()));
    }

    /// Changes the recorded server address (known only after CONNECT or DNS).
    pub fn set_server(&self, server: SocketAddr) {
        self.update(|c| c.server = server);
    }

    fn update(&self, change: impl FnOnce(&mut Connection)) {
        if self
            .recorder
            .store
            .update_connection(self.id, change)
            .is_ok()
        {
            let _ = self.recorder.events.send(CaptureEvent::Updated(self.id));
        }
    }

    /// Records the end of the connection and why ("closed by client", "reset by server",
    /// "upstream: connection refused", ...). The first reason recorded wins.
    pub fn close(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let mut first = false;
        let _ = self.recorder.store.update_connection(self.id, |c| {
            if c.closed.is_none() {
                c.closed = Some(Timestamp::now());
                c.close_reason = Some(reason);
                first = true;
            }
        });
        if first {
            let _ = self.recorder.events.send(CaptureEvent::Closed(self.id));
        }
    }
}
