//! A real gRPC stack end to end through a TLS tap: Python's grpcio (C-core, the client most
//! game tooling scripts with) → tap terminating TLS with our CA, ALPN `h2` → a tonic server
//! speaking cleartext h2. What the tap records must decode as the gRPC call it was.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use gamewire::capture::Direction;
use gamewire::dissect::Registry;
use gamewire::dissect::session::decode_capture;
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, RouteState, StartOptions};
use prost::Message as _;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status};

const SAY_PATH: &str = "/gamewire.test.Echo/Say";

#[derive(Clone, PartialEq, prost::Message)]
struct SayRequest {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SayReply {
    #[prost(string, tag = "1")]
    text: String,
}

/// `gamewire.test.Echo`, written the way tonic-build generates a server so no protoc is
/// needed: route by path, then let `Grpc::unary` do framing and status.
#[derive(Clone)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "gamewire.test.Echo";
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == SAY_PATH {
            Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<SayReply, SayRequest>::default();
                Ok(Grpc::new(codec).unary(Say, req).await)
            })
        } else {
            Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// The `Say` method: the text upper-cased, so the reply proves the server ran.
struct Say;

impl Service<Request<SayRequest>> for Say {
    type Response = Response<SayReply>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<SayRequest>) -> Self::Future {
        let text = req.into_inner().text.to_uppercase();
        std::future::ready(Ok(Response::new(SayReply { text })))
    }
}

/// Raw bytes in and out (hex on argv and stdout) so the protobuf encoding stays prost's.
/// The proxy is disabled because grpcio honours `http_proxy` from the environment.
const CLIENT: &str = r#"
import sys
import grpc

addr, ca_path, request_hex = sys.argv[1:4]
with open(ca_path, "rb") as f:
    ca = f.read()
credentials = grpc.ssl_channel_credentials(root_certificates=ca)
options = [("grpc.ssl_target_name_override", "localhost"), ("grpc.enable_http_proxy", 0)]
with grpc.secure_channel(addr, credentials, options=options) as channel:
    say = channel.unary_unary(
        "/gamewire.test.Echo/Say", request_serializer=None, response_deserializer=None
    )
    reply = say(bytes.fromhex(request_hex), timeout=20)
print(reply.hex())
"#;

fn require_grpcio() {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with grpcio is required for this test: run `pip install grpcio`"
    );
}

fn route_addr(engine: &Engine, name: &str) -> SocketAddr {
    let route = engine
        .routes()
        .into_iter()
        .find(|r| r.name == name)
        .expect("the tap's route exists");
    match route.state {
        RouteState::Running(addr) => addr,
        other => panic!("route {name} is not running: {other:?}"),
    }
}

/// Waits until the client's connection has closed, so both directions are fully recorded.
fn wait_closed(engine: &Engine) {
    let start = Instant::now();
    loop {
        let data = engine.store().read();
        if data.connection_count() > 0 && data.connections().iter().all(|c| c.closed.is_some()) {
            return;
        }
        drop(data);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the tapped connection never closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn grpcio_calls_a_tonic_server_through_a_tls_tap_and_the_capture_decodes_as_grpc() {
    require_grpcio();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream = listener.local_addr().unwrap();
    rt.spawn(tonic::transport::Server::builder().serve_with_incoming(
        EchoServer,
        tonic::transport::server::TcpIncoming::from(listener),
    ));

    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps: vec![TapConfig {
            name: "grpc".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: true,
            tls_name: Some("localhost".into()),
            alpn: vec!["h2".into()],
            upstream: upstream.to_string(),
            upstream_address: Some(upstream),
            dissector: Some("grpc".into()),
            ..TapConfig::default()
        }],
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    let engine = Engine::start(config, StartOptions::default()).unwrap();
    let tap = route_addr(&engine, "grpc");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(
        &ca_path,
        engine.ca().expect("the engine made a CA").cert_pem(),
    )
    .unwrap();

    let request = SayRequest {
        text: "hello gamewire".into(),
    };
    let output = Command::new("python3")
        .args(["-c", CLIENT])
        .arg(tap.to_string())
        .arg(&ca_path)
        .arg(hex::encode(request.encode_to_vec()))
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the grpcio client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply_hex = String::from_utf8_lossy(&output.stdout);
    let reply_bytes = hex::decode(reply_hex.trim()).expect("the client printed hex");
    let reply = SayReply::decode(&reply_bytes[..]).expect("the reply is a SayReply");
    assert_eq!(reply.text, "HELLO GAMEWIRE");

    wait_closed(&engine);
    let data = engine.store().read();
    let conn = data
        .connections()
        .first()
        .expect("the tap recorded the client's connection");
    let tls = conn.tls.clone().expect("TLS facts recorded");
    assert_eq!(tls.alpn.as_deref(), Some("h2"), "grpcio negotiated h2");
    assert_eq!(tls.sni.as_deref(), Some("localhost"));

    let decoded = decode_capture(&Registry::standard(), &Default::default(), &data, None);
    assert_eq!(decoded.protocols.get(&conn.id), Some(&"grpc"));
    let messages: Vec<_> = data
        .packets_of(conn.id)
        .flat_map(|p| decoded.of_packet(p.id).iter())
        .collect();
    let labels: Vec<String> = messages
        .iter()
        .map(|m| format!("{:?}: {}", m.direction, m.message.label))
        .collect();
    assert!(
        messages.iter().all(|m| !m.message.tree.has_error()
            && m.message.derived.iter().all(|d| !d.tree.has_error())),
        "error nodes in {labels:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.direction == Direction::ClientToServer
                && m.message.label.contains(&format!("POST {SAY_PATH}"))),
        "no request HEADERS labelled with the path: {labels:#?}"
    );
    assert!(
        labels
            .iter()
            .any(|l| l.starts_with("ServerToClient") && l.contains("grpc-status 0 OK")),
        "no OK trailers: {labels:#?}"
    );
    // Each side's gRPC message, reassembled from DATA, knows its call's method and shows
    // the protobuf string that crossed the wire (schemaless: field number 1).
    for (dir, text) in [
        (Direction::ClientToServer, "hello gamewire"),
        (Direction::ServerToClient, "HELLO GAMEWIRE"),
    ] {
        let call = messages
            .iter()
            .filter(|m| m.direction == dir)
            .flat_map(|m| &m.message.derived)
            .map(|d| &d.tree)
            .find(|t| t.display_value().contains(SAY_PATH))
            .unwrap_or_else(|| panic!("no {dir:?} gRPC message for {SAY_PATH}: {labels:#?}"));
        assert_eq!(
            call.find(&["message 1", "payload", "1"])
                .and_then(|n| n.value.as_text()),
            Some(text),
            "{dir:?} payload"
        );
    }
}
