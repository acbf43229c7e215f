//! A scripted Star Citizen client: diffusion discovery (TLS) → HTTP login → gRPC
//! `InitiateLogin` → `Listen` until the reconcile sequence completes, printing each step.
//! It goes wherever discovery says, so pointed at the taps the capture shows the whole
//! session decoded.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use prost::Message as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::sc::diffusion::frame;
use super::sc::pb::character::character_service_client::CharacterServiceClient;
use super::sc::pb::character::{CharacterState, GetCharactersRequest};
use super::sc::pb::diffusion as dpb;
use super::sc::pb::entitlement::{ReconcileAccountPhase, ReconcileAccountStatus};
use super::sc::pb::login::login_service_client::LoginServiceClient;
use super::sc::pb::login::{InitiateLoginRequest, LoginRequestStatus, VersionIdentifier};
use super::sc::pb::push::listen_response::Payload;
use super::sc::pb::push::push_service_client::PushServiceClient;
use super::sc::pb::push::{ListenRequest, ListenResponse};
use crate::dissect::sc::HEADER_LEN;

/// How long the client waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ScClientOptions {
    /// The diffusion entry point (the TLS tap, 8000 by default).
    pub diffusion: SocketAddr,
    /// Speak TLS to diffusion (the tap at 8000 does; the bare server at 8001 does not).
    pub diffusion_tls: bool,
    /// The name sent as SNI and checked in the servers' certificates.
    pub server_name: String,
    /// CA certificates trusted for the TLS endpoints (gamewire's CA).
    pub roots: Vec<CertificateDer<'static>>,
    pub user: String,
    pub password: String,
}

/// One finished step.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct ScFlowError {
    pub step: &'static str,
    pub message: String,
    /// The gRPC status code when a call failed with one.
    pub grpc_code: Option<i32>,
    /// The HTTP status when the login server refused.
    pub http_status: Option<u16>,
}

fn fail(step: &'static str, message: impl std::fmt::Display) -> ScFlowError {
    ScFlowError {
        step,
        message: message.to_string(),
        grpc_code: None,
        http_status: None,
    }
}

fn grpc_fail(step: &'static str, s: &tonic::Status) -> ScFlowError {
    ScFlowError {
        step,
        message: format!("{:?}: {}", s.code(), s.message()),
        grpc_code: Some(s.code() as i32),
        http_status: None,
    }
}

/// What a successful flow established.
#[derive(Clone, Debug)]
pub struct ScFlowResult {
    pub steps: Vec<Step>,
    pub session_id: String,
    pub token: String,
    pub account_id: u32,
    pub displayname: String,
    pub character_location: String,
    /// Each pushed notification, e.g. `reconcile_account_update LTP EXECUTING`.
    pub notifications: Vec<String>,
    pub total: Duration,
}

fn tls_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| e.to_string())?;
    }
    // Two providers are linked into the binary, so name ours instead of relying on a
    // process default.
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(config).connect(name, tcp).await
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sends one diffusion message and reads the one reply.
async fn exchange(io: &mut dyn Io, payload: &[u8]) -> Result<Vec<u8>, String> {
    io.write_all(&frame(payload))
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; HEADER_LEN];
    tokio::time::timeout(REPLY_TIMEOUT, io.read_exact(&mut head))
        .await
        .map_err(|_| "no reply in time".to_string())?
        .map_err(|e| format!("reading the reply: {e}"))?;
    if head[4..8] != crate::dissect::sc::MAGIC {
        return Err("reply without the diffusion magic".into());
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > super::sc::diffusion::MAX_CLIENT_PAYLOAD {
        return Err(format!("reply of {len} bytes is too long"));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading the reply: {e}"))?;
    Ok(body)
}

/// A tonic connector that dials TLS (ALPN h2) with our trust, since tonic's own TLS would
/// bring its own roots and crypto provider.
#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    name: String,
    config: Arc<rustls::ClientConfig>,
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            tls_connect(this.addr, &this.name, this.config)
                .await
                .map(TokioIo::new)
        })
    }
}

/// A minimal HTTP/1.1 exchange (one request, `Connection: close`): status and body.
async fn http_post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> Result<(u16, Vec<u8>), String> {
    let body = body.to_string();
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(REPLY_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .map_err(|_| "no reply in time".to_string())?
        .map_err(|e| e.to_string())?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated HTTP response".into()),
        Err(e) => return Err(format!("bad HTTP response: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let body = &raw[head..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&b[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn describe(payload: &Payload) -> String {
    match payload {
        Payload::LoginProgress(p) => format!(
            "login_progress {}",
            LoginRequestStatus::try_from(p.status).map_or("?", |s| s.as_str_name())
        ),
        Payload::LoginCompleted(c) => format!("login_completed account {}", c.account_id),
        Payload::CharacterStatus(c) => format!(
            "character_status {} {}",
            c.character.as_ref().map_or("?", |c| c.id.as_str()),
            CharacterState::try_from(c.state).map_or("?", |s| s.as_str_name())
        ),
        Payload::ReconcileAccountUpdate(r) => format!(
            "reconcile_account_update {} {}",
            ReconcileAccountPhase::try_from(r.phase).map_or("?", |s| s.as_str_name()),
            ReconcileAccountStatus::try_from(r.status).map_or("?", |s| s.as_str_name())
        ),
    }
}

/// Whether `n` ends the reconcile sequence (its last phase COMPLETE).
fn is_last(n: &ListenResponse) -> bool {
    matches!(&n.payload, Some(Payload::ReconcileAccountUpdate(r))
        if r.phase == ReconcileAccountPhase::Entitlement as i32
            && r.status == ReconcileAccountStatus::Complete as i32)
}

fn with_token<T>(msg: T, token: &str) -> Result<tonic::Request<T>, ScFlowError> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| fail("grpc", "the token is not a valid header value"))?;
    req.metadata_mut().insert("authorization", value);
    req.set_timeout(REPLY_TIMEOUT);
    Ok(req)
}

/// Runs the whole flow, calling `on_step` as each step finishes.
pub async fn run_flow(
    opts: &ScClientOptions,
    mut on_step: impl FnMut(&Step),
) -> Result<ScFlowResult, ScFlowError> {
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut t = Instant::now();
    let mut step = |name: &str, detail: String, t: &mut Instant| {
        let s = Step {
            name: name.to_owned(),
            ok: true,
            detail,
            elapsed: t.elapsed(),
        };
        on_step(&s);
        steps.push(s);
        *t = Instant::now();
    };

    // 1. Diffusion.
    let tcp = TcpStream::connect(opts.diffusion).await.map_err(|e| {
        fail(
            "diffusion",
            format!("connecting to {}: {e}", opts.diffusion),
        )
    })?;
    let _ = tcp.set_nodelay(true);
    let mut io: Box<dyn Io> = if opts.diffusion_tls {
        let config = tls_config(&opts.roots, &[]).map_err(|e| fail("diffusion", e))?;
        let name =
            ServerName::try_from(opts.server_name.clone()).map_err(|e| fail("diffusion", e))?;
        Box::new(
            TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| fail("diffusion", format!("TLS: {e}")))?,
        )
    } else {
        Box::new(tcp)
    };
    let discovery = dpb::ServiceDiscoveryRequest {
        message_name: "diff.service.online".into(),
        client: Some(dpb::ClientInfo {
            name: "Star Citizen Game Client".into(),
            client_id: "sc_client".into(),
            number_3: 4,
            number_4: 1,
        }),
        sequence: 1,
    };
    let reply = exchange(&mut *io, &discovery.encode_to_vec())
        .await
        .map_err(|e| fail("discovery", e))?;
    let services = dpb::ServiceList::decode(&reply[..])
        .map_err(|e| fail("discovery", e))?
        .services;
    let find = |name: &str| {
        services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| fail("discovery", format!("no {name} in the service list")))
    };
    let auth = find("authentication_service")?.clone();
    let game = find("game_service")?.clone();
    step(
        "discovery",
        services
            .iter()
            .map(|s| format!("{} {}:{}", s.name, s.host, s.port))
            .collect::<Vec<_>>()
            .join(", "),
        &mut t,
    );
    let reply = exchange(
        &mut *io,
        &dpb::LobbyDestinationsRequest {
            message_name: "cmsg_ls_req_dests".into(),
            sequence: 2,
        }
        .encode_to_vec(),
    )
    .await
    .map_err(|e| fail("lobby", e))?;
    let dests = dpb::LobbyDestinations::decode(&reply[..]).map_err(|e| fail("lobby", e))?;
    let region = dests
        .destinations
        .first()
        .map(|d| d.region.clone())
        .unwrap_or_default();
    step(
        "lobby",
        dests
            .destinations
            .iter()
            .map(|d| format!("{} ({})", d.display_name, d.region))
            .collect::<Vec<_>>()
            .join(", "),
        &mut t,
    );
    let reply = exchange(
        &mut *io,
        &dpb::RegionSetup {
            message_name: "cmsg_set_region_id".into(),
            region_id: region,
        }
        .encode_to_vec(),
    )
    .await
    .map_err(|e| fail("region", e))?;
    let confirmation =
        dpb::RegionConfirmation::decode(&reply[..]).map_err(|e| fail("region", e))?;
    step(
        "region",
        format!(
            "{} {}",
            confirmation.region_id,
            if confirmation.confirmed {
                "confirmed"
            } else {
                "not confirmed"
            }
        ),
        &mut t,
    );
    let reply = exchange(
        &mut *io,
        &dpb::Heartbeat {
            message_name: "heartbeat".into(),
            sequence: 1,
        }
        .encode_to_vec(),
    )
    .await
    .map_err(|e| fail("heartbeat", e))?;
    let ack = dpb::HeartbeatAck::decode(&reply[..]).map_err(|e| fail("heartbeat", e))?;
    let session_id = ack.session_id;
    step("heartbeat", format!("session {session_id}"), &mut t);
    let _ = io.shutdown().await;
    drop(io);

    // 2. HTTP login.
    let auth_addr = resolve(&auth.host, auth.port)
        .await
        .map_err(|e| fail("login", e))?;
    let (status, body) = http_post_json(
        auth_addr,
        "/login",
        &serde_json::json!({"username": opts.user, "password": opts.password}),
    )
    .await
    .map_err(|e| fail("login", e))?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| fail("login", format!("reply is not JSON: {e}")))?;
    if status != 200 {
        return Err(ScFlowError {
            http_status: Some(status),
            ..fail(
                "login",
                format!(
                    "HTTP {status}: {}",
                    json.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
                ),
            )
        });
    }
    let token = json
        .get("token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| fail("login", "no token in the reply"))?
        .to_owned();
    step(
        "login",
        format!(
            "{} (account {}, citizen {})",
            json.get("displayname")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            json.get("account_id")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            json.get("citizen_id")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
        ),
        &mut t,
    );

    // 3. gRPC: InitiateLogin, GetCharacters, Listen.
    let game_addr = resolve(&game.host, game.port)
        .await
        .map_err(|e| fail("grpc", e))?;
    let connector = Connector {
        addr: game_addr,
        name: opts.server_name.clone(),
        config: tls_config(&opts.roots, &[b"h2"]).map_err(|e| fail("grpc", e))?,
    };
    // The connector does the TLS; the URI only names the authority.
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://{}:{}",
        opts.server_name, game.port
    ))
    .map_err(|e| fail("grpc", e))?
    .connect_timeout(REPLY_TIMEOUT)
    .connect_with_connector(connector)
    .await
    .map_err(|e| fail("grpc", format!("connecting to {game_addr}: {e}")))?;
    let login = LoginServiceClient::new(channel.clone())
        .initiate_login(with_token(
            InitiateLoginRequest {
                session_id: session_id.clone(),
                version: Some(VersionIdentifier {
                    base_cl: 9_999_999,
                    shelf_cl: 1,
                }),
            },
            &token,
        )?)
        .await
        .map_err(|s| grpc_fail("initiate_login", &s))?
        .into_inner();
    step(
        "initiate_login",
        format!(
            "account {} {} ({})",
            login.account_id,
            login.displayname,
            LoginRequestStatus::try_from(login.status).map_or("?", |s| s.as_str_name())
        ),
        &mut t,
    );
    let characters = CharacterServiceClient::new(channel.clone())
        .get_characters(with_token(
            GetCharactersRequest {
                account_id: login.account_id,
            },
            &token,
        )?)
        .await
        .map_err(|s| grpc_fail("get_characters", &s))?
        .into_inner()
        .characters;
    let character_location = characters
        .first()
        .map(|c| c.location.clone())
        .unwrap_or_default();
    step(
        "get_characters",
        characters
            .iter()
            .map(|c| format!("{} {} at {}", c.id, c.name, c.location))
            .collect::<Vec<_>>()
            .join(", "),
        &mut t,
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<ListenRequest>(4);
    let outbound = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    tx.send(ListenRequest {
        session_id: session_id.clone(),
        ack_notification_id: String::new(),
    })
    .await
    .map_err(|_| fail("listen", "request stream closed"))?;
    let mut inbound = PushServiceClient::new(channel)
        .listen(with_token(outbound, &token)?)
        .await
        .map_err(|s| grpc_fail("listen", &s))?
        .into_inner();
    let mut notifications = Vec::new();
    let mut tx = Some(tx);
    loop {
        let next = tokio::time::timeout(REPLY_TIMEOUT, inbound.message())
            .await
            .map_err(|_| fail("listen", "no notification in time"))?;
        match next {
            Ok(Some(n)) => {
                let Some(payload) = &n.payload else {
                    continue;
                };
                let text = describe(payload);
                step("notification", text.clone(), &mut t);
                notifications.push(text);
                if is_last(&n) {
                    // Closing our side ends the call; the server then finishes with OK.
                    tx = None;
                } else if let Some(tx) = &tx {
                    let _ = tx
                        .send(ListenRequest {
                            session_id: String::new(),
                            ack_notification_id: n.notification_id.clone(),
                        })
                        .await;
                }
            }
            Ok(None) => break,
            Err(s) => return Err(grpc_fail("listen", &s)),
        }
    }
    drop(tx);
    if !notifications
        .last()
        .is_some_and(|n| n.contains("ENTITLEMENT") && n.contains("COMPLETE"))
    {
        return Err(fail(
            "listen",
            "the stream ended before the reconcile completed",
        ));
    }
    Ok(ScFlowResult {
        steps,
        session_id,
        token,
        account_id: login.account_id,
        displayname: login.displayname,
        character_location,
        notifications,
        total: start.elapsed(),
    })
}

async fn resolve(host: &str, port: u32) -> Result<SocketAddr, String> {
    let port = u16::try_from(port).map_err(|_| format!("bad port {port}"))?;
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port}: no address"))
}
