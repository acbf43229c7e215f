//! Keeps the module arrows of ARCHITECTURE.md one-way:
//! `capture <- dissect <- {proxy, servers, clients, security, replay} <- engine <- {gui, cli}`,
//! and keeps some crates and some kinds of code inside the one module they belong to.
//!
//! Every file under `src/` is parsed (`check.rs`), every path it names is resolved to the
//! crate module or external crate it denotes, and each is judged against the tables below.
//! `examples.rs` feeds the same checker small sources that break one rule each.

mod check;
mod examples;
mod good_crate;
mod resolve;

use std::path::Path;

use check::{Forbidden, Rule, Rules, Source};

/// Each module and the crate modules it may use besides itself. `lib.rs` only declares the
/// modules; `main.rs` hands over to the command line.
const LAYERS: &[(&str, &[&str])] = &[
    ("capture", &[]),
    ("dissect", &["capture"]),
    ("proxy", &["capture", "dissect"]),
    ("servers", &["capture", "dissect", "security"]),
    ("clients", &["capture", "dissect", "security"]),
    ("security", &["capture", "dissect"]),
    ("replay", &["capture", "dissect"]),
    (
        "engine",
        &[
            "capture", "dissect", "proxy", "servers", "clients", "security", "replay",
        ],
    ),
    ("gui", &["engine", "capture", "dissect"]),
    // `gamewire gui` opens the window; the commands that run no engine (`inspect`,
    // `convert`, `accounts`, `client`) call the lower modules' public APIs.
    (
        "cli",
        &[
            // `proxy` for the certificate authority's own commands (`gamewire ca`) and the
            // trust roots a scripted client is given: public APIs that run no engine.
            "engine", "gui", "capture", "dissect", "proxy", "security", "clients", "replay",
        ],
    ),
    ("lib.rs", &[]),
    ("main.rs", &["cli"]),
];

/// Crates that only one module may name. This also keeps GUI types out of `capture` and
/// `dissect`.
const OWNED_CRATES: &[(&str, &str)] = &[
    ("sqlx", "security"),
    ("eframe", "gui"),
    ("egui", "gui"),
    ("egui_extras", "gui"),
    ("egui_plot", "gui"),
    ("egui_kittest", "gui"),
    ("clap", "cli"),
    ("hudsucker", "proxy"),
];

/// What the window may name of `capture` and `dissect`: their data types (the capture
/// model, the in-memory store it reads, the list of file formats, trees, messages, the
/// decoding context), and the services a front end runs on worker threads of its own: the
/// one load path (`capture::files::open`) and the one save path (`dissect::export`), the one
/// decoding session (with the shared registry and the dissector handles it gives out) and
/// the filter language. Not the file formats themselves, protocol codecs or the stream
/// decoder: the load and save paths and the session drive those, so each decision is made
/// in one place.
const DATA_TYPES: &[(&str, &[&str])] = &[(
    "gui",
    &[
        "crate::capture::model",
        "crate::capture::store",
        "crate::capture::files::Format",
        "crate::capture::files::FileError",
        "crate::capture::files::open",
        "crate::capture::files::OpenOptions",
        "crate::capture::files::Opened",
        "crate::capture::files::Saved",
        "crate::capture::files::Scope",
        "crate::capture::files::Source",
        "crate::dissect::tree",
        "crate::dissect::Message",
        "crate::dissect::DerivedBuffer",
        "crate::dissect::EncodeError",
        "crate::dissect::Context",
        "crate::dissect::Dissector",
        "crate::dissect::registry::Registry",
        "crate::dissect::stream::Decoded",
        "crate::dissect::session",
        "crate::dissect::filter",
        "crate::dissect::export",
    ],
)];

/// Modules that may use other modules only through `pub` items (not `pub(crate)`).
const PUBLIC_API_ONLY: &[&str] = &["cli"];

const SOCKETS: &[&str] = &[
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "tokio::net",
    "quinn",
];

const FORBIDDEN: &[Forbidden] = &[
    Forbidden {
        name: "no-io-in-model",
        modules: &["capture", "dissect"],
        paths: &[
            "tokio",
            "tokio_util",
            "tokio_rustls",
            "quinn",
            "std::net::TcpStream",
            "std::net::TcpListener",
            "std::net::UdpSocket",
        ],
        why: "the data model and the decoders use no async runtime and no sockets",
    },
    Forbidden {
        name: "servers-do-not-record",
        modules: &["servers"],
        paths: &["crate::capture::store", "crate::proxy::record"],
        why: "servers never record traffic; the tap in front of a server does",
    },
    Forbidden {
        name: "front-ends-open-no-sockets",
        modules: &["gui", "cli"],
        paths: SOCKETS,
        why: "the window and the command line open no sockets; the engine and the clients do",
    },
];

pub const RULES: Rules = Rules {
    layers: LAYERS,
    owned_crates: OWNED_CRATES,
    data_types: DATA_TYPES,
    public_api_only: PUBLIC_API_ONLY,
    forbidden: FORBIDDEN,
};

/// Violations in today's code, each (file under `src/`, rule, the start of the path it
/// names), so that the rules above can be the ones the design states while the rest of
/// issue 14 moves the code. A line whose violation is gone fails the test: delete it then.
/// Nothing else is exempt: a new violation in these files, or any in another, fails.
const KNOWN_VIOLATIONS: &[(&str, Rule, &str)] = &[
    // The window's own unit tests (gui/decode.rs, gui/editor.rs) build their FESL input
    // with the codec, as any test may; the window's code itself never names a codec.
    ("gui/decode.rs", Rule::DataTypes, "crate::dissect::fesl"),
    ("gui/editor.rs", Rule::DataTypes, "crate::dissect::fesl"),
];

fn sources() -> Vec<Source> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(Source {
                    path: rel.join("/"),
                    text: std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                });
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&src, &src, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[test]
fn modules_depend_one_way() {
    let sources = sources();
    assert!(
        sources.iter().any(|s| s.path == "lib.rs") && sources.len() > 50,
        "src/ not found or not read"
    );
    let found = check::check(&sources, &RULES).unwrap_or_else(|e| panic!("{e}"));
    let known = |v: &check::Violation| {
        KNOWN_VIOLATIONS.iter().any(|(file, rule, target)| {
            v.file == *file && v.rule == *rule && v.target.starts_with(target)
        })
    };
    let new: Vec<String> = found
        .iter()
        .filter(|v| !known(v))
        .map(|v| v.to_string())
        .collect();
    let fixed: Vec<String> = KNOWN_VIOLATIONS
        .iter()
        .filter(|(file, rule, target)| {
            !found
                .iter()
                .any(|v| v.file == *file && v.rule == *rule && v.target.starts_with(target))
        })
        .map(|(file, rule, target)| format!("({file:?}, Rule::{rule:?}, {target:?})"))
        .collect();
    assert!(
        new.is_empty(),
        "dependency rules broken (see tests/it/architecture.rs and ARCHITECTURE.md):\n{}",
        new.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "fixed, so delete from KNOWN_VIOLATIONS in tests/it/architecture.rs:\n{}",
        fixed.join("\n")
    );
}
