//! Owns the tokio runtime; starts the proxy, taps and emulated servers from configuration,
//! merges their events into the capture and takes commands from the CLI and the GUI.
//!
//! Front ends drive the engine through [`Engine::send`] ([`Command`]s) and read what happens
//! from [`Engine::subscribe`] ([`Event`]s); see [`api`]. [`Engine::launch`] returns at once
//! and does the slow start-up work (certificate authority, issuer key, schemas, the accounts
//! database behind the first server) on the runtime, telling its progress as events.

pub mod api;
mod commands;
pub mod config;
pub mod decoding;
mod demo;
pub mod live;
pub mod load;
pub mod log_ring;
pub mod logs;
mod routes;
mod startup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::capture::{CaptureStore, ConnectionId, Direction};
use crate::dissect::Node;
use crate::dissect::registry::Registry;
use crate::proxy::ca::Ca;
use crate::proxy::intercept::Interceptor;
use crate::proxy::resolve::UpstreamResolver;
use crate::proxy::{CaptureEvent, Recorder};
use crate::security::Store;

/// The breakpoint types of the engine's API, so its users need not reach into the proxy.
pub use crate::proxy::intercept::{Decision, Held, HoldId, InterceptEvent, Rule};
pub use api::{Command, CommandId, EngineState, Event, Reply, Startup};
pub use config::Config;
pub use demo::{DemoProgress, DemoStep};
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
    #[error("the engine has stopped")]
    Stopped,
}

/// How the engine was asked to start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Journal the capture to this `.gwcap` file as traffic arrives.
    pub capture: Option<PathBuf>,
}

/// Events a subscriber may fall behind by before it is told to take a new state.
const EVENT_BACKLOG: usize = 65_536;

pub(crate) struct Shared {
    pub config: Config,
    /// Loaded (or made) during start-up; routes that need it fail with this error when it
    /// could not be, and wait for start-up when they are started before it.
    pub ca: std::sync::OnceLock<Result<Arc<Ca>, String>>,
    pub recorder: Recorder,
    pub interceptor: Arc<Interceptor>,
    pub resolver: Option<UpstreamResolver>,
    pub registry: Arc<Registry>,
    pub routes: Mutex<Vec<routes::Route>>,
    pub shutdown: CancellationToken,
    /// What taps, the live log and the workbench decode with; built during start-up.
    pub decode: RwLock<Arc<crate::dissect::Context>>,
    /// The SC login server's signing key: loaded (or made) once, at start when an SC server
    /// that signs or checks tokens is enabled, else when one is first started.
    pub sc_signer: std::sync::OnceLock<Result<Arc<crate::security::jwt::Signer>, String>>,
    /// JWT ids logged out at the SC login server, which the SC game server refuses too.
    pub sc_logged_out: Arc<parking_lot::Mutex<crate::security::expiring::Expiring<()>>>,
    /// The accounts database, opened when the first server starts.
    pub accounts: tokio::sync::OnceCell<Result<Store, String>>,
    /// Every front end's event stream.
    pub events: broadcast::Sender<Event>,
    /// The start-up step under way; `None` once start-up is over.
    pub starting: Mutex<Option<Startup>>,
    pub ready: watch::Sender<bool>,
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

    /// The certificate authority; loaded (or made) here if start-up has not done it yet.
    pub fn ca(&self) -> Result<Arc<Ca>, String> {
        self.ca
            .get_or_init(|| startup::load_ca(&self.config))
            .clone()
    }

    pub fn decode_context(&self) -> Arc<crate::dissect::Context> {
        self.decode.read().clone()
    }

    /// Tells every front end; nobody listening is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
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

    fn state(&self) -> EngineState {
        EngineState {
            ready: *self.ready.borrow(),
            starting: self.starting.lock().clone(),
            routes: self.routes.lock().iter().map(|r| r.status()).collect(),
            breakpoints: self.interceptor.rules(),
            held: self.interceptor.held(),
            live: self.interceptor.live_connections(),
            store: self.recorder.store().clone(),
            context: self.decode_context(),
        }
    }
}

/// A command on its way to the engine, with where to send its answer when someone waits.
pub(crate) struct Envelope {
    pub id: CommandId,
    pub command: Command,
    pub reply: Option<oneshot::Sender<Result<Reply, EngineError>>>,
}

/// A front end's view of the engine's events.
pub struct Events {
    rx: broadcast::Receiver<Event>,
}

impl Events {
    /// The next event if one is waiting; never blocks (for a UI thread).
    pub fn try_next(&mut self) -> Option<Event> {
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Event::Lagged(n)),
            Err(_) => None,
        }
    }

    /// The next event; `None` once the engine has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Event::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Envelope>,
    next_id: AtomicU64,
}

impl Engine {
    /// Makes the runtime and the capture and returns at once; start-up (certificate
    /// authority, keys, schemas, every enabled route) goes on on the runtime and is told as
    /// [`Event::Starting`] and then [`Event::Ready`]. Commands sent meanwhile wait for it.
    pub fn launch(config: Config, options: StartOptions) -> Result<Engine, EngineError> {
        Engine::launch_subscribed(config, options).map(|(engine, _)| engine)
    }

    /// [`Engine::launch`], with a subscription made before start-up begins, so that it
    /// sees every start-up event.
    pub fn launch_subscribed(
        config: Config,
        options: StartOptions,
    ) -> Result<(Engine, Events), EngineError> {
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
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let shared = Arc::new(Shared {
            ca: std::sync::OnceLock::new(),
            routes: Mutex::new(routes::from_config(&config)),
            config,
            recorder: Recorder::new(store),
            interceptor,
            resolver,
            registry: Registry::shared(),
            shutdown: CancellationToken::new(),
            decode: RwLock::new(Arc::new(crate::dissect::Context::default())),
            sc_signer: std::sync::OnceLock::new(),
            sc_logged_out: Arc::default(),
            accounts: tokio::sync::OnceCell::new(),
            events,
            starting: Mutex::new(None),
            ready: watch::Sender::new(false),
        });
        let (commands, queue) = mpsc::unbounded_channel();
        let events = Events {
            rx: shared.events.subscribe(),
        };
        runtime.spawn(startup::run(shared.clone(), queue));
        let engine = Engine {
            runtime: Some(runtime),
            shared,
            commands,
            next_id: AtomicU64::new(1),
        };
        Ok((engine, events))
    }

    /// [`Engine::launch`], then waits until start-up is over: for the command line and
    /// tests. A route that cannot start (a port in use) is reported in [`Engine::routes`]
    /// and the log; the others run.
    pub fn start(config: Config, options: StartOptions) -> Result<Engine, EngineError> {
        let engine = Engine::launch(config, options)?;
        let mut ready = engine.shared.ready.subscribe();
        engine
            .runtime()
            .block_on(ready.wait_for(|r| *r))
            .map_err(|_| EngineError::Stopped)?;
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

    /// Asks the engine to do something; the answer comes as [`Event::Done`] with this id.
    /// Never blocks.
    pub fn send(&self, command: Command) -> CommandId {
        self.submit(command, None)
    }

    fn submit(
        &self,
        command: Command,
        reply: Option<oneshot::Sender<Result<Reply, EngineError>>>,
    ) -> CommandId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(envelope)) =
            self.commands.send(Envelope { id, command, reply })
        {
            let answer = Err(EngineError::Stopped);
            if let Some(reply) = envelope.reply {
                let _ = reply.send(answer);
            }
        }
        id
    }

    /// Sends a command and waits for its answer. Blocks: for the command line and tests,
    /// never a UI thread.
    pub fn call(&self, command: Command) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.submit(command, Some(tx));
        self.runtime()
            .block_on(rx)
            .unwrap_or(Err(EngineError::Stopped))
    }

    /// Every event from now on. Take [`Engine::state`] after subscribing to know where the
    /// events start from.
    pub fn subscribe(&self) -> Events {
        Events {
            rx: self.shared.events.subscribe(),
        }
    }

    /// The engine's state now: routes, breakpoints, held messages, live connections, the
    /// capture and the decode context. Reads memory only.
    pub fn state(&self) -> EngineState {
        self.shared.state()
    }

    /// Calls `wake` soon after events arrive (at most about once per `coalesce`), never when
    /// nothing happens: how a window learns that it has something new to draw.
    pub fn wake_on_events(&self, coalesce: Duration, wake: impl Fn() + Send + Sync + 'static) {
        let mut events = self.subscribe();
        let shutdown = self.shared.shutdown.clone();
        self.runtime().spawn(async move {
            // Until the engine stops, or its event stream ends.
            while let Some(Some(_)) = shutdown.run_until_cancelled(events.next()).await {
                wake();
                tokio::time::sleep(coalesce).await;
                while events.try_next().is_some() {}
            }
        });
    }

    /// The certificate authority, when it could be loaded (loads it if start-up has not).
    pub fn ca(&self) -> Option<Arc<Ca>> {
        self.shared.ca().ok()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The schemas and keys to decode this engine's traffic with (see [`decoding`]).
    pub fn dissect_context(&self) -> Arc<crate::dissect::Context> {
        self.shared.decode_context()
    }

    pub fn store(&self) -> &Arc<CaptureStore> {
        self.shared.recorder.store()
    }

    /// The capture's own events (every packet), for the live log.
    pub fn subscribe_capture(&self) -> broadcast::Receiver<CaptureEvent> {
        self.shared.recorder.subscribe()
    }

    pub fn routes(&self) -> Vec<RouteStatus> {
        self.shared
            .routes
            .lock()
            .iter()
            .map(|r| r.status())
            .collect()
    }

    /// Binds the route's port and starts it; returns the address it listens on. Blocks.
    pub fn start_route(&self, name: &str) -> Result<SocketAddr, EngineError> {
        listening(self.call(Command::StartRoute(name.into()))?)
    }

    pub fn stop_route(&self, name: &str) -> Result<(), EngineError> {
        self.call(Command::StopRoute(name.into())).map(drop)
    }

    /// Stops the route and starts it again. Blocks.
    pub fn restart_route(&self, name: &str) -> Result<SocketAddr, EngineError> {
        listening(self.call(Command::RestartRoute(name.into()))?)
    }

    /// Repeater: a new connection to the route's upstream (a tap's upstream, a server's own
    /// listener), `bytes` sent on it, and what came back until the peer was quiet for
    /// `settle` or closed. Blocks.
    pub fn repeat(
        &self,
        route: &str,
        bytes: Vec<u8>,
        settle: Duration,
    ) -> Result<Vec<u8>, EngineError> {
        match self.call(Command::Repeat {
            route: route.into(),
            bytes,
            settle,
        })? {
            Reply::Bytes(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    pub fn set_breakpoints(&self, rules: Vec<Rule>) {
        let _ = self.call(Command::SetBreakpoints(rules));
    }

    pub fn breakpoints(&self) -> Vec<Rule> {
        self.shared.interceptor.rules()
    }

    pub fn set_hold_timeout(&self, timeout: Duration) {
        let _ = self.call(Command::SetHoldTimeout(timeout));
    }

    pub fn held(&self) -> Vec<Held> {
        self.shared.interceptor.held()
    }

    pub fn decide(&self, id: HoldId, decision: Decision) -> Result<(), EngineError> {
        self.call(Command::Decide { id, decision }).map(drop)
    }

    /// Forwards a held message edited as a tree: re-encoded by the route's dissector, with
    /// lengths fixed up. Blocks.
    pub fn forward_edited_tree(&self, id: HoldId, tree: &Node) -> Result<(), EngineError> {
        self.call(Command::ForwardEditedTree {
            id,
            tree: Box::new(tree.clone()),
        })
        .map(drop)
    }

    /// Sends bytes into a live connection, towards the server (`ClientToServer`) or the
    /// client. Recorded as injected. Blocks until they were written.
    pub fn inject(
        &self,
        connection: ConnectionId,
        direction: Direction,
        bytes: Vec<u8>,
    ) -> Result<(), EngineError> {
        self.call(Command::Inject {
            connection,
            direction,
            bytes,
        })
        .map(drop)
    }

    /// Sends a recorded packet again, in its direction, on its connection (which must still
    /// be live). Recorded as injected. Blocks.
    pub fn resend(&self, packet: crate::capture::PacketId) -> Result<(), EngineError> {
        self.call(Command::Resend(packet)).map(drop)
    }

    pub fn live_connections(&self) -> Vec<ConnectionId> {
        self.shared.interceptor.live_connections()
    }

    /// Writes the capture so far to a file (format from the extension). Blocks.
    pub fn save(&self, path: &std::path::Path) -> Result<(), EngineError> {
        self.call(Command::Save {
            path: path.to_path_buf(),
        })
        .map(drop)
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

fn listening(reply: Reply) -> Result<SocketAddr, EngineError> {
    match reply {
        Reply::Listening(addr) => Ok(addr),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> EngineError {
    EngineError::Capture(format!("unexpected answer from the engine: {reply:?}"))
}
