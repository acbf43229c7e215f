//! Decodes traffic as it is recorded, for the live log: one line per message with its route,
//! direction, label and size.

use std::sync::Arc;

use crate::capture::{CaptureStore, ConnectionId, Direction};
use crate::dissect::Context;
use crate::dissect::registry::Registry;
use crate::dissect::session::LiveDecode;
use crate::dissect::stream::Decoded;
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

/// The live log's decoder: [`LiveDecode`] fed by the capture's events.
pub struct LiveDecoder {
    decode: LiveDecode,
}

impl LiveDecoder {
    pub fn new(registry: Arc<Registry>, context: Arc<Context>) -> Self {
        LiveDecoder {
            decode: LiveDecode::new(registry, context, None),
        }
    }

    pub fn on_event(&mut self, store: &CaptureStore, event: &CaptureEvent) -> Vec<MessageLine> {
        let data = store.read();
        let mut out: Vec<Decoded> = Vec::new();
        let (connection, flags) = match event {
            CaptureEvent::Closed(id) => {
                // The close completes messages that run until it (an HTTP/1.0 response).
                self.decode.finish(&data, *id, true, &mut out);
                (*id, String::new())
            }
            CaptureEvent::Packet {
                id,
                connection,
                flags,
                ..
            } => {
                self.decode.packet(&data, *id, &mut out);
                (*connection, flags.to_string())
            }
            _ => return Vec::new(),
        };
        let route = data
            .connection(connection)
            .and_then(|c| c.route.clone())
            .unwrap_or_default();
        if out.is_empty()
            && let CaptureEvent::Packet { id, direction, .. } = event
            && !self.decode.is_deciding(connection)
            && self.decode.protocol(connection).is_none()
        {
            return vec![MessageLine {
                route,
                connection,
                direction: *direction,
                label: "(no dissector)".into(),
                size: data.packet(*id).map_or(0, |p| p.data.len()),
                flags,
            }];
        }
        lines(&route, connection, out, &flags)
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
        let mut live = LiveDecoder::new(Registry::shared(), Arc::default());
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
