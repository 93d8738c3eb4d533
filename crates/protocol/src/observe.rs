//! Operator-facing wire types: the lines a plugin wrote (stderr, `log` events, reported errors, and
//! the daemon's own notes about the process) as `GET /plugin/{tenant_id}/management/logs` renders
//! them and the clients read them.

use serde::{Deserialize, Serialize};

/// Where a plugin log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginLogSource {
    /// A line the plugin process wrote to its stderr.
    Stderr,
    /// A `log` event (the SDK's logger handler).
    Log,
    /// An `error` event the plugin reported outside any session.
    Error,
    /// The daemon's own note about the process (exited, restarted, gave up).
    Daemon,
}

/// One line of a plugin's log ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginLogEntry {
    /// Position in the ring's history, increasing from 1; pass the last one seen as `after` to read
    /// only newer lines.
    pub seq: u64,
    /// When the daemon received the line (RFC 3339, UTC).
    pub time: String,
    pub source: PluginLogSource,
    /// `INFO`, `WARNING`, ... for `log` events; `ERROR` for errors; `STDERR` for stderr lines;
    /// `INFO`/`WARNING`/`ERROR` for the daemon's notes.
    pub level: String,
    pub message: String,
}

/// Answer of the plugin logs route: the newest lines of the tenant's installed plugin on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginLogsResponse {
    /// `author/name`.
    pub plugin_id: String,
    pub plugin_unique_identifier: String,
    /// Oldest first.
    pub entries: Vec<PluginLogEntry>,
    /// The `seq` of the newest line kept (0 when none was ever written); poll with `after=` this.
    pub last_seq: u64,
    /// Lines pushed out of the ring since it was created (it keeps the newest ones).
    pub dropped: u64,
}
