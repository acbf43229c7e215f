//! The HTTP(S) proxy with real clients: curl (HTTP/1.1 and h2, certificate verification
//! on) and a WebSocket client through it to local TLS servers with leaves from our CA;
//! non-HTTP bytes after CONNECT; an upstream that refuses. Each test checks what the client
//! got and what the capture recorded, decoded by the `http` dissector.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use gamewire::capture::{CaptureStore, Connection, Direction, StoreData};
use gamewire::dissect::session::decode_capture;
use gamewire::dissect::{Context, Registry};
use gamewire::proxy::Recorder;
use gamewire::proxy::ca::Ca;
use gamewire::proxy::http::{HttpProxyOptions, run};
use http_body_util::{BodyExt as _, Full};
use hudsucker::hyper::{Request, Response};
use hudsucker::tokio_tungstenite::tungstenite::Message;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Proxy {
    addr: SocketAddr,
    ca: Arc<Ca>,
    store: Arc<CaptureStore>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Proxy {
    async fn start() -> Proxy {
        Proxy::start_with(false).await
    }

    async fn start_with(insecure_upstream: bool) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(Ca::load_or_create(dir.path()).unwrap());
        let store = Arc::new(CaptureStore::new());
        let recorder = Recorder::new(store.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let options = HttpProxyOptions {
            // The test servers' leaves come from our CA; system roots are not needed.
            system_roots: false,
            extra_ca: Some(dir.path().join("ca.pem")),
            first_bytes_timeout: Duration::from_millis(300),
            insecure_upstream,
            ..HttpProxyOptions::default()
        };
        tokio::spawn(run(
            listener,
            ca.clone(),
            recorder,
            options,
            shutdown.clone(),
        ));
        Proxy {
            addr,
            ca,
            store,
            shutdown,
            _dir: dir,
        }
    }

    fn ca_pem(&self) -> PathBuf {
        self.ca.dir().join("ca.pem")
    }

    /// Waits until `done` holds for the capture (packets are recorded as bodies end).
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&StoreData) -> bool,
    ) -> parking_lot::RwLockReadGuard<'_, StoreData> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let data = self.store.read();
                if done(&data) {
                    return data;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn packets(data: &StoreData, conn: &Connection, dir: Direction) -> Vec<Vec<u8>> {
    data.packets_of(conn.id)
        .filter(|p| p.direction == dir)
        .map(|p| p.data.to_vec())
        .collect()
}

fn proxy_conns(data: &StoreData) -> Vec<&Connection> {
    data.connections()
        .iter()
        .filter(|c| c.route.as_deref() == Some("proxy"))
        .collect()
}

/// Every message of `conn` decodes as HTTP with no error node; returns the message count
/// per direction.
fn decode_http(data: &StoreData, conn: &Connection) -> (usize, usize) {
    let decoded = decode_capture(&Registry::standard(), &Context::default(), data, None);
    assert_eq!(decoded.protocols.get(&conn.id), Some(&"http"));
    let (mut up, mut down) = (0, 0);
    for p in data.packets_of(conn.id) {
        for m in decoded.of_packet(p.id) {
            assert!(
                !m.message.tree.has_error()
                    && !m.message.derived.iter().any(|d| d.tree.has_error()),
                "error node in {:?}: {}",
                m.message.label,
                m.message.tree.to_json()
            );
            match m.direction {
                Direction::ClientToServer => up += 1,
                Direction::ServerToClient => down += 1,
            }
        }
    }
    (up, down)
}

fn tls_server_config(ca: &Ca) -> Arc<rustls::ServerConfig> {
    ca.server_config(&[b"h2".to_vec(), b"http/1.1".to_vec()])
}

/// An HTTPS server (h2 and HTTP/1.1) on 127.0.0.1 that answers with what it received.
async fn https_echo_server(ca: &Ca) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_server_config(ca));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hudsucker::hyper::service::service_fn(
                    |req: Request<hudsucker::hyper::body::Incoming>| async move {
                        let method = req.method().clone();
                        let path = req.uri().path().to_string();
                        let version = req.version();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body = body.unwrap_or_default();
                        let text = format!(
                            "{method} {path} {version:?} body={}",
                            String::from_utf8_lossy(&body)
                        );
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("x-upstream", "echo")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn curl(args: &[&str]) -> std::process::Output {
    match tokio::process::Command::new("curl")
        .args(args)
        .output()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            panic!("these tests need curl on PATH (CI installs it; apt-get install curl): {e}")
        }
    }
}

async fn curl_through(proxy: &Proxy, extra: &[&str], url: &str) -> (String, String) {
    let proxy_url = format!("http://{}", proxy.addr);
    let ca = proxy.ca_pem();
    let mut args = vec![
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        ca.to_str().unwrap(),
        "-x",
        &proxy_url,
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(&args).await;
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn curl_https(http2: bool) {
    let proxy = Proxy::start().await;
    let server = https_echo_server(&proxy.ca).await;
    let url = format!("https://localhost:{}/hello?x=1", server.port());
    let flag = if http2 { "--http2" } else { "--http1.1" };
    let (out, err) = curl_through(&proxy, &[flag, "--data-binary", "ping-body"], &url).await;
    let want_version = if http2 { "2" } else { "1.1" };
    assert!(
        out.starts_with("POST /hello HTTP/1.1 body=ping-body\n")
            || out.starts_with("POST /hello HTTP/2.0 body=ping-body\n"),
        "curl got {out:?} (stderr {err:?})"
    );
    assert!(
        out.ends_with(&format!("\n200 {want_version}")),
        "curl got {out:?} (stderr {err:?})"
    );

    let data = proxy
        .wait_for("request and response recorded", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .any(|p| p.direction == Direction::ServerToClient)
            })
        })
        .await;
    let conns = proxy_conns(&data);
    assert_eq!(
        conns.len(),
        1,
        "one client connection, one recorded connection"
    );
    let conn = conns[0];
    let tls = conn.tls.as_ref().expect("TLS facts recorded");
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    assert_eq!(
        tls.alpn.as_deref(),
        Some(if http2 { "h2" } else { "http/1.1" })
    );
    assert_eq!(tls.version.as_deref(), Some("TLSv1.3"));
    assert!(
        tls.cipher
            .as_deref()
            .is_some_and(|c| c.starts_with("TLS13_"))
    );
    assert_eq!(conn.protocol.as_deref(), Some("http"));
    assert_eq!(conn.server.port(), server.port(), "the upstream address");

    let up = packets(&data, conn, Direction::ClientToServer);
    let down = packets(&data, conn, Direction::ServerToClient);
    assert_eq!(up.len(), 1);
    assert_eq!(down.len(), 1);
    let request = String::from_utf8_lossy(&up[0]);
    assert!(
        request.starts_with("POST /hello?x=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains(&format!("host: localhost:{}\r\n", server.port())));
    assert!(request.ends_with("\r\n\r\nping-body"), "{request}");
    let response = String::from_utf8_lossy(&down[0]);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("x-upstream: echo\r\n"));
    assert!(response.ends_with("body=ping-body"), "{response}");
    assert_eq!(decode_http(&data, conn), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_https_http1_through_the_proxy_is_recorded() {
    curl_https(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_https_http2_through_the_proxy_is_recorded() {
    curl_https(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_keeps_alive_several_requests_on_one_recorded_connection() {
    let proxy = Proxy::start().await;
    let server = https_echo_server(&proxy.ca).await;
    let a = format!("https://localhost:{}/a", server.port());
    let b = format!("https://localhost:{}/b", server.port());
    let (out, err) = curl_through(&proxy, &["--http1.1", &a], &b).await;
    assert!(
        out.contains("GET /a ") && out.contains("GET /b "),
        "{out} {err}"
    );
    let data = proxy
        .wait_for("two exchanges", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .filter(|p| p.direction == Direction::ServerToClient)
                    .count()
                    == 2
            })
        })
        .await;
    let conn = proxy_conns(&data)
        .into_iter()
        .find(|c| data.packets_of(c.id).count() == 4)
        .expect("one connection with both exchanges");
    assert_eq!(decode_http(&data, conn), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_a_502_and_recorded_on_the_connection() {
    let proxy = Proxy::start().await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("https://127.0.0.1:{closed}/nothing");
    let (out, err) = curl_through(&proxy, &[], &url).await;
    assert!(
        out.ends_with("\n502 1.1") || out.ends_with("\n502 2"),
        "{out} {err}"
    );
    assert!(out.contains("gamewire proxy: could not forward"), "{out}");
    assert!(out.to_lowercase().contains("refused"), "{out}");
    let data = proxy
        .wait_for("the failure", |d| {
            proxy_conns(d).iter().any(|c| c.close_reason.is_some())
        })
        .await;
    let conn = proxy_conns(&data)[0];
    assert_eq!(
        conn.server.port(),
        closed,
        "the CONNECT target, though never reached"
    );
    let reason = conn.close_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("upstream: "), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    let down = packets(&data, conn, Direction::ServerToClient);
    assert!(down[0].starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
    assert_eq!(decode_http(&data, conn), (1, 1));
}

/// CONNECT by hand, for clients that are not HTTP.
async fn connect_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "proxy closed during CONNECT"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_after_connect_is_relayed_and_recorded_both_ways() {
    let proxy = Proxy::start().await;
    // A game-like server that speaks first, then answers each message in upper case.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"\x00WELCOME").await.unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
        }
    });
    let mut tunnel = connect_tunnel(proxy.addr, &server.to_string()).await;
    let mut buf = [0u8; 64];
    let n = tunnel.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\x00WELCOME");
    tunnel.write_all(b"\x01ping").await.unwrap();
    let n = tunnel.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\x01PING");
    tunnel.shutdown().await.unwrap();
    assert_eq!(
        tunnel.read(&mut buf).await.unwrap(),
        0,
        "half-close passed on"
    );

    let data = proxy
        .wait_for("the closed tunnel", |d| {
            proxy_conns(d).iter().any(|c| c.closed.is_some())
        })
        .await;
    let conn = proxy_conns(&data)[0];
    assert_eq!(conn.server, server);
    assert_eq!(
        packets(&data, conn, Direction::ServerToClient).concat(),
        b"\x00WELCOME\x01PING"
    );
    assert_eq!(
        packets(&data, conn, Direction::ClientToServer).concat(),
        b"\x01ping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy_is_recorded_per_message() {
    let proxy = Proxy::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.ca.server_config(&[b"http/1.1".to_vec()]));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = hudsucker::tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });

    let target = format!("localhost:{}", server.port());
    let tcp = connect_tunnel(proxy.addr, &target).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(proxy.ca.cert_der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(gamewire::proxy::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut ws, _) =
        hudsucker::tokio_tungstenite::client_async(format!("wss://{target}/echo"), tls)
            .await
            .unwrap();
    ws.send(Message::text("hello ws")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello ws"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );

    let data = proxy
        .wait_for("both echoes", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .filter(|p| p.direction == Direction::ServerToClient)
                    .count()
                    >= 3
            })
        })
        .await;
    let conn = proxy_conns(&data)[0];
    let up = packets(&data, conn, Direction::ClientToServer);
    let down = packets(&data, conn, Direction::ServerToClient);
    assert!(up[0].starts_with(b"GET /echo HTTP/1.1\r\n"));
    assert!(down[0].starts_with(b"HTTP/1.1 101 "));
    assert_eq!(
        up[1..],
        [
            b"\x81\x08hello ws".to_vec(),
            b"\x82\x03\x01\x02\x03".to_vec()
        ]
    );
    assert_eq!(down[1..], up[1..]);
    // The handshake decodes as HTTP, the frames as data after the upgrade.
    let (ups, downs) = decode_http(&data, conn);
    assert!(ups >= 1 && downs >= 1);
}

/// A TLS client through a CONNECT tunnel, trusting our CA, offering `alpn`.
async fn tls_through(
    proxy: &Proxy,
    target: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = connect_tunnel(proxy.addr, target).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(proxy.ca.cert_der().clone()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(gamewire::proxy::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2_keeps_its_trailers_and_records_them() {
    use http_body_util::StreamBody;
    use hudsucker::hyper::HeaderMap;
    use hudsucker::hyper::body::Frame;

    let proxy = Proxy::start().await;
    // A gRPC-shaped server: one length-prefixed message back, status in the trailers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.ca.server_config(&[b"h2".to_vec()]));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hudsucker::hyper::service::service_fn(
                    |req: Request<hudsucker::hyper::body::Incoming>| async move {
                        let got = req.into_body().collect().await.unwrap().to_bytes();
                        let mut reply = vec![0u8, 0, 0, 0, (got.len() - 4) as u8];
                        reply.push(b'!');
                        reply.extend_from_slice(&got[5..]);
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "fine".parse().unwrap());
                        let frames = futures::stream::iter(vec![
                            Ok::<_, Infallible>(Frame::data(Bytes::from(reply))),
                            Ok(Frame::trailers(trailers)),
                        ]);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .body(StreamBody::new(frames))
                                .unwrap(),
                        )
                    },
                );
                let _ = hudsucker::hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let target = format!("localhost:{}", server.port());
    let tls = tls_through(&proxy, &target, &[b"h2"]).await;
    let (mut sender, conn) =
        hudsucker::hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::post(format!("https://{target}/game.Lobby/Join"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\x00\x00\x00\x00\x03abc")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(&body.to_bytes()[..], b"\x00\x00\x00\x00\x04!abc");

    let data = proxy
        .wait_for("the gRPC exchange", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .any(|p| p.direction == Direction::ServerToClient)
            })
        })
        .await;
    let conn = proxy_conns(&data)[0];
    assert_eq!(
        conn.tls.as_ref().and_then(|t| t.alpn.as_deref()),
        Some("h2")
    );
    let up = packets(&data, conn, Direction::ClientToServer);
    assert!(up[0].starts_with(b"POST /game.Lobby/Join HTTP/1.1\r\n"));
    assert!(up[0].ends_with(b"content-length: 8\r\n\r\n\x00\x00\x00\x00\x03abc"));
    let down =
        String::from_utf8_lossy(&packets(&data, conn, Direction::ServerToClient)[0]).into_owned();
    assert!(
        down.contains("transfer-encoding: chunked\r\n\r\n9\r\n"),
        "{down:?}"
    );
    assert!(
        down.ends_with("\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"),
        "{down:?}"
    );
    assert_eq!(decode_http(&data, conn), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_wrapped_non_http_after_connect_is_relayed_and_recorded_decrypted() {
    let proxy = Proxy::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(proxy.ca.server_config(&[b"game/1".to_vec()]));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        let mut reply = alpn.unwrap_or_default();
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        tls.write_all(&reply).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let target = format!("localhost:{}", server.port());
    let mut tls = tls_through(&proxy, &target, &[b"game/1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"game/1"[..]));
    tls.write_all(b"\x07login").await.unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    assert_eq!(
        reply, b"game/1 \x07login",
        "the client's ALPN reached the server"
    );

    let data = proxy
        .wait_for("the relayed bytes", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .any(|p| p.direction == Direction::ServerToClient)
            })
        })
        .await;
    let conn = proxy_conns(&data)[0];
    let tls_info = conn.tls.as_ref().unwrap();
    assert_eq!(tls_info.alpn.as_deref(), Some("game/1"));
    assert_eq!(tls_info.sni.as_deref(), Some("localhost"));
    assert_eq!(
        packets(&data, conn, Direction::ClientToServer).concat(),
        b"\x07login"
    );
    assert_eq!(
        packets(&data, conn, Direction::ServerToClient).concat(),
        b"game/1 \x07login"
    );
}

#[test]
fn ca_command_exports_what_path_names_and_regenerate_replaces_it() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| {
        let out = Command::new(common::gamewire_bin())
            .args(args)
            .arg("--certs")
            .arg(&certs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let path = String::from_utf8(run(&["ca", "path"])).unwrap();
    let pem = std::fs::read_to_string(path.trim()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(String::from_utf8(run(&["ca", "export"])).unwrap(), pem);
    let out = dir.path().join("ca.der");
    run(&["ca", "export", "--der", "--out", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(certs.join("ca.der")).unwrap()
    );
    let exported = String::from_utf8(run(&["ca", "export"])).unwrap();
    assert!(!exported.contains("PRIVATE KEY"));
    run(&["ca", "regenerate"]);
    assert_ne!(std::fs::read_to_string(certs.join("ca.pem")).unwrap(), pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_proxy_requests_are_forwarded_and_recorded() {
    let proxy = Proxy::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hudsucker::hyper::service::service_fn(
                    |req: Request<hudsucker::hyper::body::Incoming>| async move {
                        let text = format!("plain {}", req.uri().path());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hudsucker::hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let url = format!("http://{server}/plain");
    let (out, err) = curl_through(&proxy, &[], &url).await;
    assert_eq!(out, "plain /plain\n200 1.1", "{err}");
    let data = proxy
        .wait_for("the exchange", |d| {
            proxy_conns(d).iter().any(|c| {
                d.packets_of(c.id)
                    .any(|p| p.direction == Direction::ServerToClient)
            })
        })
        .await;
    let conn = proxy_conns(&data)[0];
    assert!(conn.tls.is_none());
    assert_eq!(conn.server, server);
    let up = packets(&data, conn, Direction::ClientToServer);
    assert!(
        up[0].starts_with(b"GET /plain HTTP/1.1\r\n"),
        "{:?}",
        String::from_utf8_lossy(&up[0])
    );
    assert_eq!(decode_http(&data, conn), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_a_502_unless_insecure_upstream() {
    // The server's leaf comes from another CA, which the proxy does not trust.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Ca::load_or_create(other_dir.path()).unwrap();
    let server = https_echo_server(&other).await;
    let url = format!("https://localhost:{}/secret", server.port());

    let strict = Proxy::start().await;
    let (out, err) = curl_through(&strict, &["--http1.1"], &url).await;
    assert!(out.ends_with("\n502 1.1"), "{out} {err}");
    assert!(out.contains("certificate"), "{out}");
    {
        let data = strict
            .wait_for("the failure", |d| {
                proxy_conns(d).iter().any(|c| c.close_reason.is_some())
            })
            .await;
        let reason = proxy_conns(&data)[0]
            .close_reason
            .clone()
            .unwrap_or_default();
        assert!(
            reason.starts_with("upstream: ") && reason.contains("certificate"),
            "{reason}"
        );
    }

    let insecure = Proxy::start_with(true).await;
    let (out, err) = curl_through(&insecure, &["--http1.1"], &url).await;
    assert!(out.starts_with("GET /secret "), "{out} {err}");
    assert!(out.ends_with("\n200 1.1"), "{out} {err}");
    let data = insecure
        .wait_for("the closed connection", |d| {
            proxy_conns(d).iter().any(|c| c.closed.is_some())
        })
        .await;
    let reason = proxy_conns(&data)[0]
        .close_reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("insecure_upstream"), "{reason}");
}
