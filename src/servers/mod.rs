//! The emulated game backends. Each is an ordinary network server with
//! `run(listener, context, shutdown)`; none records traffic itself (the tap in front does).
//!
//! Each connection handler is split in two: a socket-free core that takes client bytes and
//! returns reply bytes (what the tests and fuzzers drive), and a task that moves bytes
//! between that core and a socket, with the timers (keep-alive, read timeout).

pub mod fesl;
pub mod gp;
pub mod ra3_client;
pub mod sc;
pub mod sc_client;

use std::time::Duration;

/// Default FESL port (Red Alert 3).
pub const FESL_PORT: u16 = 18800;
/// Default GameSpy GP port.
pub const GP_PORT: u16 = 29900;

/// Timing and limits shared by the RA3 servers.
#[derive(Clone, Debug)]
pub struct Ra3Config {
    /// How often the server sends a keep-alive (FESL `Ping`, GP `\ka\`).
    pub ping_interval: Duration,
    /// How long a GameSpyPreAuth ticket stays valid.
    pub ticket_ttl: Duration,
    /// Fragment size used until the client's Hello names one.
    pub fragment_size: usize,
    /// How long a client may take to finish a packet it started.
    pub read_timeout: Duration,
    /// How long a connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Largest packet or reassembled message accepted from a client, in bytes.
    pub max_message: usize,
    /// Malformed messages tolerated on one connection before it is closed.
    pub max_bad_messages: u32,
    /// Where the FESL Hello sends clients for the theater (not emulated yet).
    pub theater_ip: String,
    pub theater_port: u16,
}

impl Default for Ra3Config {
    fn default() -> Self {
        Ra3Config {
            ping_interval: Duration::from_secs(30),
            ticket_ttl: Duration::from_secs(300),
            fragment_size: 8096,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_message: 64 * 1024,
            max_bad_messages: 8,
            theater_ip: "127.0.0.1".into(),
            theater_port: 18805,
        }
    }
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
    pub(crate) async fn read<R: tokio::io::AsyncRead + Unpin>(
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
pub(crate) struct Timeouts {
    /// To finish a message once its first byte has arrived.
    pub read: Duration,
    /// Of silence between messages.
    pub idle: Duration,
}

impl Ra3Config {
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            read: self.read_timeout,
            idle: self.idle_timeout,
        }
    }
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

/// Accepts clients until `shutdown`, one task per connection, and waits for those tasks
/// before returning, so that a stopped server has really let go of its clients.
pub async fn accept_loop<F, Fut>(
    name: &str,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    mut serve: F,
) -> std::io::Result<()>
where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    tracker.spawn(serve(socket, peer));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
