//! Section 7: what plugin isolation costs. Two daemons, one with `PLUGIN_SANDBOX=best_effort` and one
//! with `PLUGIN_SANDBOX=off`, each running the SDK test plugin; the rows compare invocation latency
//! (concurrency 1) and plugin start time (the plugin process killed, time until it answers again,
//! with a 1 ms restart backoff on both sides). Batches alternate between the two daemons.
//!
//! Owns: those rows only. Must not: measure anything the other sections measure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::daemon::{Daemon, DaemonOptions, Tools};
use crate::invoke::{Invoker, ThroughDaemon, ToolRef};
use crate::load::{closed_loop, timed_once};
use crate::packages;
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::Plan;

const TENANT: &str = "6f3c2a1e-0000-4000-8000-000000000007";
const BASELINE: &str = "the same with `PLUGIN_SANDBOX=off`";

fn rows() -> Vec<Row> {
    vec![
        Row::new("7.1", "SDK echo tool, concurrency 1, sandbox on: p50", "ms", BASELINE, Target::RatioAtMost(1.2)),
        Row::new("7.2", "SDK echo tool, concurrency 1, sandbox on: p99", "ms", BASELINE, Target::None),
        Row::new("7.3", "plugin start (process killed → answering again), sandbox on: median", "s", BASELINE, Target::RatioAtMost(1.5)),
    ]
}

/// The section's rows, each FAILED with the reason when it could not be measured.
pub async fn section(tools: &Tools, plan: &Plan) -> Vec<Row> {
    let mut rows = rows();
    if let Err(error) = measure(tools, plan, &mut rows).await {
        let message = format!("{error:#}");
        for row in rows.iter_mut().filter(|r| r.daemon.is_err() || r.baseline.is_err()) {
            row.daemon = Err(message.clone());
            row.baseline = Err(message.clone());
        }
    }
    rows
}

async fn start(tools: &Tools, level: &str) -> Result<(Daemon, Invoker)> {
    // Fork-start off on both sides: it applies only without the sandbox and is measured in section 8.
    let env = vec![
        ("PLUGIN_SANDBOX".to_string(), level.to_string()),
        ("PLUGIN_RESTART_BACKOFF_MS".to_string(), "1".to_string()),
        ("PLUGIN_FORK_START".to_string(), "false".to_string()),
    ];
    let daemon = Daemon::start(tools, DaemonOptions { env, ..Default::default() }).await?;
    let package = packages::runtime_tools_package("runtime_tools")?;
    let uid = daemon.upload(TENANT, &package).await?;
    daemon.install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| daemon.log_tail())?;
    let tool = ToolRef { plugin_id: "testing/runtime_tools".into(), provider: "runtime_tools".into(), tool: "exercise".into() };
    let invoker = Invoker::Daemon(ThroughDaemon::new(&daemon, TENANT, tool));
    Ok((daemon, invoker))
}

async fn measure(tools: &Tools, plan: &Plan, rows: &mut [Row]) -> Result<()> {
    eprintln!("bench: 7: starting daemons with the sandbox on and off");
    let (on_daemon, on) = start(tools, "best_effort").await.context("sandbox on")?;
    let (off_daemon, off) = start(tools, "off").await.context("sandbox off")?;
    // `/health/check` is plain JSON, not an envelope.
    let health: serde_json::Value = on_daemon.client.get(on_daemon.url("/health/check")).send().await?.json().await?;
    eprintln!("bench: 7: sandbox layers: {}", health["sandbox"]);
    let parameters = json!({"mode": "echo", "text": "hello"});
    let limit = Duration::from_secs(600);
    closed_loop(&on, &parameters, 1, 20, limit).await.context("warm-up, sandbox on")?;
    closed_loop(&off, &parameters, 1, 20, limit).await.context("warm-up, sandbox off")?;
    let total = plan.sdk_invocations[0].max(2);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        a.push(closed_loop(&on, &parameters, 1, total / 2, limit).await.context("sandbox on")?);
        b.push(closed_loop(&off, &parameters, 1, total / 2, limit).await.context("sandbox off")?);
    }
    let (a, b) = (merge(a), merge(b));
    rows[0].daemon = a.percentile_ms(0.5).ok_or_else(|| "no samples".into());
    rows[0].baseline = b.percentile_ms(0.5).ok_or_else(|| "no samples".into());
    rows[1].daemon = a.percentile_ms(0.99).ok_or_else(|| "no samples".into());
    rows[1].baseline = b.percentile_ms(0.99).ok_or_else(|| "no samples".into());

    let repeats = if plan.smoke { 1 } else { 5 };
    let (mut on_starts, mut off_starts) = (Vec::new(), Vec::new());
    for round in 0..repeats {
        eprintln!("bench: 7: restart round {}", round + 1);
        on_starts.push(restart_time(&on_daemon, &on, &parameters).await.context("restart, sandbox on")?);
        off_starts.push(restart_time(&off_daemon, &off, &parameters).await.context("restart, sandbox off")?);
    }
    rows[2].daemon = median(&mut on_starts);
    rows[2].baseline = median(&mut off_starts);
    Ok(())
}

fn merge(parts: Vec<Samples>) -> Samples {
    let mut all = Vec::new();
    let mut wall = Duration::ZERO;
    for part in parts {
        all.extend_from_slice(part.latencies());
        wall += part.wall;
    }
    Samples::new(all, wall)
}

fn median(values: &mut [f64]) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no samples".into());
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Ok(values[values.len() / 2])
}

/// Kills the daemon's plugin process and times until an invocation is answered again.
async fn restart_time(daemon: &Daemon, invoker: &Invoker, parameters: &serde_json::Value) -> Result<f64> {
    let daemon_pid = daemon.pid().context("daemon is not running")?;
    let children = children_of(daemon_pid);
    if children.is_empty() {
        bail!("the daemon has no plugin process");
    }
    let started = Instant::now();
    for pid in children {
        // SAFETY: kill(2) with a pid read from /proc and a constant signal.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let deadline = started + Duration::from_secs(180);
    loop {
        if timed_once(invoker, parameters, Duration::from_secs(60)).await.is_ok() {
            return Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("the plugin did not answer within 180 s of being killed: {}", daemon.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Process ids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rfind(')').and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok()))
                == Some(parent)
        })
        .collect()
}
