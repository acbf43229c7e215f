//! The last few thousand log events in memory, for the workbench's log and audit panes. A
//! `tracing` layer feeds it beside the console and the per-route files; readers copy what is
//! new since the sequence number they last saw, so the lock is held only for that copy.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Events kept when nobody reads them; enough for a long session's story, small in memory.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The target of security events (logins, bans, server errors) that the audit pane lists.
pub const AUDIT_TARGET: &str = "gamewire::audit";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Increases by one per event, across the ring's whole life.
    pub seq: u64,
    /// UTC wall-clock time, `HH:MM:SS.mmm`.
    pub time: String,
    pub level: Level,
    pub target: String,
    pub message: String,
    /// The event's other fields in the order given, values as text.
    pub fields: Vec<(String, String)>,
}

impl LogEntry {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_audit(&self) -> bool {
        self.target == AUDIT_TARGET
    }

    /// The fields as `name=value` pairs after the message, as the log files write them.
    pub fn fields_text(&self) -> String {
        let mut s = String::new();
        for (n, v) in &self.fields {
            let _ = write!(s, " {n}={v}");
        }
        s
    }
}

pub struct LogRing {
    inner: Mutex<Inner>,
    /// The sequence number the next event will get, for readers that wait for new lines
    /// instead of looking for them.
    next: tokio::sync::watch::Sender<u64>,
}

struct Inner {
    entries: VecDeque<LogEntry>,
    next_seq: u64,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Arc<LogRing> {
        Arc::new(LogRing {
            inner: Mutex::new(Inner {
                entries: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 0,
                capacity: capacity.max(1),
            }),
            next: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The ring that [`super::logs::init`] feeds.
    pub fn global() -> &'static Arc<LogRing> {
        static RING: OnceLock<Arc<LogRing>> = OnceLock::new();
        RING.get_or_init(|| LogRing::new(DEFAULT_CAPACITY))
    }

    /// A layer that records every event it is given into this ring.
    pub fn layer(self: &Arc<Self>) -> RingLayer {
        RingLayer(Arc::clone(self))
    }

    pub fn push(&self, mut entry: LogEntry) {
        let mut inner = self.inner.lock();
        entry.seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.entries.len() >= inner.capacity {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
        let next = inner.next_seq;
        drop(inner);
        self.next.send_replace(next);
    }

    /// Changes whenever an event is pushed; its value is [`LogRing::next_seq`].
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.next.subscribe()
    }

    /// Events with `seq >= from` still in the ring, oldest first.
    pub fn since(&self, from: u64) -> Vec<LogEntry> {
        let inner = self.inner.lock();
        let skip = match inner.entries.front() {
            Some(first) if from > first.seq => (from - first.seq) as usize,
            _ => 0,
        };
        inner.entries.iter().skip(skip).cloned().collect()
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().next_seq
    }
}

pub struct RingLayer(Arc<LogRing>);

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.push(LogEntry {
            seq: 0,
            time: chrono::Utc::now().format("%H:%M:%S%.3f").to_string(),
            level: *meta.level(),
            target: meta.target().to_string(),
            message: fields.message,
            fields: fields.rest,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_newest_and_reads_from_a_sequence_number() {
        let ring = LogRing::new(3);
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..5 {
                tracing::info!(n = i, "event {i}");
            }
            tracing::warn!(target: "gamewire::audit", kind = "login", who = "a@b", "login accepted");
        });
        let all = ring.since(0);
        let messages: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["event 3", "event 4", "login accepted"]);
        assert_eq!(all[0].field("n"), Some("3"));
        assert!(all[2].is_audit());
        assert_eq!(all[2].field("who"), Some("a@b"));
        assert_eq!(ring.since(5).len(), 1);
        assert!(ring.since(6).is_empty());
        assert_eq!(ring.next_seq(), 6);
    }
}
