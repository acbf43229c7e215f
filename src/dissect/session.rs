//! Decoding a capture, the one way every part of gamewire does it: [`choose`] picks a
//! connection's dissector (the user's "decode as", else the route's protocol, else the server
//! port, else the first bytes each side sent), and [`decode_capture`] (a file, for `inspect`
//! and the filter) and [`LiveDecode`] (a capture as it grows, for the live log and the
//! window's labels) decode both directions with it, so a message gets the same label and
//! tree wherever it is shown.
//!
//! A growing connection may not have sent enough yet for the content heuristics: a live
//! decode then waits (keeping the packets' ids) until the choice can no longer change —
//! the client's first [`SNIFF_BYTES`] were seen and matched, or both sides' were, or the
//! connection closed — and decodes everything it held back.

use std::collections::HashMap;
use std::sync::Arc;

use crate::capture::{ConnectionId, Direction, PacketId, StoreData};

use super::stream::{Decoded, decode_connection_to};
use super::{Context, Dissector, Registry};

/// How many leading bytes of each side the content heuristics look at.
pub const SNIFF_BYTES: usize = 64;

/// The first bytes each side of a connection sent, as far as seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstBytes {
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
}

impl FirstBytes {
    /// Adds what a packet brings, up to [`SNIFF_BYTES`] a side.
    pub fn push(&mut self, direction: Direction, data: &[u8]) {
        let side = match direction {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        };
        let room = SNIFF_BYTES.saturating_sub(side.len());
        side.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The first bytes of `conn` in `data`.
    pub fn of(data: &StoreData, conn: ConnectionId) -> FirstBytes {
        let mut first = FirstBytes::default();
        for p in data.packets_of(conn) {
            first.push(p.direction, p.data);
            if first.c2s.len() >= SNIFF_BYTES && first.s2c.len() >= SNIFF_BYTES {
                break;
            }
        }
        first
    }
}

/// Which dissector decodes a connection, or that its first bytes must be seen further.
pub enum Choice {
    Decided(Option<Arc<dyn Dissector>>),
    /// More of the connection's first bytes could change the choice.
    Undecided,
}

/// The one place a connection's dissector is chosen. `complete`: no more bytes will come
/// (a file, a closed connection), so the choice is made from what is there.
pub fn choose(
    registry: &Registry,
    connection: &crate::capture::Connection,
    first: &FirstBytes,
    forced: Option<&str>,
    complete: bool,
) -> Choice {
    if forced.is_some() || connection.protocol.is_some() || connection.server.port() != 0 {
        // These decide without bytes, unless nothing matches them and content must.
        let by_name = registry.choose(connection, &[], forced);
        if by_name.is_some() || forced.is_some() {
            return Choice::Decided(by_name);
        }
    }
    let c2s_final = complete || first.c2s.len() >= SNIFF_BYTES;
    let s2c_final = complete || first.s2c.len() >= SNIFF_BYTES;
    let sides = [
        (Direction::ClientToServer, first.c2s.as_slice()),
        (Direction::ServerToClient, first.s2c.as_slice()),
    ];
    let found = registry.choose(connection, &sides, forced);
    // The client's bytes are tried first: once they are final and match, nothing the server
    // sends can change the answer.
    let client_match = registry.choose(connection, &sides[..1], forced).is_some();
    if c2s_final && (client_match || s2c_final) {
        Choice::Decided(found)
    } else {
        Choice::Undecided
    }
}

#[derive(Default)]
pub struct CaptureDecode {
    /// The dissector chosen for each connection (absent: none matched).
    pub protocols: HashMap<ConnectionId, &'static str>,
    /// Messages by the packet holding their first byte, in stream order.
    pub messages: HashMap<PacketId, Vec<Decoded>>,
}

impl CaptureDecode {
    pub fn of_packet(&self, id: PacketId) -> &[Decoded] {
        self.messages.get(&id).map_or(&[], Vec::as_slice)
    }
}

/// Decodes every connection of `data`. `forced` is the user's "decode as" choice for all of
/// them.
pub fn decode_capture(
    registry: &Registry,
    ctx: &Context,
    data: &StoreData,
    forced: Option<&str>,
) -> CaptureDecode {
    let mut out = CaptureDecode::default();
    for conn in data.connections() {
        decode_connection_into(registry, ctx, data, conn.id, forced, &mut out);
    }
    out
}

/// Decodes one connection of `data` into `out`: for callers that decode a capture that is
/// still growing a connection at a time, holding its lock only that long.
pub fn decode_connection_into(
    registry: &Registry,
    ctx: &Context,
    data: &StoreData,
    conn: ConnectionId,
    forced: Option<&str>,
    out: &mut CaptureDecode,
) {
    let Some(connection) = data.connection(conn) else {
        return;
    };
    let Some(dissector) = choose_in(registry, data, conn, forced) else {
        return;
    };
    out.protocols.insert(conn, dissector.name());
    let ended = connection.closed.is_some();
    for decoded in decode_connection_to(dissector.as_ref(), ctx, data.packets_of(conn), ended) {
        out.messages
            .entry(decoded.packet)
            .or_default()
            .push(decoded);
    }
}

/// The dissector of `conn` with everything `data` holds of it.
pub fn choose_in(
    registry: &Registry,
    data: &StoreData,
    conn: ConnectionId,
    forced: Option<&str>,
) -> Option<Arc<dyn Dissector>> {
    let connection = data.connection(conn)?;
    match choose(
        registry,
        connection,
        &FirstBytes::of(data, conn),
        forced,
        true,
    ) {
        Choice::Decided(d) => d,
        Choice::Undecided => None,
    }
}

/// Decodes a capture as it grows, packet by packet, with the same choices and results as
/// [`decode_capture`] gives for the whole: the live log and the window's labels use it.
pub struct LiveDecode {
    registry: Arc<Registry>,
    context: Arc<Context>,
    forced: Option<String>,
    connections: HashMap<ConnectionId, Live>,
    /// Connections whose dissector was chosen since [`LiveDecode::take_chosen`] last ran.
    newly_chosen: Vec<(ConnectionId, Option<&'static str>)>,
}

enum Live {
    /// The dissector cannot be chosen yet; these packets wait for it.
    Deciding {
        first: FirstBytes,
        held: Vec<PacketId>,
    },
    Decoding {
        protocol: &'static str,
        decoder: super::stream::ConnectionDecoder,
    },
    /// No dissector fits, or the connection was finished.
    Done { protocol: Option<&'static str> },
}

impl LiveDecode {
    pub fn new(registry: Arc<Registry>, context: Arc<Context>, forced: Option<String>) -> Self {
        LiveDecode {
            registry,
            context,
            forced,
            connections: HashMap::new(),
            newly_chosen: Vec::new(),
        }
    }

    /// The dissector chosen for `conn`, once chosen.
    pub fn protocol(&self, conn: ConnectionId) -> Option<&'static str> {
        match self.connections.get(&conn)? {
            Live::Decoding { protocol, .. } => Some(protocol),
            Live::Done { protocol } => *protocol,
            Live::Deciding { .. } => None,
        }
    }

    /// Whether `conn`'s dissector is still to be chosen.
    pub fn is_deciding(&self, conn: ConnectionId) -> bool {
        matches!(self.connections.get(&conn), Some(Live::Deciding { .. }))
    }

    /// Decodes packet `id` of `data`, which must come after every packet of its connection
    /// given before; the messages completed are appended to `out`.
    pub fn packet(&mut self, data: &StoreData, id: PacketId, out: &mut Vec<Decoded>) {
        let Some(p) = data.packet(id) else {
            return;
        };
        let conn = p.connection;
        let live = self
            .connections
            .entry(conn)
            .or_insert_with(|| Live::Deciding {
                first: FirstBytes::default(),
                held: Vec::new(),
            });
        match live {
            Live::Decoding { decoder, .. } => {
                decoder.push(&self.context, id, p.data, p.direction, out);
                return;
            }
            Live::Done { .. } => return,
            Live::Deciding { first, held } => {
                first.push(p.direction, p.data);
                held.push(id);
            }
        }
        self.decide(data, conn, false, out);
    }

    /// Ends `conn`: its last messages are completed by the close when `ended` (the
    /// connection closed), else reported as incomplete (a file that stops mid-connection).
    pub fn finish(
        &mut self,
        data: &StoreData,
        conn: ConnectionId,
        ended: bool,
        out: &mut Vec<Decoded>,
    ) {
        if !self.connections.contains_key(&conn) {
            return;
        }
        self.decide(data, conn, true, out);
        let Some(live) = self.connections.get_mut(&conn) else {
            return;
        };
        if let Live::Decoding { protocol, decoder } = live {
            decoder.finish(&self.context, ended, out);
            *live = Live::Done {
                protocol: Some(protocol),
            };
        }
    }

    /// The connections whose dissector was chosen (or found to be none) since the last
    /// call, with it: what a reader of many connections needs without looking at all.
    pub fn take_chosen(&mut self) -> Vec<(ConnectionId, Option<&'static str>)> {
        std::mem::take(&mut self.newly_chosen)
    }

    /// The connections seen and not finished.
    pub fn unfinished(&self) -> Vec<ConnectionId> {
        self.connections
            .iter()
            .filter(|(_, l)| !matches!(l, Live::Done { .. }))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Chooses `conn`'s dissector if its first bytes allow, and decodes what waited.
    fn decide(
        &mut self,
        data: &StoreData,
        conn: ConnectionId,
        complete: bool,
        out: &mut Vec<Decoded>,
    ) {
        let Some(Live::Deciding { first, .. }) = self.connections.get(&conn) else {
            return;
        };
        let Some(connection) = data.connection(conn) else {
            return;
        };
        let complete = complete || connection.closed.is_some();
        let chosen = match choose(
            &self.registry,
            connection,
            first,
            self.forced.as_deref(),
            complete,
        ) {
            Choice::Undecided => return,
            Choice::Decided(d) => d,
        };
        let Some(Live::Deciding { held, .. }) = self.connections.remove(&conn) else {
            return;
        };
        self.newly_chosen
            .push((conn, chosen.as_ref().map(|d| d.name())));
        let live = match chosen {
            None => Live::Done { protocol: None },
            Some(d) => {
                let mut decoder = super::stream::ConnectionDecoder::new(d.as_ref(), &self.context);
                for id in held {
                    if let Some(p) = data.packet(id) {
                        decoder.push(&self.context, id, p.data, p.direction, out);
                    }
                }
                Live::Decoding {
                    protocol: d.name(),
                    decoder,
                }
            }
        };
        self.connections.insert(conn, live);
    }
}

/// What [`decode_around`] decoded: the messages of a stretch of one connection.
pub struct Around {
    /// The dissector used, if any fits.
    pub protocol: Option<&'static str>,
    /// The packets decoded, in order, the asked-for one among them.
    pub window: Vec<PacketId>,
    pub messages: Vec<Decoded>,
    /// Packets of the whole connection.
    pub connection_packets: usize,
}

/// Decodes the packets of `packet`'s connection up to `radius` either side of it, with
/// `chosen` (a choice already made, such as the labeller's) or else [`choose_in`]'s: what
/// the window's tree pane shows of one packet without decoding a huge connection whole.
/// Stream protocols resynchronise within a few messages. A stretch that reaches the close of
/// a closed connection is completed by it, as [`decode_capture`] does.
pub fn decode_around(
    registry: &Registry,
    ctx: &Context,
    data: &StoreData,
    packet: PacketId,
    chosen: Option<&str>,
    radius: usize,
) -> Option<Around> {
    let p = data.packet(packet)?;
    let connection = data.connection(p.connection)?;
    let ids: Vec<PacketId> = data.packets_of(p.connection).map(|q| q.id).collect();
    let at = ids.iter().position(|&id| id == packet)?;
    let end = ids.len().min(at + radius + 1);
    let window = ids[at.saturating_sub(radius)..end].to_vec();
    let dissector = match chosen {
        Some(name) => registry.get(name),
        None => choose_in(registry, data, p.connection, None),
    };
    let ended = end == ids.len() && connection.closed.is_some();
    let messages = match &dissector {
        Some(d) => decode_connection_to(
            d.as_ref(),
            ctx,
            window.iter().filter_map(|&id| data.packet(id)),
            ended,
        ),
        None => Vec::new(),
    };
    Some(Around {
        protocol: dissector.map(|d| d.name()),
        window,
        messages,
        connection_packets: ids.len(),
    })
}

/// Decodes `bytes` as all that one side of a `protocol` connection sent (a repeater's
/// answer, read until its connection ended).
pub fn decode_stream(
    registry: &Registry,
    ctx: &Context,
    protocol: &str,
    direction: Direction,
    bytes: &[u8],
) -> Vec<Decoded> {
    let Some(d) = registry.get(protocol) else {
        return Vec::new();
    };
    let mut decoder = super::stream::ConnectionDecoder::new(d.as_ref(), ctx);
    let mut out = Vec::new();
    decoder.push(ctx, PacketId(0), bytes, direction, &mut out);
    decoder.finish(ctx, true, &mut out);
    out
}
