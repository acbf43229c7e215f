//! Which dissector decodes a connection: the user's choice ("decode as"), else the route's
//! configured protocol, else the server port, else the content of the first bytes.

use std::sync::Arc;

use crate::capture::{Connection, Direction};

use super::Dissector;
use super::fields::{FieldDef, FieldPath, FieldType, FilterFields, FilterNamespace};

#[derive(Clone, Default)]
pub struct Registry {
    dissectors: Vec<Arc<dyn Dissector>>,
    /// Field registrations made here for a dissector that does not make them itself.
    extra_fields: Vec<(&'static str, &'static [FieldDef])>,
}

/// Star Citizen's filter fields. They belong in `impl Dissector for StarCitizen` (`sc.rs`);
/// they are registered here until that file takes them over.
const SC_FIELDS: &[FieldDef] = &[
    FieldDef {
        name: "sc.message",
        aliases: &["sc.name"],
        ty: FieldType::Text,
        help: "the diffusion message name (`diff.service.online`, ...)",
        paths: &[FieldPath::Anywhere("message_name")],
    },
    FieldDef {
        name: "sc.type",
        aliases: &[],
        ty: FieldType::Text,
        help: "the protobuf message type of the payload",
        paths: &[FieldPath::Anchored(&["payload"])],
    },
];

impl Registry {
    /// Every protocol gamewire knows. A new protocol is one line here; order matters only
    /// for content detection (more specific first).
    pub fn standard() -> Self {
        Registry {
            dissectors: vec![
                Arc::new(super::fesl::Fesl),
                Arc::new(super::gp::Gp),
                Arc::new(super::hytale::Hytale),
                Arc::new(super::sc::StarCitizen),
                Arc::new(super::http2::Http2),
                Arc::new(super::grpc::Grpc),
                Arc::new(super::http1::Http1),
                Arc::new(super::json::Json),
                Arc::new(super::protobuf::Protobuf),
            ],
            extra_fields: vec![("sc", SC_FIELDS)],
        }
    }

    /// [`Registry::standard`], built once per process: every decoder of a process (the
    /// engine, the window's panes, `inspect`) shares it, so none can disagree on a protocol.
    pub fn shared() -> Arc<Registry> {
        static SHARED: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Registry::standard()))
            .clone()
    }

    /// Registers `fields` for the dissector called `protocol`, for one that does not
    /// register them itself.
    pub fn with_fields(mut self, protocol: &'static str, fields: &'static [FieldDef]) -> Self {
        self.extra_fields.push((protocol, fields));
        self
    }

    /// The filter namespaces and fields every dissector registered, in registry order:
    /// each dissector's name is a namespace of its own, joined by the further namespaces it
    /// names ([`Dissector::filter_namespaces`]).
    pub fn filter_fields(&self) -> FilterFields {
        let mut out = FilterFields::default();
        for d in &self.dissectors {
            for ns in std::iter::once(d.name()).chain(d.filter_namespaces().iter().copied()) {
                let nested = ns == d.name() && d.nested();
                match out.namespaces.iter_mut().find(|n| n.name == ns) {
                    Some(n) => {
                        if !n.protocols.contains(&d.name()) {
                            n.protocols.push(d.name());
                        }
                        n.nested |= nested;
                    }
                    None => out.namespaces.push(FilterNamespace {
                        name: ns,
                        protocols: vec![d.name()],
                        nested,
                    }),
                }
            }
            out.fields.extend(d.fields().iter().map(|f| (d.name(), *f)));
            for (_, fields) in self.extra_fields.iter().filter(|(p, _)| *p == d.name()) {
                out.fields.extend(fields.iter().map(|f| (d.name(), *f)));
            }
        }
        out
    }

    pub fn with(mut self, d: Arc<dyn Dissector>) -> Self {
        self.dissectors.push(d);
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.dissectors.iter().map(|d| d.name()).collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Dissector>> {
        self.dissectors
            .iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
            .cloned()
    }

    /// Picks the dissector for a connection. `first` holds the first bytes each side sent
    /// (client first), for the content heuristics.
    pub fn choose(
        &self,
        conn: &Connection,
        first: &[(Direction, &[u8])],
        forced: Option<&str>,
    ) -> Option<Arc<dyn Dissector>> {
        if let Some(name) = forced {
            return self.get(name);
        }
        if let Some(d) = conn.protocol.as_deref().and_then(|p| self.get(p)) {
            return Some(d);
        }
        let port = conn.server.port();
        if let Some(d) = self
            .dissectors
            .iter()
            .find(|d| port != 0 && d.default_ports().contains(&port))
        {
            return Some(d.clone());
        }
        first.iter().find_map(|(dir, bytes)| {
            self.dissectors
                .iter()
                .find(|d| !bytes.is_empty() && d.detect(bytes, *dir))
                .cloned()
        })
    }
}
