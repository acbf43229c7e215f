//! The busy capture (`gamewire samples --busy N`): many connections of a busy game at once,
//! each one of the sample conversations (FESL, GP, diffusion, the login server's HTTP,
//! Hytale) from its opening through its keep-alives, so every packet decodes as what it is.
//!
//! Built for size (a million packets is the window's load test): each conversation's
//! messages are encoded once and copied into the store; only keep-alives that carry a
//! counter (diffusion heartbeats, Hytale pings) are encoded per pair.

use super::{Line, at, hytale, local, plus_micros, ra3, sc};
use crate::capture::{Connection, ConnectionId, PacketFlags, StoreData, Timestamp};

/// What a connection keeps doing once its opening is through.
enum KeepAlive {
    /// The same two messages each time.
    Same([Line; 2]),
    /// Two messages numbered from 1.
    Counted(fn(u64) -> [Line; 2]),
}

/// One kind of connection: how to open it, its first messages and its keep-alive.
struct Conversation {
    connection: fn(std::net::SocketAddr, Timestamp) -> Connection,
    opening: Vec<Line>,
    keep_alive: KeepAlive,
}

fn conversations() -> Vec<Conversation> {
    vec![
        Conversation {
            connection: ra3::fesl_connection,
            opening: ra3::fesl_login(),
            keep_alive: KeepAlive::Same(ra3::fesl_keep_alive()),
        },
        Conversation {
            connection: ra3::gp_connection,
            opening: ra3::gp_login(),
            keep_alive: KeepAlive::Same(ra3::gp_keep_alive()),
        },
        Conversation {
            connection: sc::diffusion_connection,
            opening: sc::diffusion_opening(),
            keep_alive: KeepAlive::Counted(sc::heartbeats),
        },
        Conversation {
            connection: sc::login_connection,
            opening: sc::http_login(),
            keep_alive: KeepAlive::Same(sc::http_verify()),
        },
        Conversation {
            connection: hytale::connection,
            opening: hytale::handshake(),
            keep_alive: KeepAlive::Counted(|n| hytale::ping(i32::try_from(n).unwrap_or(i32::MAX))),
        },
    ]
}

/// One connection of the busy capture.
struct Busy {
    id: ConnectionId,
    conversation: usize,
    /// Messages sent so far.
    sent: usize,
    /// The keep-alive pair being sent, when it carries a counter.
    pair: Option<[Line; 2]>,
}

/// `packets` packets, 100 µs apart, on `connections` connections taking turns (connection
/// `i` has the `i % 5`th conversation: FESL, GP, diffusion, HTTP, Hytale).
pub fn busy_capture(packets: usize, connections: usize) -> StoreData {
    let conversations = conversations();
    let mut data = StoreData::new();
    let mut conns: Vec<Busy> = (0..connections.max(1))
        .map(|i| {
            let conversation = i % conversations.len();
            let client = local(40_000 + (i % 20_000) as u16);
            let conn = (conversations[conversation].connection)(client, at(0));
            Busy {
                id: data.add_connection(conn),
                conversation,
                sent: 0,
                pair: None,
            }
        })
        .collect();
    let count = conns.len();
    for i in 0..packets {
        let c = &mut conns[i % count];
        let conv = &conversations[c.conversation];
        let line = match c.sent.checked_sub(conv.opening.len()) {
            None => &conv.opening[c.sent],
            Some(k) => match &conv.keep_alive {
                KeepAlive::Same(pair) => &pair[k % 2],
                KeepAlive::Counted(make) => {
                    if k % 2 == 0 || c.pair.is_none() {
                        c.pair = Some(make(k as u64 / 2 + 1));
                    }
                    match &c.pair {
                        Some(pair) => &pair[k % 2],
                        None => continue,
                    }
                }
            },
        };
        c.sent += 1;
        let _ = data.append_parts(
            c.id,
            line.dir,
            plus_micros(at(0), i as i64 * 100),
            &line.bytes,
            Some(line.label),
            PacketFlags::empty(),
            None,
        );
    }
    data
}
