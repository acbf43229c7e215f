//! The checker behind `architecture.rs`: every file is read by `resolve.rs` into the paths
//! it names, resolved; this judges each path against [`Rules`], with an index of every
//! module's names to follow re-exports and to tell `pub` items from `pub(crate)` ones.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::resolve::{self, FileFacts, Kind, Names, Target, Vis};

/// One source file, its path relative to `src/` with `/` separators.
pub struct Source {
    pub path: String,
    pub text: String,
}

/// The dependency rules, as data (see `architecture.rs` for the table itself).
pub struct Rules {
    /// Each module (a top-level module of the crate, or `lib.rs`/`main.rs`) and the crate
    /// modules it may name besides itself.
    pub layers: &'static [(&'static str, &'static [&'static str])],
    /// External crates that only one module may name: (crate, owner).
    pub owned_crates: &'static [(&'static str, &'static str)],
    /// A module that may name only some items of some modules: (module, allowed items).
    /// The modules restricted are those the allowed items are in; a path is allowed when
    /// it lies within an allowed item, or is a module on the way to one.
    pub data_types: &'static [(&'static str, &'static [&'static str])],
    /// Modules that may name other modules' items only through `pub` items: every module
    /// and item on the path must be `pub` (or a `pub use` re-export), not `pub(crate)`.
    pub public_api_only: &'static [&'static str],
    /// Paths that some modules must not name at all.
    pub forbidden: &'static [Forbidden],
}

pub struct Forbidden {
    /// The rule's name in reports, e.g. `no-io-in-model`.
    pub name: &'static str,
    pub modules: &'static [&'static str],
    /// `crate::...` for the crate's own items, otherwise an external path.
    pub paths: &'static [&'static str],
    pub why: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A file whose module is not in the layer table.
    Unlisted,
    /// A module names a crate module its layer may not use.
    Layers,
    /// A module names something outside its allowed data types.
    DataTypes,
    /// A module names another module's item that is not `pub`.
    PublicApi,
    /// A module names an external crate that belongs to another module.
    OwnedCrate,
    /// A module names a path forbidden to it (by the rule's name).
    Forbidden(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Relative to `src/`.
    pub file: String,
    pub line: usize,
    pub rule: Rule,
    /// The resolved path, `crate::...` or an external one.
    pub target: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src/{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Checks `sources` (one crate: `lib.rs`, `main.rs` and the modules under them) against
/// `rules`. Errors only when a file does not parse.
pub fn check(sources: &[Source], rules: &Rules) -> Result<Vec<Violation>, String> {
    // `#[path]` moves a file to another module; it is rare, so only the files that say
    // `#[path` are parsed for it first.
    let mut overrides = HashMap::new();
    for s in sources.iter().filter(|s| s.text.contains("#[path")) {
        resolve::path_overrides(&s.path, &s.text, &mut overrides)?;
    }
    let facts = read_all(sources, &overrides)?;
    let mut index = Index {
        rules,
        names: HashMap::new(),
    };
    for f in facts.iter().filter(|f| !f.info.bin) {
        for (module, names) in &f.names {
            let into = index.names.entry(module.clone()).or_default();
            for (name, entries) in names {
                into.entry(name.clone())
                    .or_default()
                    .extend(entries.iter().cloned());
            }
        }
    }

    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for (source, f) in sources.iter().zip(&facts) {
        let key = f.info.key.as_str();
        if !rules.layers.iter().any(|(m, _)| *m == key) {
            found.push(Violation {
                file: source.path.clone(),
                line: 1,
                rule: Rule::Unlisted,
                target: key.to_string(),
                message: format!(
                    "module `{key}` is not in the layer table: add it with the modules it may use"
                ),
            });
        }
        for r in &f.refs {
            // A name bound by a `use` that broke a rule was reported at the `use`; the
            // paths starting from it are judged only when the `use` was fine
            // (`use crate::capture;`, then `capture::files::open`).
            if let Some(via) = &r.via
                && !index.judge(key, via).is_empty()
            {
                continue;
            }
            for (rule, message) in index.judge(key, &r.target) {
                if seen.insert((source.path.clone(), r.line, rule, message.clone())) {
                    found.push(Violation {
                        file: source.path.clone(),
                        line: r.line,
                        rule,
                        target: r.target.to_string(),
                        message,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(found)
}

/// Reads the files on all cores: parsing is most of the time the check takes.
fn read_all(
    sources: &[Source],
    overrides: &HashMap<String, Vec<String>>,
) -> Result<Vec<FileFacts>, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = sources.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sources
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|s| {
                            let info = resolve::file_info(&s.path, overrides);
                            resolve::read_file(&s.path, &s.text, info)
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(sources.len());
        for w in workers {
            let part = w
                .join()
                .map_err(|_| "a thread reading the sources panicked".to_string())??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// Every module's names, and the rules to judge paths by.
struct Index<'r> {
    rules: &'r Rules,
    names: HashMap<Vec<String>, Names>,
}

impl Index<'_> {
    /// The path with re-exports followed: `crate::capture::CaptureStore` is
    /// `crate::capture::store::CaptureStore` when `capture` re-exports it from `store`.
    fn canonical(&self, path: &[String]) -> Vec<String> {
        let mut path = path.to_vec();
        'restart: for _ in 0..8 {
            let mut module: Vec<String> = path.iter().take(1).cloned().collect();
            for (i, seg) in path.iter().enumerate().skip(1) {
                let Some(entries) = self.names.get(&module).and_then(|m| m.get(seg)) else {
                    return path;
                };
                if entries.iter().any(|e| matches!(e.kind, Kind::Mod)) {
                    module.push(seg.clone());
                    continue;
                }
                if let Some(target) = entries.iter().find_map(|e| match &e.kind {
                    Kind::Use(Target::Crate(t)) => Some(t.clone()),
                    _ => None,
                }) {
                    path = target
                        .into_iter()
                        .chain(path[i + 1..].iter().cloned())
                        .collect();
                    continue 'restart;
                }
                return path;
            }
            return path;
        }
        path
    }

    /// The first module or item on `path` that is not `pub`, with its visibility. A `pub
    /// use` makes what it re-exports public, whatever the path to its source.
    fn first_non_public(&self, path: &[String]) -> Option<(String, String)> {
        let mut path = path.to_vec();
        // Segments before this one come from a `pub use` target: walked, not judged.
        let mut judged_from = 0;
        'restart: for _ in 0..8 {
            let mut module: Vec<String> = Vec::new();
            for (i, seg) in path.iter().enumerate() {
                let entries = self.names.get(&module).and_then(|m| m.get(seg));
                let Some(entries) = entries else {
                    if i == 0 {
                        module.push(seg.clone()); // a top-level module: lib.rs declares it
                        continue;
                    }
                    return None; // an associated item, a variant, or unknown: not judged
                };
                let chosen = entries
                    .iter()
                    .find(|e| e.vis == Vis::Pub)
                    .or_else(|| entries.first())?;
                if chosen.vis != Vis::Pub && i >= judged_from {
                    return Some((
                        format!("crate::{}", path[..=i].join("::")),
                        chosen.vis.describe().to_string(),
                    ));
                }
                match &chosen.kind {
                    Kind::Mod => module.push(seg.clone()),
                    Kind::Use(Target::Crate(t)) => {
                        judged_from = t.len();
                        path = t.iter().chain(&path[i + 1..]).cloned().collect();
                        continue 'restart;
                    }
                    Kind::Use(_) | Kind::Item => return None,
                }
            }
            return None;
        }
        None
    }

    /// Every rule `target`, named from module `key`, breaks.
    fn judge(&self, key: &str, target: &Target) -> Vec<(Rule, String)> {
        let mut out = Vec::new();
        let rules = self.rules;
        match target {
            Target::Local => {}
            Target::Crate(path) => {
                let Some(top) = path.first() else {
                    return out;
                };
                if top == key {
                    return out;
                }
                let canonical = self.canonical(path);
                // An unlisted module is reported once, as such, not at every path.
                let allowed = rules.layers.iter().find(|(m, _)| *m == key);
                if let Some((_, allowed)) = allowed
                    && !allowed.contains(&top.as_str())
                {
                    out.push((
                        Rule::Layers,
                        format!("{key} may not use {top} (names {target})"),
                    ));
                }
                if let Some((_, items)) = rules.data_types.iter().find(|(m, _)| *m == key) {
                    let items: Vec<Vec<&str>> = items.iter().map(|i| crate_pattern(i)).collect();
                    let restricted = items.iter().any(|i| i.first() == Some(&top.as_str()));
                    let fits = |p: &[String]| {
                        items.iter().any(|item| {
                            let n = item.len().min(p.len());
                            item[..n].iter().zip(&p[..n]).all(|(a, b)| a == b)
                        })
                    };
                    if restricted && !fits(path) && !fits(&canonical) {
                        out.push((
                            Rule::DataTypes,
                            format!("{key} may name only the data types of {top}, not {target}"),
                        ));
                    }
                }
                if rules.public_api_only.contains(&key)
                    && let Some((item, vis)) = self.first_non_public(path)
                {
                    out.push((
                        Rule::PublicApi,
                        format!("{key} may use only public APIs: {item} is {vis}"),
                    ));
                }
                for f in rules.forbidden.iter().filter(|f| f.modules.contains(&key)) {
                    let hit = f.paths.iter().any(|p| {
                        let pat = p.split("::").collect::<Vec<_>>();
                        pat.first() == Some(&"crate")
                            && (covers(&pat[1..], path) || covers(&pat[1..], &canonical))
                    });
                    if hit {
                        out.push((
                            Rule::Forbidden(f.name),
                            format!("{key} names {target}: {}", f.why),
                        ));
                    }
                }
            }
            Target::Extern(path) => {
                let Some(krate) = path.first() else {
                    return out;
                };
                for (owned, owner) in rules.owned_crates {
                    if krate == owned && key != *owner {
                        out.push((
                            Rule::OwnedCrate,
                            format!("{key} names {target}: the crate {owned} belongs to {owner}"),
                        ));
                    }
                }
                for f in rules.forbidden.iter().filter(|f| f.modules.contains(&key)) {
                    let hit = f.paths.iter().any(|p| {
                        let pat = p.split("::").collect::<Vec<_>>();
                        pat.first() != Some(&"crate") && covers(&pat, path)
                    });
                    if hit {
                        out.push((
                            Rule::Forbidden(f.name),
                            format!("{key} names {target}: {}", f.why),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// `crate::a::b` as `[a, b]`.
fn crate_pattern(p: &str) -> Vec<&str> {
    p.strip_prefix("crate::").unwrap_or(p).split("::").collect()
}

/// Whether `path` names `pattern` or something inside it, or glob-imports it (`use
/// std::net::*` brings in `std::net::TcpStream`).
fn covers(pattern: &[&str], path: &[String]) -> bool {
    match path.split_last() {
        Some((last, module)) if last == "*" => {
            module.len() <= pattern.len() && module.iter().zip(pattern).all(|(a, b)| a == b)
        }
        _ => path.len() >= pattern.len() && pattern.iter().zip(path).all(|(a, b)| a == b),
    }
}
