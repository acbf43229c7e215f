//! Routes: every listener the engine runs (taps, the HTTP proxy, emulated servers), each
//! started and stopped by name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::{Config, ProxyConfig, TapConfig, TapTransport, split_host_port};
use super::{EngineError, Shared};
use crate::proxy::tap::{self, TapSettings, TapShared, Upstream};
use crate::proxy::tls::{UpstreamTrust, client_config, client_config_with};
use crate::servers::registry::{Registration, ServerContext};

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
    /// One line on what it is (an emulated server's from the server table).
    pub description: String,
    pub state: RouteState,
}

#[derive(Clone)]
pub(crate) enum Spec {
    Tap(TapConfig),
    Proxy(ProxyConfig),
    /// An entry of the server table and its section's own settings.
    Server(&'static Registration, toml::Table),
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
                Spec::Proxy(_) | Spec::Server(..) => None,
            },
            dissector: self.dissector.clone(),
            description: match &self.spec {
                Spec::Tap(t) => match t.transport {
                    TapTransport::Tcp => "TCP tap".into(),
                    TapTransport::Udp => "UDP tap".into(),
                    TapTransport::Quic => "QUIC tap".into(),
                },
                Spec::Proxy(_) => "HTTP(S) forward proxy".into(),
                Spec::Server(r, _) => r.description.into(),
            },
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
    let servers = config.servers.iter().map(|(r, section)| Route {
        name: r.route.into(),
        kind: RouteKind::Server,
        enabled: section.enabled,
        listen: section.listen,
        dissector: Some(r.dissector.into()),
        spec: Spec::Server(r, section.settings.clone()),
        state: RouteState::Stopped,
        stop: None,
    });
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
        Spec::Server(registration, settings) => {
            launch_server(shared, name, registration, &settings, listen, token, span).await
        }
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
    registration: &'static Registration,
    settings: &toml::Table,
    listen: SocketAddr,
    token: CancellationToken,
    span: tracing::Span,
) -> Result<(SocketAddr, CancellationToken), EngineError> {
    let err = |reason: String| EngineError::Route {
        route: name.to_string(),
        reason,
    };
    let store = shared.accounts().await.map_err(err)?;
    let listener = bind(name, listen).await?;
    let addr = listener.local_addr().unwrap_or(listen);
    let ctx = server_context(shared, store, token.clone());
    let serve = registration
        .server
        .launch(settings, ctx, listener)
        .map_err(err)?;
    let route = name.to_string();
    tracing::info!(route = %name, "emulated server listening on {addr}: {}", registration.description);
    let task = async move {
        if let Err(e) = serve.await {
            tracing::error!(route = %route, "server stopped: {e}");
        }
    };
    tokio::spawn(task.instrument(span));
    Ok((addr, token))
}

/// What a server gets at start: the accounts, the SC settings and issuer key (made at
/// first use in the certificates directory), the schemas and its stop token.
fn server_context(
    shared: &Arc<Shared>,
    store: crate::security::Store,
    stop: CancellationToken,
) -> ServerContext {
    let signer = {
        let shared = shared.clone();
        Arc::new(move || shared.sc_signer())
    };
    ServerContext {
        store,
        shutdown: stop,
        data_dir: shared.config.data_dir.clone(),
        sc: Arc::new(shared.config.servers.sc.clone()),
        sc_signer: signer,
        sc_logged_out: shared.sc_logged_out.clone(),
        schemas: shared.decode_context().schemas.clone(),
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
        Spec::Server(..) => match state {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_of_the_table_is_a_route_on_its_port_with_its_dissector_and_tap() {
        let config = Config::default();
        let routes = from_config(&config);
        for r in crate::servers::REGISTRY {
            let route = routes
                .iter()
                .find(|x| x.name == r.route)
                .unwrap_or_else(|| panic!("no route {}", r.route));
            let status = route.status();
            assert_eq!(status.kind, RouteKind::Server);
            assert!(route.enabled);
            assert_eq!(status.listen, SocketAddr::from(([127, 0, 0, 1], r.port)));
            assert_eq!(status.dissector.as_deref(), Some(r.dissector));
            assert_eq!(status.description, r.description);
            if let Some(t) = r.tap {
                let tap = routes.iter().find(|x| x.name == t.name).unwrap();
                assert_eq!(tap.listen.port(), t.port);
                assert_eq!(tap.status().upstream, Some(format!("127.0.0.1:{}", r.port)));
                assert_eq!(tap.dissector.as_deref(), Some(r.dissector));
            }
        }
        // The ports users and games already rely on.
        let port = |name: &str| {
            routes
                .iter()
                .find(|r| r.name == name)
                .unwrap()
                .listen
                .port()
        };
        let expected = [
            ("fesl", 18800),
            ("fesl-server", 28800),
            ("gp", 29900),
            ("gp-server", 39900),
            ("sc-diffusion-tls", 8000),
            ("sc-diffusion-server", 8001),
            ("sc-login", 9000),
            ("sc-login-server", 19000),
            ("sc-game", 5678),
            ("sc-game-server", 15678),
            ("sc-catchall", 8443),
            ("sc-catchall-server", 18443),
            ("proxy", 8080),
        ];
        for (name, p) in expected {
            assert_eq!(port(name), p, "{name}");
        }
        assert_eq!(routes.len(), expected.len());
    }

    #[test]
    fn a_section_moved_or_disabled_in_the_file_moves_or_disables_its_route() {
        let text = "[servers.gp]\nenabled = false\nlisten = \"127.0.0.1:4242\"\n";
        let config = Config::parse(text, std::path::Path::new("x.toml")).unwrap();
        let routes = from_config(&config);
        let gp = routes.iter().find(|r| r.name == "gp-server").unwrap();
        assert!(!gp.enabled);
        assert_eq!(gp.listen.port(), 4242);
    }
}
