//! The operator's picture of this node, as the status page renders it: the node, its database and
//! storage, every runtime here with its state, restarts and last problem, installations and install
//! tasks of every tenant, plugins stopped while idle (`idle-stopped`) (with their full error text), invocations in flight, and each runtime's log
//! tail. Read-only.

use serde_json::{json, Value};

use super::state::AppState;
use super::ServiceResult;
use crate::runtime::{InstanceState, PluginProcess};
use dify_protocol::observe::PluginLogSource;

/// Rows of each list on the page.
const LIST_LIMIT: i64 = 200;
/// Log lines per runtime on the page.
const LOG_TAIL: usize = 20;

/// The whole picture as JSON (`GET /status.json`).
pub async fn report(state: &AppState) -> ServiceResult<Value> {
    let settings = &state.settings;
    let database = match settings.db_kind() {
        Ok(crate::config::DbKind::Sqlite) => format!("SQLite {}", settings.db_sqlite_path),
        Ok(kind) => format!("{kind:?} {}/{}", settings.db_host.as_deref().unwrap_or("localhost"), settings.db_database),
        Err(error) => error.to_string(),
    };
    let mut runtimes = Vec::new();
    let mut identifiers = state.runtime.running();
    identifiers.sort();
    for identifier in identifiers {
        let Some(plugin) = state.runtime.plugin(&identifier) else { continue };
        let (status, mut last_error) = match &plugin.process {
            PluginProcess::Local(local) => match local.state() {
                InstanceState::Starting => ("starting", None),
                InstanceState::Running(_) => ("running", None),
                InstanceState::Down(reason) if reason == "plugin stopped" => ("stopped", None),
                InstanceState::Down(reason) => ("crashed", Some(reason)),
            },
            other if other.is_down() => ("disconnected", None),
            _ => ("running", None),
        };
        let ring = state.runtime.logs().get(&identifier);
        if last_error.is_none() && plugin.process.restart_count() > 0 {
            last_error = ring
                .as_ref()
                .and_then(|r| {
                    r.read(0, usize::MAX)
                        .entries
                        .into_iter()
                        .rev()
                        .find(|e| e.level == "WARNING" && e.source == PluginLogSource::Daemon)
                })
                .map(|e| e.message);
        }
        let logs = ring.map(|r| r.read(0, LOG_TAIL).entries).unwrap_or_default();
        runtimes.push(json!({
            "identifier": identifier,
            "runtime_type": plugin.process.runtime_type().as_str(),
            "status": status,
            "restarts": plugin.process.restart_count(),
            "pids": plugin.process.spawned_pids(),
            "last_error": last_error,
            "logs": logs,
        }));
    }
    // Stopped after going unused for `PLUGIN_IDLE_TIMEOUT`; the next invocation starts them again.
    for identifier in state.runtime.idle_stopped() {
        if state.runtime.plugin(&identifier).is_some() {
            continue;
        }
        let logs = state.runtime.logs().get(&identifier).map(|r| r.read(0, LOG_TAIL).entries).unwrap_or_default();
        runtimes.push(json!({
            "identifier": identifier,
            "runtime_type": crate::store::RuntimeType::Local.as_str(),
            "status": "idle-stopped",
            "restarts": 0,
            "pids": [],
            "last_error": null,
            "logs": logs,
        }));
    }
    let installations: Vec<Value> = state
        .db
        .recent_installations(LIST_LIMIT)
        .await?
        .into_iter()
        .map(|i| {
            json!({"tenant_id": i.tenant_id, "plugin_id": i.plugin_id, "plugin_unique_identifier": i.plugin_unique_identifier,
                        "runtime_type": i.runtime_type, "source": i.source, "created_at": i.created_at})
        })
        .collect();
    let tasks: Vec<Value> = state
        .db
        .recent_tasks(LIST_LIMIT)
        .await?
        .into_iter()
        .map(|t| {
            json!({"id": t.id, "tenant_id": t.tenant_id, "status": t.status, "created_at": t.created_at,
                        "plugins": t.plugins.iter().map(|p| json!({"plugin_unique_identifier": p.plugin_unique_identifier,
                            "status": p.status, "message": p.message})).collect::<Vec<_>>()})
        })
        .collect();
    Ok(json!({
        "node": {"id": &*state.node_id, "platform": settings.platform().as_str(), "version": env!("CARGO_PKG_VERSION")},
        "database": database,
        "storage": format!("{} {}", settings.plugin_storage_type, settings.plugin_storage_local_root),
        "redis": if settings.redis_use_sentinel {
            Some(format!("sentinel {} via {}", settings.redis_sentinel_service_name.as_deref().unwrap_or_default(),
                settings.redis_sentinels.as_deref().unwrap_or_default()))
        } else {
            settings.redis_host.as_deref().map(|h| format!("{h}:{}", settings.redis_port))
        },
        "requests_in_flight": state.active_requests.load(std::sync::atomic::Ordering::Relaxed),
        "invocations_in_flight": state.active_dispatch_requests.load(std::sync::atomic::Ordering::Relaxed),
        // The plugin isolation layers, as `/health/check` reports them.
        "sandbox": state.runtime.config().sandbox.report(),
        "runtimes": runtimes,
        "installations": installations,
        "tasks": tasks,
        "invocations_last_hour": crate::runtime::stats::last_hour().into_iter()
            .map(|(plugin, minutes)| json!({"plugin_id": plugin, "minutes": minutes.iter().map(|(calls, errors)| json!([calls, errors])).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
    }))
}
