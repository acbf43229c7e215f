//! The demo: the scripted Red Alert 3 client logs in through the engine's own FESL and GP
//! taps, so a new user sees a whole decoded session in the capture within seconds, without
//! a game.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Engine, EngineError, RouteKind, RouteState};
use crate::security::{TEST_EMAIL, TEST_PASSWORD};
use crate::servers::ra3_client;

/// The persona the demo logs in as (made on the test account the first time).
pub const DEMO_PERSONA: &str = "DemoPlayer";

/// One finished step of the demo's login flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoStep {
    pub name: &'static str,
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

/// A demo started by [`Engine::run_demo`]; cheap to clone and poll once a frame.
#[derive(Clone, Debug, Default)]
pub struct DemoRun {
    progress: Arc<Mutex<DemoProgress>>,
}

impl DemoRun {
    pub fn progress(&self) -> DemoProgress {
        self.progress.lock().clone()
    }

    pub fn is_finished(&self) -> bool {
        self.progress.lock().outcome.is_some()
    }
}

impl Engine {
    /// Where the demo client connects: the running taps whose dissector is `fesl` and `gp`.
    pub fn demo_targets(&self) -> Result<(SocketAddr, SocketAddr), EngineError> {
        let routes = self.routes();
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

    /// Runs the scripted login through the taps on the engine's runtime and returns at once.
    /// `wake` is called after every step and at the end (the GUI repaints then).
    pub fn run_demo(
        &self,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<DemoRun, EngineError> {
        let (fesl, gp) = self.demo_targets()?;
        let run = DemoRun::default();
        let progress = Arc::clone(&run.progress);
        let wake = Arc::new(wake);
        self.handle().spawn(async move {
            tracing::info!(%fesl, %gp, "demo: the scripted RA3 client logs in through the taps");
            let steps = Arc::clone(&progress);
            let step_wake = Arc::clone(&wake);
            let result = ra3_client::run_fesl_flow(
                fesl,
                gp,
                TEST_EMAIL,
                TEST_PASSWORD,
                Some(DEMO_PERSONA),
                move |s| {
                    steps.lock().steps.push(DemoStep {
                        name: s.name,
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
            progress.lock().outcome = Some(outcome);
            wake();
        });
        Ok(run)
    }
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
