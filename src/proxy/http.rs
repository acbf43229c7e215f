//! The HTTP(S) forward proxy: clients set it as their proxy (`-x http://127.0.0.1:8080`),
//! gamewire terminates their TLS with a leaf from its CA, and every request, response and
//! WebSocket message is recorded as a packet of the client's connection.
//!
//! Shape: a thin front layer of our own accepts the clients, answers `CONNECT`, terminates
//! TLS (so it knows the SNI, ALPN, version and cipher the client negotiated) and sniffs the
//! first bytes of the tunnel. HTTP (1.1 or h2) goes on, decrypted, to an in-process
//! hudsucker proxy on a loopback listener, which does the HTTP proxying, WebSocket and the
//! upstream connection pool; its handlers find the recorded connection by the loopback
//! peer address. Anything else after `CONNECT` (a game protocol, TLS-wrapped or not, or a
//! server that speaks first) is relayed by the front layer itself and recorded read by
//! read; hudsucker would tunnel it blind.
//!
//! Recording: a request or response is one packet in HTTP/1.1 wire form (head, then body),
//! written when its body ends, so the `http` dissector decodes it. Bodies are re-framed
//! for the record: `Content-Length` when the length is known, chunked with trailers when
//! the message had trailers (gRPC). HTTP/2 traffic is recorded the same way; the
//! connection's ALPN (`h2`) says it was HTTP/2. WebSocket messages are recorded as
//! unmasked WebSocket frames after a `101` response.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hudsucker::hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, TRANSFER_ENCODING};
use hudsucker::hyper::{Method, Request, Response, StatusCode, Uri};
use hudsucker::tokio_tungstenite::tungstenite::Message;
use hudsucker::{
    Body, HttpContext, HttpHandler, Proxy, RequestOrResponse, WebSocketContext, WebSocketHandler,
};
use parking_lot::Mutex;
use rustls::ClientConfig;
use rustls::server::Acceptor;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use super::ca::Ca;
use super::record::{ConnRecorder, Recorder};
use crate::capture::{Direction, PacketFlags, TlsInfo, Transport};

/// Longest `CONNECT` or first request head the front layer reads.
const MAX_HEAD: usize = 64 * 1024;
/// How much of each body goes into the capture; the rest is relayed but not recorded.
pub const MAX_RECORDED_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct HttpProxyOptions {
    /// The route name recorded on every connection.
    pub route: String,
    /// Trust the operating system's root certificates upstream.
    pub system_roots: bool,
    /// Also trust the certificates in this PEM (or DER) file upstream.
    pub extra_ca: Option<PathBuf>,
    /// Accept any upstream certificate. Recorded on every connection.
    pub insecure_upstream: bool,
    /// Roots given in memory (the engine passes gamewire's own CA, so emulators serving our
    /// leaves are reachable through the proxy).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// How long to wait for a client's first bytes after `CONNECT` before deciding the
    /// server speaks first and relaying raw.
    pub first_bytes_timeout: Duration,
}

impl Default for HttpProxyOptions {
    fn default() -> Self {
        HttpProxyOptions {
            route: "proxy".to_string(),
            system_roots: true,
            extra_ca: None,
            insecure_upstream: false,
            extra_roots: Vec::new(),
            first_bytes_timeout: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream TLS: {0}")]
    UpstreamTls(#[from] super::tls::TlsSetupError),
    #[error("proxy: {0}")]
    Io(#[from] io::Error),
    #[error("proxy: {0}")]
    Hudsucker(#[from] hudsucker::Error),
}

/// Runs the proxy on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    ca: Arc<Ca>,
    recorder: Recorder,
    options: HttpProxyOptions,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let proxy_addr = listener.local_addr()?;
    if !proxy_addr.ip().is_unspecified() {
        ca.set_default_name(&proxy_addr.ip().to_string());
    }
    let upstream_tls = upstream_client_config(&options)?;
    let internal = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let internal_addr = internal.local_addr()?;
    let shared = Arc::new(Shared {
        ca: ca.clone(),
        recorder,
        options,
        upstream_tls: upstream_tls.clone(),
        links: Mutex::new(HashMap::new()),
        internal: internal_addr,
        proxy_addr,
    });

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*upstream_tls).clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let handler = Handler {
        shared: shared.clone(),
        current: None,
    };
    let inner = Proxy::builder()
        .with_listener(internal)
        .with_ca((*ca).clone())
        .with_http_connector(https)
        .with_http_handler(handler.clone())
        .with_websocket_handler(handler)
        .with_websocket_connector(hudsucker::tokio_tungstenite::Connector::Rustls(
            upstream_tls,
        ))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .build()?;
    let inner = tokio::spawn(inner.start());

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, client) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                tracing::warn!("proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let rec = shared.recorder.open(
                &shared.options.route,
                client,
                shared.proxy_addr,
                Transport::Tcp,
            );
            let reason = tokio::select! {
                reason = front(&shared, &rec, tcp) => reason,
                () = shutdown.cancelled() => "proxy stopped".to_string(),
            };
            let reason = if shared.options.insecure_upstream {
                format!("{reason}; upstream certificate not verified (insecure_upstream)")
            } else {
                reason
            };
            rec.close(reason);
        });
    }
    match inner.await {
        Ok(result) => result.map_err(ProxyError::from),
        Err(e) => Err(ProxyError::Io(io::Error::other(e))),
    }
}

/// Upstream TLS trust as the options say. No ALPN: hyper-rustls adds its own.
pub fn upstream_client_config(options: &HttpProxyOptions) -> Result<Arc<ClientConfig>, ProxyError> {
    let trust = super::tls::UpstreamTrust {
        system_roots: options.system_roots,
        extra_ca: options.extra_ca.clone(),
        insecure: options.insecure_upstream,
        extra_roots: options.extra_roots.clone(),
    };
    Ok(super::tls::client_config(&trust, Vec::new())?)
}

struct Shared {
    ca: Arc<Ca>,
    recorder: Recorder,
    options: HttpProxyOptions,
    upstream_tls: Arc<ClientConfig>,
    /// Front-layer connections handed to hudsucker, by the loopback address hudsucker
    /// sees as their client.
    links: Mutex<HashMap<SocketAddr, Link>>,
    internal: SocketAddr,
    proxy_addr: SocketAddr,
}

impl Shared {
    fn link(&self, addr: &SocketAddr) -> Option<Link> {
        self.links.lock().get(addr).cloned()
    }
}

#[derive(Clone)]
struct Link {
    rec: ConnRecorder,
    /// Scheme and authority of the `CONNECT` target; hudsucker sees origin-form requests.
    scheme: &'static str,
    authority: Option<String>,
    server_known: Arc<AtomicBool>,
}

/// What the first bytes of a stream are.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Tls,
    Http,
    Other,
}

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT", b"PRI",
];

/// `None` while the bytes could still become either.
fn sniff(first: &[u8]) -> Option<Sniffed> {
    let &b0 = first.first()?;
    if b0 == 0x16 {
        return Some(Sniffed::Tls);
    }
    match first.iter().position(|&b| b == b' ') {
        Some(n) if METHODS.contains(&&first[..n]) => Some(Sniffed::Http),
        Some(_) => Some(Sniffed::Other),
        None if first.len() < 8 && METHODS.iter().any(|m| m.starts_with(first)) => None,
        None => Some(Sniffed::Other),
    }
}

/// Reads until the first bytes are classified, the stream ends, or the client stays
/// silent for `wait` (then the server is expected to speak first).
async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut first: Vec<u8>,
    wait: Duration,
) -> io::Result<(Vec<u8>, Sniffed)> {
    loop {
        if let Some(kind) = sniff(&first) {
            return Ok((first, kind));
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return Ok((first, Sniffed::Other)),
            Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Serves one client connection; returns why it ended.
async fn front(shared: &Arc<Shared>, rec: &ConnRecorder, mut tcp: TcpStream) -> String {
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(n) = find_head_end(&buf) {
            break n;
        }
        if buf.len() > MAX_HEAD {
            return "client: request head over 64 KiB".into();
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return "closed by client before a request".into(),
            Ok(0) => return "closed by client in the middle of a request head".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return format!("client: {e}"),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let target = match request.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) if request.method == Some("CONNECT") => {
            request.path.map(str::to_string)
        }
        Ok(httparse::Status::Complete(_)) => None,
        _ => {
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return "client: not an HTTP proxy request".into();
        }
    };
    let Some(authority) = target else {
        // A plain proxy request (`GET http://host/ ...`): hudsucker handles it as is.
        rec.set_protocol("http");
        return hand_over(shared, rec, Prefixed::new(buf, tcp), "http", None).await;
    };
    // An address target is the server even if it is never reached; names are resolved
    // only when connecting (the upstream address is recorded then).
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        rec.set_server(addr);
    }
    if let Err(e) = tcp
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
    {
        return format!("client: {e}");
    }
    let leftover = buf.split_off(head_len);
    let wait = shared.options.first_bytes_timeout;
    let (first, kind) = match read_first(&mut tcp, leftover, wait).await {
        Ok(pair) => pair,
        Err(e) => return format!("client: {e}"),
    };
    let client = Prefixed::new(first, tcp);
    match kind {
        Sniffed::Http => {
            rec.set_protocol("http");
            hand_over(shared, rec, client, "http", Some(authority)).await
        }
        Sniffed::Other => relay_plain(rec, client, &authority).await,
        Sniffed::Tls => terminate_tls(shared, rec, client, authority).await,
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|n| n + 4)
}

fn host_of(authority: &str) -> &str {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn with_default_port(authority: &str, port: u16) -> String {
    match authority.rsplit_once(':') {
        Some((_, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']') => {
            authority.to_string()
        }
        _ => format!("{authority}:{port}"),
    }
}

async fn terminate_tls(
    shared: &Arc<Shared>,
    rec: &ConnRecorder,
    client: Prefixed<TcpStream>,
    authority: String,
) -> String {
    let start = match LazyConfigAcceptor::new(Acceptor::default(), client).await {
        Ok(start) => start,
        Err(e) => return format!("client TLS: {e}"),
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let offered: Vec<Vec<u8>> = hello
        .alpn()
        .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    // HTTP clients get h2 or HTTP/1.1 (hudsucker speaks both); anything else gets its own
    // first choice, passed through to the server.
    let http: [Vec<u8>; 2] = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let alpn: Vec<Vec<u8>> = if offered.is_empty() || offered.iter().any(|p| http.contains(p)) {
        http.to_vec()
    } else {
        offered[..1].to_vec()
    };
    let host = host_of(&authority).to_string();
    let config = shared.ca.server_config_for(&alpn, Some(&host));
    let mut tls = match start.into_stream(config).await {
        Ok(tls) => tls,
        Err(e) => return format!("client TLS: {e}"),
    };
    let (_, conn) = tls.get_ref();
    let negotiated = conn.alpn_protocol().map(<[u8]>::to_vec);
    rec.set_tls(TlsInfo {
        sni: sni.clone(),
        alpn: negotiated
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: conn.protocol_version().map(version_name),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
    });
    let wait = shared.options.first_bytes_timeout;
    let (first, kind) = match read_first(&mut tls, Vec::new(), wait).await {
        Ok(pair) => pair,
        Err(e) => return format!("client: {e}"),
    };
    let client = Prefixed::new(first, tls);
    if kind == Sniffed::Http {
        rec.set_protocol("http");
        return hand_over(shared, rec, client, "https", Some(authority)).await;
    }
    // Not HTTP inside the TLS: connect with TLS upstream ourselves and relay, offering the
    // protocol the client chose.
    let target = with_default_port(&authority, 443);
    let upstream = match TcpStream::connect(&target).await {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream: connect to {target}: {e}"),
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(addr) = upstream.peer_addr() {
        rec.set_server(addr);
    }
    let mut config = (*shared.upstream_tls).clone();
    config.alpn_protocols = negotiated.into_iter().collect();
    let name = sni.unwrap_or(host);
    let server_name = match ServerName::try_from(name.clone()) {
        Ok(name) => name,
        Err(e) => return format!("upstream: bad server name {name:?}: {e}"),
    };
    let upstream = match TlsConnector::from(Arc::new(config))
        .connect(server_name, upstream)
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream TLS to {target}: {e}"),
    };
    relay_recorded(rec, client, upstream).await
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

async fn relay_plain(rec: &ConnRecorder, client: Prefixed<TcpStream>, authority: &str) -> String {
    let target = with_default_port(authority, 80);
    let upstream = match TcpStream::connect(&target).await {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream: connect to {target}: {e}"),
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(addr) = upstream.peer_addr() {
        rec.set_server(addr);
    }
    relay_recorded(rec, client, upstream).await
}

/// Relays both directions, recording every read, passing each side's end of stream on as
/// a half-close.
async fn relay_recorded<C, S>(rec: &ConnRecorder, client: C, server: S) -> String
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = pump(
        rec,
        Direction::ClientToServer,
        &mut client_read,
        &mut server_write,
    );
    let down = pump(
        rec,
        Direction::ServerToClient,
        &mut server_read,
        &mut client_write,
    );
    let (up, down) = tokio::join!(up, down);
    match (up, down) {
        (Err(e), _) => format!("client side: {e}"),
        (_, Err(e)) => format!("server side: {e}"),
        (Ok(()), Ok(())) => "closed by both sides".into(),
    }
}

async fn pump<R, W>(rec: &ConnRecorder, dir: Direction, from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // A peer that already closed cannot take the half-close; nothing is lost.
            let _ = to.shutdown().await;
            return Ok(());
        }
        rec.packet(dir, &buf[..n]);
        to.write_all(&buf[..n]).await?;
    }
}

/// Passes a client stream, already past `CONNECT` and TLS, to hudsucker over loopback.
async fn hand_over<S>(
    shared: &Arc<Shared>,
    rec: &ConnRecorder,
    mut client: S,
    scheme: &'static str,
    authority: Option<String>,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inner = match TcpStream::connect(shared.internal).await {
        Ok(inner) => inner,
        Err(e) => return format!("proxy: internal connection: {e}"),
    };
    let _ = inner.set_nodelay(true);
    let local = match inner.local_addr() {
        Ok(local) => local,
        Err(e) => return format!("proxy: internal connection: {e}"),
    };
    // Registered before any byte is passed on, so hudsucker's handlers always find it.
    shared.links.lock().insert(
        local,
        Link {
            rec: rec.clone(),
            scheme,
            authority,
            server_known: Arc::new(AtomicBool::new(false)),
        },
    );
    let result = tokio::io::copy_bidirectional(&mut client, &mut inner).await;
    shared.links.lock().remove(&local);
    match result {
        Ok(_) => "closed".into(),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "closed".into(),
        Err(e) => format!("client: {e}"),
    }
}

/// hudsucker's handlers: they record, and fill in what the front layer consumed.
#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    /// The request this instance handles (hudsucker gives each exchange its own clone).
    current: Option<Current>,
}

#[derive(Clone)]
struct Current {
    link: Link,
    method: Method,
    uri: Uri,
}

impl HttpHandler for Handler {
    async fn handle_request(&mut self, ctx: &HttpContext, req: Request<Body>) -> RequestOrResponse {
        let Some(link) = self.shared.link(&ctx.client_addr) else {
            return req.into();
        };
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() {
            let authority = link.authority.clone().or_else(|| {
                parts
                    .headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
            if let Some(authority) = authority {
                let path = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                if let Ok(uri) = format!("{}://{authority}{path}", link.scheme).parse::<Uri>() {
                    parts.uri = uri;
                }
            }
        }
        self.current = Some(Current {
            link: link.clone(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        });
        let head = Head::Request {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        };
        let rec = link.rec.clone();
        if is_websocket_upgrade(&parts.headers) {
            rec.packet(Direction::ClientToServer, &head.serialize(&[], None));
            // hudsucker answers the upgrade itself before it connects upstream; record what
            // the client got.
            rec.packet(
                Direction::ServerToClient,
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
            );
            return Request::from_parts(parts, body).into();
        }
        let body = tee(body, head, rec, Direction::ClientToServer);
        Request::from_parts(parts, body).into()
    }

    async fn handle_response(&mut self, _ctx: &HttpContext, res: Response<Body>) -> Response<Body> {
        let Some(current) = &self.current else {
            return res;
        };
        if !current.link.server_known.swap(true, Ordering::Relaxed)
            && let Some(info) = res
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
        {
            current.link.rec.set_server(info.remote_addr());
        }
        let (parts, body) = res.into_parts();
        let head = Head::Response {
            status: parts.status,
            headers: parts.headers.clone(),
            head_request: current.method == Method::HEAD,
        };
        let body = tee(
            body,
            head,
            current.link.rec.clone(),
            Direction::ServerToClient,
        );
        Response::from_parts(parts, body)
    }

    async fn handle_error(
        &mut self,
        _ctx: &HttpContext,
        err: hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        let cause = error_chain(&err);
        let target = self
            .current
            .as_ref()
            .map_or_else(|| "the request".to_string(), |c| c.uri.to_string());
        let text = format!("gamewire proxy: could not forward {target}: {cause}\n");
        tracing::info!("{}", text.trim_end());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            hudsucker::hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(current) = &self.current {
            let head = Head::Response {
                status: StatusCode::BAD_GATEWAY,
                headers: headers.clone(),
                head_request: false,
            };
            current.link.rec.packet_with(
                Direction::ServerToClient,
                &head.serialize(text.as_bytes(), None),
                PacketFlags::INJECTED,
                None,
            );
            current.link.rec.close(format!("upstream: {cause}"));
        }
        let mut res = Response::new(Body::from(text));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        *res.headers_mut() = headers;
        res
    }
}

impl WebSocketHandler for Handler {
    async fn handle_message(
        &mut self,
        ctx: &WebSocketContext,
        message: Message,
    ) -> Option<Message> {
        let (addr, dir) = match ctx {
            WebSocketContext::ClientToServer { src, .. } => (src, Direction::ClientToServer),
            WebSocketContext::ServerToClient { dst, .. } => (dst, Direction::ServerToClient),
        };
        if let Some(link) = self.shared.link(addr) {
            link.rec.packet(dir, &websocket_frame(&message));
        }
        Some(message)
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(hudsucker::hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The message as an unmasked WebSocket frame (what a server would send), so its type
/// survives in the capture.
fn websocket_frame(message: &Message) -> Vec<u8> {
    let (opcode, payload): (u8, Vec<u8>) = match message {
        Message::Text(text) => (0x1, text.as_bytes().to_vec()),
        Message::Binary(data) => (0x2, data.to_vec()),
        Message::Ping(data) => (0x9, data.to_vec()),
        Message::Pong(data) => (0xA, data.to_vec()),
        Message::Close(frame) => {
            let mut payload = Vec::new();
            if let Some(frame) = frame {
                payload.extend_from_slice(&u16::from(frame.code).to_be_bytes());
                payload.extend_from_slice(frame.reason.as_bytes());
            }
            (0x8, payload)
        }
        Message::Frame(frame) => return frame.payload().to_vec(),
    };
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&payload);
    out
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A message head as it will be written into the capture.
enum Head {
    Request {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
    },
    Response {
        status: StatusCode,
        headers: HeaderMap,
        head_request: bool,
    },
}

impl Head {
    /// HTTP/1.1 wire form with `body` framed so the `http` dissector finds its end.
    fn serialize(&self, body: &[u8], trailers: Option<&HeaderMap>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + body.len());
        let headers = match self {
            Head::Request {
                method,
                uri,
                headers,
            } => {
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                let target = if *method == Method::CONNECT {
                    uri.authority().map_or(target, |a| a.as_str())
                } else {
                    target
                };
                out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
                if !headers.contains_key(HOST)
                    && let Some(authority) = uri.authority()
                {
                    out.extend_from_slice(format!("host: {authority}\r\n").as_bytes());
                }
                headers
            }
            Head::Response {
                status, headers, ..
            } => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 {} {}\r\n",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .as_bytes(),
                );
                headers
            }
        };
        let keep_length = matches!(
            self,
            Head::Response {
                head_request: true,
                ..
            }
        );
        let was_chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let chunked = was_chunked || trailers.is_some_and(|t| !t.is_empty());
        for (name, value) in headers {
            if !keep_length && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
                continue;
            }
            write_header(&mut out, name.as_str(), value.as_bytes());
        }
        let bodyless_status = match self {
            Head::Response { status, .. } => {
                status.is_informational()
                    || *status == StatusCode::NO_CONTENT
                    || *status == StatusCode::NOT_MODIFIED
            }
            Head::Request { .. } => false,
        };
        if keep_length || bodyless_status {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            return out;
        }
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            if !body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (name, value) in trailers.into_iter().flatten() {
                write_header(&mut out, name.as_str(), value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            return out;
        }
        let is_response = matches!(self, Head::Response { .. });
        if !body.is_empty() || is_response {
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Passes `body` on unchanged and records head + body as one packet when it ends (or is
/// dropped early, then with what arrived).
fn tee(body: Body, head: Head, rec: ConnRecorder, dir: Direction) -> Body {
    if body.is_end_stream() {
        rec.packet(dir, &head.serialize(&[], None));
        return body;
    }
    Body::from(
        TeeBody {
            inner: body,
            recorded: Vec::new(),
            skipped: 0,
            trailers: None,
            pending: Some((head, rec, dir)),
        }
        .boxed(),
    )
}

struct TeeBody {
    inner: Body,
    recorded: Vec<u8>,
    skipped: u64,
    trailers: Option<HeaderMap>,
    pending: Option<(Head, ConnRecorder, Direction)>,
}

impl TeeBody {
    fn finish(&mut self) {
        if let Some((head, rec, dir)) = self.pending.take() {
            if self.skipped > 0 {
                tracing::warn!(
                    connection = rec.id().0,
                    skipped = self.skipped,
                    "body larger than the capture keeps; the end is not recorded"
                );
            }
            rec.packet(dir, &head.serialize(&self.recorded, self.trailers.as_ref()));
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_RECORDED_BODY.saturating_sub(this.recorded.len());
                    let keep = data.len().min(room);
                    this.recorded.extend_from_slice(&data[..keep]);
                    this.skipped += (data.len() - keep) as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.trailers = Some(trailers.clone());
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) | None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A stream whose first bytes were already read (sniffing); they are read again first.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x16\x03\x01"), Some(Sniffed::Tls));
        assert_eq!(sniff(b"GET / HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(sniff(b"PRI * HTTP/2.0"), Some(Sniffed::Http));
        assert_eq!(sniff(b"PO"), None);
        assert_eq!(sniff(b"HELLO world"), Some(Sniffed::Other));
        assert_eq!(
            sniff(b"\x00\x01\x02\x03\x04\x05\x06\x07"),
            Some(Sniffed::Other)
        );
    }

    #[test]
    fn authority_parts() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(with_default_port("example.com", 443), "example.com:443");
        assert_eq!(with_default_port("example.com:80", 443), "example.com:80");
    }

    #[test]
    fn recorded_form_is_framed() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
        let head = Head::Response {
            status: StatusCode::OK,
            headers,
            head_request: false,
        };
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let bytes = head.serialize(b"abc", Some(&trailers));
        assert_eq!(
            bytes,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n"
        );
        let head = Head::Request {
            method: Method::POST,
            uri: "https://h.test:8443/p?q=1".parse().unwrap(),
            headers: HeaderMap::new(),
        };
        assert_eq!(
            head.serialize(b"xy", None),
            b"POST /p?q=1 HTTP/1.1\r\nhost: h.test:8443\r\ncontent-length: 2\r\n\r\nxy"
        );
    }

    #[test]
    fn websocket_frames() {
        assert_eq!(websocket_frame(&Message::text("hi")), b"\x81\x02hi");
        let big = Message::binary(vec![7u8; 300]);
        let frame = websocket_frame(&big);
        assert_eq!(&frame[..4], &[0x82, 126, 1, 44]);
        assert_eq!(frame.len(), 304);
    }
}
