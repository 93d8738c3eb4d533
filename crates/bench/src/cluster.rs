//! Section 8, several nodes: three daemons on one PostgreSQL database, one Redis (127.0.0.1:6379, a
//! fresh key prefix) and one shared storage directory, with the native plugin installed once and
//! placed on one node (`PLUGIN_PLACEMENT_REPLICAS=1`):
//! - 9.1 p50 of an invocation through a node that forwards it, against the same through the node
//!   running the plugin;
//! - 9.2 throughput with requests spread over the three nodes, against all requests sent to one;
//! - 9.3 the failover window: under load through the two other nodes, `kill -9` of the node running
//!   the plugin, then the time until requests succeed again, against the registry TTL (3 s).
//!
//! Owns: the cluster's set-up and these three measurements. Must not: judge them (the report does).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::daemon::{Daemon, DaemonOptions, PostgresDb, Tools, SERVER_KEY};
use crate::invoke::{Invoker, ThroughDaemon, ToolRef};
use crate::load::closed_loop;
use crate::packages::{self, NATIVE_AUTHOR, NATIVE_PROVIDER, NATIVE_TOOL};
use crate::report::{Row, Target};
use crate::Plan;

const TENANT: &str = "6f3c2a1e-0000-4000-8000-000000000008";
/// How long a node's registry key lives (the daemon's `coord::NODE_TTL`).
const NODE_TTL_SECS: f64 = 3.0;

fn rows() -> Vec<Row> {
    vec![
        Row::new("9.1", "native echo through a node that forwards: p50", "ms", "same through the node running it", Target::None),
        Row::new(
            "9.2",
            "native echo, concurrency 64, spread over 3 nodes: throughput",
            "inv/s",
            "all sent to the node running it",
            Target::None,
        ),
        Row::new("9.3", "failover window after kill -9 of the serving node", "s", "registry TTL", Target::None),
    ]
}

pub async fn section(tools: &Tools, plan: &Plan) -> Vec<Row> {
    let mut rows = rows();
    let db = match PostgresDb::create().await {
        Ok(db) => db,
        Err(error) => {
            crate::scenarios::fail_rest(&mut rows, &error);
            return rows;
        }
    };
    let prefix = format!("bench_cluster_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    if let Err(error) = measure(tools, plan, &db.name, &prefix, &mut rows).await {
        crate::scenarios::fail_rest(&mut rows, &error);
    }
    db.drop_now().await;
    rows
}

async fn measure(tools: &Tools, plan: &Plan, database: &str, prefix: &str, rows: &mut [Row]) -> Result<()> {
    let storage = tempfile::Builder::new().prefix("bench-cluster-storage-").tempdir()?;
    let env = vec![
        ("REDIS_HOST".to_string(), "127.0.0.1".to_string()),
        ("REDIS_KEY_PREFIX".to_string(), prefix.to_string()),
        ("PLUGIN_PLACEMENT_REPLICAS".to_string(), "1".to_string()),
        // One storage directory for every node stands in for the shared bucket.
        ("PLUGIN_STORAGE_LOCAL_ROOT".to_string(), storage.path().display().to_string()),
    ];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let options = DaemonOptions { postgres_database: Some(database.to_string()), env: env.clone(), ..Default::default() };
        nodes.push(Daemon::start(tools, options).await.context("starting a cluster node")?);
    }
    // Two heartbeats: every node has read the full registry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let package = packages::native_package("native_cluster", &tools.native_plugin)?;
    let uid = nodes[0].upload(TENANT, &package).await?;
    nodes[0].install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| nodes[0].log_tail())?;
    let plugin_id = format!("{NATIVE_AUTHOR}/native_cluster");
    let tool = ToolRef { plugin_id: plugin_id.clone(), provider: NATIVE_PROVIDER.into(), tool: NATIVE_TOOL.into() };
    let parameters = json!({"mode": "echo", "text": "hello"});

    // Which node serves: the others' answers name it in X-Dify-Served-By.
    let mut owner = None;
    for (index, node) in nodes.iter().enumerate() {
        let response = node
            .client
            .post(node.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
            .header("X-Api-Key", SERVER_KEY)
            .header("X-Plugin-ID", &plugin_id)
            .json(&json!({"user_id": "u", "data": {"provider": NATIVE_PROVIDER, "tool": NATIVE_TOOL, "credentials": {},
                "credential_type": "api-key", "tool_parameters": parameters}}))
            .send()
            .await?;
        let forwarded = response.headers().contains_key("x-dify-served-by");
        let _ = response.bytes().await?;
        if !forwarded {
            owner = Some(index);
        }
    }
    let owner = owner.ok_or_else(|| anyhow!("every node forwarded; none serves the plugin"))?;
    let forwarder = (owner + 1) % 3;
    let through = |index: usize| ThroughDaemon::new(&nodes[index], TENANT, tool.clone());
    let local = Invoker::Daemon(through(owner));
    let forwarded = Invoker::Daemon(through(forwarder));
    let limit = Duration::from_secs(600);

    crate::scenarios::log("8: forwarded vs local latency");
    let samples = if plan.smoke { 50 } else { 500 };
    closed_loop(&forwarded, &parameters, 1, samples / 5, limit).await.context("warm-up")?;
    let (mut f, mut l) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        f.push(closed_loop(&forwarded, &parameters, 1, samples / 2, limit).await.context("forwarded")?);
        l.push(closed_loop(&local, &parameters, 1, samples / 2, limit).await.context("local")?);
    }
    let (f, l) = (crate::scenarios::merge(f), crate::scenarios::merge(l));
    rows[0].daemon = f.percentile_ms(0.5).ok_or_else(|| "no samples".into());
    rows[0].baseline = l.percentile_ms(0.5).ok_or_else(|| "no samples".into());

    crate::scenarios::log("8: throughput over 3 nodes vs 1");
    let spread = Invoker::Spread(Arc::new((0..3).map(through).collect()), Arc::new(AtomicUsize::new(0)));
    let total = if plan.smoke { 512 } else { 8000 };
    let (mut s, mut o) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        s.push(closed_loop(&spread, &parameters, 64, total / 2, limit).await.context("spread")?);
        o.push(closed_loop(&local, &parameters, 64, total / 2, limit).await.context("one node")?);
    }
    let (s, o) = (crate::scenarios::merge(s), crate::scenarios::merge(o));
    rows[1].daemon = s.per_second().ok_or_else(|| "no samples".into());
    rows[1].baseline = o.per_second().ok_or_else(|| "no samples".into());

    crate::scenarios::log("8: failover window");
    let survivors = Invoker::Spread(Arc::new((0..3).filter(|i| *i != owner).map(through).collect()), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let last_failure: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (survivors, stop, last_failure, parameters) = (survivors.clone(), stop.clone(), last_failure.clone(), parameters.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if survivors.invoke(&parameters).await.is_err() {
                    *last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    drop(nodes.remove(owner));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    while workers.join_next().await.is_some() {}
    let window = last_failure.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at.saturating_duration_since(killed_at));
    rows[2].daemon = Ok(window.unwrap_or_default().as_secs_f64());
    rows[2].baseline = Ok(NODE_TTL_SECS);
    Ok(())
}
