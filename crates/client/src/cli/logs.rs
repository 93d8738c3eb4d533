//! `logs <plugin>`: the newest lines of a plugin's log ring, once or followed.

use serde_json::Value;

use super::error::CliError;
use super::output::Render;
use crate::transport::PluginDaemonClient;
use crate::wire::{PluginLogEntry, PluginLogSource, PluginLogsResponse};

/// `logs`: one read of the ring.
pub struct PluginLogs(pub PluginLogsResponse);

/// One line as text: `time [source] LEVEL message` (the level only for `log` events and notes).
pub fn entry_line(entry: &PluginLogEntry) -> String {
    let source = match entry.source {
        PluginLogSource::Stderr => "stderr",
        PluginLogSource::Log => "log",
        PluginLogSource::Error => "error",
        PluginLogSource::Daemon => "daemon",
    };
    match entry.source {
        PluginLogSource::Stderr => format!("{} [{source}] {}", entry.time, entry.message),
        _ => format!("{} [{source}] {} {}", entry.time, entry.level, entry.message),
    }
}

impl Render for PluginLogs {
    fn to_value(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or(Value::Null)
    }
    fn to_text(&self, _wide: bool) -> String {
        let mut out = String::new();
        if self.0.dropped > 0 && self.0.entries.first().is_some_and(|e| e.seq > 1) {
            out.push_str(&format!("({} older lines were dropped)\n", self.0.dropped));
        }
        for entry in &self.0.entries {
            out.push_str(&entry_line(entry));
            out.push('\n');
        }
        out
    }
    fn names(&self) -> Vec<String> {
        self.0.entries.iter().map(|e| e.seq.to_string()).collect()
    }
}

/// `logs`: the newest `tail` lines of `plugin`.
pub async fn logs(client: &PluginDaemonClient, tenant: &str, plugin: &str, tail: u32) -> Result<PluginLogs, CliError> {
    Ok(PluginLogs(client.fetch_plugin_logs(tenant, plugin, 0, Some(tail)).await?))
}
