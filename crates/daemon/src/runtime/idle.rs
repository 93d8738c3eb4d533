//! Idle stop: a local plugin that served no invocation for `PLUGIN_IDLE_TIMEOUT` seconds is stopped
//! (child reaped, sandbox released) and launched again by the next invocation.
//!
//! Owns: the per-runtime usage record ([`Usage`]: leases held by invocations being opened, when the
//! runtime was last used), the lease callers hold from finding a runtime until its session is
//! registered ([`RuntimeLease`]), the idle sweep ([`RuntimeManager::stop_idle`]) and the set of
//! plugins it stopped (shown as `idle-stopped` on the status page).
//!
//! The boundary rule: the sweep takes the plugin's launch lock, then, under the plugin map's lock,
//! removes the runtime only if no lease is held, no session is open on its connection and it has been
//! unused for the whole timeout. Leases are taken under the same map lock, so an invocation either
//! holds a lease before the check (the runtime stays) or finds no runtime after it and launches one
//! lazily, which waits on the launch lock until the stop has finished. Must not: decide when a
//! plugin is installed or uninstalled, or start processes itself.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{InstanceState, ManagedPlugin, PluginProcess, RuntimeManager};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How a runtime is being used: leases held now and when it was last used.
#[derive(Debug)]
pub struct Usage {
    leases: AtomicUsize,
    last_used_ms: AtomicU64,
}

impl Default for Usage {
    fn default() -> Self {
        Self { leases: AtomicUsize::new(0), last_used_ms: AtomicU64::new(now_ms()) }
    }
}

impl Usage {
    /// Records a use now.
    pub fn touch(&self) {
        self.last_used_ms.fetch_max(now_ms(), Ordering::AcqRel);
    }

    /// Time since the runtime was last used.
    pub fn unused_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_used_ms.load(Ordering::Acquire)))
    }

    /// Leases held right now.
    pub fn leases(&self) -> usize {
        self.leases.load(Ordering::Acquire)
    }
}

/// A runtime held by an invocation that is being opened. While any lease is held (and while a
/// session is open on the runtime's connection) the idle sweep leaves the runtime running.
pub struct RuntimeLease {
    plugin: Arc<ManagedPlugin>,
}

impl RuntimeLease {
    pub fn plugin(&self) -> &Arc<ManagedPlugin> {
        &self.plugin
    }
}

impl Drop for RuntimeLease {
    fn drop(&mut self) {
        self.plugin.usage.touch();
        self.plugin.usage.leases.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RuntimeManager {
    /// The runtime of `identifier` with a lease on it, if one runs here. Hold the lease until the
    /// session is registered on the connection.
    pub fn acquire(&self, identifier: &str) -> Option<RuntimeLease> {
        let plugins = self.lock_plugins();
        let plugin = plugins.get(identifier)?.clone();
        plugin.usage.leases.fetch_add(1, Ordering::AcqRel);
        plugin.usage.touch();
        Some(RuntimeLease { plugin })
    }

    /// Identifiers of the plugins the idle sweep stopped (not launched again since).
    pub fn idle_stopped(&self) -> Vec<String> {
        let mut stopped: Vec<String> = self.lock_idle_stopped().iter().cloned().collect();
        stopped.sort();
        stopped
    }

    pub(super) fn lock_idle_stopped(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.idle_stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every local plugin unused for at least `timeout` (a zero timeout stops nothing). Returns
    /// the identifiers it stopped.
    pub async fn stop_idle(&self, timeout: Duration) -> Vec<String> {
        if timeout.is_zero() {
            return Vec::new();
        }
        let candidates: Vec<Arc<ManagedPlugin>> = self
            .lock_plugins()
            .values()
            .filter(|plugin| matches!(plugin.process, PluginProcess::Local(_)))
            .cloned()
            .collect();
        let mut stopped = Vec::new();
        for candidate in candidates {
            if !is_idle(&candidate, timeout) {
                if busy(&candidate) {
                    // Time spent in a long session counts as use.
                    candidate.usage.touch();
                }
                continue;
            }
            let identifier = candidate.identifier.as_str().to_string();
            let lock = self.launch_lock(&identifier);
            let _launching = lock.lock().await;
            let removed = {
                let mut plugins = self.lock_plugins();
                match plugins.get(&identifier) {
                    Some(current) if Arc::ptr_eq(current, &candidate) && is_idle(current, timeout) => plugins.remove(&identifier),
                    _ => None,
                }
            };
            let Some(plugin) = removed else { continue };
            self.lock_idle_stopped().insert(identifier.clone());
            let unused = plugin.usage.unused_for().as_secs();
            tracing::info!(plugin = %identifier, unused_seconds = unused, "stopping an idle plugin");
            self.logs.ring(&identifier).push(
                dify_protocol::observe::PluginLogSource::Daemon,
                "INFO",
                &format!("plugin idle-stopped after {unused} seconds without invocations"),
            );
            plugin.process.stop().await;
            stopped.push(identifier);
        }
        stopped
    }
}

/// A lease is held or a session is open on the runtime's connection.
fn busy(plugin: &ManagedPlugin) -> bool {
    plugin.usage.leases() > 0
        || matches!(&plugin.process, PluginProcess::Local(local)
            if matches!(local.state(), InstanceState::Running(connection) if connection.open_sessions() > 0))
}

/// Running, not busy, and unused for `timeout`. A plugin restarting after a crash is left to its
/// supervisor, and one that was given up stays visible as crashed.
fn is_idle(plugin: &ManagedPlugin, timeout: Duration) -> bool {
    let running = matches!(&plugin.process, PluginProcess::Local(local) if matches!(local.state(), InstanceState::Running(_)));
    running && !busy(plugin) && plugin.usage.unused_for() >= timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_from_the_last_touch() {
        let usage = Usage::default();
        assert!(usage.unused_for() < Duration::from_secs(5));
        usage.last_used_ms.store(0, Ordering::Release);
        std::thread::sleep(Duration::from_millis(20));
        assert!(usage.unused_for() >= Duration::from_millis(20));
        usage.touch();
        assert!(usage.unused_for() < Duration::from_millis(20));
    }
}
