//! QUIC taps: terminate QUIC from the client with a leaf of our CA, open a QUIC connection of
//! our own to the upstream, and relay every stream both ways: client- and server-initiated,
//! bidirectional and unidirectional (Hytale's servers push chunks on unidirectional streams).
//!
//! Each stream is recorded as its own connection (transport QUIC), so the stream decoders see
//! one ordered byte stream, as they do for TCP. Connection closes, with their application
//! error codes, are passed on to the other side and recorded.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use tokio_util::sync::CancellationToken;

use crate::capture::{Direction, TlsInfo, Transport};

use super::record::ConnRecorder;
use super::tap::{TapSettings, TapShared};

#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    #[error("QUIC needs TLS 1.3: {0}")]
    Tls(String),
    #[error("cannot open the upstream QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
}

/// The TLS parts of a QUIC tap, made by the engine from our CA.
pub struct QuicTls {
    /// Presented to clients; asks for (and accepts any) client certificate.
    pub server: Arc<rustls::ServerConfig>,
    /// Used towards the upstream; carries our own client certificate.
    pub client: Arc<rustls::ClientConfig>,
}

pub fn server_endpoint(listen: SocketAddr, tls: &QuicTls) -> Result<Endpoint, QuicSetupError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server.clone())
        .map_err(|e| QuicSetupError::Tls(e.to_string()))?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    Endpoint::server(config, listen).map_err(QuicSetupError::Endpoint)
}

pub async fn run_quic(
    endpoint: Endpoint,
    tls: Arc<QuicTls>,
    settings: Arc<TapSettings>,
    shared: TapShared,
    shutdown: CancellationToken,
) {
    let local: SocketAddr = if settings.upstream.address.is_some_and(|a| a.is_ipv6()) {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    };
    let upstream_endpoint = match Endpoint::client(local) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(route = %settings.route, "cannot open the upstream QUIC endpoint: {e}");
            return;
        }
    };
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let (settings, shared, tls, upstream_endpoint, stop) = (
            settings.clone(),
            shared.clone(),
            tls.clone(),
            upstream_endpoint.clone(),
            shutdown.child_token(),
        );
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let client = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(route = %settings.route, %peer, "QUIC handshake with the client failed: {e}");
                    return;
                }
            };
            relay_connection(client, &upstream_endpoint, &tls, &settings, &shared, stop).await;
        });
    }
    endpoint.close(VarInt::from_u32(0), b"tap stopped");
}

fn client_tls_info(conn: &Connection) -> TlsInfo {
    let data = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok());
    TlsInfo {
        sni: data.as_ref().and_then(|d| d.server_name.clone()),
        alpn: data
            .as_ref()
            .and_then(|d| d.protocol.as_ref())
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: Some("TLSv1.3".into()),
        cipher: None,
    }
}

fn client_cert_fingerprint(conn: &Connection) -> Option<String> {
    use sha2::Digest;
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let first = certs.first()?;
    Some(hex::encode(sha2::Sha256::digest(first.as_ref())))
}

struct Streams {
    client: Connection,
    server_addr: SocketAddr,
    tls: TlsInfo,
    settings: Arc<TapSettings>,
    shared: TapShared,
    recorded: Mutex<Vec<ConnRecorder>>,
}

impl Streams {
    fn record(&self, kind: &str) -> ConnRecorder {
        let conn = self.shared.recorder.open(
            &self.settings.route,
            self.client.remote_address(),
            self.server_addr,
            Transport::Quic,
        );
        conn.set_tls(self.tls.clone());
        if let Some(d) = &self.settings.dissector {
            conn.set_protocol(d.name());
        }
        tracing::debug!(route = %self.settings.route, connection = conn.id().0, "QUIC {kind} stream");
        self.recorded.lock().push(conn.clone());
        conn
    }
}

async fn relay_connection(
    client: Connection,
    upstream_endpoint: &Endpoint,
    tls: &QuicTls,
    settings: &Arc<TapSettings>,
    shared: &TapShared,
    stop: CancellationToken,
) {
    let info = client_tls_info(&client);
    if let Some(fp) = client_cert_fingerprint(&client) {
        tracing::info!(route = %settings.route, peer = %client.remote_address(), "client certificate sha256 {fp}");
    }
    let up = &settings.upstream;
    let addr = super::tap::upstream_addr(up, shared).await;
    let fail = |reason: String| {
        let conn = shared.recorder.open(
            &settings.route,
            client.remote_address(),
            crate::capture::UNKNOWN_ADDR,
            Transport::Quic,
        );
        conn.set_tls(info.clone());
        tracing::warn!(route = %settings.route, "{reason}");
        conn.close(reason);
        client.close(VarInt::from_u32(0x0101), b"upstream unavailable");
    };
    let addr = match addr {
        Ok(a) => a,
        Err(e) => return fail(format!("upstream: {e}")),
    };
    // Offer the upstream the protocol the client chose.
    let mut crypto = (*tls.client).clone();
    if let Some(alpn) = &info.alpn {
        crypto.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    let client_config = match quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto)) {
        Ok(c) => quinn::ClientConfig::new(Arc::new(c)),
        Err(e) => return fail(format!("upstream TLS: {e}")),
    };
    let connecting = match upstream_endpoint.connect_with(client_config, addr, &up.host) {
        Ok(c) => c,
        Err(e) => return fail(format!("upstream {addr}: {e}")),
    };
    let upstream = match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(format!("upstream {addr}: QUIC handshake failed: {e}")),
        Err(_) => return fail(format!("upstream {addr}: QUIC handshake timed out")),
    };
    let streams = Arc::new(Streams {
        client: client.clone(),
        server_addr: addr,
        tls: info,
        settings: settings.clone(),
        shared: shared.clone(),
        recorded: Mutex::new(Vec::new()),
    });
    let reason = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                client.close(VarInt::from_u32(0), b"route stopped");
                upstream.close(VarInt::from_u32(0), b"route stopped");
                break "route stopped".to_string();
            }
            s = client.accept_bi() => match s {
                Ok((c_send, c_recv)) => match upstream.open_bi().await {
                    Ok((u_send, u_recv)) => spawn_bi(&streams, c_recv, u_send, u_recv, c_send, "client bidirectional"),
                    Err(e) => break ended_by("server", &e, &client),
                },
                Err(e) => break ended_by("client", &e, &upstream),
            },
            s = client.accept_uni() => match s {
                Ok(c_recv) => match upstream.open_uni().await {
                    Ok(u_send) => spawn_uni(&streams, c_recv, u_send, Direction::ClientToServer),
                    Err(e) => break ended_by("server", &e, &client),
                },
                Err(e) => break ended_by("client", &e, &upstream),
            },
            s = upstream.accept_bi() => match s {
                Ok((u_send, u_recv)) => match client.open_bi().await {
                    Ok((c_send, c_recv)) => spawn_bi(&streams, c_recv, u_send, u_recv, c_send, "server bidirectional"),
                    Err(e) => break ended_by("client", &e, &upstream),
                },
                Err(e) => break ended_by("server", &e, &client),
            },
            s = upstream.accept_uni() => match s {
                Ok(u_recv) => match client.open_uni().await {
                    Ok(c_send) => spawn_uni(&streams, u_recv, c_send, Direction::ServerToClient),
                    Err(e) => break ended_by("client", &e, &upstream),
                },
                Err(e) => break ended_by("server", &e, &client),
            },
        }
    };
    for conn in streams.recorded.lock().iter() {
        conn.close(reason.clone());
    }
}

/// Describes how one side ended the QUIC connection and passes the same close on to the
/// other side, so a client sees the server's application error code.
fn ended_by(side: &str, e: &ConnectionError, other: &Connection) -> String {
    match e {
        ConnectionError::ApplicationClosed(close) => {
            other.close(close.error_code, &close.reason);
            let reason = String::from_utf8_lossy(&close.reason);
            if reason.is_empty() {
                format!("closed by {side} (application error {})", close.error_code)
            } else {
                format!(
                    "closed by {side} (application error {}: {reason})",
                    close.error_code
                )
            }
        }
        ConnectionError::TimedOut => {
            other.close(VarInt::from_u32(0), b"peer timed out");
            format!("{side} timed out")
        }
        other_error => {
            other.close(VarInt::from_u32(0), b"peer connection lost");
            format!("{side}: {other_error}")
        }
    }
}

fn spawn_bi(
    streams: &Arc<Streams>,
    c_recv: RecvStream,
    u_send: SendStream,
    u_recv: RecvStream,
    c_send: SendStream,
    kind: &str,
) {
    let conn = streams.record(kind);
    let up_conn = conn.clone();
    tokio::spawn(async move { pump(c_recv, u_send, Direction::ClientToServer, &up_conn).await });
    tokio::spawn(async move { pump(u_recv, c_send, Direction::ServerToClient, &conn).await });
}

fn spawn_uni(streams: &Arc<Streams>, recv: RecvStream, send: SendStream, direction: Direction) {
    let kind = match direction {
        Direction::ClientToServer => "client unidirectional",
        Direction::ServerToClient => "server unidirectional",
    };
    let conn = streams.record(kind);
    tokio::spawn(async move { pump(recv, send, direction, &conn).await });
}

async fn pump(mut from: RecvStream, mut to: SendStream, direction: Direction, conn: &ConnRecorder) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(Some(n)) => {
                conn.packet(direction, &buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    let _ = from.stop(VarInt::from_u32(0));
                    return;
                }
            }
            Ok(None) => {
                let _ = to.finish();
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                let _ = to.reset(code);
                return;
            }
            Err(_) => {
                let _ = to.reset(VarInt::from_u32(0));
                return;
            }
        }
    }
}
