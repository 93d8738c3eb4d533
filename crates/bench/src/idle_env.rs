//! Section 8: many installed plugins on one node. Memory of SDK plugins stopped while idle
//! (`PLUGIN_IDLE_TIMEOUT`) against the same plugins running; disk per plugin with shared environments
//! against `PLUGIN_SHARED_ENVIRONMENTS=false`; an offline install from `PLUGIN_WHEELS_DIR` with an
//! empty uv cache against uv doing the same install alone; and a node with many installed plugins
//! across tenants of which a few are in use, daemon plus plugin processes.
//!
//! Owns: those rows only. Must not: measure anything the other sections measure.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::daemon::{rss_mib, Daemon, DaemonOptions, Tools};
use crate::invoke::{Invoker, ThroughDaemon, ToolRef};
use crate::load::timed_once;
use crate::packages;
use crate::report::{Row, Target};
use crate::Plan;

const TENANT: &str = "6f3c2a1e-0000-4000-8000-000000000008";
const MIB: f64 = 1024.0 * 1024.0;

fn rows(plan: &Plan) -> Vec<Row> {
    let n = plugin_count(plan);
    let (installed, tenants, in_use) = scale(plan);
    vec![
        Row::new(
            "8.1",
            format!("daemon + plugin RSS, {n} SDK plugins idle-stopped"),
            "MiB",
            "the same daemon with the same plugins running",
            Target::RatioAtMost(0.5),
        ),
        Row::new(
            "8.2",
            format!("disk per SDK plugin, {n} installed, shared environment: apparent bytes"),
            "MiB",
            "the same with `PLUGIN_SHARED_ENVIRONMENTS=false`",
            Target::RatioAtMost(0.5),
        ),
        Row::new(
            "8.3",
            format!("disk per SDK plugin, {n} installed, shared environment: blocks of distinct files"),
            "MiB",
            "the same with `PLUGIN_SHARED_ENVIRONMENTS=false` (uv hard-links files from its cache)",
            Target::None,
        ),
        Row::new(
            "8.4",
            "install SDK plugin offline from `PLUGIN_WHEELS_DIR`, empty uv cache: upload → first invocation",
            "s",
            "`uv venv` + `uv pip install --offline --find-links` alone, empty cache",
            Target::None,
        ),
        Row::new(
            "8.5",
            format!("daemon + plugin RSS, {installed} SDK plugins installed across {tenants} tenants, {in_use} in use"),
            "MiB",
            "the same daemon before any plugin was used",
            Target::ValueAtMost(2048.0),
        ),
    ]
}

fn plugin_count(plan: &Plan) -> usize {
    if plan.smoke {
        3
    } else {
        10
    }
}

/// Installed plugins, tenants and plugins in use of row 8.5.
fn scale(plan: &Plan) -> (usize, usize, usize) {
    if plan.smoke {
        (40, 4, 4)
    } else {
        (1000, 100, 20)
    }
}

/// The section's rows, each FAILED with the reason when it could not be measured.
pub async fn section(tools: &Tools, plan: &Plan) -> Vec<Row> {
    let mut rows = rows(plan);
    let outcomes = [
        memory_and_disk(tools, plan, &mut rows[0..3]).await,
        offline_install(tools, &mut rows[3]).await,
        many_installed(tools, plan, &mut rows[4]).await,
    ];
    let spans = [0..3, 3..4, 4..5];
    for (outcome, span) in outcomes.into_iter().zip(spans) {
        if let Err(error) = outcome {
            let message = format!("{error:#}");
            for row in rows[span].iter_mut() {
                if row.daemon.is_err() {
                    row.daemon = Err(message.clone());
                }
                if row.baseline.is_err() {
                    row.baseline = Err(message.clone());
                }
            }
        }
    }
    rows
}

fn log(message: impl AsRef<str>) {
    eprintln!("bench: 8: {}", message.as_ref());
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn invoker(daemon: &Daemon, tenant: &str, name: &str) -> Invoker {
    let tool = ToolRef { plugin_id: format!("testing/{name}"), provider: "runtime_tools".into(), tool: "exercise".into() };
    Invoker::Daemon(ThroughDaemon::new(daemon, tenant, tool))
}

async fn echo(invoker: &Invoker) -> Result<()> {
    timed_once(invoker, &json!({"mode": "echo", "text": "hi"}), Duration::from_secs(300)).await.map(|_| ())
}

/// Installs `names` (copies of the SDK test plugin) for `tenant`.
async fn install(daemon: &Daemon, tenant: &str, names: &[String]) -> Result<()> {
    let mut identifiers = Vec::new();
    for name in names {
        identifiers.push(daemon.upload(tenant, &packages::runtime_tools_package(name)?).await?);
    }
    for chunk in identifiers.chunks(64) {
        daemon.install(tenant, chunk, Duration::from_secs(1800)).await.with_context(|| daemon.log_tail())?;
    }
    Ok(())
}

/// RSS of the daemon and every process below it, MiB.
fn tree_rss_mib(daemon: &Daemon) -> Result<f64> {
    let root = daemon.pid().ok_or_else(|| anyhow!("daemon not running"))?;
    let mut total = 0.0;
    for pid in descendants(root) {
        // A process may exit between the listing and the read.
        total += rss_mib(pid).unwrap_or(0.0);
    }
    Ok(total + rss_mib(root)?)
}

fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            Some((pid, after.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    found.remove(0);
    found
}

/// Statuses of this node's runtimes from `/status.json`.
async fn statuses(daemon: &Daemon) -> Result<Vec<String>> {
    let response = daemon.client.get(daemon.url("/status.json")).header("X-Api-Key", crate::daemon::SERVER_KEY).send().await?;
    let report: serde_json::Value = response.json().await?;
    Ok(report["data"]["runtimes"]
        .as_array()
        .map(|rows| rows.iter().map(|r| r["status"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default())
}

/// `(apparent bytes, blocks of distinct inodes)` under `dir`, symbolic links not followed.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut apparent, mut blocks) = (0u64, 0u64);
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        apparent += meta.len();
        if seen.insert((meta.dev(), meta.ino())) {
            blocks += meta.blocks() * 512;
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
    }
    (apparent, blocks)
}

/// Rows 8.1–8.3.
async fn memory_and_disk(tools: &Tools, plan: &Plan, rows: &mut [Row]) -> Result<()> {
    let n = plugin_count(plan);
    let names: Vec<String> = (0..n).map(|i| format!("idle_probe_{i}")).collect();
    log(format!("installing {n} SDK plugins with shared environments"));
    let idle_seconds = 20;
    let daemon =
        Daemon::start(tools, DaemonOptions { env: env(&[("PLUGIN_IDLE_TIMEOUT", &idle_seconds.to_string())]), ..Default::default() })
            .await?;
    install(&daemon, TENANT, &names).await?;
    let (apparent, blocks) = disk_usage(&daemon.workdir.join("cwd"));
    rows[1].daemon = Ok(apparent as f64 / n as f64 / MIB);
    rows[2].daemon = Ok(blocks as f64 / n as f64 / MIB);

    // All running: each answers (an idle-stopped one starts again), then measure at once.
    let invokers: Vec<Invoker> = names.iter().map(|name| invoker(&daemon, TENANT, name)).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        for invoker in &invokers {
            echo(invoker).await?;
        }
        let states = statuses(&daemon).await?;
        if states.len() == n && states.iter().all(|s| s == "running") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the plugins were never all running at once: {states:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    rows[0].baseline = tree_rss_mib(&daemon).map_err(|e| format!("{e:#}"));
    log("waiting for the idle stop");
    let deadline = Instant::now() + Duration::from_secs(idle_seconds + 120);
    loop {
        let states = statuses(&daemon).await?;
        if states.len() == n && states.iter().all(|s| s == "idle-stopped") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the plugins were not idle-stopped: {states:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rows[0].daemon = tree_rss_mib(&daemon).map_err(|e| format!("{e:#}"));
    drop(daemon);

    log(format!("installing {n} SDK plugins without shared environments"));
    let unshared =
        Daemon::start(tools, DaemonOptions { env: env(&[("PLUGIN_SHARED_ENVIRONMENTS", "false")]), ..Default::default() }).await?;
    install(&unshared, TENANT, &names).await?;
    let (apparent, blocks) = disk_usage(&unshared.workdir.join("cwd"));
    rows[1].baseline = Ok(apparent as f64 / n as f64 / MIB);
    rows[2].baseline = Ok(blocks as f64 / n as f64 / MIB);
    Ok(())
}

/// The SDK test plugin's requirements as wheels, downloaded with the interpreter's pip.
fn download_wheels(tools: &Tools, into: &Path) -> Result<()> {
    let output = std::process::Command::new(&tools.python)
        .args(["-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(into)
        .arg("-r")
        .arg(packages::runtime_tools_dir().join("requirements.txt"))
        .output()
        .context("run pip download")?;
    if !output.status.success() {
        bail!("pip download failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Row 8.4.
async fn offline_install(tools: &Tools, row: &mut Row) -> Result<()> {
    log("downloading wheels for the offline install");
    let scratch = tempfile::Builder::new().prefix("bench-offline-").tempdir()?;
    let wheels = scratch.path().join("wheels");
    download_wheels(tools, &wheels)?;
    let wheels_text = wheels.display().to_string();

    let cache = scratch.path().join("daemon-cache");
    let cache_text = cache.display().to_string();
    let daemon = Daemon::start(
        tools,
        DaemonOptions {
            env: env(&[
                ("PLUGIN_WHEELS_DIR", &wheels_text),
                ("PLUGIN_INSTALL_OFFLINE", "true"),
                ("PIP_MIRROR_URL", "http://127.0.0.1:9/"),
                ("UV_CACHE_DIR", &cache_text),
            ]),
            ..Default::default()
        },
    )
    .await?;
    let started = Instant::now();
    install(&daemon, TENANT, &["offline_probe".to_string()]).await?;
    echo(&invoker(&daemon, TENANT, "offline_probe")).await?;
    row.daemon = Ok(started.elapsed().as_secs_f64());

    let alone = scratch.path().join("alone");
    std::fs::create_dir_all(&alone)?;
    packages::copy_runtime_tools(&alone)?;
    let started = Instant::now();
    let uv_env = [("UV_CACHE_DIR", scratch.path().join("alone-cache").display().to_string())];
    run(&tools.uv, &alone, &["venv", ".venv", "--python", &tools.python.display().to_string()], &uv_env).await?;
    run(&tools.uv, &alone, &["pip", "install", "--offline", "--find-links", &wheels_text, "-r", "requirements.txt"], &uv_env).await?;
    row.baseline = Ok(started.elapsed().as_secs_f64());
    Ok(())
}

async fn run(program: &Path, cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Result<()> {
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("VIRTUAL_ENV", cwd.join(".venv"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("{} timed out", program.display()))??;
    if !output.status.success() {
        bail!("{} {args:?} failed: {}", program.display(), String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Row 8.5: many installed plugins, a few in use. The installs record the plugins without starting
/// them (`DIFY_TEST_SKIP_RUNTIME_PREPARATION`, as with idle stop they would be stopped again anyway);
/// the plugins in use are launched by their first invocation and share one environment.
async fn many_installed(tools: &Tools, plan: &Plan, row: &mut Row) -> Result<()> {
    let (installed, tenants, in_use) = scale(plan);
    let per_tenant = installed / tenants;
    log(format!("installing {installed} plugins across {tenants} tenants"));
    let daemon = Daemon::start(tools, DaemonOptions { skip_runtime: true, ..Default::default() }).await?;
    let tenant = |t: usize| format!("8a000000-0000-4000-8000-{t:012}");
    for t in 0..tenants {
        let names: Vec<String> = (0..per_tenant).map(|i| format!("many_{t}_{i}")).collect();
        install(&daemon, &tenant(t), &names).await?;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    row.baseline = tree_rss_mib(&daemon).map_err(|e| format!("{e:#}"));
    log(format!("using {in_use} of them"));
    for k in 0..in_use {
        let t = k % tenants;
        let i = (k / tenants) % per_tenant;
        echo(&invoker(&daemon, &tenant(t), &format!("many_{t}_{i}"))).await.with_context(|| daemon.log_tail())?;
    }
    let envs = std::fs::read_dir(daemon.workdir.join("cwd/.envs")).map(|d| d.count()).unwrap_or(0);
    if envs != 1 {
        bail!("expected one shared environment, found {envs}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    row.daemon = tree_rss_mib(&daemon).map_err(|e| format!("{e:#}"));
    Ok(())
}
