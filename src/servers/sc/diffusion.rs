//! The Star Citizen diffusion service (8001; the TLS tap at 8000 sits in front of it):
//! service discovery with the endpoints from configuration, lobby destinations, region
//! setup and heartbeat acks carrying the connection's session id.
//!
//! [`DiffusionSession`] is the socket-free core (client bytes in, reply bytes out); framing,
//! parsing and encoding are the codec's ([`crate::dissect::sc`]), so the protocol is written
//! once.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ScSettings;
use super::pb::diffusion as pb;
use crate::dissect::Framing;
use crate::dissect::sc as codec;
pub use crate::servers::Flow;
use crate::servers::Timeouts;
use crate::servers::connection::{Session, Timing};
use crate::servers::registry::{EmulatedServer, Serve, Start, secs};

/// Largest payload the server accepts from a client.
pub const MAX_CLIENT_PAYLOAD: usize = 1024 * 1024;
/// Malformed messages tolerated on one connection before it is closed.
pub const MAX_BAD: u32 = 8;
/// How long a connection may stay silent (clients heartbeat far more often).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client may take to finish a frame it started, so one that dribbles a byte
/// now and then cannot hold a connection open.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`DiffusionSession::input`] saw, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message answered, by name.
    Answered(String),
    /// A message with a name the server does not handle.
    Ignored(String),
    /// A malformed frame or payload, with the reason.
    Bad(String),
}

/// One connection's state.
pub struct DiffusionSession {
    settings: Arc<ScSettings>,
    session_id: String,
    buf: Vec<u8>,
    bad: u32,
    pub events: Vec<Event>,
}

impl DiffusionSession {
    pub fn new(settings: Arc<ScSettings>) -> Self {
        DiffusionSession {
            settings,
            session_id: super::new_session_id(),
            buf: Vec::new(),
            bad: 0,
            events: Vec::new(),
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Whether a frame is half received.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Takes client bytes; returns the reply bytes and whether to keep the connection.
    pub fn input(&mut self, bytes: &[u8]) -> (Vec<u8>, Flow) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            match codec::frame_within(&buf[at..], MAX_CLIENT_PAYLOAD) {
                Framing::Complete(n) => {
                    let frame = &buf[at..at + n];
                    at += n;
                    // Framing checked the header, so the payload is the rest of the frame.
                    let payload = codec::parse_frame(frame).unwrap_or_default();
                    if let Some(reply) = self.message(payload) {
                        out.extend(codec::write_frame(&reply));
                    }
                    if self.bad >= MAX_BAD {
                        return self.fatal(out, "too many malformed messages");
                    }
                }
                Framing::NeedMore(_) => break,
                // Without the magic there is no telling where the next frame starts.
                Framing::Unframeable { reason, .. } => return self.fatal(out, &reason),
            }
        }
        buf.drain(..at);
        self.buf = buf;
        (out, Flow::Continue)
    }

    fn fatal(&mut self, out: Vec<u8>, reason: &str) -> (Vec<u8>, Flow) {
        self.events.push(Event::Bad(reason.to_owned()));
        self.buf.clear();
        (out, Flow::Close)
    }

    fn bad(&mut self, reason: String) -> Option<Vec<u8>> {
        self.bad += 1;
        self.events.push(Event::Bad(reason));
        None
    }

    /// The reply payload to one message, if any.
    fn message(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let Some(name) = codec::message_name(payload).map(str::to_owned) else {
            return self.bad("payload has no message name (field 1)".into());
        };
        let reply = match name.as_str() {
            "diff.service.online" => {
                if let Err(e) = pb::ServiceDiscoveryRequest::decode(payload) {
                    return self.bad(format!("{name}: {e}"));
                }
                pb::ServiceList {
                    message_name: name.clone(),
                    services: self
                        .settings
                        .services
                        .iter()
                        .map(|s| pb::ServiceEntry {
                            name: s.name.clone(),
                            host: s.host.clone(),
                            port: u32::from(s.port),
                            protocols: s.protocols.clone(),
                            version: s.version.clone(),
                        })
                        .collect(),
                }
                .encode_to_vec()
            }
            "cmsg_ls_req_dests" => {
                if let Err(e) = pb::LobbyDestinationsRequest::decode(payload) {
                    return self.bad(format!("{name}: {e}"));
                }
                pb::LobbyDestinations {
                    message_name: name.clone(),
                    destinations: self
                        .settings
                        .lobby
                        .iter()
                        .map(|d| pb::LobbyDestination {
                            server_id: d.server_id,
                            display_name: d.display_name.clone(),
                            host: d.host.clone(),
                            port: u32::from(d.port),
                            universe: d.universe.clone(),
                            region: d.region.clone(),
                        })
                        .collect(),
                }
                .encode_to_vec()
            }
            "cmsg_set_region_id" => {
                let req = match pb::RegionSetup::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return self.bad(format!("{name}: {e}")),
                };
                // A region the lobby offers is confirmed; any other is answered, not set.
                let confirmed = self
                    .settings
                    .lobby
                    .iter()
                    .any(|d| d.region == req.region_id);
                pb::RegionConfirmation {
                    message_name: name.clone(),
                    region_id: req.region_id,
                    confirmed,
                }
                .encode_to_vec()
            }
            "heartbeat" => {
                let req = match pb::Heartbeat::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return self.bad(format!("{name}: {e}")),
                };
                pb::HeartbeatAck {
                    message_name: "heartbeat_ack".into(),
                    session_id: self.session_id.clone(),
                    sequence: req.sequence,
                }
                .encode_to_vec()
            }
            _ => {
                self.events.push(Event::Ignored(name));
                return None;
            }
        };
        self.events.push(Event::Answered(name));
        Some(reply)
    }
}

/// `[servers.sc_diffusion]`: the diffusion server's timing (besides `enabled` and `listen`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffusionConfig {
    /// How long a client may take to finish a frame it started.
    #[serde(rename = "read_timeout_secs", with = "secs")]
    pub read_timeout: Duration,
    /// How long a connection may stay silent between frames.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        DiffusionConfig {
            read_timeout: READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

pub async fn run(
    listener: TcpListener,
    settings: Arc<ScSettings>,
    config: DiffusionConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    crate::servers::accept_loop(
        "sc-diffusion",
        listener,
        shutdown.clone(),
        move |socket, peer| {
            connection(
                socket,
                peer,
                settings.clone(),
                config.clone(),
                shutdown.clone(),
            )
        },
    )
    .await
}

async fn connection(
    socket: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    settings: Arc<ScSettings>,
    config: DiffusionConfig,
    shutdown: CancellationToken,
) {
    let session = DiffusionSession::new(settings);
    tracing::info!(%peer, session = %session.session_id(), "diffusion client connected");
    let timing = Timing {
        timeouts: Timeouts {
            read: config.read_timeout,
            idle: config.idle_timeout,
        },
        keep_alive: None,
    };
    let session = Logged { session, peer };
    crate::servers::connection::serve("diffusion", socket, peer, session, timing, shutdown).await;
}

/// A session whose events become log lines with the peer's address.
struct Logged {
    session: DiffusionSession,
    peer: std::net::SocketAddr,
}

impl Session for Logged {
    async fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Flow {
        let (reply, flow) = self.session.input(data);
        let peer = self.peer;
        for event in self.session.events.drain(..) {
            match event {
                Event::Answered(name) => tracing::info!(%peer, "diffusion {name}"),
                Event::Ignored(name) => {
                    tracing::info!(%peer, "diffusion: no handler for {name:?}, ignored")
                }
                Event::Bad(reason) => tracing::warn!(%peer, "diffusion: {reason}"),
            }
        }
        out.extend(reply);
        flow
    }

    fn has_partial(&self) -> bool {
        self.session.has_partial()
    }
}

/// The diffusion server's entry in [`crate::servers::registry::REGISTRY`].
pub struct DiffusionServer;

impl EmulatedServer for DiffusionServer {
    type Settings = DiffusionConfig;

    fn start(&self, s: Start<DiffusionConfig>) -> Result<Serve, String> {
        Ok(Box::pin(run(
            s.listener,
            s.ctx.sc,
            s.settings,
            s.ctx.shutdown,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn session() -> DiffusionSession {
        DiffusionSession::new(Arc::new(ScSettings::default()))
    }

    #[test]
    fn split_frames_are_reassembled_and_answered_in_order() {
        let mut s = session();
        let mut bytes = codec::write_message(&pb::Heartbeat {
            message_name: "heartbeat".into(),
            sequence: 7,
        });
        bytes.extend(codec::write_message(&pb::LobbyDestinationsRequest {
            message_name: "cmsg_ls_req_dests".into(),
            sequence: 2,
        }));
        let mut out = Vec::new();
        for chunk in bytes.chunks(3) {
            let (o, flow) = s.input(chunk);
            assert_eq!(flow, Flow::Continue);
            out.extend(o);
        }
        let len = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        let ack = pb::HeartbeatAck::decode(&out[8..8 + len]).unwrap();
        assert_eq!(ack.sequence, 7);
        assert!(ack.session_id.starts_with("sc_session_"));
        let rest = &out[8 + len..];
        let dests = pb::LobbyDestinations::decode(&rest[8..]).unwrap();
        assert_eq!(
            dests.destinations[0].display_name,
            "Persistent Universe - Stanton System"
        );
    }

    /// A client on a real socket (127.0.0.1) that writes each chunk and then waits its
    /// pause, then stays connected and silent; the runtime's clock is paused, so timeouts
    /// pass at once. Returns how long the server kept the connection, in tokio time.
    async fn held_open(steps: Vec<(Vec<u8>, Duration)>) -> Duration {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (socket, peer) = listener.accept().await.expect("accept");
            let start = tokio::time::Instant::now();
            let settings = Arc::new(ScSettings::default());
            let config = DiffusionConfig::default();
            connection(socket, peer, settings, config, CancellationToken::new()).await;
            start.elapsed()
        });
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let client = tokio::spawn(async move {
            for (bytes, pause) in steps {
                if socket.write_all(&bytes).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            std::future::pending::<()>().await;
        });
        let held = server.await.expect("server task");
        client.abort();
        held
    }

    fn heartbeat() -> Vec<u8> {
        codec::write_message(&pb::Heartbeat {
            message_name: "heartbeat".into(),
            sequence: 1,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_dribbling_a_frame_is_closed_at_the_read_timeout() {
        // One byte every 20 s: each read comes well inside the idle timeout, but the frame
        // would take minutes.
        let steps = heartbeat()
            .into_iter()
            .map(|b| (vec![b], Duration::from_secs(20)))
            .collect();
        let held = held_open(steps).await;
        assert!(
            held >= READ_TIMEOUT && held < READ_TIMEOUT + Duration::from_secs(20),
            "held {held:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_between_frames_is_kept_until_the_idle_timeout() {
        let held = held_open(vec![(heartbeat(), Duration::ZERO)]).await;
        assert!(
            held >= IDLE_TIMEOUT && held < IDLE_TIMEOUT + Duration::from_secs(1),
            "held {held:?}"
        );
    }

    #[test]
    fn garbage_closes_and_bad_payloads_are_counted() {
        let mut s = session();
        assert_eq!(s.input(b"\x05\0\0\0nope!").1, Flow::Close);
        let mut s = session();
        let (out, flow) = s.input(&codec::write_frame(b"\x0a\xff"));
        assert!(out.is_empty());
        assert_eq!(flow, Flow::Continue);
        assert!(matches!(s.events[0], Event::Bad(_)));
        let mut s = session();
        assert_eq!(
            s.input(&[0xff, 0xff, 0xff, 0x7f, 0xef, 0xbe, 0xad, 0xde]).1,
            Flow::Close
        );
    }
}
