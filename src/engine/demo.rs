//! The demo: the scripted game clients log in through the engine's own taps (Red Alert 3
//! through FESL and GP, then, when its taps run, Star Citizen through diffusion, the login
//! server and the gRPC game server), so a new user sees whole decoded sessions in the capture
//! within seconds, without a game.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::api::Event;
use super::{EngineError, RouteKind, RouteState, RouteStatus, Shared};
use crate::clients;
use crate::security::{TEST_EMAIL, TEST_PASSWORD};

/// The persona the demo logs in as (made on the test account the first time).
pub const DEMO_PERSONA: &str = "DemoPlayer";

/// One finished step of the demo's login flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoStep {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoProgress {
    pub steps: Vec<DemoStep>,
    /// `None` while running; then what was achieved or why it stopped.
    pub outcome: Option<Result<String, String>>,
}

fn routes(shared: &Shared) -> Vec<RouteStatus> {
    shared.routes.lock().iter().map(|r| r.status()).collect()
}

/// Where the demo client connects: the running taps whose dissector is `fesl` and `gp`.
fn demo_targets(shared: &Shared) -> Result<(SocketAddr, SocketAddr), EngineError> {
    let routes = routes(shared);
    let find = |dissector: &str| {
        routes
            .iter()
            .filter(|r| r.kind == RouteKind::Tap && r.dissector.as_deref() == Some(dissector))
            .find_map(|r| match r.state {
                RouteState::Running(addr) => Some(reachable(addr)),
                _ => None,
            })
            .ok_or_else(|| EngineError::Route {
                route: dissector.to_string(),
                reason: format!(
                    "no {dissector} tap is running; the demo needs the FESL and GP taps \
                         (see the servers panel or gamewire.toml)"
                ),
            })
    };
    Ok((find("fesl")?, find("gp")?))
}

/// Runs the scripted login through the taps on a task of its own and returns at once;
/// its progress is told as [`Event::Demo`] after every step and at the end.
pub(super) fn run(shared: &Arc<Shared>) -> Result<(), EngineError> {
    let (fesl, gp) = demo_targets(shared)?;
    let sc = sc_demo_options(shared);
    let progress: Arc<Mutex<DemoProgress>> = Arc::default();
    let wake = {
        let (progress, shared) = (progress.clone(), shared.clone());
        Arc::new(move || shared.publish(Event::Demo(progress.lock().clone())))
    };
    wake();
    tokio::spawn(async move {
        tracing::info!(%fesl, %gp, "demo: the scripted RA3 client logs in through the taps");
        let steps = Arc::clone(&progress);
        let step_wake = Arc::clone(&wake);
        let result = clients::ra3::run_fesl_flow(
            fesl,
            gp,
            TEST_EMAIL,
            TEST_PASSWORD,
            Some(DEMO_PERSONA),
            move |s| {
                steps.lock().steps.push(DemoStep {
                    name: s.name.to_string(),
                    ok: s.ok,
                    detail: s.detail,
                    elapsed: s.elapsed,
                });
                step_wake();
            },
        )
        .await;
        let outcome = match result {
            Ok(r) => {
                let text = format!(
                    "logged in as {} (persona {}) in {:.0} ms",
                    r.display_name,
                    r.persona,
                    r.total.as_secs_f64() * 1000.0
                );
                tracing::info!("demo: {text}");
                Ok(text)
            }
            Err(e) => {
                tracing::warn!("demo: login flow failed: {e}");
                Err(e.to_string())
            }
        };
        let outcome = match (outcome, sc) {
            (Ok(ra3), Some(opts)) => {
                let steps = Arc::clone(&progress);
                let step_wake = Arc::clone(&wake);
                let result = clients::sc::run_flow(&opts, move |s| {
                    steps.lock().steps.push(DemoStep {
                        name: format!("SC {}", s.name),
                        ok: s.ok,
                        detail: s.detail.clone(),
                        elapsed: s.elapsed,
                    });
                    step_wake();
                })
                .await;
                match result {
                    Ok(r) => Ok(format!(
                        "{ra3}; Star Citizen: logged in as {}, reconcile complete",
                        r.displayname
                    )),
                    Err(e) => {
                        tracing::warn!("demo: Star Citizen flow failed: {e}");
                        Err(format!("{ra3}; Star Citizen: {e}"))
                    }
                }
            }
            (outcome, _) => outcome,
        };
        progress.lock().outcome = Some(outcome);
        wake();
    });
    Ok(())
}

/// The Star Citizen client's settings for the demo: through the running TLS tap in front
/// of diffusion, trusting our CA. `None` when that tap or the CA is not there.
fn sc_demo_options(shared: &Shared) -> Option<clients::sc::ScClientOptions> {
    let tls = |name: &str| shared.config.taps.iter().any(|t| t.name == name && t.tls);
    let diffusion = routes(shared).into_iter().find_map(|r| match r.state {
        RouteState::Running(addr)
            if r.kind == RouteKind::Tap && r.dissector.as_deref() == Some("sc") && tls(&r.name) =>
        {
            Some(reachable(addr))
        }
        _ => None,
    })?;
    let ca = shared.ca().ok()?;
    Some(clients::sc::ScClientOptions {
        diffusion,
        diffusion_tls: true,
        server_name: "localhost".into(),
        roots: vec![ca.cert_der().clone()],
        user: TEST_EMAIL.into(),
        password: TEST_PASSWORD.into(),
    })
}

/// A listener on every interface is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}
