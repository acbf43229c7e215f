//! Owns the tokio runtime; starts the proxy, taps and emulated servers from configuration,
//! merges their events into the capture and takes commands from the CLI and the GUI.
//!
//! The GUI and the CLI use only [`Engine`]'s methods and its event streams; they never touch
//! sockets or the database themselves.

pub mod config;
pub mod decoding;
mod demo;
pub mod live;
pub mod log_ring;
pub mod logs;
mod routes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::capture::{CaptureStore, ConnectionId, Direction, files};
use crate::dissect::Node;
use crate::dissect::registry::Registry;
use crate::proxy::ca::Ca;
use crate::proxy::intercept::Interceptor;
use crate::proxy::resolve::UpstreamResolver;
use crate::proxy::{CaptureEvent, Recorder};
use crate::security::Store;

/// The breakpoint types of the engine's API, so its users need not reach into the proxy.
pub use crate::proxy::intercept::{Decision, Held, HoldId, InterceptEvent, Rule};
pub use config::Config;
pub use demo::{DemoProgress, DemoRun, DemoStep};
pub use routes::{RouteKind, RouteState, RouteStatus};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no route is named {0:?}")]
    UnknownRoute(String),
    #[error("route {route}: cannot listen on {addr}: {reason}")]
    Bind {
        route: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("route {route}: {reason}")]
    Route { route: String, reason: String },
    #[error("{0}")]
    Intercept(#[from] crate::proxy::intercept::InterceptError),
    #[error("cannot re-encode the edited message: {0}")]
    Encode(String),
    #[error("capture: {0}")]
    Capture(String),
}

/// How the engine was asked to start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Journal the capture to this `.gwcap` file as traffic arrives.
    pub capture: Option<PathBuf>,
}

pub(crate) struct Shared {
    pub config: Config,
    /// Loaded (or made) at start; routes that need it fail with this error when it could
    /// not be.
    pub ca: Result<Arc<Ca>, String>,
    pub recorder: Recorder,
    pub interceptor: Arc<Interceptor>,
    pub resolver: Option<UpstreamResolver>,
    pub registry: Registry,
    pub routes: Mutex<Vec<routes::Route>>,
    pub shutdown: CancellationToken,
    /// What taps, the live log and the workbench decode with.
    pub decode: Arc<crate::dissect::Context>,
    /// The SC login server's signing key: loaded (or made) once, at start when an SC server
    /// that signs or checks tokens is enabled, else when one is first started.
    pub sc_signer: std::sync::OnceLock<Result<Arc<crate::security::jwt::Signer>, String>>,
    /// JWT ids logged out at the SC login server, which the SC game server refuses too.
    pub sc_logged_out: Arc<parking_lot::Mutex<crate::security::expiring::Expiring<()>>>,
    /// The accounts database, opened when the first server starts.
    pub accounts: tokio::sync::OnceCell<Result<Store, String>>,
}

fn load_signer(config: &Config) -> Result<Arc<crate::security::jwt::Signer>, String> {
    crate::security::jwt::Signer::load_or_create(&config.certs_dir, &config.servers.sc.issuer)
        .map(Arc::new)
        .map_err(|e| {
            tracing::warn!("JWT issuer key: {e}");
            e.to_string()
        })
}

impl Shared {
    pub fn sc_signer(&self) -> Result<Arc<crate::security::jwt::Signer>, String> {
        self.sc_signer
            .get_or_init(|| load_signer(&self.config))
            .clone()
    }

    /// Opens the accounts database on first use (creating it and the test account).
    pub async fn accounts(&self) -> Result<Store, String> {
        self.accounts
            .get_or_init(|| async {
                let path = self.config.data_dir.join(&self.config.servers.database);
                let store = Store::open(&path)
                    .await
                    .map_err(|e| format!("accounts database {}: {e}", path.display()))?;
                match store.ensure_test_account().await {
                    Ok(true) => tracing::info!(
                        "created the test account {} / {}",
                        crate::security::TEST_EMAIL,
                        crate::security::TEST_PASSWORD
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("could not create the test account: {e}"),
                }
                Ok(store)
            })
            .await
            .clone()
    }
}

pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts every enabled route. A route that cannot start (a port in use) is reported in
    /// [`Engine::routes`] and the log; the others run.
    pub fn start(config: Config, options: StartOptions) -> Result<Engine, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("gamewire-engine")
            .build()
            .map_err(EngineError::Runtime)?;
        let store = Arc::new(CaptureStore::new());
        let temp = std::env::temp_dir();
        if let Err(e) = store.keep_bytes_in_temp_file(&temp) {
            tracing::warn!(
                "cannot keep the capture's bytes in a temporary file in {} ({e}); they stay in memory",
                temp.display()
            );
        }
        if let Some(path) = &options.capture {
            store
                .journal_to(path, Duration::from_millis(250))
                .map_err(|e| EngineError::Capture(format!("{}: {e}", path.display())))?;
        }
        // The issuer key first (made at first start, like the CA), so decoders can check the
        // tokens the login server will sign with it.
        let sc_signer = std::sync::OnceLock::new();
        let servers = &config.servers;
        if servers.sc_login.enabled || servers.sc_game.enabled {
            let _ = sc_signer.set(load_signer(&config));
        }
        let signer = sc_signer.get().and_then(|s: &Result<_, _>| s.as_ref().ok());
        let decode = Arc::new(decoding::decode_context_with(&[], signer.map(|s| &**s)));
        let interceptor = Arc::new(Interceptor::new());
        interceptor.set_rules(config.breakpoints.rules.clone());
        interceptor.set_hold_timeout(Duration::from_secs(config.breakpoints.hold_timeout_secs));
        let resolver = {
            let _guard = runtime.enter();
            match UpstreamResolver::new(&config.dns.servers) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("{e}; upstream names resolve through the system instead");
                    None
                }
            }
        };
        let ca = Ca::load_or_create(&config.certs_dir)
            .map(Arc::new)
            .map_err(|e| format!("{}: {e}", config.certs_dir.display()));
        if let Err(e) = &ca {
            tracing::error!("certificate authority: {e}");
        }
        let shared = Arc::new(Shared {
            ca,
            routes: Mutex::new(routes::from_config(&config)),
            config,
            recorder: Recorder::new(store),
            interceptor,
            resolver,
            registry: Registry::standard(),
            shutdown: CancellationToken::new(),
            decode,
            sc_signer,
            sc_logged_out: Arc::default(),
            accounts: tokio::sync::OnceCell::new(),
        });
        let engine = Engine {
            runtime: Some(runtime),
            shared,
        };
        let names: Vec<String> = engine.routes().into_iter().map(|r| r.name).collect();
        for name in names {
            if !engine
                .shared
                .routes
                .lock()
                .iter()
                .any(|r| r.name == name && r.enabled)
            {
                continue;
            }
            if let Err(e) = engine.start_route(&name) {
                tracing::error!(route = %name, "{e}");
            }
        }
        Ok(engine)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        // Only `shutdown` takes the runtime, and it consumes the engine.
        self.runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("the runtime lives until shutdown"))
    }

    /// For callers that want to run their own tasks beside the engine's.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime().handle().clone()
    }

    /// The certificate authority, when it could be loaded.
    pub fn ca(&self) -> Option<&Arc<Ca>> {
        self.shared.ca.as_ref().ok()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The schemas and keys to decode this engine's traffic with (see [`decoding`]).
    pub fn dissect_context(&self) -> Arc<crate::dissect::Context> {
        self.shared.decode.clone()
    }

    pub fn store(&self) -> &Arc<CaptureStore> {
        self.shared.recorder.store()
    }

    pub fn subscribe_capture(&self) -> broadcast::Receiver<CaptureEvent> {
        self.shared.recorder.subscribe()
    }

    pub fn subscribe_intercept(&self) -> broadcast::Receiver<InterceptEvent> {
        self.shared.interceptor.subscribe()
    }

    pub fn routes(&self) -> Vec<RouteStatus> {
        self.shared
            .routes
            .lock()
            .iter()
            .map(|r| r.status())
            .collect()
    }

    /// Binds the route's port and starts it; returns the address it listens on.
    pub fn start_route(&self, name: &str) -> Result<SocketAddr, EngineError> {
        self.runtime().block_on(routes::start(&self.shared, name))
    }

    pub fn stop_route(&self, name: &str) -> Result<(), EngineError> {
        routes::stop(&self.shared, name)
    }

    /// Stops the route and starts it again. The old listener closes on its own task, so
    /// binding the same port is retried for a moment before a failure is reported.
    pub fn restart_route(&self, name: &str) -> Result<SocketAddr, EngineError> {
        self.stop_route(name)?;
        let mut tries = 0;
        loop {
            match self.start_route(name) {
                Err(EngineError::Bind { .. }) if tries < 40 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    /// Repeater: a new connection to the route's upstream (a tap's upstream, a server's own
    /// listener), `bytes` sent on it, and what came back until the peer was quiet for
    /// `settle` or closed. Blocks; see [`Engine::repeat_task`] to run it beside a UI.
    pub fn repeat(
        &self,
        route: &str,
        bytes: Vec<u8>,
        settle: Duration,
    ) -> Result<Vec<u8>, EngineError> {
        self.runtime()
            .block_on(self.repeat_task(route, bytes, settle))
    }

    /// [`Engine::repeat`] as a future that owns what it needs, for `handle().spawn(..)`.
    pub fn repeat_task(
        &self,
        route: &str,
        bytes: Vec<u8>,
        settle: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, EngineError>> + Send + 'static {
        routes::repeat(self.shared.clone(), route.to_string(), bytes, settle)
    }

    pub fn set_breakpoints(&self, rules: Vec<Rule>) {
        self.shared.interceptor.set_rules(rules);
    }

    pub fn breakpoints(&self) -> Vec<Rule> {
        self.shared.interceptor.rules()
    }

    pub fn set_hold_timeout(&self, timeout: Duration) {
        self.shared.interceptor.set_hold_timeout(timeout);
    }

    pub fn held(&self) -> Vec<Held> {
        self.shared.interceptor.held()
    }

    pub fn decide(&self, id: HoldId, decision: Decision) -> Result<(), EngineError> {
        Ok(self.shared.interceptor.decide(id, decision)?)
    }

    /// Forwards a held message edited as a tree: re-encoded by the route's dissector, with
    /// lengths fixed up.
    pub fn forward_edited_tree(&self, id: HoldId, tree: &Node) -> Result<(), EngineError> {
        let held = self
            .held()
            .into_iter()
            .find(|h| h.id == id)
            .ok_or(crate::proxy::intercept::InterceptError::UnknownHold(id))?;
        let bytes = self.encode_for_route(&held.route, tree)?;
        self.decide(id, Decision::ForwardEdited(bytes))
    }

    /// Encodes a message tree with the dissector of `route`.
    pub fn encode_for_route(&self, route: &str, tree: &Node) -> Result<Vec<u8>, EngineError> {
        let dissector = self
            .shared
            .routes
            .lock()
            .iter()
            .find(|r| r.name == route)
            .and_then(|r| r.dissector.clone())
            .and_then(|d| self.shared.registry.get(&d))
            .ok_or_else(|| EngineError::Encode(format!("route {route} has no dissector")))?;
        dissector
            .encode(tree)
            .map_err(|e| EngineError::Encode(e.to_string()))
    }

    /// Sends bytes into a live connection, towards the server (`ClientToServer`) or the
    /// client. Recorded as injected.
    pub fn inject(
        &self,
        connection: ConnectionId,
        direction: Direction,
        bytes: Vec<u8>,
    ) -> Result<(), EngineError> {
        let interceptor = self.shared.interceptor.clone();
        Ok(self
            .runtime()
            .block_on(interceptor.inject(connection, direction, bytes))?)
    }

    /// Sends a recorded packet again, in its direction, on its connection (which must still
    /// be live). Recorded as injected.
    pub fn resend(&self, packet: crate::capture::PacketId) -> Result<(), EngineError> {
        let (connection, direction, bytes) = {
            let data = self.store().read();
            let p = data
                .packet(packet)
                .ok_or_else(|| EngineError::Capture(format!("no packet {}", packet.0)))?;
            (p.connection, p.direction, p.data.to_vec())
        };
        self.inject(connection, direction, bytes)
    }

    pub fn live_connections(&self) -> Vec<ConnectionId> {
        self.shared.interceptor.live_connections()
    }

    /// Writes the capture so far to a file (format from the extension).
    pub fn save(&self, path: &Path) -> Result<(), EngineError> {
        let data = self.store().read();
        files::save(&data, path)
            .map(|_| ())
            .map_err(|e| EngineError::Capture(format!("{}: {e}", path.display())))
    }

    /// Stops every route, flushes the capture journal and ends the runtime.
    pub fn shutdown(mut self) -> Result<(), EngineError> {
        self.shared.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        let store = self.shared.recorder.store();
        if store.read().is_journaling() {
            store
                .stop_journal()
                .map_err(|e| EngineError::Capture(e.to_string()))?;
        }
        Ok(())
    }
}
