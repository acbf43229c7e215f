//! Keeps the module arrows of DESIGN.md one-way:
//! `capture <- dissect <- {proxy, servers, security, replay} <- engine <- {gui, cli}`.
//! A module may name only the modules below it, and some crates belong to one module only.

use std::path::{Path, PathBuf};

/// Each module and the crate modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("capture", &[]),
    ("dissect", &["capture"]),
    ("proxy", &["capture", "dissect"]),
    ("servers", &["capture", "dissect", "security"]),
    ("security", &["capture", "dissect"]),
    ("replay", &["capture", "dissect"]),
    (
        "engine",
        &[
            "capture", "dissect", "proxy", "servers", "security", "replay",
        ],
    ),
    ("samples", &["capture", "dissect"]),
    ("gui", &["capture", "dissect", "engine", "samples"]),
    (
        "cli",
        &[
            "capture", "dissect", "engine", "samples", "gui", "servers", "security", "replay",
            "proxy",
        ],
    ),
];

const MODULES: &[&str] = &[
    "capture", "dissect", "proxy", "servers", "security", "replay", "engine", "samples", "gui",
    "cli",
];

/// Crates that only one module may touch.
const OWNED_CRATES: &[(&str, &str)] = &[
    ("eframe", "gui"),
    ("egui", "gui"),
    ("egui_extras", "gui"),
    ("egui_plot", "gui"),
    ("sqlx", "security"),
    ("clap", "cli"),
    ("hudsucker", "proxy"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == module) else {
            continue; // lib.rs, main.rs
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, problem) in violations(&module, allowed, &text) {
            problems.push(format!("{}:{n}: {problem}", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "dependency rule broken:\n{}",
        problems.join("\n")
    );
}

/// The rule broken on each line of `text` (1-based line numbers).
fn violations(module: &str, allowed: &[&str], text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for other in MODULES {
            if *other == module || allowed.contains(other) {
                continue;
            }
            let named = [
                format!("crate::{other}::"),
                format!("crate::{other};"),
                format!("crate::{other}}}"),
                format!("crate::{{{other}"),
                format!("crate::{other},"),
            ];
            if named.iter().any(|p| code.contains(p)) {
                found.push((n + 1, format!("{module} uses {other}")));
            }
        }
        for (krate, owner) in OWNED_CRATES {
            let uses =
                code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}"));
            if module != *owner && uses && !code.contains(&format!("_{krate}::")) {
                found.push((
                    n + 1,
                    format!("{module} uses {krate}, which belongs to {owner}"),
                ));
            }
        }
        if module == "capture" && code.contains("tokio") {
            found.push((n + 1, "capture must not use tokio".to_string()));
        }
    }
    found
}

#[test]
fn the_check_catches_violations() {
    // A checker that can never fail proves nothing: feed it lines it must reject and accept.
    let capture = ALLOWED[0].1;
    assert_eq!(
        violations("capture", capture, "use crate::gui::app;").len(),
        1
    );
    assert_eq!(
        violations("capture", capture, "use crate::{dissect, x};").len(),
        1
    );
    assert_eq!(
        violations("capture", capture, "let x = eframe::run_native();").len(),
        1
    );
    assert_eq!(
        violations("capture", capture, "use tokio::net::TcpStream;").len(),
        1
    );
    assert!(violations("capture", capture, "// crate::gui:: in a comment").is_empty());
    let gui = ALLOWED.iter().find(|(m, _)| *m == "gui").unwrap().1;
    assert!(
        violations(
            "gui",
            gui,
            "use crate::capture::StoreData; use eframe::egui;"
        )
        .is_empty()
    );
}
