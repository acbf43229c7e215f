//! Filter fields as dissectors register them: each protocol names the fields it offers
//! (`fesl.txn`, `http.status`, ...), their type, a line of help, and where they sit in its
//! trees, once, next to the code that builds those trees. The filter language reads these
//! registrations (through [`super::Registry::filter_fields`]) instead of a table of its own,
//! so a renamed node fails the test that resolves every registration in real trees rather
//! than silently breaking a filter.
//!
//! Several dissectors may register the same name: the field then looks for any of their
//! paths (HTTP/1's `code` and HTTP/2's `:status` are both `http.status`).

/// What a field's values are, for help texts; the filter compares every protocol field by
/// the literal it is given (a number with integers and numeric text, a string with text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Number,
    Bytes,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Bytes => "bytes",
        }
    }
}

/// Where a field's nodes are in a message's trees (the on-wire tree and the derived
/// buffers' trees). Names compare case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldPath {
    /// Children of the root, then their children: `["payload", "TXN"]`.
    Anchored(&'static [&'static str]),
    /// A node of this name anywhere in the tree.
    Anywhere(&'static str),
    /// The root node's name stands for the value (Hytale names the root after the packet).
    RootName,
    /// The first child's name stands for the value (a GameSpy message's command).
    FirstChildName,
}

/// One registered filter field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// The name a filter uses, `namespace.field`, lowercase: `fesl.txn`.
    pub name: &'static str,
    /// Other names for the same field (`fesl.cmd`, `h2.status`).
    pub aliases: &'static [&'static str],
    pub ty: FieldType,
    /// One line for help texts.
    pub help: &'static str,
    /// Where the field is; any of them (a protocol may spell it more than one way).
    pub paths: &'static [FieldPath],
}

impl FieldDef {
    /// The name and every alias.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

/// A filter namespace (`fesl`, `http`): which protocols' connections its fields look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterNamespace {
    pub name: &'static str,
    /// Dissector names whose connections the namespace covers.
    pub protocols: Vec<&'static str>,
    /// Its paths are also searched in every other protocol's trees (JSON bodies, protobuf
    /// payloads and JWTs sit inside other protocols' messages).
    pub nested: bool,
}

/// Every registration of one registry: the namespaces and the fields, in registry order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterFields {
    pub namespaces: Vec<FilterNamespace>,
    /// Each field with the dissector that registered it.
    pub fields: Vec<(&'static str, FieldDef)>,
}

impl FilterFields {
    pub fn namespace(&self, name: &str) -> Option<&FilterNamespace> {
        self.namespaces
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(name))
    }

    /// The paths of the field called `name` (its name or an alias), over every dissector
    /// that registered it; `None` when no registration has that name.
    pub fn paths(&self, name: &str) -> Option<Vec<FieldPath>> {
        let canonical: Vec<&str> = self
            .fields
            .iter()
            .filter(|(_, f)| f.names().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(_, f)| f.name)
            .collect();
        if canonical.is_empty() {
            return None;
        }
        let mut paths = Vec::new();
        for (_, f) in self
            .fields
            .iter()
            .filter(|(_, f)| canonical.contains(&f.name))
        {
            for p in f.paths {
                if !paths.contains(p) {
                    paths.push(*p);
                }
            }
        }
        Some(paths)
    }

    /// Each field once (the first registration of a name), for help and completion.
    pub fn unique(&self) -> Vec<&FieldDef> {
        let mut out: Vec<&FieldDef> = Vec::new();
        for (_, f) in &self.fields {
            if !out.iter().any(|o| o.name == f.name) {
                out.push(f);
            }
        }
        out
    }
}
