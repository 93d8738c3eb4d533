//! Per-plugin log rings: the newest lines each plugin wrote to its stderr, its `log` and `error`
//! events, and the daemon's notes about its process (exited, restarted, gave up), kept in memory so an
//! operator can read why a plugin failed without the daemon's own log.
//!
//! Owns: one bounded ring per plugin unique identifier (lines beyond the capacity push the oldest
//! out; each line is cut to [`MAX_LINE_CHARS`]), and a bounded set of rings (the least recently
//! written ring goes when a new plugin needs one). Must not: know tenants (the service layer decides
//! who may read a ring) or persist anything; the rings live as long as the process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use dify_protocol::observe::{PluginLogEntry, PluginLogSource};

/// Longest kept line, in characters; the rest is replaced by a marker.
pub const MAX_LINE_CHARS: usize = 4096;
/// Most rings kept at once (one per plugin unique identifier ever launched here).
pub const MAX_RINGS: usize = 1024;

/// The log lines of one plugin.
#[derive(Debug)]
pub struct LogRing {
    capacity: usize,
    inner: Mutex<RingState>,
}

#[derive(Debug, Default)]
struct RingState {
    entries: VecDeque<PluginLogEntry>,
    last_seq: u64,
    dropped: u64,
    /// Ring-set clock value of the last write (eviction order).
    touched: u64,
}

/// A copy of part of a ring.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSnapshot {
    pub entries: Vec<PluginLogEntry>,
    pub last_seq: u64,
    pub dropped: u64,
}

impl LogRing {
    /// An empty ring keeping at most `capacity` lines (at least one).
    pub fn new(capacity: usize) -> LogRing {
        LogRing { capacity: capacity.max(1), inner: Mutex::new(RingState::default()) }
    }

    /// Appends one line, pushing the oldest out when full.
    pub fn push(&self, source: PluginLogSource, level: &str, message: &str) {
        let message = clip(message);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut state = self.lock();
        state.last_seq += 1;
        let seq = state.last_seq;
        state.entries.push_back(PluginLogEntry { seq, time, source, level: level.to_string(), message });
        while state.entries.len() > self.capacity {
            state.entries.pop_front();
            state.dropped += 1;
        }
    }

    /// Lines with `seq > after`, at most the newest `limit` of them, oldest first.
    pub fn read(&self, after: u64, limit: usize) -> LogSnapshot {
        let state = self.lock();
        let newer: Vec<&PluginLogEntry> = state.entries.iter().filter(|e| e.seq > after).collect();
        let skip = newer.len().saturating_sub(limit);
        LogSnapshot { entries: newer.into_iter().skip(skip).cloned().collect(), last_seq: state.last_seq, dropped: state.dropped }
    }

    /// The newest line of `source`, if any (e.g. the last stderr line of a crashed plugin).
    pub fn last_of(&self, source: PluginLogSource) -> Option<PluginLogEntry> {
        self.lock().entries.iter().rev().find(|e| e.source == source).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn clip(message: &str) -> String {
    let message = message.trim_end_matches(['\r', '\n']);
    match message.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}… [{} more bytes]", &message[..cut], message.len() - cut),
        None => message.to_string(),
    }
}

/// Every plugin's ring on this node, by plugin unique identifier.
#[derive(Debug)]
pub struct PluginLogs {
    capacity: usize,
    rings: Mutex<RingSet>,
}

#[derive(Debug, Default)]
struct RingSet {
    rings: HashMap<String, Arc<LogRing>>,
    clock: u64,
}

impl PluginLogs {
    /// Rings of `capacity` lines each (`PLUGIN_LOG_RING_SIZE`).
    pub fn new(capacity: usize) -> PluginLogs {
        PluginLogs { capacity: capacity.max(1), rings: Mutex::new(RingSet::default()) }
    }

    /// The ring of `identifier`, created when missing (a restarted or relaunched plugin keeps writing
    /// to the same ring, so the lines of the crash stay readable after it).
    pub fn ring(&self, identifier: &str) -> Arc<LogRing> {
        let mut set = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        set.clock += 1;
        let clock = set.clock;
        if let Some(ring) = set.rings.get(identifier).cloned() {
            ring.lock().touched = clock;
            return ring;
        }
        if set.rings.len() >= MAX_RINGS {
            let oldest = set.rings.iter().min_by_key(|(_, ring)| ring.lock().touched).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                set.rings.remove(&oldest);
            }
        }
        let ring = Arc::new(LogRing::new(self.capacity));
        ring.lock().touched = clock;
        set.rings.insert(identifier.to_string(), ring.clone());
        ring
    }

    /// The ring of `identifier` if the plugin ever ran here.
    pub fn get(&self, identifier: &str) -> Option<Arc<LogRing>> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner()).rings.get(identifier).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_lines_and_counts_the_dropped() {
        let ring = LogRing::new(3);
        for i in 1..=5 {
            ring.push(PluginLogSource::Stderr, "STDERR", &format!("line {i}\n"));
        }
        let all = ring.read(0, 100);
        let texts: Vec<&str> = all.entries.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(texts, ["line 3", "line 4", "line 5"]);
        assert_eq!((all.last_seq, all.dropped), (5, 2));
        assert_eq!(all.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        // `after` reads only newer lines; `limit` keeps the newest of them.
        assert_eq!(ring.read(4, 100).entries.len(), 1);
        assert_eq!(ring.read(0, 1).entries[0].message, "line 5");
        assert!(ring.read(5, 100).entries.is_empty());
    }

    #[test]
    fn long_lines_are_clipped_on_a_char_boundary() {
        let ring = LogRing::new(2);
        ring.push(PluginLogSource::Log, "INFO", &"é".repeat(MAX_LINE_CHARS + 10));
        let entry = ring.last_of(PluginLogSource::Log).expect("entry");
        assert!(entry.message.starts_with(&"é".repeat(MAX_LINE_CHARS)));
        assert!(entry.message.ends_with("… [20 more bytes]"), "{}", &entry.message[entry.message.len() - 40..]);
        assert!(ring.last_of(PluginLogSource::Stderr).is_none());
    }

    #[test]
    fn ring_set_is_bounded_and_reuses_rings() {
        let logs = PluginLogs::new(10);
        let first = logs.ring("a/b:1@x");
        first.push(PluginLogSource::Daemon, "INFO", "started");
        assert!(Arc::ptr_eq(&first, &logs.ring("a/b:1@x")));
        for i in 0..MAX_RINGS {
            logs.ring(&format!("p/{i}:1@x"));
        }
        // The least recently used ring ("a/b") went to make room.
        assert!(logs.get("a/b:1@x").is_none());
        assert!(logs.get(&format!("p/{}:1@x", MAX_RINGS - 1)).is_some());
    }
}
