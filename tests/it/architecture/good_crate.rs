//! A small crate shaped like gamewire that keeps every rule, for `examples.rs` to break
//! one rule at a time.

/// Every module, using what it may: group imports, nested and multi-line groups,
/// `super::` paths, re-exports, inline paths, macro bodies, and names that only look like
/// dependencies (comments, strings, a local variable called `egui`).
pub const GOOD: &[(&str, &str)] = &[
    (
        "lib.rs",
        r#"//! A crate shaped like gamewire: crate::gui in a comment is no dependency.
pub mod capture;
pub mod cli;
pub mod clients;
pub mod dissect;
pub mod engine;
#[cfg(feature = "gui")]
pub mod gui;
pub mod proxy;
pub mod replay;
pub mod security;
pub mod servers;
"#,
    ),
    (
        "main.rs",
        r#"#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gamewire::cli::main()
}
"#,
    ),
    (
        "capture/mod.rs",
        r#"pub mod files;
pub mod model;
pub mod store;

pub use model::{Direction, Packet};
pub use store::CaptureStore;
"#,
    ),
    (
        "capture/model.rs",
        r#"#[derive(Clone, Copy, Debug)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

pub struct Packet {
    pub direction: Direction,
    pub data: Vec<u8>,
}

pub(in crate::capture) fn flip(d: Direction) -> Direction {
    match d {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    }
}
"#,
    ),
    (
        "capture/store.rs",
        r#"use std::sync::Mutex;

use super::model::{self, Packet};

pub struct CaptureStore {
    packets: Mutex<Vec<Packet>>,
}

impl CaptureStore {
    pub fn append(&self, p: Packet) {
        let _ = model::flip(p.direction);
        if let Ok(mut v) = self.packets.lock() {
            v.push(p);
        }
        tracing::debug!("{} packets", self.packets.lock().map_or(0, |v| v.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends() {
        let _ = CaptureStore { packets: Mutex::new(Vec::new()) };
    }
}
"#,
    ),
    (
        "capture/files.rs",
        r#"use std::path::Path;

pub enum Format {
    Gwcap,
    Pcapng,
}

pub fn open(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}
"#,
    ),
    (
        "dissect/mod.rs",
        r#"pub mod registry;
pub mod tree;

use crate::capture::Direction;

pub use registry::Registry;
pub use tree::Node;

pub trait Dissector {
    fn decode(&self, dir: Direction, bytes: &[u8]) -> Node;
}
"#,
    ),
    (
        "dissect/tree.rs",
        r#"#[derive(Default)]
pub struct Node {
    pub name: String,
    pub children: Vec<Node>,
}
"#,
    ),
    (
        "dissect/registry.rs",
        r#"use super::{Dissector, tree::Node};

pub struct Registry {
    pub dissectors: Vec<Box<dyn Dissector>>,
}

impl Registry {
    pub fn decode(&self, bytes: &[u8]) -> Option<Node> {
        let dir = crate::capture::Direction::ClientToServer;
        self.dissectors.first().map(|d| d.decode(dir, bytes))
    }
}
"#,
    ),
    (
        "proxy/mod.rs",
        r#"pub mod record;
pub mod tap;

pub use record::Recorder;

pub type Handler = hudsucker::NoopHandler;
"#,
    ),
    (
        "proxy/record.rs",
        r#"use std::sync::Arc;

use crate::capture::{CaptureStore, Packet};

pub struct Recorder {
    pub store: Arc<CaptureStore>,
}

impl Recorder {
    pub fn record(&self, p: Packet) {
        self.store.append(p)
    }
}
"#,
    ),
    (
        "proxy/tap.rs",
        r#"use tokio::net::{TcpListener, TcpStream};

use super::Recorder;
use crate::{
    capture::{Direction, Packet},
    dissect::Node,
};

pub async fn run(listener: TcpListener, recorder: Recorder) {
    while let Ok((client, _)) = listener.accept().await {
        let upstream = TcpStream::connect("127.0.0.1:1").await;
        let data = Vec::new();
        recorder.record(Packet { direction: Direction::ClientToServer, data });
        let _ = (client, upstream, Node::default());
    }
}
"#,
    ),
    (
        "servers/mod.rs",
        r#"pub mod fesl;
pub mod sc;

pub async fn accept_loop(listener: tokio::net::TcpListener) {
    while let Ok((socket, _)) = listener.accept().await {
        drop(socket);
    }
}
"#,
    ),
    (
        "servers/fesl.rs",
        r#"use crate::dissect::tree::Node;
use crate::security::Store;

pub fn answer(store: &Store, request: &Node) -> Node {
    let _ = store;
    Node { name: request.name.clone(), children: Vec::new() }
}
"#,
    ),
    (
        "servers/sc/mod.rs",
        r#"pub mod login;

use super::super::security;

pub fn store() -> security::Store {
    security::Store::default()
}
"#,
    ),
    (
        "servers/sc/login.rs",
        r#"use super::super::fesl;

pub fn login(store: &crate::security::Store) -> crate::dissect::Node {
    fesl::answer(store, &Default::default())
}
"#,
    ),
    (
        "security/mod.rs",
        r#"#[derive(Default)]
pub struct Store {
    pub pool: Option<sqlx::SqlitePool>,
}

impl Store {
    pub async fn open(url: &str) -> Result<Store, sqlx::Error> {
        let pool = sqlx::SqlitePool::connect(url).await?;
        Ok(Store { pool: Some(pool) })
    }
}
"#,
    ),
    (
        "clients/mod.rs",
        r#"use crate::{capture::Direction, dissect::Node, security::Store};

pub async fn login(addr: std::net::SocketAddr, _store: Option<Store>) -> std::io::Result<Node> {
    let _socket = tokio::net::TcpStream::connect(addr).await?;
    let _ = Direction::ClientToServer;
    Ok(Node::default())
}
"#,
    ),
    (
        "replay/mod.rs",
        r#"use crate::capture::Packet;
use crate::dissect::Registry;

pub fn replay(packets: &[Packet], registry: &Registry) -> usize {
    packets.iter().filter(|p| registry.decode(&p.data).is_some()).count()
}
"#,
    ),
    (
        "engine/mod.rs",
        r#"pub(crate) mod routes;

use crate::proxy::{Recorder, tap};
use crate::{clients, replay, security, servers};

pub use routes::RouteState;

pub struct Engine {
    pub recorder: Recorder,
}

impl Engine {
    pub fn start() -> Engine {
        todo!()
    }

    pub fn routes(&self) -> Vec<RouteState> {
        let _ = (tap::run, servers::accept_loop, clients::login, replay::replay);
        let _ = security::Store::default();
        Vec::new()
    }
}
"#,
    ),
    (
        "engine/routes.rs",
        r#"#[derive(Clone, Debug)]
pub enum RouteState {
    Stopped,
    Running,
}

pub(crate) struct Route {
    pub state: RouteState,
}
"#,
    ),
    (
        "gui/mod.rs",
        r#"mod app;

use eframe::egui;

pub fn run(engine: crate::engine::Engine) -> eframe::Result<()> {
    let _ = (engine, egui::Context::default());
    Ok(())
}
"#,
    ),
    (
        "gui/app.rs",
        r#"use crate::capture::{
    CaptureStore,
    Direction,
    files::Format,
};
use crate::dissect::{Node, tree};
use crate::engine::{Engine, RouteState};

pub struct Viewer {
    pub engine: Engine,
    pub store: CaptureStore,
    pub format: Format,
    pub routes: Vec<RouteState>,
}

impl Viewer {
    /// Not [`crate::capture::files::open`]: the engine opens files.
    pub fn show(&self, egui: &str, node: &Node) -> Option<tree::Node> {
        // crate::dissect::registry in a comment, or in a string, is no dependency.
        let _ = (egui, "crate::capture::files::open", Direction::ClientToServer);
        Some(Node { name: node.name.clone(), children: Vec::new() })
    }
}
"#,
    ),
    (
        "cli/mod.rs",
        r#"mod serve;

use clap::Parser;

#[derive(clap::Parser)]
struct Args {
    #[arg(long)]
    file: Option<std::path::PathBuf>,
}

pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.file {
        let _ = crate::capture::files::open(file);
    }
    serve::run();
    std::process::ExitCode::SUCCESS
}
"#,
    ),
    (
        "cli/serve.rs",
        r#"use crate::engine::{Engine, RouteState};

pub fn run() {
    let _runtime = tokio::runtime::Runtime::new();
    let engine = Engine::start();
    for r in engine.routes() {
        if let RouteState::Stopped = r {
            eprintln!("{}", crate::security::Store::default().pool.is_some());
        }
    }
    #[cfg(feature = "gui")]
    let _ = crate::gui::run(engine);
}
"#,
    ),
];
