//! Routes: every listener the engine runs (taps, the HTTP proxy, emulated servers), each
//! started and stopped by name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::{
    Config, FESL_SERVER_PORT, GP_SERVER_PORT, ProxyConfig, SC_CATCHALL_SERVER_PORT,
    SC_GAME_SERVER_PORT, SC_LOGIN_SERVER_PORT, TapConfig, TapTransport, split_host_port,
};
use super::{EngineError, Shared};
use crate::proxy::tap::{self, TapSettings, TapShared, Upstream};
use crate::proxy::tls::{UpstreamTrust, client_config, client_config_with};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Tap,
    Proxy,
    Server,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Tap => "tap",
            RouteKind::Proxy => "proxy",
            RouteKind::Server => "server",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteState {
    Stopped,
    Running(SocketAddr),
    Failed(String),
}

/// A route as the GUI and CLI list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStatus {
    pub name: String,
    pub kind: RouteKind,
    pub listen: SocketAddr,
    /// Where a tap sends its traffic.
    pub upstream: Option<String>,
    pub dissector: Option<String>,
    pub state: RouteState,
}

#[derive(Clone, Debug)]
pub(crate) enum Spec {
    Tap(TapConfig),
    Proxy(ProxyConfig),
    Server(ServerKind),
}

/// The emulated servers the engine can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerKind {
    Fesl,
    Gp,
    ScDiffusion,
    ScLogin,
    ScGame,
    ScCatchall,
}

pub(crate) struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub enabled: bool,
    pub listen: SocketAddr,
    pub dissector: Option<String>,
    pub spec: Spec,
    pub state: RouteState,
    pub stop: Option<CancellationToken>,
}

impl Route {
    pub fn status(&self) -> RouteStatus {
        RouteStatus {
            name: self.name.clone(),
            kind: self.kind,
            listen: self.listen,
            upstream: match &self.spec {
                Spec::Tap(t) => Some(t.upstream.clone()),
                Spec::Proxy(_) | Spec::Server(_) => None,
            },
            dissector: self.dissector.clone(),
            state: self.state.clone(),
        }
    }
}

pub(crate) fn from_config(config: &Config) -> Vec<Route> {
    let proxy = Route {
        name: "proxy".into(),
        kind: RouteKind::Proxy,
        enabled: config.proxy.enabled,
        listen: config.proxy.listen,
        dissector: Some("http".into()),
        spec: Spec::Proxy(config.proxy.clone()),
        state: RouteState::Stopped,
        stop: None,
    };
    let taps = config.taps.iter().map(|t| Route {
        name: t.name.clone(),
        kind: RouteKind::Tap,
        enabled: t.enabled,
        listen: t.listen,
        dissector: t.dissector.clone(),
        spec: Spec::Tap(t.clone()),
        state: RouteState::Stopped,
        stop: None,
    });
    let server = |name: &str, kind, enabled, listen, dissector: &str| Route {
        name: name.into(),
        kind: RouteKind::Server,
        enabled,
        listen,
        dissector: Some(dissector.into()),
        spec: Spec::Server(kind),
        state: RouteState::Stopped,
        stop: None,
    };
    let servers = [
        server(
            "fesl-server",
            ServerKind::Fesl,
            config.servers.fesl.enabled,
            config.servers.fesl.listen_or(FESL_SERVER_PORT),
            "fesl",
        ),
        server(
            "gp-server",
            ServerKind::Gp,
            config.servers.gp.enabled,
            config.servers.gp.listen_or(GP_SERVER_PORT),
            "gp",
        ),
        server(
            "sc-diffusion-server",
            ServerKind::ScDiffusion,
            config.servers.sc_diffusion.enabled,
            config
                .servers
                .sc_diffusion
                .listen_or(crate::servers::sc::DIFFUSION_PORT),
            "sc",
        ),
        server(
            "sc-login-server",
            ServerKind::ScLogin,
            config.servers.sc_login.enabled,
            config.servers.sc_login.listen_or(SC_LOGIN_SERVER_PORT),
            "http",
        ),
        server(
            "sc-game-server",
            ServerKind::ScGame,
            config.servers.sc_game.enabled,
            config.servers.sc_game.listen_or(SC_GAME_SERVER_PORT),
            "grpc",
        ),
        server(
            "sc-catchall-server",
            ServerKind::ScCatchall,
            config.servers.sc_catchall.enabled,
            config
                .servers
                .sc_catchall
                .listen_or(SC_CATCHALL_SERVER_PORT),
            "grpc",
        ),
    ];
    std::iter::once(proxy).chain(servers).chain(taps).collect()
}

pub(crate) async fn start(shared: &Arc<Shared>, name: &str) -> Result<SocketAddr, EngineError> {
    let (spec, listen) = {
        let routes = shared.routes.lock();
        let route = routes
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| EngineError::UnknownRoute(name.to_string()))?;
        if let RouteState::Running(addr) = route.state {
            return Ok(addr);
        }
        (route.spec.clone(), route.listen)
    };
    let result = launch(shared, name, spec, listen).await;
    let mut routes = shared.routes.lock();
    if let Some(route) = routes.iter_mut().find(|r| r.name == name) {
        match &result {
            Ok((addr, token)) => {
                route.state = RouteState::Running(*addr);
                route.stop = Some(token.clone());
            }
            Err(e) => {
                route.state = RouteState::Failed(e.to_string());
                route.stop = None;
            }
        }
    }
    result.map(|(addr, _)| addr)
}

pub(crate) fn stop(shared: &Arc<Shared>, name: &str) -> Result<(), EngineError> {
    let mut routes = shared.routes.lock();
    let route = routes
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| EngineError::UnknownRoute(name.to_string()))?;
    if let Some(token) = route.stop.take() {
        token.cancel();
    }
    route.state = RouteState::Stopped;
    tracing::info!(route = %name, "stopped");
    Ok(())
}

async fn bind(name: &str, addr: SocketAddr) -> Result<TcpListener, EngineError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(name, addr, e))
}

fn bind_error(name: &str, addr: SocketAddr, e: std::io::Error) -> EngineError {
    EngineError::Bind {
        route: name.to_string(),
        addr,
        reason: if e.kind() == std::io::ErrorKind::AddrInUse {
            "the port is already in use (another gamewire, or another program?)".to_string()
        } else {
            e.to_string()
        },
    }
}

async fn launch(
    shared: &Arc<Shared>,
    name: &str,
    spec: Spec,
    listen: SocketAddr,
) -> Result<(SocketAddr, CancellationToken), EngineError> {
    let token = shared.shutdown.child_token();
    let span = tracing::info_span!("route", route = %name);
    match spec {
        Spec::Tap(tap_config) => {
            let settings = Arc::new(tap_settings(shared, &tap_config)?);
            let tap_shared = TapShared {
                recorder: shared.recorder.clone(),
                interceptor: shared.interceptor.clone(),
                resolver: shared.resolver.clone(),
            };
            match tap_config.transport {
                TapTransport::Tcp => {}
                TapTransport::Udp => {
                    let socket = tokio::net::UdpSocket::bind(listen)
                        .await
                        .map_err(|e| bind_error(name, listen, e))?;
                    let addr = socket.local_addr().unwrap_or(listen);
                    tracing::info!(route = %name, "UDP tap listening on {addr}, upstream {}", tap_config.upstream);
                    tokio::spawn(
                        crate::proxy::udp::run_udp(socket, settings, tap_shared, token.clone())
                            .instrument(span),
                    );
                    return Ok((addr, token));
                }
                TapTransport::Quic => {
                    let quic_tls = Arc::new(quic_tls(shared, &tap_config)?);
                    let endpoint =
                        crate::proxy::quic::server_endpoint(listen, &quic_tls).map_err(|e| {
                            bind_error(name, listen, std::io::Error::other(e.to_string()))
                        })?;
                    let addr = endpoint.local_addr().unwrap_or(listen);
                    tracing::info!(route = %name, "QUIC tap listening on {addr}, upstream {}", tap_config.upstream);
                    tokio::spawn(
                        crate::proxy::quic::run_quic(
                            endpoint,
                            quic_tls,
                            settings,
                            tap_shared,
                            token.clone(),
                        )
                        .instrument(span),
                    );
                    return Ok((addr, token));
                }
            }
            let listener = bind(name, listen).await?;
            let addr = listener.local_addr().unwrap_or(listen);
            tracing::info!(route = %name, "tap listening on {addr}, upstream {}", tap_config.upstream);
            tokio::spawn(
                tap::run_tcp(listener, settings, tap_shared, token.clone()).instrument(span),
            );
            Ok((addr, token))
        }
        Spec::Server(kind) => launch_server(shared, name, kind, listen, token, span).await,
        Spec::Proxy(proxy_config) => {
            let ca = ca_of(shared, name)?;
            let listener = bind(name, listen).await?;
            let addr = listener.local_addr().unwrap_or(listen);
            let options = crate::proxy::http::HttpProxyOptions {
                route: name.to_string(),
                system_roots: true,
                extra_ca: proxy_config.upstream_ca.clone(),
                insecure_upstream: proxy_config.insecure_upstream,
                extra_roots: shared
                    .ca()
                    .map(|ca| vec![ca.cert_der().clone()])
                    .unwrap_or_default(),
                ..Default::default()
            };
            let recorder = shared.recorder.clone();
            let route = name.to_string();
            tracing::info!(route = %name, "HTTP(S) proxy listening on {addr}");
            let stop = token.clone();
            tokio::spawn(
                async move {
                    if let Err(e) =
                        crate::proxy::http::run(listener, ca, recorder, options, stop).await
                    {
                        tracing::error!(route = %route, "proxy stopped: {e}");
                    }
                }
                .instrument(span),
            );
            Ok((addr, token))
        }
    }
}

async fn launch_server(
    shared: &Arc<Shared>,
    name: &str,
    kind: ServerKind,
    listen: SocketAddr,
    token: CancellationToken,
    span: tracing::Span,
) -> Result<(SocketAddr, CancellationToken), EngineError> {
    use crate::servers::{Ra3Config, fesl, gp};
    let sc_ctx = match kind {
        ServerKind::Fesl | ServerKind::Gp => None,
        _ => Some(sc_ctx(shared, name).await?),
    };
    let store = shared
        .accounts()
        .await
        .map_err(|reason| EngineError::Route {
            route: name.to_string(),
            reason,
        })?;
    let listener = bind(name, listen).await?;
    let addr = listener.local_addr().unwrap_or(listen);
    let route = name.to_string();
    let stop = token.clone();
    tracing::info!(route = %name, "emulated {kind:?} server listening on {addr}");
    let task = async move {
        let result = match kind {
            ServerKind::Fesl => {
                fesl::run(
                    listener,
                    fesl::FeslCtx::new(store, Ra3Config::default()),
                    stop,
                )
                .await
            }
            ServerKind::Gp => {
                gp::run(listener, gp::GpCtx::new(store, Ra3Config::default()), stop).await
            }
            ServerKind::ScDiffusion
            | ServerKind::ScLogin
            | ServerKind::ScGame
            | ServerKind::ScCatchall => match sc_ctx {
                Some(ctx) => run_sc(kind, listener, ctx, stop).await,
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::error!(route = %route, "server stopped: {e}");
        }
    };
    tokio::spawn(task.instrument(span));
    Ok((addr, token))
}

/// What the Star Citizen servers share: the accounts, the JWT key (made at first start in
/// the certificates directory) and the settings.
async fn sc_ctx(
    shared: &Arc<Shared>,
    name: &str,
) -> Result<crate::servers::sc::ScCtx, EngineError> {
    let err = |reason: String| EngineError::Route {
        route: name.to_string(),
        reason,
    };
    let store = shared.accounts().await.map_err(&err)?;
    let settings = shared.config.servers.sc.clone();
    let signer = shared.sc_signer().map_err(&err)?;
    Ok(crate::servers::sc::ScCtx {
        store,
        login_data_path: shared.config.data_dir.join(&settings.login_data),
        settings: Arc::new(settings),
        signer,
        schemas: shared.decode_context().schemas.clone(),
        logged_out: shared.sc_logged_out.clone(),
    })
}

async fn run_sc(
    kind: ServerKind,
    listener: TcpListener,
    ctx: crate::servers::sc::ScCtx,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use crate::servers::sc::{catchall, diffusion, game, login};
    match kind {
        ServerKind::ScDiffusion => diffusion::run(listener, ctx.settings, stop).await,
        ServerKind::ScLogin => login::run(listener, ctx, stop).await,
        ServerKind::ScGame => game::run(listener, ctx, stop)
            .await
            .map_err(std::io::Error::other),
        ServerKind::ScCatchall => {
            let server = catchall::CatchAll::new(ctx.settings.catchall.clone(), ctx.schemas);
            catchall::run(listener, server, stop).await
        }
        ServerKind::Fesl | ServerKind::Gp => Ok(()),
    }
}

fn ca_of(shared: &Shared, route: &str) -> Result<Arc<crate::proxy::ca::Ca>, EngineError> {
    match shared.ca() {
        Ok(ca) => Ok(ca),
        Err(e) => Err(EngineError::Route {
            route: route.to_string(),
            reason: format!("needs the certificate authority, which could not be loaded: {e}"),
        }),
    }
}

fn alpn_of(t: &TapConfig) -> Vec<Vec<u8>> {
    t.alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn upstream_trust(shared: &Shared, t: &TapConfig) -> UpstreamTrust {
    UpstreamTrust {
        system_roots: true,
        extra_ca: t.upstream_ca.clone(),
        insecure: t.upstream_insecure,
        extra_roots: shared
            .ca()
            .map(|ca| vec![ca.cert_der().clone()])
            .unwrap_or_default(),
    }
}

fn quic_tls(shared: &Shared, t: &TapConfig) -> Result<crate::proxy::quic::QuicTls, EngineError> {
    let err = |reason: String| EngineError::Route {
        route: t.name.clone(),
        reason,
    };
    let ca = ca_of(shared, &t.name)?;
    let fallback = t
        .tls_name
        .clone()
        .unwrap_or_else(|| t.listen.ip().to_string());
    let server = ca
        .quic_server_config(&alpn_of(t), Some(&fallback))
        .map_err(|e| err(e.to_string()))?;
    // Our own client certificate towards the upstream: the client's private key never
    // reaches us, so its certificate cannot be replayed.
    let client_cert = ca.leaf("gamewire-client").map_err(|e| err(e.to_string()))?;
    let client = client_config_with(
        &upstream_trust(shared, t),
        alpn_of(t),
        Some(client_cert),
        true,
    )
    .map_err(|e| err(e.to_string()))?;
    Ok(crate::proxy::quic::QuicTls { server, client })
}

fn tap_settings(shared: &Shared, t: &TapConfig) -> Result<TapSettings, EngineError> {
    let err = |reason: String| EngineError::Route {
        route: t.name.clone(),
        reason,
    };
    let (host, port) = split_host_port(&t.upstream).map_err(&err)?;
    let tls_upstream = if t.upstream_tls && t.transport == TapTransport::Tcp {
        Some(
            client_config(&upstream_trust(shared, t), alpn_of(t))
                .map_err(|e| err(e.to_string()))?,
        )
    } else {
        None
    };
    let tls = if t.tls && t.transport == TapTransport::Tcp {
        let ca = ca_of(shared, &t.name)?;
        let fallback = t
            .tls_name
            .clone()
            .unwrap_or_else(|| t.listen.ip().to_string());
        Some(ca.server_config_for(&alpn_of(t), Some(&fallback)))
    } else {
        None
    };
    let dissector = t.dissector.as_deref().and_then(|d| shared.registry.get(d));
    Ok(TapSettings {
        route: t.name.clone(),
        tls,
        upstream: Upstream {
            host,
            port,
            address: t.upstream_address,
            tls: tls_upstream,
            insecure: t.upstream_insecure,
        },
        dissector,
        dissect_context: (*shared.decode_context()).clone(),
        connect_timeout: Duration::from_secs(t.connect_timeout_secs.max(1)),
        handshake_timeout: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(t.idle_timeout_secs.max(1)),
    })
}

/// The most a repeater answer keeps; a server that streams forever must not fill memory.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Repeater: opens a new connection to where the route sends its traffic (a tap's upstream,
/// a server's own listener), sends `bytes`, and returns what came back until the peer was
/// quiet for `settle` (or closed). Not recorded: it bypasses the route's tap on purpose, so
/// the answer is the upstream's and not a relay's.
pub(crate) async fn repeat(
    shared: Arc<Shared>,
    name: String,
    bytes: Vec<u8>,
    settle: Duration,
) -> Result<Vec<u8>, EngineError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let err = |reason: String| EngineError::Route {
        route: name.clone(),
        reason,
    };
    let (spec, state) = {
        let routes = shared.routes.lock();
        let route = routes
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| EngineError::UnknownRoute(name.clone()))?;
        (route.spec.clone(), route.state.clone())
    };
    let (addr, upstream) = match spec {
        Spec::Tap(t) if t.transport == TapTransport::Tcp => {
            let settings = tap_settings(&shared, &t)?;
            let tap_shared = TapShared {
                recorder: shared.recorder.clone(),
                interceptor: shared.interceptor.clone(),
                resolver: shared.resolver.clone(),
            };
            let addr = tap::upstream_addr(&settings.upstream, &tap_shared)
                .await
                .map_err(&err)?;
            (addr, Some(settings.upstream))
        }
        Spec::Server(_) => match state {
            RouteState::Running(addr) => (addr, None),
            _ => return Err(err("the server is not running".into())),
        },
        Spec::Tap(_) | Spec::Proxy(_) => {
            return Err(err(
                "the repeater speaks TCP to a tap's or server's upstream only".into(),
            ));
        }
    };
    let connect = tokio::net::TcpStream::connect(addr);
    let tcp = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(err(format!("connect to {addr} failed: {e}"))),
        Err(_) => return Err(err(format!("connect to {addr} timed out"))),
    };
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn AsyncReadWrite> = match upstream
        .and_then(|u| u.tls.map(|c| (u.host, c)))
    {
        None => Box::new(tcp),
        Some((host, config)) => {
            let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| err(format!("{host} is not a valid TLS name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
            match tokio::time::timeout(Duration::from_secs(15), tls).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => return Err(err(format!("TLS handshake with {addr} failed: {e}"))),
                Err(_) => return Err(err(format!("TLS handshake with {addr} timed out"))),
            }
        }
    };
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| err(format!("send to {addr} failed: {e}")))?;
    let _ = stream.flush().await;
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while answer.len() < MAX_ANSWER {
        match tokio::time::timeout(settle, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if answer.is_empty() => {
                return Err(err(format!("reading the answer from {addr} failed: {e}")));
            }
            Ok(Err(_)) => break,
        }
    }
    Ok(answer)
}

trait AsyncReadWrite: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncReadWrite for T {}
