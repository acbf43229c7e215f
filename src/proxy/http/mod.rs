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

mod handler;
mod prefixed;
mod recorded;
mod relay;
mod tunnel;

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
use handler::Handler;
use tunnel::front;

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
