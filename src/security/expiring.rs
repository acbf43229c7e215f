//! Keys that matter only until a time (issued sessions, logins in progress, revoked
//! tokens), dropped once that time has passed, so a server that runs for weeks holds what
//! is still live rather than every login it ever saw.

use std::collections::HashMap;

/// Pruning starts at this many entries; below it a map is too small to matter.
const MIN_PRUNE: usize = 64;

/// A map whose entries each carry an expiry (Unix seconds). Expired entries are dropped
/// when the map has doubled since its last pruning, which costs a constant amount per
/// insert however entries come and go; lookups treat an expired entry as absent.
#[derive(Debug)]
pub struct Expiring<V> {
    map: HashMap<String, (i64, V)>,
    prune_at: usize,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Expiring {
            map: HashMap::new(),
            prune_at: MIN_PRUNE,
        }
    }
}

impl<V> Expiring<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`, live until `expires`. `now` decides what is pruned.
    pub fn insert(&mut self, key: String, expires: i64, value: V, now: i64) {
        if self.map.len() >= self.prune_at {
            self.prune(now);
        }
        self.map.insert(key, (expires, value));
    }

    /// Drops every entry whose expiry has passed.
    fn prune(&mut self, now: i64) {
        self.map.retain(|_, (expires, _)| *expires > now);
        self.prune_at = (self.map.len() * 2).max(MIN_PRUNE);
    }

    /// The value of `key` if it is there and has not expired.
    pub fn get(&self, key: &str, now: i64) -> Option<&V> {
        self.map
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, v)| v)
    }

    pub fn contains(&self, key: &str, now: i64) -> bool {
        self.get(key, now).is_some()
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    /// The live entries, in no particular order.
    pub fn live(&self, now: i64) -> impl Iterator<Item = (&str, &V)> {
        self.map
            .iter()
            .filter(move |(_, (expires, _))| *expires > now)
            .map(|(k, (_, v))| (k.as_str(), v))
    }

    /// Entries held, expired or not (what the pruning bounds).
    pub fn held(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_absent_and_dropped_as_the_map_grows() {
        let mut m = Expiring::new();
        // A long-running server: a login every second, each live for 60 seconds.
        for t in 0..100_000i64 {
            m.insert(format!("session {t}"), t + 60, t, t);
        }
        let now = 100_000;
        assert!(
            m.held() <= 2 * 60 + MIN_PRUNE,
            "{} entries held for 60 live ones",
            m.held()
        );
        assert_eq!(m.live(now).count(), 59);
        assert_eq!(m.get("session 99999", now), Some(&99_999));
        assert!(!m.contains("session 99940", now), "expired at 100000");
        assert!(m.contains("session 99941", now));
        assert_eq!(m.remove("session 99999"), Some(99_999));
        assert!(!m.contains("session 99999", now));
    }

    #[test]
    fn live_entries_are_never_pruned() {
        let mut m = Expiring::new();
        for i in 0..1_000i64 {
            m.insert(format!("k{i}"), i64::MAX, i, i);
        }
        assert_eq!(m.held(), 1_000);
        assert!((0..1_000).all(|i| m.contains(&format!("k{i}"), 2_000)));
    }
}
