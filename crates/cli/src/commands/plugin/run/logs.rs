//! `-l/--enable-logs`: the plugin's own log lines, taken from the daemon runtime's diagnostics.
//!
//! The daemon's runtime reports a plugin's `log` events and the lines it writes on stderr through
//! `tracing` (fields `plugin`, `level`, message). This module installs a `tracing` layer that turns
//! exactly those events into [`PluginLogLine`]s; everything else the runtime reports is dropped.
//! Must not: print anything itself (the caller renders the lines).

use std::fmt::Debug;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// One line the plugin logged (`level` as the SDK sends it, e.g. `INFO`) or wrote on stderr
/// (`level` = `STDERR`).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginLogLine {
    pub level: String,
    pub message: String,
}

/// Installs the collecting layer as the global subscriber; lines arrive on the returned receiver.
/// Fails only when a global subscriber is already set.
pub fn collect_plugin_logs() -> Result<mpsc::UnboundedReceiver<PluginLogLine>, String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tracing_subscriber::registry()
        .with(PluginLogLayer { sink: sender })
        .try_init()
        .map_err(|e| format!("cannot capture plugin logs: {e}"))?;
    Ok(receiver)
}

struct PluginLogLayer {
    sink: mpsc::UnboundedSender<PluginLogLine>,
}

/// Prefix of the runtime's report of one plugin stderr line.
const STDERR_PREFIX: &str = "plugin stderr: ";

impl<S: Subscriber> Layer<S> for PluginLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("dify_daemon::runtime") {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        if !fields.has_plugin {
            return;
        }
        let line = match fields.level {
            Some(level) => PluginLogLine { level, message: fields.message },
            None => match fields.message.strip_prefix(STDERR_PREFIX) {
                Some(rest) => PluginLogLine { level: "STDERR".into(), message: rest.to_string() },
                None => return,
            },
        };
        let _ = self.sink.send(line);
    }
}

#[derive(Default)]
struct EventFields {
    has_plugin: bool,
    level: Option<String>,
    message: String,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.store(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.store(field, format!("{value:?}"));
    }
}

impl EventFields {
    fn store(&mut self, field: &Field, value: String) {
        match field.name() {
            "plugin" => self.has_plugin = true,
            "level" => self.level = Some(value),
            "message" => self.message = value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plugin_lines_are_collected() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let subscriber = tracing_subscriber::registry().with(PluginLogLayer { sink: sender });
        tracing::subscriber::with_default(subscriber, || {
            // Events as the runtime emits them (the target is set explicitly here).
            tracing::info!(target: "dify_daemon::runtime::connection", plugin = %"a/b", level = %"INFO", "{}", "hello");
            tracing::warn!(target: "dify_daemon::runtime::local", plugin = %"a/b", "plugin stderr: {}", "oops");
            tracing::warn!(target: "dify_daemon::runtime::connection", plugin = %"a/b", "ignoring a plugin output line");
            tracing::info!(target: "other", plugin = %"a/b", level = %"INFO", "not ours");
        });
        assert_eq!(receiver.try_recv().unwrap(), PluginLogLine { level: "INFO".into(), message: "hello".into() });
        assert_eq!(receiver.try_recv().unwrap(), PluginLogLine { level: "STDERR".into(), message: "oops".into() });
        assert!(receiver.try_recv().is_err());
    }
}
