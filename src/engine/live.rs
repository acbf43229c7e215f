//! Decodes traffic as it is recorded, for the live log: one line per message with its route,
//! direction, label and size.

use std::collections::HashMap;
use std::sync::Arc;

use crate::capture::{CaptureStore, ConnectionId, Direction};
use crate::dissect::registry::Registry;
use crate::dissect::stream::{Decoded, DirectionStream};
use crate::dissect::{Context, Dissector};
use crate::proxy::CaptureEvent;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageLine {
    pub route: String,
    pub connection: ConnectionId,
    pub direction: Direction,
    pub label: String,
    pub size: usize,
    pub flags: String,
}

impl std::fmt::Display for MessageLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<10} #{:<5} {} {:<32} {:>7} B",
            self.route,
            self.connection.0,
            self.direction.arrow(),
            self.label,
            self.size
        )?;
        if !self.flags.is_empty() {
            write!(f, "  [{}]", self.flags)?;
        }
        Ok(())
    }
}

struct ConnDecode {
    route: String,
    streams: Option<(DirectionStream, DirectionStream)>,
}

pub struct LiveDecoder {
    registry: Registry,
    context: Context,
    connections: HashMap<ConnectionId, ConnDecode>,
}

impl LiveDecoder {
    pub fn new(registry: Registry, context: Context) -> Self {
        LiveDecoder {
            registry,
            context,
            connections: HashMap::new(),
        }
    }

    pub fn on_event(&mut self, store: &CaptureStore, event: &CaptureEvent) -> Vec<MessageLine> {
        match event {
            CaptureEvent::Closed(id) => {
                // The close completes messages that run until it (an HTTP/1.0 response).
                let Some(ConnDecode {
                    route,
                    streams: Some((mut c2s, mut s2c)),
                }) = self.connections.remove(id)
                else {
                    return Vec::new();
                };
                let mut out: Vec<Decoded> = Vec::new();
                c2s.finish(Direction::ClientToServer, true, &mut out);
                s2c.finish(Direction::ServerToClient, true, &mut out);
                lines(&route, *id, out, "")
            }
            CaptureEvent::Packet {
                id,
                connection,
                direction,
                flags,
                ..
            } => {
                let data = store.read();
                let (Some(packet), Some(conn)) = (data.packet(*id), data.connection(*connection))
                else {
                    return Vec::new();
                };
                let entry = self.connections.entry(*connection).or_insert_with(|| {
                    let dissector: Option<Arc<dyn Dissector>> =
                        self.registry
                            .choose(conn, &[(packet.direction, packet.data)], None);
                    ConnDecode {
                        route: conn.route.clone().unwrap_or_default(),
                        streams: dissector.map(|d| {
                            let (c, s) = d.connection_decoders(&self.context);
                            (DirectionStream::new(c), DirectionStream::new(s))
                        }),
                    }
                });
                let flags = flags.to_string();
                let Some((c2s, s2c)) = &mut entry.streams else {
                    return vec![MessageLine {
                        route: entry.route.clone(),
                        connection: *connection,
                        direction: *direction,
                        label: "(no dissector)".into(),
                        size: packet.data.len(),
                        flags,
                    }];
                };
                let stream = match direction {
                    Direction::ClientToServer => c2s,
                    Direction::ServerToClient => s2c,
                };
                let mut out: Vec<Decoded> = Vec::new();
                stream.push(*id, packet.data, *direction, &mut out);
                lines(&entry.route, *connection, out, &flags)
            }
            _ => Vec::new(),
        }
    }
}

fn lines(
    route: &str,
    connection: ConnectionId,
    decoded: Vec<Decoded>,
    flags: &str,
) -> Vec<MessageLine> {
    decoded
        .into_iter()
        .map(|d| MessageLine {
            route: route.to_string(),
            connection,
            direction: d.direction,
            label: d.message.label,
            size: d.bytes.len(),
            flags: flags.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Transport;
    use crate::proxy::Recorder;
    use tokio::sync::broadcast::Receiver;

    /// Feeds the events announced so far to `live`; the lines it printed.
    fn drain(
        live: &mut LiveDecoder,
        recorder: &Recorder,
        events: &mut Receiver<CaptureEvent>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(event) = events.try_recv() {
            out.extend(
                live.on_event(recorder.store(), &event)
                    .into_iter()
                    .map(|l| format!("{} {}", l.direction.arrow(), l.label)),
            );
        }
        out
    }

    #[test]
    fn the_close_completes_a_response_that_runs_until_it() {
        let recorder = Recorder::new(Arc::new(CaptureStore::new()));
        let mut events = recorder.subscribe();
        let mut live = LiveDecoder::new(Registry::standard(), Context::default());
        let conn = recorder.open(
            "web",
            "127.0.0.1:50000".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            Transport::Tcp,
        );
        conn.packet(Direction::ClientToServer, b"GET / HTTP/1.0\r\n\r\n");
        conn.packet(
            Direction::ServerToClient,
            b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nhello",
        );
        // Nothing yet for the response: it runs until the close.
        let before = drain(&mut live, &recorder, &mut events);
        assert_eq!(before.len(), 1, "{before:?}");
        assert!(before[0].ends_with("GET /"), "{before:?}");
        conn.packet(Direction::ServerToClient, b" world");
        assert_eq!(
            drain(&mut live, &recorder, &mut events),
            Vec::<String>::new()
        );
        conn.close("closed by server");
        let after = drain(&mut live, &recorder, &mut events);
        assert_eq!(after.len(), 1, "{after:?}");
        assert!(after[0].ends_with("200 OK"), "{after:?}");
    }
}
