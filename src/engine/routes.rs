//! Routes: every listener the engine runs (taps, the HTTP proxy, emulated servers), each
//! started and stopped by name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::{Config, TapConfig, TapTransport, split_host_port};
use super::{EngineError, Shared};
use crate::proxy::tap::{self, TapSettings, TapShared, Upstream};
use crate::proxy::tls::{UpstreamTrust, client_config};

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
            },
            dissector: self.dissector.clone(),
            state: self.state.clone(),
        }
    }
}

pub(crate) fn from_config(config: &Config) -> Vec<Route> {
    config
        .taps
        .iter()
        .map(|t| Route {
            name: t.name.clone(),
            kind: RouteKind::Tap,
            enabled: t.enabled,
            listen: t.listen,
            dissector: t.dissector.clone(),
            spec: Spec::Tap(t.clone()),
            state: RouteState::Stopped,
            stop: None,
        })
        .collect()
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
                other => {
                    return Err(EngineError::Route {
                        route: name.to_string(),
                        reason: format!("{other:?} taps are not available yet"),
                    });
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
    }
}

fn tap_settings(shared: &Shared, t: &TapConfig) -> Result<TapSettings, EngineError> {
    let err = |reason: String| EngineError::Route {
        route: t.name.clone(),
        reason,
    };
    let (host, port) = split_host_port(&t.upstream).map_err(&err)?;
    let tls_upstream = if t.upstream_tls {
        let trust = UpstreamTrust {
            system_roots: true,
            extra_ca: t.upstream_ca.clone(),
            insecure: t.upstream_insecure,
        };
        Some(client_config(&trust, Vec::new()).map_err(|e| err(e.to_string()))?)
    } else {
        None
    };
    if t.tls {
        return Err(err(
            "TLS termination needs the certificate authority, which is not available yet".into(),
        ));
    }
    let dissector = t.dissector.as_deref().and_then(|d| shared.registry.get(d));
    Ok(TapSettings {
        route: t.name.clone(),
        tls: None,
        upstream: Upstream {
            host,
            port,
            address: t.upstream_address,
            tls: tls_upstream,
            insecure: t.upstream_insecure,
        },
        dissector,
        dissect_context: crate::dissect::Context::default(),
        connect_timeout: Duration::from_secs(t.connect_timeout_secs.max(1)),
        handshake_timeout: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(t.idle_timeout_secs.max(1)),
    })
}
