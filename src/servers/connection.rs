//! The one connection loop of the connection-oriented servers: greet, read under the read
//! clock, feed the session, write its replies, send keep-alives, stop on shutdown. What a
//! protocol says is its session's business ([`Session`]); when and how bytes move is here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::registry::secs;

/// Whether the connection goes on after a batch of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// A connection's protocol state as the loop drives it: bytes in, bytes out, no socket.
pub trait Session: Send {
    /// What the server says as soon as the client connects (GP's challenge).
    fn greeting(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// The keep-alive to send on a tick, if the session is far enough along for one.
    fn keep_alive(&self) -> Option<Vec<u8>> {
        None
    }

    /// Takes client bytes (any split) and appends the replies to `out`.
    fn feed(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> impl std::future::Future<Output = Flow> + Send;

    /// Whether a message is half received (the read timeout runs then, not the idle one).
    fn has_partial(&self) -> bool;
}

/// The timing and limits every connection-oriented server's section has (flattened into
/// it: `read_timeout_secs`, `idle_timeout_secs`, `max_message`, `max_bad_messages`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionConfig {
    /// How long a client may take to finish a message it started (and a TLS handshake).
    #[serde(rename = "read_timeout_secs", with = "secs")]
    pub read_timeout: Duration,
    /// How long a connection may stay silent before it is closed.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// Largest message accepted from a client, in bytes.
    pub max_message: usize,
    /// Malformed messages tolerated on one connection (each answered in the protocol's
    /// error form); the next one closes it.
    pub max_bad_messages: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_message: 64 * 1024,
            max_bad_messages: 8,
        }
    }
}

impl ConnectionConfig {
    /// These timeouts with a keep-alive every `keep_alive` (zero: none).
    pub fn timing(&self, keep_alive: Duration) -> Timing {
        Timing {
            timeouts: Timeouts {
                read: self.read_timeout,
                idle: self.idle_timeout,
            },
            keep_alive: Some(keep_alive),
        }
    }
}

/// When a connection's reads must come and how often it is kept alive.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub timeouts: Timeouts,
    /// Keep-alive interval; `None` for protocols without one.
    pub keep_alive: Option<Duration>,
}

/// Accepts clients until `shutdown` and runs each through [`serve`] with the session that
/// `session` makes for its peer; with `tls`, after a handshake that must finish within the
/// read timeout.
pub async fn serve_all<C, F>(
    name: &'static str,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    timing: Timing,
    shutdown: CancellationToken,
    session: F,
) -> std::io::Result<()>
where
    C: Session + 'static,
    F: Fn(SocketAddr) -> C + Send + 'static,
{
    let stop = shutdown.clone();
    super::accept_loop(name, listener, stop, move |socket, peer| {
        let (session, tls, shutdown) = (session(peer), tls.clone(), shutdown.clone());
        async move {
            let Some(config) = tls else {
                return serve(name, socket, peer, session, timing, shutdown).await;
            };
            let accept = tokio_rustls::TlsAcceptor::from(config).accept(socket);
            match tokio::time::timeout(timing.timeouts.read, accept).await {
                Ok(Ok(tls)) => serve(name, tls, peer, session, timing, shutdown).await,
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "{name}: TLS handshake failed"),
                Err(_) => tracing::warn!(%peer, "{name}: TLS handshake timed out"),
            }
        }
    })
    .await
}

/// Runs one connection until the client or the session ends it, a timeout passes or
/// `shutdown`; then shuts the stream down. `name` prefixes the log lines.
pub async fn serve<S, C>(
    name: &str,
    mut stream: S,
    peer: SocketAddr,
    mut session: C,
    timing: Timing,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Session,
{
    tracing::debug!(%peer, "{name}: connected");
    let greeting = session.greeting();
    if !greeting.is_empty() && stream.write_all(&greeting).await.is_err() {
        return;
    }
    let mut clock = ReadClock::new();
    // Zero means none (an interval of zero would spin); a disabled branch still needs an
    // interval to exist, so a period of a year stands in.
    let keep = timing.keep_alive.filter(|d| !d.is_zero());
    let period = keep.unwrap_or(Duration::from_secs(86_400 * 365));
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let reason = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break "server shutting down".to_string(),
            _ = keep_alive.tick(), if keep.is_some() => {
                if let Some(ka) = session.keep_alive()
                    && stream.write_all(&ka).await.is_err()
                {
                    break "write failed".into();
                }
            }
            read = clock.read(&mut stream, &mut buf, timing.timeouts) => match read {
                Ok(0) => break "client closed".into(),
                Ok(n) => {
                    let flow = session.feed(&buf[..n], &mut out).await;
                    clock.after_read(session.has_partial());
                    if !out.is_empty() {
                        if let Err(e) = stream.write_all(&out).await {
                            break format!("write failed: {e}");
                        }
                        out.clear();
                    }
                    if flow == Flow::Close {
                        break "closed by server".into();
                    }
                }
                Err(e) => {
                    tracing::info!(%peer, "{name}: {e}; closing");
                    break e.to_string();
                }
            }
        }
    };
    let _ = stream.shutdown().await;
    tracing::debug!(%peer, reason, "{name}: connection ended");
}

/// When a connection's next read must arrive: within `read_timeout` of the start of a
/// half-received message (so a client dribbling bytes cannot hold it open), otherwise within
/// `idle_timeout` of the last read. Keep-alives the server sends do not count as activity.
pub(crate) struct ReadClock {
    last_read: tokio::time::Instant,
    partial_since: Option<tokio::time::Instant>,
}

impl ReadClock {
    pub(crate) fn new() -> Self {
        ReadClock {
            last_read: tokio::time::Instant::now(),
            partial_since: None,
        }
    }

    /// Records a read after which `partial` says whether a message is half received.
    pub(crate) fn after_read(&mut self, partial: bool) {
        let now = tokio::time::Instant::now();
        self.last_read = now;
        if partial {
            self.partial_since.get_or_insert(now);
        } else {
            self.partial_since = None;
        }
    }

    /// Reads into `buf` before the deadline. `Ok(0)` is end of stream.
    pub(crate) async fn read<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
        buf: &mut [u8],
        limits: Timeouts,
    ) -> Result<usize, ReadEnd> {
        use tokio::io::AsyncReadExt;
        let (deadline, late) = match self.partial_since {
            Some(t) => (t + limits.read, ReadEnd::Stalled),
            None => (self.last_read + limits.idle, ReadEnd::Idle),
        };
        match tokio::time::timeout_at(deadline, reader.read(buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ReadEnd::Io(e)),
            Err(_) => Err(late),
        }
    }
}

/// The two limits a [`ReadClock`] applies.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To finish a message once its first byte has arrived.
    pub read: Duration,
    /// Of silence between messages.
    pub idle: Duration,
}

#[derive(Debug)]
pub(crate) enum ReadEnd {
    Io(std::io::Error),
    Stalled,
    Idle,
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Io(e) => write!(f, "read error: {e}"),
            ReadEnd::Stalled => f.write_str("client never finished its message (read timeout)"),
            ReadEnd::Idle => f.write_str("connection idle too long"),
        }
    }
}
