//! Breakpoints and injection: the parts of a tap that let a user stop, change, drop or add
//! messages on a live connection.
//!
//! A relay asks [`Interceptor::check`] about every whole message on a route that has rules;
//! a match is held until someone decides (or the hold times out and it is forwarded as is).
//! The decision is applied by the relay, which also records what it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::capture::{ConnectionId, Direction};
use crate::dissect::{Message, Node};

/// When a message is held. Every set condition must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// Route (tap) name; any route when unset.
    pub route: Option<String>,
    /// `client_to_server` or `server_to_client`; both when unset.
    pub direction: Option<Direction>,
    /// A dissected field anywhere in the message tree, e.g. `TXN`.
    pub field: Option<String>,
    /// The field's value as shown (`NuLogin`); with `field` unset, matches the label.
    pub equals: Option<String>,
    /// Case-sensitive substring of the message label, e.g. `NuLogin`.
    pub label_contains: Option<String>,
}

impl Rule {
    pub fn applies_to_route(&self, route: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
    }

    pub fn matches(&self, route: &str, direction: Direction, message: &Message) -> bool {
        if !self.applies_to_route(route) {
            return false;
        }
        if self.direction.is_some_and(|d| d != direction) {
            return false;
        }
        if let Some(needle) = &self.label_contains
            && !message.label.contains(needle.as_str())
        {
            return false;
        }
        match (&self.field, &self.equals) {
            (Some(field), want) => field_matches(&message.tree, field, want.as_deref()),
            (None, Some(want)) => message.label == *want,
            (None, None) => true,
        }
    }
}

fn field_matches(node: &Node, field: &str, want: Option<&str>) -> bool {
    let value_is = |w: &str| {
        node.value.as_text() == Some(w) || node.value.render() == w || node.display_value() == w
    };
    if node.name == field && want.is_none_or(value_is) {
        return true;
    }
    node.children.iter().any(|c| field_matches(c, field, want))
}

/// What to do with a held message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Send these bytes instead (an edited message, already re-encoded).
    ForwardEdited(Vec<u8>),
    Drop,
}

pub type HoldId = u64;

/// A message waiting at a breakpoint, as the GUI and CLI list it.
#[derive(Clone, Debug)]
pub struct Held {
    pub id: HoldId,
    pub route: String,
    pub connection: ConnectionId,
    pub direction: Direction,
    pub label: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum InterceptEvent {
    Held(Held),
    Released {
        id: HoldId,
        decision: String,
    },
    /// A connection became injectable (a relay registered it) or stopped being.
    Live {
        connection: ConnectionId,
        live: bool,
    },
}

/// Bytes to write into a live connection, and whether the sender wants to know it went out.
pub struct Injection {
    pub bytes: Vec<u8>,
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterceptError {
    #[error("no message is held with id {0}")]
    UnknownHold(HoldId),
    #[error("connection #{0} is not live (closed, or not carried by a tap)")]
    NotLive(u64),
    #[error("connection #{0} closed before the injected message was sent")]
    Closed(u64),
}

struct Pending {
    held: Held,
    reply: oneshot::Sender<Decision>,
}

/// Shared by every tap of an engine.
pub struct Interceptor {
    rules: Mutex<Vec<Rule>>,
    /// `rules.len()`, readable without the lock: every relay asks on every read.
    rule_count: AtomicUsize,
    /// How long a held message waits before it is forwarded unchanged.
    hold_timeout: Mutex<Duration>,
    pending: Mutex<HashMap<HoldId, Pending>>,
    next: AtomicU64,
    events: broadcast::Sender<InterceptEvent>,
    /// Injection inboxes of live connections: (to the server, to the client).
    live: Mutex<HashMap<ConnectionId, LiveConnection>>,
}

#[derive(Clone)]
struct LiveConnection {
    to_server: mpsc::Sender<Injection>,
    to_client: mpsc::Sender<Injection>,
}

impl Default for Interceptor {
    fn default() -> Self {
        Self::new()
    }
}

impl Interceptor {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Interceptor {
            rules: Mutex::new(Vec::new()),
            rule_count: AtomicUsize::new(0),
            hold_timeout: Mutex::new(Duration::from_secs(60)),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            events,
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<InterceptEvent> {
        self.events.subscribe()
    }

    pub fn set_rules(&self, rules: Vec<Rule>) {
        let mut current = self.rules.lock();
        self.rule_count.store(rules.len(), Ordering::Relaxed);
        *current = rules;
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.rules.lock().clone()
    }

    pub fn set_hold_timeout(&self, timeout: Duration) {
        *self.hold_timeout.lock() = timeout;
    }

    /// Whether a relay on `route` needs to frame messages at all (framing costs a copy).
    pub fn watches(&self, route: &str) -> bool {
        if self.rule_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.rules.lock().iter().any(|r| r.applies_to_route(route))
    }

    /// Holds the message if a rule matches, and waits for the decision.
    pub async fn check(
        &self,
        route: &str,
        connection: ConnectionId,
        direction: Direction,
        message: &Message,
        bytes: &[u8],
    ) -> Decision {
        let matched = self
            .rules
            .lock()
            .iter()
            .any(|r| r.matches(route, direction, message));
        if !matched {
            return Decision::Forward;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let held = Held {
            id,
            route: route.to_string(),
            connection,
            direction,
            label: message.label.clone(),
            bytes: bytes.to_vec(),
        };
        let (reply, wait) = oneshot::channel();
        self.pending.lock().insert(
            id,
            Pending {
                held: held.clone(),
                reply,
            },
        );
        tracing::info!(route, hold = id, label = %held.label, "breakpoint: message held");
        let _ = self.events.send(InterceptEvent::Held(held));
        let timeout = *self.hold_timeout.lock();
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(decision)) => decision,
            // Timed out, or the decider vanished: never strand the connection.
            _ => {
                self.pending.lock().remove(&id);
                tracing::info!(route, hold = id, "breakpoint: hold timed out, forwarded");
                let _ = self.events.send(InterceptEvent::Released {
                    id,
                    decision: "forwarded after timeout".into(),
                });
                Decision::Forward
            }
        }
    }

    pub fn held(&self) -> Vec<Held> {
        let mut held: Vec<Held> = self
            .pending
            .lock()
            .values()
            .map(|p| p.held.clone())
            .collect();
        held.sort_by_key(|h| h.id);
        held
    }

    pub fn decide(&self, id: HoldId, decision: Decision) -> Result<(), InterceptError> {
        let pending = self
            .pending
            .lock()
            .remove(&id)
            .ok_or(InterceptError::UnknownHold(id))?;
        let name = match &decision {
            Decision::Forward => "forwarded".to_string(),
            Decision::ForwardEdited(b) => format!("forwarded edited ({} bytes)", b.len()),
            Decision::Drop => "dropped".to_string(),
        };
        let _ = pending.reply.send(decision);
        let _ = self
            .events
            .send(InterceptEvent::Released { id, decision: name });
        Ok(())
    }

    /// Called by a relay when a connection goes live; the receivers feed its two writers.
    pub fn register(
        &self,
        connection: ConnectionId,
    ) -> (mpsc::Receiver<Injection>, mpsc::Receiver<Injection>) {
        let (to_server, server_rx) = mpsc::channel(64);
        let (to_client, client_rx) = mpsc::channel(64);
        self.live.lock().insert(
            connection,
            LiveConnection {
                to_server,
                to_client,
            },
        );
        let _ = self.events.send(InterceptEvent::Live {
            connection,
            live: true,
        });
        (server_rx, client_rx)
    }

    pub fn unregister(&self, connection: ConnectionId) {
        if self.live.lock().remove(&connection).is_some() {
            let _ = self.events.send(InterceptEvent::Live {
                connection,
                live: false,
            });
        }
    }

    pub fn live_connections(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.live.lock().keys().copied().collect();
        ids.sort();
        ids
    }

    /// Writes `bytes` into a live connection: `ClientToServer` sends them to the server as
    /// if the client had, `ServerToClient` to the client. Resolves once they were written.
    pub async fn inject(
        &self,
        connection: ConnectionId,
        direction: Direction,
        bytes: Vec<u8>,
    ) -> Result<(), InterceptError> {
        let live = self
            .live
            .lock()
            .get(&connection)
            .cloned()
            .ok_or(InterceptError::NotLive(connection.0))?;
        let inbox = match direction {
            Direction::ClientToServer => live.to_server,
            Direction::ServerToClient => live.to_client,
        };
        let (done, wait) = oneshot::channel();
        inbox
            .send(Injection {
                bytes,
                done: Some(done),
            })
            .await
            .map_err(|_| InterceptError::Closed(connection.0))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(InterceptError::Closed(connection.0)),
        }
    }
}

pub type SharedInterceptor = Arc<Interceptor>;
