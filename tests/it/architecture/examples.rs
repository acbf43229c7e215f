//! The checker proves itself: a small crate shaped like gamewire that keeps every rule, and
//! for each rule sources that break only that rule, each of which must give exactly its
//! violation, at its line, through the same checker and tables as `src/`.

use super::check::{self, Rule, Source};
use super::good_crate::GOOD;
use super::{FORBIDDEN, RULES};

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
        what: "the window naming a protocol codec",
        file: "gui/bad.rs",
        source: "use crate::dissect::{Node, fesl::write_packet};\n",
        line: 1,
        rule: Rule::DataTypes,
    },
    Bad {
        what: "the window reading a file format through a module it imported",
        file: "gui/bad.rs",
        source: r#"use crate::capture;

pub fn load(path: &std::path::Path) {
    let _ = capture::gwcap::load(path);
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
