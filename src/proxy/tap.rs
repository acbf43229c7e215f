//! TCP taps: accept a client, optionally terminate its TLS with a leaf of our CA, connect to
//! the upstream (optionally over TLS), and relay both directions while recording every read.
//!
//! Each direction is one loop: read, record, (hold at a breakpoint), write. Writing before
//! the next read gives back-pressure for free: a slow reader on one side slows the writer on
//! the other instead of growing a buffer. Where both legs are plain TCP on Linux and no
//! breakpoint watches the route, the read and write are splices through a pipe, so the bytes
//! never pass through user space (see `splice.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::capture::{Direction, PacketFlags, Transport, UNKNOWN_ADDR};
use crate::dissect::{Context, Dissector, Framing, StreamDecoder};

use super::intercept::{Decision, Injection, Interceptor};
use super::record::{ConnRecorder, Recorder};
use super::resolve::UpstreamResolver;
use super::splice::ZeroCopy;
use super::tls::tls_info;

/// Where a tap sends what its clients say.
#[derive(Clone)]
pub struct Upstream {
    /// Host name (for DNS and SNI) or IP address.
    pub host: String,
    pub port: u16,
    /// A fixed address, which skips DNS.
    pub address: Option<SocketAddr>,
    /// Speak TLS to the upstream with this configuration (ALPN is copied from the client).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The configuration accepts any certificate; recorded on each connection.
    pub insecure: bool,
}

impl Upstream {
    pub fn describe(&self) -> String {
        match self.address {
            Some(a) if a.ip().to_string() != self.host => {
                format!("{}:{} ({a})", self.host, self.port)
            }
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// One configured TCP tap.
#[derive(Clone)]
pub struct TapSettings {
    pub route: String,
    /// Terminate the client's TLS with this configuration (a leaf of our CA by SNI).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub upstream: Upstream,
    /// Frames messages when breakpoints watch the route.
    pub dissector: Option<Arc<dyn Dissector>>,
    pub dissect_context: Context,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
}

/// What taps share within one engine.
#[derive(Clone)]
pub struct TapShared {
    pub recorder: Recorder,
    pub interceptor: Arc<Interceptor>,
    pub resolver: Option<UpstreamResolver>,
}

/// Accepts clients until `shutdown`; each connection runs on its own task and is stopped
/// with the tap.
pub async fn run_tcp(
    listener: TcpListener,
    settings: Arc<TapSettings>,
    shared: TapShared,
    shutdown: CancellationToken,
) {
    let route = settings.route.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let settings = settings.clone();
                let shared = shared.clone();
                let stop = shutdown.child_token();
                tokio::spawn(async move {
                    handle_client(stream, peer, &settings, &shared, stop).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the tap keeps running.
                tracing::warn!(route = %route, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

fn boxed_tcp(stream: TcpStream) -> (BoxRead, BoxWrite) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// One side of a relay: a plain TCP socket (which may be spliced) or a TLS stream.
enum Leg {
    Plain(TcpStream),
    Boxed(BoxRead, BoxWrite),
}

/// The two directions' ends, client→server first, with zero-copy pumps when both legs are
/// plain TCP.
struct Ends {
    client_r: BoxRead,
    client_w: BoxWrite,
    server_r: BoxRead,
    server_w: BoxWrite,
    zero_copy: Option<(ZeroCopy, ZeroCopy)>,
}

fn ends(client: Leg, server: Leg) -> Ends {
    match (client, server) {
        #[cfg(target_os = "linux")]
        (Leg::Plain(c), Leg::Plain(s)) => {
            use super::splice::SharedTcp;
            let (c, s) = (Arc::new(c), Arc::new(s));
            Ends {
                client_r: Box::new(SharedTcp(c.clone())),
                client_w: Box::new(SharedTcp(c.clone())),
                server_r: Box::new(SharedTcp(s.clone())),
                server_w: Box::new(SharedTcp(s.clone())),
                zero_copy: Some((ZeroCopy::new(c.clone(), s.clone()), ZeroCopy::new(s, c))),
            }
        }
        (client, server) => {
            let leg = |l| match l {
                Leg::Plain(t) => boxed_tcp(t),
                Leg::Boxed(r, w) => (r, w),
            };
            let ((client_r, client_w), (server_r, server_w)) = (leg(client), leg(server));
            Ends {
                client_r,
                client_w,
                server_r,
                server_w,
                zero_copy: None,
            }
        }
    }
}

fn boxed<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> (BoxRead, BoxWrite) {
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), Box::new(w))
}

async fn handle_client(
    client: TcpStream,
    peer: SocketAddr,
    settings: &TapSettings,
    shared: &TapShared,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let server_guess = settings
        .upstream
        .address
        .or_else(|| {
            settings
                .upstream
                .host
                .parse()
                .ok()
                .map(|ip| SocketAddr::new(ip, settings.upstream.port))
        })
        .unwrap_or(UNKNOWN_ADDR);
    let conn = shared
        .recorder
        .open(&settings.route, peer, server_guess, Transport::Tcp);
    if let Some(d) = &settings.dissector {
        conn.set_protocol(d.name());
    }

    // Client side first: a failed handshake is the client's problem, not the upstream's.
    let mut client_alpn = None;
    let client = match &settings.tls {
        None => Leg::Plain(client),
        Some(config) => {
            let accept = TlsAcceptor::from(config.clone()).accept(client);
            match tokio::time::timeout(settings.handshake_timeout, accept).await {
                Ok(Ok(tls)) => {
                    let (_, state) = tls.get_ref();
                    let info = tls_info(state, state.server_name());
                    client_alpn = state.alpn_protocol().map(<[u8]>::to_vec);
                    conn.set_tls(info);
                    let (r, w) = boxed(tls);
                    Leg::Boxed(r, w)
                }
                Ok(Err(e)) => {
                    conn.close(format!("TLS handshake with the client failed: {e}"));
                    return;
                }
                Err(_) => {
                    conn.close("TLS handshake with the client timed out");
                    return;
                }
            }
        }
    };

    let server = match connect_upstream(settings, shared, client_alpn, &conn).await {
        Ok(leg) => leg,
        Err(reason) => {
            tracing::warn!(route = %settings.route, client = %peer, "{reason}");
            conn.close(reason);
            return;
        }
    };

    relay(ends(client, server), settings, shared, &conn, stop).await;
}

async fn connect_upstream(
    settings: &TapSettings,
    shared: &TapShared,
    client_alpn: Option<Vec<u8>>,
    conn: &ConnRecorder,
) -> Result<Leg, String> {
    let up = &settings.upstream;
    let addr = upstream_addr(up, shared)
        .await
        .map_err(|e| format!("upstream: {e}"))?;
    conn.set_server(addr);
    let stream =
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("upstream {}: connect failed: {e}", up.describe())),
            Err(_) => {
                return Err(format!(
                    "upstream {}: connect timed out after {} s",
                    up.describe(),
                    settings.connect_timeout.as_secs()
                ));
            }
        };
    let _ = stream.set_nodelay(true);
    let Some(config) = &up.tls else {
        return Ok(Leg::Plain(stream));
    };
    let config = match client_alpn {
        // Pass the client's protocol through so both legs speak the same thing.
        Some(alpn) => {
            let mut c = (**config).clone();
            c.alpn_protocols = vec![alpn];
            Arc::new(c)
        }
        None => config.clone(),
    };
    let name = rustls::pki_types::ServerName::try_from(up.host.clone())
        .map_err(|e| format!("upstream {}: not a valid TLS name: {e}", up.host))?;
    let connect = TlsConnector::from(config).connect(name, stream);
    match tokio::time::timeout(settings.handshake_timeout, connect).await {
        Ok(Ok(tls)) => {
            if up.insecure {
                tracing::info!(route = %settings.route, "upstream certificate not verified (insecure route)");
            }
            let (r, w) = boxed(tls);
            Ok(Leg::Boxed(r, w))
        }
        Ok(Err(e)) => Err(format!(
            "upstream {}: TLS handshake failed: {e}",
            up.describe()
        )),
        Err(_) => Err(format!(
            "upstream {}: TLS handshake timed out",
            up.describe()
        )),
    }
}

/// The upstream's address: the configured one, else DNS (never the hosts file, when the
/// engine has a resolver), else the system's lookup.
pub(crate) async fn upstream_addr(up: &Upstream, shared: &TapShared) -> Result<SocketAddr, String> {
    if let Some(a) = up.address {
        return Ok(a);
    }
    match &shared.resolver {
        Some(r) => r
            .resolve(&up.host, up.port)
            .await
            .map_err(|e| e.to_string()),
        None => tokio::net::lookup_host((up.host.as_str(), up.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve {}", up.host)),
    }
}

/// How one direction ended.
#[derive(Debug)]
enum End {
    Eof,
    ReadError(io::Error),
    WriteError(io::Error),
    Idle,
    Stopped,
}

/// Milliseconds since the connection started, of the last byte either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Pump<'a> {
    direction: Direction,
    settings: &'a TapSettings,
    shared: &'a TapShared,
    conn: &'a ConnRecorder,
    activity: &'a Activity,
    stop: &'a CancellationToken,
}

async fn relay(
    ends: Ends,
    settings: &TapSettings,
    shared: &TapShared,
    conn: &ConnRecorder,
    stop: CancellationToken,
) {
    let (to_server, to_client) = shared.interceptor.register(conn.id());
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let up = Pump {
        direction: Direction::ClientToServer,
        settings,
        shared,
        conn,
        activity: &activity,
        stop: &stop,
    };
    let down = Pump {
        direction: Direction::ServerToClient,
        ..up
    };
    let (up_copy, down_copy) = match ends.zero_copy {
        Some((u, d)) => (Some(u), Some(d)),
        None => (None, None),
    };
    let a = up.run(ends.client_r, ends.server_w, to_server, up_copy);
    let b = down.run(ends.server_r, ends.client_w, to_client, down_copy);
    tokio::pin!(a, b);
    let (first_dir, first_end) = tokio::select! {
        e = &mut a => (Direction::ClientToServer, e),
        e = &mut b => (Direction::ServerToClient, e),
    };
    let reason = describe_end(first_dir, &first_end, settings);
    if matches!(first_end, End::Eof) {
        // Half-close: the other side may still have things to say.
        let second_end = match first_dir {
            Direction::ClientToServer => b.await,
            Direction::ServerToClient => a.await,
        };
        let second = describe_end(first_dir.reverse(), &second_end, settings);
        conn.close(if matches!(second_end, End::Eof) {
            reason
        } else {
            format!("{reason}; then {second}")
        });
    } else {
        conn.close(reason);
    }
    shared.interceptor.unregister(conn.id());
}

fn describe_end(dir: Direction, end: &End, settings: &TapSettings) -> String {
    let (reader, writer) = match dir {
        Direction::ClientToServer => ("client", "server"),
        Direction::ServerToClient => ("server", "client"),
    };
    match end {
        End::Eof => format!("closed by {reader}"),
        End::ReadError(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            format!("reset by {reader}")
        }
        // Common and harmless (gRPC channels, browsers): the TCP close still ends the stream.
        End::ReadError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            format!("closed by {reader} (without TLS close_notify)")
        }
        End::ReadError(e) => format!("read from {reader} failed: {e}"),
        End::WriteError(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            format!("reset by {writer}")
        }
        End::WriteError(e) => format!("write to {writer} failed: {e}"),
        End::Idle => format!(
            "idle timeout ({} s without traffic)",
            settings.idle_timeout.as_secs()
        ),
        End::Stopped => "route stopped".to_string(),
    }
}

const READ_BUF: usize = 256 * 1024;

impl Pump<'_> {
    async fn run(
        self,
        mut from: BoxRead,
        mut to: BoxWrite,
        mut inject: mpsc::Receiver<Injection>,
        mut zero_copy: Option<ZeroCopy>,
    ) -> End {
        if let Some(z) = &mut zero_copy
            && let Err(e) = z.prepare()
        {
            tracing::debug!(route = %self.settings.route, "relaying by copying: {e}");
            zero_copy = None;
        }
        let mut buf = vec![0u8; READ_BUF];
        let mut framer: Option<Framer> = None;
        let mut inject_open = true;
        let end = loop {
            // Breakpoints need the bytes in hand to frame and hold messages.
            let splicing = self.watching().is_none() && zero_copy.is_some();
            let read = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break End::Stopped,
                injected = inject.recv(), if inject_open => {
                    match injected {
                        Some(i) => {
                            if let Err(e) = self.inject(&mut to, i).await {
                                break End::WriteError(e);
                            }
                        }
                        None => inject_open = false,
                    }
                    continue;
                }
                r = tokio::time::timeout(
                    self.settings.idle_timeout,
                    read_some(&mut from, &mut buf, zero_copy.as_mut().filter(|_| splicing)),
                ) => r,
            };
            let n = match read {
                Err(_) => {
                    if self.activity.idle_for() >= self.settings.idle_timeout {
                        break End::Idle;
                    }
                    continue;
                }
                Ok(Ok(0)) => break End::Eof,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => break End::ReadError(e),
            };
            self.activity.touch();
            // A breakpoint set while the read was waiting must still see these bytes.
            let dissector = self.watching();
            let mut piped = splicing;
            if let Some(z) = zero_copy.as_mut().filter(|_| piped && dissector.is_some()) {
                if let Err(e) = z.take_out(&mut buf[..n]) {
                    break End::ReadError(e);
                }
                piped = false;
            }
            let Some(dissector) = dissector else {
                if let Some(f) = framer.take()
                    && !f.pending.is_empty()
                {
                    // Breakpoints were removed mid-message: let the partial message through.
                    self.conn.packet(self.direction, &f.pending);
                    if let Err(e) = to.write_all(&f.pending).await {
                        break End::WriteError(e);
                    }
                }
                let sent = match zero_copy.as_mut().filter(|_| piped) {
                    Some(z) => {
                        z.record(self.conn, self.direction, n);
                        z.forward(n).await
                    }
                    None => {
                        self.conn.packet(self.direction, &buf[..n]);
                        to.write_all(&buf[..n]).await
                    }
                };
                if let Err(e) = sent {
                    break End::WriteError(e);
                }
                continue;
            };
            let f = framer.get_or_insert_with(|| Framer {
                decoder: dissector.decoder(self.direction, &self.settings.dissect_context),
                pending: Vec::new(),
            });
            f.pending.extend_from_slice(&buf[..n]);
            if let Err(e) = self.forward_messages(f, &mut to).await {
                break End::WriteError(e);
            }
        };
        if let Some(f) = framer
            && !f.pending.is_empty()
            && matches!(end, End::Eof)
        {
            self.conn.packet(self.direction, &f.pending);
            let _ = to.write_all(&f.pending).await;
        }
        if matches!(end, End::Eof) {
            let _ = to.shutdown().await;
        }
        end
    }

    /// The route's dissector while breakpoints watch the route.
    fn watching(&self) -> Option<&Arc<dyn Dissector>> {
        self.settings
            .dissector
            .as_ref()
            .filter(|_| self.shared.interceptor.watches(&self.settings.route))
    }

    async fn inject(&self, to: &mut BoxWrite, injection: Injection) -> io::Result<()> {
        let result = to.write_all(&injection.bytes).await;
        if result.is_ok() {
            self.conn.packet_with(
                self.direction,
                &injection.bytes,
                PacketFlags::INJECTED,
                None,
            );
            self.activity.touch();
        }
        if let Some(done) = injection.done {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        result
    }

    /// Sends every whole message in the framer's buffer, each past the breakpoints.
    async fn forward_messages(&self, f: &mut Framer, to: &mut BoxWrite) -> io::Result<()> {
        loop {
            let framing = f.decoder.frame(&f.pending);
            let len = match framing {
                Framing::Complete(n) => n.min(f.pending.len()),
                Framing::NeedMore(_) => return Ok(()),
                Framing::Unframeable { skip, .. } => {
                    let n = skip.clamp(1, f.pending.len());
                    let chunk: Vec<u8> = f.pending.drain(..n).collect();
                    self.conn.packet(self.direction, &chunk);
                    to.write_all(&chunk).await?;
                    continue;
                }
            };
            if len == 0 {
                return Ok(());
            }
            let msg: Vec<u8> = f.pending.drain(..len).collect();
            let decoded = f.decoder.decode(&msg);
            let decision = self
                .shared
                .interceptor
                .check(
                    &self.settings.route,
                    self.conn.id(),
                    self.direction,
                    &decoded,
                    &msg,
                )
                .await;
            match decision {
                Decision::Forward => {
                    self.conn.packet(self.direction, &msg);
                    to.write_all(&msg).await?;
                }
                Decision::ForwardEdited(edited) => {
                    self.conn
                        .packet_with(self.direction, &edited, PacketFlags::EDITED, Some(&msg));
                    to.write_all(&edited).await?;
                }
                Decision::Drop => {
                    self.conn
                        .packet_with(self.direction, &msg, PacketFlags::DROPPED, None);
                }
            }
            self.activity.touch();
        }
    }
}

/// One read of at most `buf.len()` bytes: into the pipes of `zero_copy` when given (so
/// they still fit `buf` if a breakpoint turns up), else into `buf`.
async fn read_some(
    from: &mut BoxRead,
    buf: &mut [u8],
    zero_copy: Option<&mut ZeroCopy>,
) -> io::Result<usize> {
    match zero_copy {
        Some(z) => z.take(buf.len()).await,
        None => from.read(buf).await,
    }
}

/// Message framing for one direction, made when breakpoints first watch the route.
struct Framer {
    decoder: Box<dyn StreamDecoder>,
    pending: Vec<u8>,
}
