//! The engine's one interface for the window and the command line: [`Command`]s go in, and
//! [`Event`]s come out on a stream every front end subscribes to.
//!
//! A command is answered on the stream by [`Event::Done`] with the id [`super::Engine::send`]
//! returned, so a front end never waits for the engine: it sends, keeps drawing, and shows the
//! answer when it arrives. What the engine's state is (routes, breakpoints, held messages,
//! live connections) is told by events as it changes; a front end keeps its own copy, takes
//! one [`EngineState`] when it subscribes, and again when it fell behind ([`Event::Lagged`]).
//! The blocking helpers on [`super::Engine`] (`start_route`, `decide`, ...) send the same
//! commands and wait for their answer; they are for tests and scripts, never for a UI thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::capture::{CaptureStore, ConnectionId, Direction, PacketId};
use crate::dissect::{Context, Node};
use crate::proxy::CaptureEvent;
use crate::proxy::intercept::{Decision, Held, HoldId, Rule};

use super::demo::DemoProgress;
use super::routes::RouteStatus;

/// Names one command, so its answer can be matched to it.
pub type CommandId = u64;

/// What a front end asks the engine to do.
#[derive(Clone, Debug)]
pub enum Command {
    StartRoute(String),
    StopRoute(String),
    /// Stops the route and starts it again, retrying the bind while the old listener closes.
    RestartRoute(String),
    /// Replaces every breakpoint rule.
    SetBreakpoints(Vec<Rule>),
    SetHoldTimeout(Duration),
    /// Forwards, drops or replaces a held message.
    Decide {
        id: HoldId,
        decision: Decision,
    },
    /// Forwards a held message edited as a tree, re-encoded by its route's dissector.
    ForwardEditedTree {
        id: HoldId,
        tree: Box<Node>,
    },
    /// Writes bytes into a live connection, towards the server (`ClientToServer`) or the
    /// client; recorded as injected.
    Inject {
        connection: ConnectionId,
        direction: Direction,
        bytes: Vec<u8>,
    },
    /// Sends a recorded packet again on its (still live) connection.
    Resend(PacketId),
    /// A new connection to the route's upstream, `bytes` sent on it; the answer is what came
    /// back until the peer was quiet for `settle` or closed ([`Reply::Bytes`]).
    Repeat {
        route: String,
        bytes: Vec<u8>,
        settle: Duration,
    },
    /// Writes the capture so far to a file, its format chosen by the extension.
    Save {
        path: PathBuf,
    },
    /// Runs the scripted demo clients through the engine's own taps ([`Event::Demo`]).
    RunDemo,
}

impl Command {
    /// A few words for logs and progress lines.
    pub fn describe(&self) -> String {
        match self {
            Command::StartRoute(r) => format!("start {r}"),
            Command::StopRoute(r) => format!("stop {r}"),
            Command::RestartRoute(r) => format!("restart {r}"),
            Command::SetBreakpoints(rules) => format!("set {} breakpoint rule(s)", rules.len()),
            Command::SetHoldTimeout(t) => format!("hold timeout {} s", t.as_secs()),
            Command::Decide { id, decision } => {
                format!("held message {id}: {}", decision_name(decision))
            }
            Command::ForwardEditedTree { id, .. } => format!("held message {id}: forward edited"),
            Command::Inject {
                connection,
                direction,
                bytes,
            } => format!(
                "inject {} bytes {} connection {connection}",
                bytes.len(),
                direction.arrow()
            ),
            Command::Resend(p) => format!("resend packet {}", p.0),
            Command::Repeat { route, bytes, .. } => {
                format!("repeat {} bytes to {route}'s upstream", bytes.len())
            }
            Command::Save { path } => format!("save {}", path.display()),
            Command::RunDemo => "run the demo".into(),
        }
    }
}

pub fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Forward => "forward",
        Decision::ForwardEdited(_) => "forward edited",
        Decision::Drop => "drop",
    }
}

/// What a command achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; the text says what, for a status line.
    Done(String),
    /// A route listens on this address now.
    Listening(SocketAddr),
    /// The repeater's answer.
    Bytes(Vec<u8>),
}

impl Reply {
    /// The answer as a status line, `command` being what was asked.
    pub fn describe(&self, command: &str) -> String {
        match self {
            Reply::Done(text) => text.clone(),
            Reply::Listening(addr) => format!("{command}: listening on {addr}"),
            Reply::Bytes(b) => format!("{command}: {} bytes came back", b.len()),
        }
    }
}

/// Start-up work that can take a while (certificate generation, the accounts database and
/// the first password hash, compiling schemas), step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Startup {
    pub step: String,
    pub done: u32,
    pub total: u32,
}

/// What the engine tells its front ends.
#[derive(Clone, Debug)]
pub enum Event {
    /// Start-up is at `step` (`done` of `total` steps finished).
    Starting(Startup),
    /// Start-up is over: every enabled route was tried, and commands are being taken.
    Ready,
    /// A route started, stopped or failed; `reason` says why, in words.
    Route {
        status: RouteStatus,
        reason: String,
    },
    /// Connections and packets, as the capture records them.
    Capture(CaptureEvent),
    /// A connection can (or can no longer) be injected into.
    Live {
        connection: ConnectionId,
        live: bool,
    },
    Breakpoints(Vec<Rule>),
    Held(Held),
    Released {
        id: HoldId,
        decision: String,
    },
    /// A log line was written (the audit pane's logins and bans among them); read it from
    /// the log ring from `seq` on.
    Log {
        seq: u64,
    },
    /// Progress of a long command (a save).
    Progress {
        id: CommandId,
        done: u64,
        total: u64,
    },
    /// The answer to command `id`.
    Done {
        id: CommandId,
        command: String,
        result: Result<Reply, String>,
    },
    Demo(DemoProgress),
    /// This subscriber fell behind and missed `n` events: take a new [`EngineState`].
    Lagged(u64),
}

/// The engine's state at one moment, for a front end to start its own copy from.
#[derive(Clone)]
pub struct EngineState {
    pub ready: bool,
    pub starting: Option<Startup>,
    pub routes: Vec<RouteStatus>,
    pub breakpoints: Vec<Rule>,
    pub held: Vec<Held>,
    pub live: Vec<ConnectionId>,
    /// The capture the engine fills.
    pub store: Arc<CaptureStore>,
    /// What to decode this engine's traffic with (schemas, keys, secrets of the config).
    pub context: Arc<Context>,
}
