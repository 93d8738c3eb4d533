//! Section 8: fork-start (`PLUGIN_FORK_START`). Two daemons with `PLUGIN_SANDBOX=off` (fork-start
//! applies only there), one with fork-start on and one with it off, each running the same SDK test
//! plugins. Rows: the cold start of a plugin (its process killed, restart backoff 0, time until an
//! invocation through the daemon is answered again: the supervisor's restart runs the same start
//! path as the launch of a stopped plugin), and the proportional set size (PSS, shared pages split
//! between the processes sharing them) of idle plugins, forked against normally started.
//!
//! Owns: those rows only. Must not: measure anything the other sections measure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::daemon::{Daemon, DaemonOptions, Tools};
use crate::invoke::{Invoker, ThroughDaemon, ToolRef};
use crate::load::timed_once;
use crate::packages;
use crate::report::{Row, Target};
use crate::Plan;

const TENANT: &str = "6f3c2a1e-0000-4000-8000-000000000008";
const BASELINE: &str = "the same with `PLUGIN_FORK_START=false`";

fn rows(plugins: usize) -> Vec<Row> {
    vec![
        Row::new(
            "10.1",
            "plugin cold start (process killed → answering again), fork-start: p50",
            "ms",
            BASELINE,
            Target::ValueAtMost(150.0),
        ),
        Row::new("10.2", "plugin cold start, fork-start: p90", "ms", BASELINE, Target::None),
        Row::new(
            "10.3",
            format!("PSS per idle forked plugin ({plugins} plugins)"),
            "MiB",
            "PSS per idle normally started plugin",
            Target::None,
        ),
        Row::new(
            "10.4",
            format!("PSS per idle forked plugin with the fork server's PSS shared out over the {plugins}"),
            "MiB",
            "PSS per idle normally started plugin",
            Target::RatioAtMost(1.0),
        ),
    ]
}

/// The section's rows, each FAILED with the reason when it could not be measured.
pub async fn section(tools: &Tools, plan: &Plan) -> Vec<Row> {
    let plugins = if plan.smoke { 2 } else { 4 };
    let mut rows = rows(plugins);
    if let Err(error) = measure(tools, plan, plugins, &mut rows).await {
        let message = format!("{error:#}");
        for row in rows.iter_mut().filter(|r| r.daemon.is_err() || r.baseline.is_err()) {
            row.daemon = Err(message.clone());
            row.baseline = Err(message.clone());
        }
    }
    rows
}

struct Side {
    daemon: Daemon,
    invokers: Vec<Invoker>,
}

async fn start(tools: &Tools, fork_start: bool, plugins: usize) -> Result<Side> {
    let env = vec![
        ("PLUGIN_SANDBOX".to_string(), "off".to_string()),
        ("PLUGIN_FORK_START".to_string(), fork_start.to_string()),
        ("PLUGIN_RESTART_BACKOFF_MS".to_string(), "0".to_string()),
        ("PLUGIN_MAX_RESTARTS".to_string(), "1000".to_string()),
    ];
    let daemon = Daemon::start(tools, DaemonOptions { env, ..Default::default() }).await?;
    let mut identifiers = Vec::new();
    let mut invokers = Vec::new();
    for index in 0..plugins {
        let name = format!("fork_bench_{index}");
        let package = packages::runtime_tools_package(&name)?;
        identifiers.push(daemon.upload(TENANT, &package).await?);
        let tool = ToolRef { plugin_id: format!("testing/{name}"), provider: "runtime_tools".into(), tool: "exercise".into() };
        invokers.push(Invoker::Daemon(ThroughDaemon::new(&daemon, TENANT, tool)));
    }
    daemon.install(TENANT, &identifiers, Duration::from_secs(900)).await.with_context(|| daemon.log_tail())?;
    Ok(Side { daemon, invokers })
}

async fn measure(tools: &Tools, plan: &Plan, plugins: usize, rows: &mut [Row]) -> Result<()> {
    eprintln!("bench: 8: starting daemons with fork-start on and off ({plugins} plugins each)");
    let forking = start(tools, true, plugins).await.context("fork-start on")?;
    let normal = start(tools, false, plugins).await.context("fork-start off")?;
    let parameters = json!({"mode": "echo", "text": "hello"});

    // Each plugin of the fork-start daemon was started normally at install (that start also started
    // the fork server); restart each until it runs forked.
    let daemon_pid = forking.daemon.pid().context("daemon is not running")?;
    for (index, invoker) in forking.invokers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            restart_time(&forking.daemon, invoker, &parameters, index).await.context("warm-up, fork-start on")?;
            if plugin_processes(daemon_pid).get(index).is_some_and(|p| p.forked) {
                break;
            }
            if Instant::now() > deadline {
                bail!("plugin {index} was not forked within 300 s: {}", forking.daemon.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    timed_once(&normal.invokers[0], &parameters, Duration::from_secs(60))
        .await
        .context("warm-up, fork-start off")?;

    let rounds = if plan.smoke { 5 } else { 21 };
    let (mut forked, mut spawned) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let index = round % plugins;
        forked.push(
            restart_time(&forking.daemon, &forking.invokers[index], &parameters, index)
                .await
                .context("restart, fork-start on")?,
        );
        spawned.push(
            restart_time(&normal.daemon, &normal.invokers[index], &parameters, index)
                .await
                .context("restart, fork-start off")?,
        );
    }
    rows[0].daemon = percentile(&mut forked, 0.5);
    rows[0].baseline = percentile(&mut spawned, 0.5);
    rows[1].daemon = percentile(&mut forked, 0.9);
    rows[1].baseline = percentile(&mut spawned, 0.9);
    eprintln!("bench: 8: cold starts (ms) forked {forked:?}, normal {spawned:?}");

    // Idle: every plugin answered once since its start, then nothing for a while.
    for side in [&forking, &normal] {
        for invoker in &side.invokers {
            timed_once(invoker, &parameters, Duration::from_secs(60)).await.context("before the idle period")?;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let forked_processes = plugin_processes(daemon_pid);
    if forked_processes.len() != plugins || forked_processes.iter().any(|p| !p.forked) {
        bail!("expected {plugins} forked plugins, found {forked_processes:?}");
    }
    let normal_processes = plugin_processes(normal.daemon.pid().context("daemon is not running")?);
    if normal_processes.len() != plugins || normal_processes.iter().any(|p| p.forked) {
        bail!("expected {plugins} normally started plugins, found {normal_processes:?}");
    }
    let pss = |pids: &[u32]| -> Result<f64> { pids.iter().map(|pid| pss_mib(*pid)).sum() };
    let forked_pss = pss(&forked_processes.iter().map(|p| p.pid).collect::<Vec<_>>())?;
    let mut servers: Vec<u32> = forked_processes.iter().filter_map(|p| p.fork_server).collect();
    servers.sort_unstable();
    servers.dedup();
    let server_pss = pss(&servers)?;
    let normal_pss = pss(&normal_processes.iter().map(|p| p.pid).collect::<Vec<_>>())?;
    let per = plugins as f64;
    eprintln!("bench: 8: PSS forked plugins {forked_pss:.1} MiB + fork servers {server_pss:.1} MiB; normal plugins {normal_pss:.1} MiB");
    rows[2].daemon = Ok(forked_pss / per);
    rows[2].baseline = Ok(normal_pss / per);
    rows[3].daemon = Ok((forked_pss + server_pss) / per);
    rows[3].baseline = Ok(normal_pss / per);
    Ok(())
}

fn percentile(values: &mut [f64], quantile: f64) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no samples".into());
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * quantile).round() as usize;
    Ok(values[index.min(values.len() - 1)])
}

/// Kills plugin `index`'s process and times (ms) until an invocation of it is answered again.
async fn restart_time(daemon: &Daemon, invoker: &Invoker, parameters: &serde_json::Value, index: usize) -> Result<f64> {
    let daemon_pid = daemon.pid().context("daemon is not running")?;
    let Some(process) = plugin_processes(daemon_pid).into_iter().nth(index) else {
        bail!("the daemon has no plugin process {index}: {}", daemon.log_tail());
    };
    let started = Instant::now();
    // SAFETY: kill(2) with a pid read from /proc and a constant signal.
    unsafe {
        libc::kill(process.pid as libc::pid_t, libc::SIGKILL);
    }
    let deadline = started + Duration::from_secs(180);
    loop {
        if timed_once(invoker, parameters, Duration::from_secs(60)).await.is_ok() {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            bail!("the plugin did not answer within 180 s of being killed: {}", daemon.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One plugin process of a daemon.
#[derive(Debug)]
struct PluginProcess {
    pid: u32,
    /// The fork server that forked it, if it was forked.
    fork_server: Option<u32>,
    forked: bool,
}

/// The daemon's plugin processes ordered by working directory (so by plugin name): its children
/// running `python -m <entrypoint>`, and the children of its fork servers (`python -c`).
fn plugin_processes(daemon: u32) -> Vec<PluginProcess> {
    let mut found = Vec::new();
    for child in children_of(daemon) {
        let argv = cmdline(child);
        if argv.iter().any(|a| a == "-m") {
            found.push((cwd(child), PluginProcess { pid: child, fork_server: None, forked: false }));
        } else if argv.iter().any(|a| a == "-c") {
            for grandchild in children_of(child) {
                found.push((cwd(grandchild), PluginProcess { pid: grandchild, fork_server: Some(child), forked: true }));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
        .unwrap_or_default()
}

fn cwd(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.display().to_string()).unwrap_or_default()
}

/// Process ids whose parent is `parent` (zombies excluded).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return false };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            state != Some("Z") && fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// `Pss:` of `/proc/<pid>/smaps_rollup`, MiB.
fn pss_mib(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).with_context(|| format!("/proc/{pid}/smaps_rollup"))?;
    let line = text.lines().find(|l| l.starts_with("Pss:")).with_context(|| format!("no Pss line for {pid}"))?;
    let kib: f64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).with_context(|| format!("bad Pss line {line}"))?;
    Ok(kib / 1024.0)
}
