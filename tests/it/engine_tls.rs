//! Taps that speak TLS and QUIC, with gamewire's own CA on the client side and a real
//! upstream on the other: TLS facts and ALPN passed through, every QUIC stream relayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gamewire::capture::{ConnectionId, Direction, Transport};
use gamewire::engine::config::{Config, TapConfig, TapTransport};
use gamewire::engine::{Engine, RouteState, StartOptions};
use gamewire::proxy::ca::Ca;
use gamewire::proxy::tls::{UpstreamTrust, client_config, client_config_with};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn engine_with(dir: &tempfile::TempDir, taps: Vec<TapConfig>) -> Engine {
    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps,
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    Engine::start(config, StartOptions::default()).unwrap()
}

fn route_addr(engine: &Engine, name: &str) -> SocketAddr {
    match engine
        .routes()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
        .state
    {
        RouteState::Running(addr) => addr,
        other => panic!("route {name} is not running: {other:?}"),
    }
}

fn trusting(ca: &Ca) -> UpstreamTrust {
    UpstreamTrust {
        extra_roots: vec![ca.cert_der().clone()],
        ..UpstreamTrust::default()
    }
}

#[test]
fn a_tls_tap_terminates_with_our_ca_and_passes_alpn_to_a_tls_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // The CA the engine will load, made first so the upstream can serve one of its leaves.
    let ca = Ca::load_or_create(&dir.path().join("certs")).unwrap();
    let rt = runtime();
    let upstream = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let server_config = ca.server_config(&[b"game/1".to_vec()]);
    let (alpn_tx, alpn_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let (tcp, _) = upstream.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(server_config)
            .accept(tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        alpn_tx.send(alpn).unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf.to_ascii_uppercase()).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let engine = engine_with(
        &dir,
        vec![TapConfig {
            name: "secure".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: true,
            alpn: vec!["game/1".into(), "http/1.1".into()],
            upstream: format!("localhost:{}", upstream_addr.port()),
            upstream_address: Some(upstream_addr),
            upstream_tls: true,
            ..TapConfig::default()
        }],
    );
    let tap = route_addr(&engine, "secure");
    let client_config = client_config(&trusting(&ca), vec![b"game/1".to_vec()]).unwrap();
    let reply = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(tap).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("theater.ea.com").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client_config)
            .connect(name, tcp)
            .await
            .expect("the tap's certificate verifies against our CA");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"game/1"[..]));
        tls.write_all(b"hello").await.unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        reply
    });
    assert_eq!(reply, b"HELLO");
    assert_eq!(
        alpn_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .as_deref(),
        Some(&b"game/1"[..]),
        "the upstream saw the protocol the client chose"
    );
    let data = engine.store().read();
    let conn = data.connection(ConnectionId(0)).unwrap();
    let tls = conn.tls.clone().unwrap();
    assert_eq!(tls.sni.as_deref(), Some("theater.ea.com"));
    assert_eq!(tls.alpn.as_deref(), Some("game/1"));
    assert_eq!(tls.version.as_deref(), Some("TLSv1.3"));
    let sent: Vec<u8> = data
        .packets_of(conn.id)
        .filter(|p| p.direction == Direction::ClientToServer)
        .flat_map(|p| p.data.to_vec())
        .collect();
    assert_eq!(sent, b"hello", "recorded decrypted");
}

#[test]
fn a_client_that_drops_tls_without_close_notify_is_a_plain_close() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(&dir.path().join("certs")).unwrap();
    let rt = runtime();
    let upstream = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    rt.spawn(async move {
        let (mut tcp, _) = upstream.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    });
    let engine = engine_with(
        &dir,
        vec![TapConfig {
            name: "grpc-like".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: true,
            upstream: upstream_addr.to_string(),
            ..TapConfig::default()
        }],
    );
    let tap = route_addr(&engine, "grpc-like");
    let client_config = client_config(&trusting(&ca), vec![]).unwrap();
    let _client = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(tap).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client_config)
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"bye").await.unwrap();
        tls.flush().await.unwrap();
        // TCP FIN with no close_notify first, as gRPC channels and browsers often do. The
        // socket stays open until the tap has seen it: closing it now, with the tap's
        // session tickets unread, would make the kernel send a reset instead.
        tls.get_mut().0.shutdown().await.unwrap();
        tls
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reason = loop {
        let reason = engine
            .store()
            .read()
            .connection(ConnectionId(0))
            .and_then(|c| c.close_reason.clone());
        if let Some(r) = reason {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the connection never closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reason, "closed by client (without TLS close_notify)");
}

/// Presents one leaf whatever the SNI.
#[derive(Debug)]
struct OneLeaf(Arc<CertifiedKey>);

impl ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A QUIC server like Hytale's: requires a client certificate (any), ALPN `hytale/2`,
/// echoes bidirectional streams upper-cased, pushes a unidirectional stream, then closes
/// with application error 5.
fn hytale_like_server(rt: &tokio::runtime::Runtime, ca: &Ca) -> SocketAddr {
    let provider = gamewire::proxy::crypto_provider();
    let verifier = gamewire::proxy::tls::AcceptAnyClientCert {
        provider: provider.clone(),
        mandatory: true,
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(OneLeaf(ca.leaf("localhost").unwrap())));
    tls.alpn_protocols = vec![b"hytale/2".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let _guard = rt.enter();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    rt.spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        assert!(
            conn.peer_identity().is_some(),
            "the tap presented a client certificate"
        );
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let msg = recv.read_to_end(1024).await.unwrap();
        send.write_all(&msg.to_ascii_uppercase()).await.unwrap();
        send.finish().unwrap();
        let mut push = conn.open_uni().await.unwrap();
        push.write_all(b"chunk-data").await.unwrap();
        push.finish().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.close(5u32.into(), b"client too old");
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    addr
}

#[test]
fn a_quic_tap_relays_every_stream_and_passes_the_close_code_through() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(&dir.path().join("certs")).unwrap();
    let rt = runtime();
    let upstream = hytale_like_server(&rt, &ca);
    let engine = engine_with(
        &dir,
        vec![TapConfig {
            name: "hytale".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            transport: TapTransport::Quic,
            alpn: vec!["hytale/2".into()],
            upstream: format!("localhost:{}", upstream.port()),
            upstream_address: Some(upstream),
            ..TapConfig::default()
        }],
    );
    let tap = route_addr(&engine, "hytale");
    let client_tls = client_config_with(
        &trusting(&ca),
        vec![b"hytale/2".to_vec()],
        Some(ca.leaf("player").unwrap()),
        true,
    )
    .unwrap();
    let (echo, pushed, close) = rt.block_on(async move {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(tap, "play.hytale.test")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"hello").await.unwrap();
        send.finish().unwrap();
        let echo = recv.read_to_end(1024).await.unwrap();
        let mut uni = conn.accept_uni().await.unwrap();
        let pushed = uni.read_to_end(1024).await.unwrap();
        let close = conn.closed().await;
        (echo, pushed, close)
    });
    assert_eq!(echo, b"HELLO");
    assert_eq!(
        pushed, b"chunk-data",
        "a server-initiated unidirectional stream got through"
    );
    match close {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, 5u32.into());
            assert_eq!(&c.reason[..], b"client too old");
        }
        other => panic!("expected the server's application close, got {other:?}"),
    }
    let start = std::time::Instant::now();
    while engine
        .store()
        .read()
        .connections()
        .iter()
        .any(|c| c.closed.is_none())
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "streams never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let data = engine.store().read();
    assert_eq!(
        data.connection_count(),
        2,
        "one recorded connection per stream"
    );
    for conn in data.connections() {
        assert_eq!(conn.transport, Transport::Quic);
        assert_eq!(conn.server, upstream);
        let tls = conn.tls.clone().unwrap();
        assert_eq!(tls.alpn.as_deref(), Some("hytale/2"));
        assert_eq!(tls.sni.as_deref(), Some("play.hytale.test"));
        assert!(
            conn.close_reason
                .as_deref()
                .unwrap()
                .contains("application error 5"),
            "{:?}",
            conn.close_reason
        );
    }
    let bytes = |id: u64, dir: Direction| -> Vec<u8> {
        data.packets_of(ConnectionId(id))
            .filter(|p| p.direction == dir)
            .flat_map(|p| p.data.to_vec())
            .collect()
    };
    assert_eq!(bytes(0, Direction::ClientToServer), b"hello");
    assert_eq!(bytes(0, Direction::ServerToClient), b"HELLO");
    assert_eq!(bytes(1, Direction::ServerToClient), b"chunk-data");
}
