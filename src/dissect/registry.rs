//! Which dissector decodes a connection: the user's choice ("decode as"), else the route's
//! configured protocol, else the server port, else the content of the first bytes.

use std::sync::Arc;

use crate::capture::{Connection, Direction};

use super::Dissector;

#[derive(Clone, Default)]
pub struct Registry {
    dissectors: Vec<Arc<dyn Dissector>>,
}

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
