//! Decoding a whole capture: pick a dissector per connection, decode both directions, and
//! index the messages by the packet they start in, which is how the CLI and the GUI show them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::capture::{ConnectionId, Direction, PacketId, StoreData};

use super::stream::{Decoded, decode_connection_to};
use super::{Context, Dissector, Registry};

/// How many leading bytes of each side the content heuristics look at.
const SNIFF_BYTES: usize = 64;

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
    let Some(dissector) = choose(registry, data, conn, forced) else {
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

fn choose(
    registry: &Registry,
    data: &StoreData,
    conn: ConnectionId,
    forced: Option<&str>,
) -> Option<Arc<dyn Dissector>> {
    let connection = data.connection(conn)?;
    let first = |dir: Direction| -> Vec<u8> {
        let mut bytes = Vec::new();
        for p in data.packets_of(conn).filter(|p| p.direction == dir) {
            bytes.extend_from_slice(&p.data[..p.data.len().min(SNIFF_BYTES - bytes.len())]);
            if bytes.len() >= SNIFF_BYTES {
                break;
            }
        }
        bytes
    };
    let c2s = first(Direction::ClientToServer);
    let s2c = first(Direction::ServerToClient);
    registry.choose(
        connection,
        &[
            (Direction::ClientToServer, &c2s),
            (Direction::ServerToClient, &s2c),
        ],
        forced,
    )
}
