//! One file at a time: parses it with `syn` and resolves every path it names (every leaf of
//! every `use` tree; every path in an expression, type, pattern, attribute or macro body)
//! to the crate item or external crate it denotes.
//!
//! Resolution follows the language closely enough for a dependency check: `crate::`,
//! `self::`, any run of `super::`, names bound by `use` (in the file, an inline module or a
//! block, nearest first), items of the file's own module (2018 uniform paths), `gamewire::`
//! from `main.rs`, and `::name` for external crates. A module is one file (with its inline
//! modules), so all of this needs the file alone, and files are read in parallel. What it
//! cannot know without type information (methods called on values, names a glob import
//! brings in) it does not guess: such a name counts as local to the file's own module,
//! which is never a violation.

use std::collections::HashMap;
use std::fmt;

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Ident, Item, UseTree, Visibility};

/// What a path denotes once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An item of the library crate, from its root: `capture`, `store`, `CaptureStore`.
    /// A glob import ends in `*`.
    Crate(Vec<String>),
    /// An item of another crate (or of the prelude), from that crate's name.
    Extern(Vec<String>),
    /// Inside the file's own module, a local variable or type parameter, or the binary
    /// crate of `main.rs`: never a dependency.
    Local,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Crate(p) if p.is_empty() => f.write_str("crate"),
            Target::Crate(p) => write!(f, "crate::{}", p.join("::")),
            Target::Extern(p) => f.write_str(&p.join("::")),
            Target::Local => f.write_str("(local)"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vis {
    Pub,
    /// `pub(crate)`, `pub(super)`, `pub(in ...)`, as written.
    Restricted(String),
    Private,
}

impl Vis {
    fn of(vis: &Visibility) -> Vis {
        match vis {
            Visibility::Public(_) => Vis::Pub,
            Visibility::Restricted(r) => {
                let path: Vec<String> = r
                    .path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                let path = path.join("::");
                Vis::Restricted(match r.in_token {
                    Some(_) => format!("pub(in {path})"),
                    None => format!("pub({path})"),
                })
            }
            Visibility::Inherited => Vis::Private,
        }
    }

    pub fn describe(&self) -> &str {
        match self {
            Vis::Pub => "pub",
            Vis::Restricted(s) => s,
            Vis::Private => "private",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Mod,
    Item,
    /// A `use`, with what it binds.
    Use(Target),
}

/// A name a module declares or imports.
#[derive(Clone, Debug)]
pub struct Entry {
    pub vis: Vis,
    pub kind: Kind,
}

/// A module's names.
pub type Names = HashMap<String, Vec<Entry>>;

/// One path a file names.
pub struct Ref {
    pub target: Target,
    /// The `use` binding the path starts from, if any.
    pub via: Option<Target>,
    pub line: usize,
}

/// How a file sits in the crate.
#[derive(Clone)]
pub struct FileInfo {
    /// The file's module, from the crate root (empty for `lib.rs` and `main.rs`).
    pub module: Vec<String>,
    /// The rules' name for the file's module: its top-level module, `lib.rs` or `main.rs`.
    pub key: String,
    /// `main.rs`: the root of the binary crate, which names the library as `gamewire`.
    pub bin: bool,
}

/// What one file says.
pub struct FileFacts {
    pub info: FileInfo,
    /// The names of the file's module and of its inline modules.
    pub names: Vec<(Vec<String>, Names)>,
    pub refs: Vec<Ref>,
}

/// `path` is relative to `src/`; `overrides` are the modules `#[path]` attributes give.
pub fn file_info(path: &str, overrides: &HashMap<String, Vec<String>>) -> FileInfo {
    if path == "lib.rs" || path == "main.rs" {
        return FileInfo {
            module: Vec::new(),
            key: path.to_string(),
            bin: path == "main.rs",
        };
    }
    let module = overrides.get(path).cloned().unwrap_or_else(|| {
        let mut parts: Vec<String> = path
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_string)
            .collect();
        if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        parts
    });
    FileInfo {
        key: module.first().cloned().unwrap_or_default(),
        module,
        bin: false,
    }
}

/// Adds the files that `#[path = "x.rs"] mod y;` in `path` puts at module `y`.
pub fn path_overrides(
    path: &str,
    text: &str,
    overrides: &mut HashMap<String, Vec<String>>,
) -> Result<(), String> {
    let file = parse(path, text)?;
    let dir = path.rfind('/').map_or("", |i| &path[..=i]);
    let module = file_info(path, &HashMap::new()).module;
    for item in &file.items {
        let Item::Mod(m) = item else { continue };
        for attr in &m.attrs {
            if let syn::Meta::NameValue(nv) = &attr.meta
                && nv.path.is_ident("path")
                && let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) = &nv.value
            {
                let mut target = module.clone();
                target.push(m.ident.to_string());
                overrides.insert(format!("{dir}{}", s.value()), target);
            }
        }
    }
    Ok(())
}

fn parse(path: &str, text: &str) -> Result<syn::File, String> {
    syn::parse_file(text).map_err(|e| {
        let at = e.span().start();
        format!("src/{path}:{}:{}: {e}", at.line, at.column)
    })
}

/// Parses one file and resolves everything it names.
pub fn read_file(path: &str, text: &str, info: FileInfo) -> Result<FileFacts, String> {
    let file = parse(path, text)?;
    let mut resolver = Resolver {
        bin: info.bin,
        names: HashMap::new(),
        bindings: HashMap::new(),
    };
    let mut uses = Vec::new();
    resolver.declare(&file.items, &info.module, &mut uses);
    resolver.resolve_module_uses(&uses);
    let mut visitor = FileVisitor {
        scopes: vec![resolver.module_bindings(&info.module)],
        resolver: &resolver,
        module: info.module.clone(),
        refs: Vec::new(),
    };
    visitor.visit_file(&file);
    let refs = visitor.refs;
    Ok(FileFacts {
        info,
        names: resolver.names.into_iter().collect(),
        refs,
    })
}

/// One leaf of a `use` tree: the full path written, and the name it binds.
struct Leaf {
    segs: Vec<String>,
    leading_colon: bool,
    /// The name bound (`None` for a glob or `as _`).
    bind: Option<String>,
    glob: bool,
    line: usize,
}

fn line_of(ident: &Ident) -> usize {
    ident.span().start().line
}

fn use_leaves(tree: &UseTree, leading_colon: bool, prefix: &mut Vec<String>, out: &mut Vec<Leaf>) {
    let leaf = |ident: &Ident, bind: Option<String>| {
        let mut segs = prefix.clone();
        if ident != "self" {
            segs.push(ident.to_string());
        }
        Leaf {
            bind: bind.or_else(|| segs.last().cloned()),
            segs,
            leading_colon,
            glob: false,
            line: line_of(ident),
        }
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, leading_colon, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(leaf(&n.ident, None)),
        UseTree::Rename(r) => {
            let mut l = leaf(&r.ident, Some(r.rename.to_string()));
            if r.rename == "_" {
                l.bind = None;
            }
            out.push(l);
        }
        UseTree::Glob(g) => out.push(Leaf {
            segs: prefix.clone(),
            leading_colon,
            bind: None,
            glob: true,
            line: g.star_token.span.start().line,
        }),
        UseTree::Group(g) => {
            for item in &g.items {
                use_leaves(item, leading_colon, prefix, out);
            }
        }
    }
}

fn leaves_of(u: &syn::ItemUse) -> Vec<Leaf> {
    let mut out = Vec::new();
    use_leaves(
        &u.tree,
        u.leading_colon.is_some(),
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// The name, visibility and kind of an item other modules could name.
fn declared(item: &Item) -> Option<(&Ident, Vis, Kind)> {
    let (ident, vis, kind) = match item {
        Item::Mod(i) => (&i.ident, &i.vis, Kind::Mod),
        Item::Const(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Enum(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Fn(i) => (&i.sig.ident, &i.vis, Kind::Item),
        Item::Static(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Struct(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Trait(i) => (&i.ident, &i.vis, Kind::Item),
        Item::TraitAlias(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Type(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Union(i) => (&i.ident, &i.vis, Kind::Item),
        Item::Macro(i) => return i.ident.as_ref().map(|id| (id, Vis::Private, Kind::Item)),
        _ => return None,
    };
    Some((ident, Vis::of(vis), kind))
}

/// A module-level `use` leaf waiting to be resolved.
struct PendingUse {
    module: Vec<String>,
    vis: Vis,
    leaf: Leaf,
}

/// The names `use` binds in a module or a block.
type Scope = HashMap<String, Target>;

/// A file's modules: their names, and what their `use` items bind.
struct Resolver {
    bin: bool,
    names: HashMap<Vec<String>, Names>,
    bindings: HashMap<Vec<String>, Scope>,
}

impl Resolver {
    fn declare(&mut self, items: &[Item], module: &[String], uses: &mut Vec<PendingUse>) {
        for item in items {
            if let Item::Use(u) = item {
                for leaf in leaves_of(u) {
                    uses.push(PendingUse {
                        module: module.to_vec(),
                        vis: Vis::of(&u.vis),
                        leaf,
                    });
                }
            } else if let Some((ident, vis, kind)) = declared(item) {
                self.names
                    .entry(module.to_vec())
                    .or_default()
                    .entry(ident.to_string())
                    .or_default()
                    .push(Entry { vis, kind });
            }
            if let Item::Mod(m) = item
                && let Some((_, inner)) = &m.content
            {
                let mut sub = module.to_vec();
                sub.push(m.ident.to_string());
                self.declare(inner, &sub, uses);
            }
        }
    }

    /// Resolves every module-level `use`. A `use` may start from a name another `use` of
    /// the module binds (`use crate::proxy; use proxy::tap;`), so this goes round until
    /// nothing changes.
    fn resolve_module_uses(&mut self, uses: &[PendingUse]) {
        for _ in 0..4 {
            let mut next: HashMap<Vec<String>, Scope> = HashMap::new();
            for u in uses {
                let scope = [self.module_bindings(&u.module)];
                let target = self.resolve_leaf(&u.leaf, &u.module, &scope);
                if let Some(name) = &u.leaf.bind {
                    next.entry(u.module.clone())
                        .or_default()
                        .insert(name.clone(), target);
                }
            }
            if next == self.bindings {
                break;
            }
            self.bindings = next;
        }
        for u in uses {
            let Some(name) = &u.leaf.bind else { continue };
            let Some(target) = self.bindings.get(&u.module).and_then(|b| b.get(name)) else {
                continue;
            };
            let entry = Entry {
                vis: u.vis.clone(),
                kind: Kind::Use(target.clone()),
            };
            self.names
                .entry(u.module.clone())
                .or_default()
                .entry(name.clone())
                .or_default()
                .push(entry);
        }
    }

    fn module_bindings(&self, module: &[String]) -> Scope {
        self.bindings.get(module).cloned().unwrap_or_default()
    }

    fn resolve_leaf(&self, leaf: &Leaf, module: &[String], scopes: &[Scope]) -> Target {
        let mut target = self
            .resolve(&leaf.segs, leaf.leading_colon, module, scopes, true)
            .0;
        if leaf.glob {
            match &mut target {
                Target::Crate(p) | Target::Extern(p) => p.push("*".into()),
                Target::Local => {}
            }
        }
        target
    }

    /// What `segs` names from inside `module`, and the `use` binding it starts from.
    fn resolve(
        &self,
        segs: &[String],
        leading_colon: bool,
        module: &[String],
        scopes: &[Scope],
        in_use: bool,
    ) -> (Target, Option<Target>) {
        let Some(first) = segs.first() else {
            return (Target::Local, None);
        };
        if leading_colon {
            return (Target::Extern(segs.to_vec()), None);
        }
        let from = |base: &[String], rest: &[String]| {
            if self.bin {
                Target::Local // the binary crate's own items
            } else {
                Target::Crate(base.iter().chain(rest).cloned().collect())
            }
        };
        match first.as_str() {
            "crate" | "$crate" => return (from(&[], &segs[1..]), None),
            "self" => return (from(module, &segs[1..]), None),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                let base = &module[..module.len().saturating_sub(ups)];
                return (from(base, &segs[ups..]), None);
            }
            "gamewire" => return (Target::Crate(segs[1..].to_vec()), None),
            "Self" => return (Target::Local, None),
            _ => {}
        }
        for scope in scopes.iter().rev() {
            if let Some(bound) = scope.get(first) {
                let rest = segs[1..].iter().cloned();
                let target = match bound {
                    Target::Crate(p) => Target::Crate(p.iter().cloned().chain(rest).collect()),
                    Target::Extern(p) => Target::Extern(p.iter().cloned().chain(rest).collect()),
                    Target::Local => Target::Local,
                };
                return (target, Some(bound.clone()));
            }
        }
        let declared_here = self
            .names
            .get(module)
            .and_then(|n| n.get(first))
            .is_some_and(|entries| entries.iter().any(|e| !matches!(e.kind, Kind::Use(_))));
        if declared_here {
            return (from(module, segs), None);
        }
        if segs.len() == 1 && !in_use {
            // A local variable, a type parameter, a prelude name: no module is named.
            return (Target::Local, None);
        }
        (Target::Extern(segs.to_vec()), None)
    }
}

struct FileVisitor<'a> {
    resolver: &'a Resolver,
    module: Vec<String>,
    /// Innermost last. Lookups go past an inline module's scope too: the names outside
    /// are not really visible in it, but the usual `use super::*` of a test module brings
    /// most of them in.
    scopes: Vec<Scope>,
    refs: Vec<Ref>,
}

impl FileVisitor<'_> {
    fn path(&mut self, segs: &[String], leading_colon: bool, line: usize) {
        let (target, via) =
            self.resolver
                .resolve(segs, leading_colon, &self.module, &self.scopes, false);
        if target != Target::Local {
            self.refs.push(Ref { target, via, line });
        }
    }

    /// Paths in tokens no parser has read: macro bodies and attribute arguments.
    fn tokens(&mut self, tokens: &TokenStream) {
        let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            let TokenTree::Ident(first) = &trees[i] else {
                if let TokenTree::Group(g) = &trees[i] {
                    self.tokens(&g.stream());
                }
                i += 1;
                continue;
            };
            let dollar =
                i > 0 && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
            // `::name` at the start of a path, not `Vec::<u8>::new` half-way through.
            let leading = i >= 2
                && is_colon2(&trees[i - 2], &trees[i - 1])
                && (i < 3
                    || !matches!(&trees[i - 3], TokenTree::Ident(_))
                        && !matches!(&trees[i - 3], TokenTree::Punct(p) if p.as_char() == '>'));
            let mut segs = vec![if dollar {
                format!("${first}")
            } else {
                first.to_string()
            }];
            let mut j = i + 1;
            while j + 2 < trees.len() && is_colon2(&trees[j], &trees[j + 1]) {
                let TokenTree::Ident(next) = &trees[j + 2] else {
                    break;
                };
                segs.push(next.to_string());
                j += 3;
            }
            if segs.len() > 1 || leading {
                self.path(&segs, leading && !dollar, line_of(first));
            }
            i = j;
        }
    }
}

fn is_colon2(a: &TokenTree, b: &TokenTree) -> bool {
    matches!((a, b), (TokenTree::Punct(x), TokenTree::Punct(y))
        if x.as_char() == ':' && x.spacing() == Spacing::Joint && y.as_char() == ':')
}

impl<'ast> Visit<'ast> for FileVisitor<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for leaf in leaves_of(u) {
            let target = self
                .resolver
                .resolve_leaf(&leaf, &self.module, &self.scopes);
            if target != Target::Local {
                self.refs.push(Ref {
                    target,
                    via: None,
                    line: leaf.line,
                });
            }
        }
        for attr in &u.attrs {
            self.visit_attribute(attr);
        }
    }

    fn visit_item_extern_crate(&mut self, i: &'ast syn::ItemExternCrate) {
        self.refs.push(Ref {
            target: Target::Extern(vec![i.ident.to_string()]),
            via: None,
            line: line_of(&i.ident),
        });
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        for attr in &m.attrs {
            self.visit_attribute(attr);
        }
        let Some((_, items)) = &m.content else {
            return; // `mod x;`: declaring a module is not using one
        };
        self.module.push(m.ident.to_string());
        self.scopes
            .push(self.resolver.module_bindings(&self.module));
        for item in items {
            self.visit_item(item);
        }
        self.scopes.pop();
        self.module.pop();
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        // A block's `use` items bind for the whole block, also above them.
        let mut scope = Scope::new();
        for stmt in &b.stmts {
            if let syn::Stmt::Item(Item::Use(u)) = stmt {
                for leaf in leaves_of(u) {
                    let target = self
                        .resolver
                        .resolve_leaf(&leaf, &self.module, &self.scopes);
                    if let Some(name) = leaf.bind {
                        scope.insert(name, target);
                    }
                }
            }
        }
        self.scopes.push(scope);
        visit::visit_block(self, b);
        self.scopes.pop();
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(first) = p.segments.first() {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.path(&segs, p.leading_colon.is_some(), line_of(&first.ident));
        }
        visit::visit_path(self, p);
    }

    fn visit_visibility(&mut self, _: &'ast Visibility) {
        // `pub(in crate::x)` names where an item is visible, not a dependency.
    }

    fn visit_token_stream(&mut self, tokens: &'ast TokenStream) {
        self.tokens(tokens);
    }
}
