//! HTTPS with keep-alive through the proxy against the same requests sent directly: one
//! TLS connection each (HTTP/1.1), small GET requests one after another, recording on.
//!
//! Run with `cargo bench --bench proxy`. Before criterion's timings it prints the measured
//! requests/s of both paths and their ratio, from one run on the same machine.

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gamewire::capture::CaptureStore;
use gamewire::proxy::Recorder;
use gamewire::proxy::ca::Ca;
use gamewire::proxy::http::{HttpProxyOptions, run};
use http_body_util::{BodyExt as _, Empty, Full};
use hudsucker::hyper::client::conn::http1::SendRequest;
use hudsucker::hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

struct Setup {
    ca: Arc<Ca>,
    server: SocketAddr,
    proxy: SocketAddr,
    store: Arc<CaptureStore>,
    _shutdown: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(dir.path()).unwrap());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"http/1.1".to_vec()]));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hudsucker::hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"ok\":true,\"player\":\"bench\"}",
                    ))))
                });
                let _ = hudsucker::hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let store = Arc::new(CaptureStore::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let options = HttpProxyOptions {
        system_roots: false,
        extra_ca: Some(dir.path().join("ca.pem")),
        ..HttpProxyOptions::default()
    };
    tokio::spawn(run(
        listener,
        ca.clone(),
        Recorder::new(store.clone()),
        options,
        shutdown.clone(),
    ));
    Setup {
        ca,
        server,
        proxy,
        store,
        _shutdown: shutdown.drop_guard(),
        _dir: dir,
    }
}

/// A keep-alive HTTP/1.1 client over TLS to the server, through the proxy or not.
async fn client(s: &Setup, via_proxy: bool) -> SendRequest<Empty<Bytes>> {
    let target = format!("localhost:{}", s.server.port());
    let tcp = if via_proxy {
        let mut tcp = TcpStream::connect(s.proxy).await.unwrap();
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        tcp
    } else {
        TcpStream::connect(s.server).await.unwrap()
    };
    tcp.set_nodelay(true).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.cert_der().clone()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(gamewire::proxy::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hudsucker::hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn one_request(sender: &mut SendRequest<Empty<Bytes>>, port: u16) -> usize {
    let req = Request::get("/player/state")
        .header("host", format!("localhost:{port}"))
        .body(Empty::new())
        .unwrap();
    // Keep-alive: the connection takes the next request once the last body was read.
    sender.ready().await.unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert!(res.status().is_success());
    res.into_body().collect().await.unwrap().to_bytes().len()
}

async fn rate(sender: &mut SendRequest<Empty<Bytes>>, port: u16, time: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        black_box(one_request(sender, port).await);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let s = rt.block_on(setup());
    let port = s.server.port();
    let mut direct = rt.block_on(client(&s, false));
    let mut proxied = rt.block_on(client(&s, true));
    // Warm both paths (leaf generation, upstream pool) before measuring.
    rt.block_on(rate(&mut direct, port, Duration::from_millis(300)));
    rt.block_on(rate(&mut proxied, port, Duration::from_millis(300)));
    let direct_rate = rt.block_on(rate(&mut direct, port, Duration::from_secs(3)));
    let proxied_rate = rt.block_on(rate(&mut proxied, port, Duration::from_secs(3)));
    println!(
        "HTTPS keep-alive GET: direct {direct_rate:.0} req/s, through the proxy (recording) \
         {proxied_rate:.0} req/s, ratio {:.2}; {} packets recorded",
        proxied_rate / direct_rate,
        s.store.read().packet_count()
    );

    let mut group = c.benchmark_group("https_keepalive_get");
    group.bench_function("direct", |b| {
        b.iter(|| rt.block_on(one_request(&mut direct, port)))
    });
    group.bench_function("through_proxy", |b| {
        b.iter(|| rt.block_on(one_request(&mut proxied, port)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
