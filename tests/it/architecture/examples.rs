//! The checker proves itself: a small crate shaped like gamewire that keeps every rule, and
//! for each rule sources that break only that rule, each of which must give exactly its
//! violation, at its line, through the same checker and tables as `src/`.

use super::check::{self, Rule, Source};
use super::{FORBIDDEN, RULES};

/// Every module, using what it may: group imports, nested and multi-line groups,
/// `super::` paths, re-exports, inline paths, macro bodies, and names that only look like
/// dependencies (comments, strings, a local variable called `egui`).
const GOOD: &[(&str, &str)] = &[
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

/// A source that breaks one rule once: added to (or replacing a file of) [`GOOD`].
struct Bad {
    what: &'static str,
    file: &'static str,
    source: &'static str,
    line: usize,
    rule: Rule,
}

const BAD: &[Bad] = &[
    Bad {
        what: "a group import",
        file: "capture/bad.rs",
        source: "use crate::{capture::model::Packet, gui};\n",
        line: 1,
        rule: Rule::Layers,
    },
    Bad {
        what: "a nested group",
        file: "dissect/bad.rs",
        source: "use crate::{capture::{model::{self, Packet}}, proxy::{record::{Recorder}}};\n",
        line: 1,
        rule: Rule::Layers,
    },
    Bad {
        what: "a multi-line group",
        file: "proxy/bad.rs",
        source: r#"use crate::{
    capture::Direction,
    dissect::Node,
    engine::Engine,
};
"#,
        line: 4,
        rule: Rule::Layers,
    },
    Bad {
        what: "an inline `super::super::` path",
        file: "servers/sc/bad.rs",
        source: r#"pub fn run() {
    let _ = super::super::super::engine::Engine::start();
}
"#,
        line: 2,
        rule: Rule::Layers,
    },
    Bad {
        what: "a `super::` import",
        file: "replay/bad.rs",
        source: "use super::super::clients::login;\n",
        line: 1,
        rule: Rule::Layers,
    },
    Bad {
        what: "an inline path in a type, with no `use`",
        file: "capture/bad.rs",
        source: r#"pub struct Decoded {
    pub tree: crate::dissect::Node,
}
"#,
        line: 2,
        rule: Rule::Layers,
    },
    Bad {
        what: "a path in a macro body",
        file: "security/bad.rs",
        source: r#"pub fn log() {
    tracing::info!("{}", crate::engine::Engine::start().routes().len());
}
"#,
        line: 2,
        rule: Rule::Layers,
    },
    Bad {
        what: "a use in a function body, used later",
        file: "clients/bad.rs",
        source: r#"pub fn spy() {
    use crate::proxy as p;
    let _ = p::Recorder::record;
}
"#,
        line: 2,
        rule: Rule::Layers,
    },
    Bad {
        what: "`self::` in lib.rs",
        file: "lib.rs",
        source: r#"pub mod capture;
pub mod gui;
pub use self::gui::run;
"#,
        line: 3,
        rule: Rule::Layers,
    },
    Bad {
        what: "main.rs past the command line",
        file: "main.rs",
        source: r#"fn main() {
    let _ = gamewire::engine::Engine::start();
}
"#,
        line: 2,
        rule: Rule::Layers,
    },
    Bad {
        what: "main.rs importing a group",
        file: "main.rs",
        source: r#"use gamewire::{cli, servers::fesl};

fn main() -> std::process::ExitCode {
    cli::main()
}
"#,
        line: 1,
        rule: Rule::Layers,
    },
    Bad {
        what: "the window reaching the proxy",
        file: "gui/bad.rs",
        source: "pub fn tap() -> Option<crate::proxy::Recorder> {\n    None\n}\n",
        line: 1,
        rule: Rule::Layers,
    },
    Bad {
        what: "the window naming the registry",
        file: "gui/bad.rs",
        source: "use crate::dissect::{Node, registry::Registry};\n",
        line: 1,
        rule: Rule::DataTypes,
    },
    Bad {
        what: "the window opening a file through a module it imported",
        file: "gui/bad.rs",
        source: r#"use crate::capture::files;

pub fn load(path: &std::path::Path) {
    let _ = files::open(path);
}
"#,
        line: 4,
        rule: Rule::DataTypes,
    },
    Bad {
        what: "the window glob-importing capture",
        file: "gui/bad.rs",
        source: "use crate::capture::*;\n",
        line: 1,
        rule: Rule::DataTypes,
    },
    Bad {
        what: "the command line reaching past a public API",
        file: "cli/bad.rs",
        source: "use crate::engine::routes::Route;\n",
        line: 1,
        rule: Rule::PublicApi,
    },
    Bad {
        what: "the command line naming a non-public item inline",
        file: "cli/bad.rs",
        source: r#"pub fn show() {
    let _ = std::mem::size_of::<crate::engine::routes::Route>();
}
"#,
        line: 2,
        rule: Rule::PublicApi,
    },
    Bad {
        what: "sqlx outside security",
        file: "servers/bad.rs",
        source: r#"pub async fn count(pool: &crate::security::Store) {
    let _ = sqlx::query("SELECT 1");
    let _ = pool;
}
"#,
        line: 2,
        rule: Rule::OwnedCrate,
    },
    Bad {
        what: "a GUI type in dissect",
        file: "dissect/bad.rs",
        source: "use eframe::egui::Color32;\n",
        line: 1,
        rule: Rule::OwnedCrate,
    },
    Bad {
        what: "egui_plot in capture",
        file: "capture/bad.rs",
        source: "pub type Points = egui_plot::PlotPoints<'static>;\n",
        line: 1,
        rule: Rule::OwnedCrate,
    },
    Bad {
        what: "clap outside the command line",
        file: "engine/bad.rs",
        source: "#[derive(clap::Args)]\npub struct Options;\n",
        line: 1,
        rule: Rule::OwnedCrate,
    },
    Bad {
        what: "hudsucker outside the proxy",
        file: "servers/bad.rs",
        source: "use hudsucker::Proxy;\n",
        line: 1,
        rule: Rule::OwnedCrate,
    },
    Bad {
        what: "tokio in capture",
        file: "capture/bad.rs",
        source: "use std::sync::Arc;\nuse tokio::sync::mpsc;\n",
        line: 2,
        rule: Rule::Forbidden("no-io-in-model"),
    },
    Bad {
        what: "a socket in dissect, inline",
        file: "dissect/bad.rs",
        source: r#"pub fn fetch() {
    let _ = std::net::TcpStream::connect("127.0.0.1:1");
}
"#,
        line: 2,
        rule: Rule::Forbidden("no-io-in-model"),
    },
    Bad {
        what: "a glob import of std::net in dissect",
        file: "dissect/bad.rs",
        source: "use std::net::*;\n",
        line: 1,
        rule: Rule::Forbidden("no-io-in-model"),
    },
    Bad {
        what: "a server holding the capture store",
        file: "servers/bad.rs",
        source: r#"use std::sync::Arc;

use crate::capture::{CaptureStore, Direction};

pub struct Session {
    pub store: Arc<CaptureStore>,
    pub last: Direction,
}
"#,
        line: 3,
        rule: Rule::Forbidden("servers-do-not-record"),
    },
    Bad {
        what: "the command line opening a socket",
        file: "cli/bad.rs",
        source: r#"pub fn probe() {
    let _ = std::net::TcpListener::bind("127.0.0.1:0");
}
"#,
        line: 2,
        rule: Rule::Forbidden("front-ends-open-no-sockets"),
    },
    Bad {
        what: "the window opening a socket",
        file: "gui/bad.rs",
        source: "use tokio::net::TcpStream;\n",
        line: 1,
        rule: Rule::Forbidden("front-ends-open-no-sockets"),
    },
    Bad {
        what: "a module missing from the table",
        file: "telemetry/mod.rs",
        source: "pub fn count() -> usize {\n    0\n}\n",
        line: 1,
        rule: Rule::Unlisted,
    },
];

fn crate_with(extra: Option<(&str, &str)>) -> Vec<Source> {
    let mut files: Vec<Source> = GOOD
        .iter()
        .filter(|(path, _)| extra.is_none_or(|(p, _)| p != *path))
        .map(|(path, text)| Source {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect();
    if let Some((path, text)) = extra {
        files.push(Source {
            path: path.to_string(),
            text: text.to_string(),
        });
    }
    files
}

fn violations(sources: &[Source]) -> Vec<check::Violation> {
    check::check(sources, &RULES).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_good_crate_breaks_no_rule() {
    let found = violations(&crate_with(None));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn each_bad_source_breaks_exactly_its_rule() {
    for bad in BAD {
        let found = violations(&crate_with(Some((bad.file, bad.source))));
        let got: Vec<(&str, usize, Rule)> = found
            .iter()
            .map(|v| (v.file.as_str(), v.line, v.rule))
            .collect();
        assert_eq!(
            got,
            [(bad.file, bad.line, bad.rule)],
            "{}: {found:#?}",
            bad.what
        );
    }
}

#[test]
fn every_rule_has_a_bad_source() {
    let mut rules = vec![
        Rule::Unlisted,
        Rule::Layers,
        Rule::DataTypes,
        Rule::PublicApi,
        Rule::OwnedCrate,
    ];
    rules.extend(FORBIDDEN.iter().map(|f| Rule::Forbidden(f.name)));
    for rule in rules {
        assert!(
            BAD.iter().any(|b| b.rule == rule),
            "no bad source proves {rule:?}"
        );
    }
}

#[test]
fn a_file_that_does_not_parse_is_an_error() {
    let sources = crate_with(Some(("capture/bad.rs", "pub fn broken( {\n")));
    let err = check::check(&sources, &RULES).err();
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("src/capture/bad.rs:")),
        "{err:?}"
    );
}
