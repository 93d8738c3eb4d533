//! The six measured sections, in the order that keeps them independent: memory on a fresh daemon,
//! then SDK-plugin overhead, the daemon's ceiling with the native plugin, streaming, open-stream
//! memory and install time on one daemon, then state at scale on SQLite and PostgreSQL daemons.
//! Through-daemon and baseline batches alternate so machine noise hits both sides alike.
//!
//! Owns: what each row measures and which baseline it is compared with. Must not: drop a row —
//! a section that cannot run marks all of its rows FAILED with the reason.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::daemon::{Daemon, DaemonOptions, PostgresDb, Tools, SERVER_KEY};
use crate::invoke::{DirectPlugin, Invoker, Outcome, ThroughDaemon, ToolRef};
use crate::load::{closed_loop, timed_once};
use crate::memory::BaselineServer;
use crate::packages::{self, NATIVE_AUTHOR, NATIVE_PROVIDER, NATIVE_TOOL};
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::Plan;

const TENANT: &str = "6f3c2a1e-0000-4000-8000-000000000001";
const MIB: f64 = 1024.0 * 1024.0;

/// Marks every row that has no figure yet as failed with `error`.
pub(crate) fn fail_rest(rows: &mut [Row], error: &anyhow::Error) {
    let message = format!("{error:#}");
    for row in rows.iter_mut() {
        if row.daemon.is_err() && row.baseline.is_err() {
            row.daemon = Err(message.clone());
            row.baseline = Err(message.clone());
        } else if row.daemon.is_err() {
            row.daemon = Err(message.clone());
        } else if row.baseline.is_err() {
            row.baseline = Err(message.clone());
        }
    }
}

pub(crate) fn log(message: impl AsRef<str>) {
    eprintln!("bench: {}", message.as_ref());
}

pub async fn run_all(tools: &Tools, plan: &Plan, only: &[String]) -> Vec<Row> {
    raise_open_file_limit();
    let want = |section: &str| only.is_empty() || only.iter().any(|s| s == section);
    let mut rows = Vec::new();
    if want("5") {
        rows.extend(memory_section(tools, plan).await);
    }
    if want("1") || want("2") || want("3") || want("4") {
        rows.extend(main_daemon_sections(tools, plan, &want).await);
    }
    if want("6") {
        rows.extend(scale_section(tools, plan, false).await);
        rows.extend(scale_section(tools, plan, true).await);
    }
    if want("7") {
        rows.extend(crate::sandbox::section(tools, plan).await);
    }
    if want("8") {
        rows.extend(crate::idle_env::section(tools, plan).await);
    }
    if want("9") {
        rows.extend(crate::cluster::section(tools, plan).await);
    }
    if want("10") {
        rows.extend(crate::fork_start::section(tools, plan).await);
    }
    rows.sort_by_key(|row| natural_key(&row.id));
    rows
}

fn natural_key(id: &str) -> Vec<(u64, String)> {
    id.split('.').map(|part| (part.parse().unwrap_or(u64::MAX), part.to_string())).collect()
}

fn raise_open_file_limit() {
    // SAFETY: plain libc calls on a local struct; children (daemon, plugins) inherit the limit.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

// ------------------------------------------------------------------------------------------- 5

async fn memory_section(tools: &Tools, plan: &Plan) -> Vec<Row> {
    let mut rows = vec![
        Row::new("5.1", "daemon RSS, idle (fresh, SQLite)", "MiB", "idle tokio+axum hello server", Target::ValueAtMost(30.0)),
        Row::new(
            "5.2",
            format!("daemon RSS with {} running plugins installed", plan.memory_plugins),
            "MiB",
            "same daemon idle before installing",
            Target::None,
        ),
        Row::new(
            "5.3",
            format!("daemon memory per open stream ({} held)", plan.memory_streams),
            "KiB",
            "hello server holding as many streaming responses",
            Target::None,
        ),
    ];
    if let Err(error) = memory_measure(tools, plan, &mut rows).await {
        fail_rest(&mut rows, &error);
    }
    rows
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn memory_measure(tools: &Tools, plan: &Plan, rows: &mut [Row]) -> Result<()> {
    log("memory: fresh daemon idle");
    let baseline = BaselineServer::start().await?;
    let daemon = Daemon::start(tools, DaemonOptions::default()).await?;
    settle().await;
    let idle = daemon.rss_mib()?;
    rows[0].daemon = Ok(idle);
    rows[0].baseline = baseline.rss_mib().map_err(|e| format!("{e:#}"));
    rows[1].baseline = Ok(idle);
    log(format!("memory: installing {} native plugins", plan.memory_plugins));
    let mut identifiers = Vec::new();
    for i in 0..plan.memory_plugins {
        let package = packages::native_package(&format!("native_mem_{i}"), &tools.native_plugin)?;
        identifiers.push(daemon.upload(TENANT, &package).await?);
    }
    for chunk in identifiers.chunks(64) {
        daemon.install(TENANT, chunk, Duration::from_secs(900)).await.with_context(|| daemon.log_tail())?;
    }
    // Each plugin answers once, so all of them are really running.
    for i in 0..plan.memory_plugins {
        let tool =
            ToolRef { plugin_id: format!("{NATIVE_AUTHOR}/native_mem_{i}"), provider: NATIVE_PROVIDER.into(), tool: NATIVE_TOOL.into() };
        let invoker = Invoker::Daemon(ThroughDaemon::new(&daemon, TENANT, tool));
        timed_once(&invoker, &json!({"mode": "echo", "text": "hi"}), Duration::from_secs(120))
            .await
            .with_context(|| format!("plugin {i}"))?;
    }
    settle().await;
    rows[1].daemon = daemon.rss_mib().map_err(|e| format!("{e:#}"));

    log(format!("5: holding {} open streams", plan.memory_streams));
    let hold_ms: u64 = if plan.smoke { 30_000 } else { 120_000 };
    let tool = ToolRef { plugin_id: format!("{NATIVE_AUTHOR}/native_mem_0"), provider: NATIVE_PROVIDER.into(), tool: NATIVE_TOOL.into() };
    let through = ThroughDaemon::new(&daemon, TENANT, tool);
    rows[2].daemon = held_streams_kib(&daemon, &through, plan.memory_streams, hold_ms).await.map_err(|e| format!("{e:#}"));
    rows[2].baseline = held_baseline_kib(&baseline, plan.memory_streams, hold_ms).await.map_err(|e| format!("{e:#}"));
    Ok(())
}

// ----------------------------------------------------------------------------------- 1 2 3 4 5

async fn main_daemon_sections(tools: &Tools, plan: &Plan, want: &dyn Fn(&str) -> bool) -> Vec<Row> {
    let mut rows = Vec::new();
    // Row 4.1 compares a fresh environment build with uv doing the same build: no shared environment
    // (section 8 measures sharing).
    let env = vec![("PLUGIN_SHARED_ENVIRONMENTS".to_string(), "false".to_string())];
    let daemon = match Daemon::start(tools, DaemonOptions { env, ..Default::default() }).await {
        Ok(d) => d,
        Err(error) => {
            let mut all = Vec::new();
            if want("1") {
                all.extend(sdk_rows());
            }
            if want("2") || want("3") {
                all.extend(native_rows(plan));
            }
            if want("4") {
                all.extend(install_rows());
            }
            fail_rest(&mut all, &error);
            return all;
        }
    };
    if want("1") {
        let mut sdk = sdk_rows();
        if let Err(error) = sdk_overhead(tools, plan, &daemon, &mut sdk).await {
            fail_rest(&mut sdk, &error);
        }
        rows.extend(sdk);
    }
    if want("2") || want("3") {
        let mut native = native_rows(plan);
        if let Err(error) = native_sections(tools, plan, &daemon, &mut native).await {
            fail_rest(&mut native, &error);
        }
        rows.extend(native.into_iter().filter(|r| want(&r.id[..1])));
    }
    if want("4") {
        let mut install = install_rows();
        if let Err(error) = install_time(tools, plan, &daemon, &mut install).await {
            fail_rest(&mut install, &error);
        }
        rows.extend(install);
    }
    rows
}

const SDK_LEVELS: [usize; 3] = [1, 16, 64];

fn sdk_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, c) in SDK_LEVELS.iter().enumerate() {
        let base = "SDK plugin driven directly over stdio";
        rows.push(Row::new(
            &format!("1.{}.1", i + 1),
            format!("SDK echo tool, concurrency {c}: p50"),
            "ms",
            base,
            Target::RatioAtMost(1.2),
        ));
        rows.push(Row::new(&format!("1.{}.2", i + 1), format!("SDK echo tool, concurrency {c}: p99"), "ms", base, Target::None));
        rows.push(Row::new(&format!("1.{}.3", i + 1), format!("SDK echo tool, concurrency {c}: throughput"), "inv/s", base, Target::None));
    }
    rows.push(Row::new(
        "1.1.4",
        "SDK echo tool, concurrency 1: daemon CPU per invocation",
        "µs",
        "the SDK plugin's own CPU per invocation, driven directly",
        Target::None,
    ));
    rows
}

fn fill_latency_rows(rows: &mut [Row], daemon: &Samples, direct: &Samples) {
    rows[0].daemon = daemon.percentile_ms(0.5).ok_or_else(|| "no samples".into());
    rows[0].baseline = direct.percentile_ms(0.5).ok_or_else(|| "no samples".into());
    rows[1].daemon = daemon.percentile_ms(0.99).ok_or_else(|| "no samples".into());
    rows[1].baseline = direct.percentile_ms(0.99).ok_or_else(|| "no samples".into());
    rows[2].daemon = daemon.per_second().ok_or_else(|| "no samples".into());
    rows[2].baseline = direct.per_second().ok_or_else(|| "no samples".into());
}

/// Runs `args` with uv's cache and a bounded time; fails with its output.
async fn run_uv(tools: &Tools, cwd: &Path, args: &[&str]) -> Result<()> {
    let mut command = tokio::process::Command::new(&tools.uv);
    command
        .args(args)
        .current_dir(cwd)
        .env("UV_CACHE_DIR", &tools.uv_cache)
        .env("VIRTUAL_ENV", cwd.join(".venv"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .map_err(|_| anyhow!("uv {args:?} did not finish within 600 s"))??;
    if !output.status.success() {
        bail!("uv {args:?} failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// `uv venv` + `uv pip install -r requirements.txt` in `dir`, as the daemon does.
async fn build_venv(tools: &Tools, dir: &Path) -> Result<()> {
    let python = tools.python.to_string_lossy().into_owned();
    run_uv(tools, dir, &["venv", "-q", ".venv", "--python", &python]).await?;
    run_uv(tools, dir, &["pip", "install", "-q", "-r", "requirements.txt"]).await
}

async fn sdk_overhead(tools: &Tools, plan: &Plan, daemon: &Daemon, rows: &mut [Row]) -> Result<()> {
    log("1: installing the SDK test plugin");
    let package = packages::runtime_tools_package("runtime_tools")?;
    let uid = daemon.upload(TENANT, &package).await?;
    daemon.install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| daemon.log_tail())?;
    let tool = ToolRef { plugin_id: "testing/runtime_tools".into(), provider: "runtime_tools".into(), tool: "exercise".into() };
    let through = Invoker::Daemon(ThroughDaemon::new(daemon, TENANT, tool.clone()));

    log("1: preparing the same plugin for direct driving");
    let scratch = tempfile::Builder::new().prefix("bench-sdk-").tempdir()?;
    packages::copy_runtime_tools(scratch.path())?;
    build_venv(tools, scratch.path()).await?;
    let python = scratch.path().join(".venv/bin/python");
    let direct = DirectPlugin::start(&python, &["-m", "main"], scratch.path(), &[("INSTALL_METHOD", "local")], tool).await?;
    let pids = CpuPids { daemon: daemon.pid(), direct: direct.pid() };
    let direct = Invoker::Direct(std::sync::Arc::new(direct));

    let parameters = json!({"mode": "echo", "text": "hello"});
    let limit = Duration::from_secs(600);
    closed_loop(&through, &parameters, 4, 20, limit).await.context("warm-up through daemon")?;
    closed_loop(&direct, &parameters, 4, 20, limit).await.context("warm-up direct")?;
    for (i, c) in SDK_LEVELS.iter().enumerate() {
        let total = plan.sdk_invocations[i];
        log(format!("1: concurrency {c}, {total} invocations each side"));
        let run = alternate((&through, pids.daemon), (&direct, pids.direct), &parameters, *c, total).await?;
        if i == 0 {
            // At concurrency 1 nothing is shared between invocations: the daemon's whole cost of one.
            let last = rows.len() - 1;
            rows[last].daemon = Ok(run.daemon_cpu_us);
            rows[last].baseline = Ok(run.baseline_cpu_us);
        }
        fill_latency_rows(&mut rows[i * 3..i * 3 + 3], &run.daemon, &run.baseline);
    }
    Ok(())
}

pub(crate) fn merge(parts: Vec<Samples>) -> Samples {
    let mut all = Vec::new();
    let mut wall = Duration::ZERO;
    for part in parts {
        wall += part.wall;
        all.extend_from_slice(part.latencies());
    }
    Samples::new(all, wall)
}

const NATIVE_LEVELS: [usize; 2] = [64, 256];

/// How the native plugin reaches the daemon: the debug runtime (it dials the daemon's TCP server)
/// and the local runtime (the daemon starts it and talks over stdio).
const NATIVE_ATTACHMENTS: [&str; 2] = ["debug runtime (TCP)", "local runtime (stdio)"];

fn native_rows(plan: &Plan) -> Vec<Row> {
    let base = "native plugin driven directly over stdio";
    let mut rows = Vec::new();
    for (a, attachment) in NATIVE_ATTACHMENTS.iter().enumerate() {
        for (i, c) in NATIVE_LEVELS.iter().enumerate() {
            let id = format!("2.{}", a * 2 + i + 1);
            let what = format!("native echo via {attachment}, concurrency {c}");
            // On the 2-core machine the bench is made for, 40k invocations/s at concurrency 64.
            let floor = if *c == NATIVE_LEVELS[0] { 40_000.0 } else { 10_000.0 };
            rows.push(Row::new(&format!("{id}.1"), format!("{what}: throughput"), "inv/s", base, Target::ValueAtLeast(floor)));
            rows.push(Row::new(&format!("{id}.2"), format!("{what}: p99"), "ms", base, Target::None));
        }
        rows.push(Row::new(
            &format!("3.{}", a * 2 + 1),
            format!("stream of {} text chunks via {attachment}", plan.stream_chunks),
            "chunks/s",
            base,
            Target::RatioAtLeast(0.9),
        ));
        rows.push(Row::new(
            &format!("3.{}", a * 2 + 2),
            format!("blob of {} MiB (8 KiB blob_chunks) via {attachment}", plan.blob_bytes as f64 / MIB),
            "MiB/s",
            base,
            Target::RatioAtLeast(0.9),
        ));
        rows.push(Row::new(
            &format!("2.{}.3", a * 2 + 1),
            format!("native echo via {attachment}, concurrency {}: daemon CPU per invocation", NATIVE_LEVELS[0]),
            "µs",
            "the native plugin's own CPU per invocation, driven directly",
            Target::None,
        ));
        rows.push(Row::new(
            &format!("3.{}", a + 5),
            format!("blob of {} MiB via {attachment}: daemon CPU per MiB", plan.blob_bytes as f64 / MIB),
            "ms",
            "the native plugin's own CPU per MiB, producing it for a direct reader",
            Target::None,
        ));
        rows.push(Row::new(
            &format!("3.{}", a + 7),
            format!("blob of {} MiB via {attachment}: the bench client's CPU per MiB reading it", plan.blob_bytes as f64 / MIB),
            "ms",
            "the same client's CPU per MiB reading the plugin directly",
            Target::None,
        ));
    }
    rows.extend(ceiling_rows());
    rows
}

/// The HTTP ceiling: the bench's client against a server that does nothing but HTTP.
fn ceiling_rows() -> Vec<Row> {
    let base = "the same client against a minimal axum server answering a fixed SSE event (no plugin)";
    let c = NATIVE_LEVELS[0];
    vec![
        Row::new(
            "2.5.1",
            format!("HTTP ceiling: native echo via local runtime (stdio), concurrency {c}: throughput"),
            "inv/s",
            base,
            Target::None,
        ),
        Row::new(
            "2.5.2",
            format!("HTTP ceiling: native echo via local runtime (stdio), concurrency {c}: server CPU per request"),
            "µs",
            base,
            Target::None,
        ),
        Row::new(
            "2.5.3",
            "HTTP ceiling: native echo via local runtime (stdio), concurrency 1: server CPU per request",
            "µs",
            base,
            Target::None,
        ),
    ]
}

/// Invocations per side at concurrency 1 for row 2.5.3.
const SERIAL_INVOCATIONS: usize = 2000;

/// Rows per attachment in [`native_rows`].
const NATIVE_ROWS_PER_ATTACHMENT: usize = 9;

async fn native_sections(tools: &Tools, plan: &Plan, daemon: &Daemon, rows: &mut [Row]) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("bench-native-").tempdir()?;
    let tool = |plugin_id: String| ToolRef { plugin_id, provider: NATIVE_PROVIDER.into(), tool: NATIVE_TOOL.into() };
    let direct = DirectPlugin::start(&tools.native_plugin, &["stdio"], scratch.path(), &[], tool("direct".into())).await?;
    let direct_pid = direct.pid();
    let direct = Invoker::Direct(std::sync::Arc::new(direct));

    log("2: attaching the native plugin through the debug runtime");
    let (debug_rows, local_rows) = rows.split_at_mut(NATIVE_ROWS_PER_ATTACHMENT);
    let pids = CpuPids { daemon: daemon.pid(), direct: direct_pid };
    match attach_debug(tools, daemon, scratch.path()).await {
        Ok((plugin_id, _process)) => {
            let through = Invoker::Daemon(ThroughDaemon::new(daemon, TENANT, tool(plugin_id)));
            if let Err(error) = measure_native(plan, &through, &direct, pids, debug_rows).await {
                fail_rest(debug_rows, &error);
            }
        }
        Err(error) => fail_rest(debug_rows, &error),
    }

    log("2: installing the native plugin (local runtime)");
    let package = packages::native_package("native_main", &tools.native_plugin)?;
    let uid = daemon.upload(TENANT, &package).await?;
    daemon.install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| daemon.log_tail())?;
    let through = Invoker::Daemon(ThroughDaemon::new(daemon, TENANT, tool(format!("{NATIVE_AUTHOR}/native_main"))));
    let (local_rows, ceiling) = local_rows.split_at_mut(NATIVE_ROWS_PER_ATTACHMENT);
    let measured = measure_native(plan, &through, &direct, pids, local_rows).await;
    if let Err(error) = measure_ceiling(plan, daemon, &through, ceiling).await {
        fail_rest(ceiling, &error);
    }
    measured
}

/// Rows 2.5.x: the daemon at concurrency 64 (local runtime) against the same client driving a
/// minimal HTTP server, in alternating halves; throughput and server CPU per request; then the CPU
/// per request of both at concurrency 1.
async fn measure_ceiling(plan: &Plan, daemon: &Daemon, through: &Invoker, rows: &mut [Row]) -> Result<()> {
    log("2: HTTP ceiling (minimal server, fixed SSE answer)");
    let server = BaselineServer::start().await?;
    let tool = ToolRef { plugin_id: "none".into(), provider: NATIVE_PROVIDER.into(), tool: NATIVE_TOOL.into() };
    let ceiling = Invoker::Daemon(ThroughDaemon::at(daemon.client.clone(), format!("{}/sse", server.base), tool));
    let parameters = json!({"mode": "echo", "text": "hello"});
    let limit = Duration::from_secs(600);
    let c = NATIVE_LEVELS[0];
    let total = plan.native_invocations[0];
    closed_loop(&ceiling, &parameters, c, 2000.min(total), limit).await.context("warm-up minimal server")?;
    let sides = ((through, daemon.pid()), (&ceiling, Some(server.pid())));
    let run = alternate(sides.0, sides.1, &parameters, c, total).await?;
    rows[0].daemon = run.daemon.per_second().ok_or_else(|| "no samples".into());
    rows[0].baseline = run.baseline.per_second().ok_or_else(|| "no samples".into());
    rows[1].daemon = Ok(run.daemon_cpu_us);
    rows[1].baseline = Ok(run.baseline_cpu_us);

    // One request at a time: nothing is shared between requests, so each pays its wake-ups in full.
    let run = alternate(sides.0, sides.1, &parameters, 1, SERIAL_INVOCATIONS.min(total)).await.context("serial")?;
    rows[2].daemon = Ok(run.daemon_cpu_us);
    rows[2].baseline = Ok(run.baseline_cpu_us);
    Ok(())
}

/// Starts the native plugin in remote mode against the daemon's debug server and waits (bounded)
/// until the tenant lists it. Returns its plugin id and the process (killed on drop).
async fn attach_debug(tools: &Tools, daemon: &Daemon, scratch: &Path) -> Result<(String, tokio::process::Child)> {
    let name = "native_debug";
    let key = daemon.debugging_key(TENANT).await.context("POST debugging/key")?;
    let registration = scratch.join("registration.json");
    std::fs::write(&registration, serde_json::to_vec(&packages::native_registration(name)?)?)?;
    let address = format!("127.0.0.1:{}", daemon.debug_port);
    let mut process = tokio::process::Command::new(&tools.native_plugin)
        .arg("remote")
        .arg(&address)
        .arg(&key)
        .arg(&registration)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn native plugin in remote mode")?;
    let plugin_id = format!("{TENANT}/{name}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = process.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            bail!("native plugin left the debug server ({status}): {stderr}; daemon log: {}", daemon.log_tail());
        }
        let list = daemon.get(&format!("/plugin/{TENANT}/management/list?page=1&page_size=256")).await?;
        let listed = list["list"].as_array().is_some_and(|l| l.iter().any(|p| p["plugin_id"] == json!(plugin_id)));
        if listed {
            return Ok((plugin_id, process));
        }
        if Instant::now() > deadline {
            bail!("the debugging plugin was not listed for the tenant within 30 s; daemon log: {}", daemon.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The processes whose CPU time is read around batches: the daemon and the directly driven plugin.
#[derive(Clone, Copy)]
struct CpuPids {
    daemon: Option<u32>,
    direct: Option<u32>,
}

/// CPU seconds `pid` used while `batch` ran, with the batch's result.
async fn with_cpu<T>(pid: Option<u32>, batch: impl std::future::Future<Output = Result<T>>) -> Result<(T, f64)> {
    let pid = pid.ok_or_else(|| anyhow!("process not running"))?;
    let before = crate::daemon::cpu_seconds(pid)?;
    let value = batch.await?;
    Ok((value, crate::daemon::cpu_seconds(pid)? - before))
}

/// One load run against the daemon and against its baseline, in alternating halves (daemon, baseline,
/// daemon, baseline) so noise hits both: each side's samples and its process's CPU per invocation.
struct Alternated {
    daemon: Samples,
    baseline: Samples,
    daemon_cpu_us: f64,
    baseline_cpu_us: f64,
}

/// Runs `total` invocations per side at `concurrency` as [`Alternated`] describes; each side is an
/// invoker and the process whose CPU time is read around its halves.
async fn alternate(
    daemon: (&Invoker, Option<u32>),
    baseline: (&Invoker, Option<u32>),
    parameters: &serde_json::Value,
    concurrency: usize,
    total: usize,
) -> Result<Alternated> {
    let limit = Duration::from_secs(600);
    let (mut d, mut b, mut daemon_cpu, mut baseline_cpu) = (Vec::new(), Vec::new(), 0.0, 0.0);
    for _ in 0..2 {
        let (samples, cpu) = with_cpu(daemon.1, closed_loop(daemon.0, parameters, concurrency, total / 2, limit))
            .await
            .context("through daemon")?;
        d.push(samples);
        daemon_cpu += cpu;
        let (samples, cpu) = with_cpu(baseline.1, closed_loop(baseline.0, parameters, concurrency, total / 2, limit))
            .await
            .context("baseline")?;
        b.push(samples);
        baseline_cpu += cpu;
    }
    let invocations = (total / 2 * 2) as f64;
    Ok(Alternated {
        daemon: merge(d),
        baseline: merge(b),
        daemon_cpu_us: daemon_cpu / invocations * 1e6,
        baseline_cpu_us: baseline_cpu / invocations * 1e6,
    })
}

/// Rows: c64 throughput, c64 p99, c256 throughput, c256 p99, stream, blob, c64 CPU per invocation.
async fn measure_native(plan: &Plan, through: &Invoker, direct: &Invoker, pids: CpuPids, rows: &mut [Row]) -> Result<()> {
    let parameters = json!({"mode": "echo", "text": "hello"});
    let limit = Duration::from_secs(600);
    closed_loop(through, &parameters, 64, 2000.min(plan.native_invocations[0]), limit)
        .await
        .context("warm-up through daemon")?;
    closed_loop(direct, &parameters, 64, 2000.min(plan.native_invocations[0]), limit)
        .await
        .context("warm-up direct")?;
    for (i, c) in NATIVE_LEVELS.iter().enumerate() {
        let total = plan.native_invocations[i];
        log(format!("2: concurrency {c}, {total} invocations each side"));
        let run = alternate((through, pids.daemon), (direct, pids.direct), &parameters, *c, total).await?;
        let (d, b) = (run.daemon, run.baseline);
        if i == 0 {
            rows[6].daemon = Ok(run.daemon_cpu_us);
            rows[6].baseline = Ok(run.baseline_cpu_us);
        }
        rows[i * 2].daemon = d.per_second().ok_or_else(|| "no samples".into());
        rows[i * 2].baseline = b.per_second().ok_or_else(|| "no samples".into());
        rows[i * 2 + 1].daemon = d.percentile_ms(0.99).ok_or_else(|| "no samples".into());
        rows[i * 2 + 1].baseline = b.percentile_ms(0.99).ok_or_else(|| "no samples".into());
    }

    log(format!("3: streaming {} chunks", plan.stream_chunks));
    let stream = json!({"mode": "stream", "count": plan.stream_chunks});
    let expected = plan.stream_chunks;
    let streamed = stream_pairs(through, direct, pids, &stream, limit, |outcome: Outcome| {
        if outcome.items != expected {
            bail!("received {} chunks, expected {expected}", outcome.items);
        }
        Ok(expected as f64)
    })
    .await?;
    rows[4].daemon = Ok(streamed.daemon_rate);
    rows[4].baseline = Ok(streamed.baseline_rate);

    log(format!("3: blob of {} bytes", plan.blob_bytes));
    let blob = json!({"mode": "blob", "count": plan.blob_bytes});
    let expected = plan.blob_bytes;
    let blobs = stream_pairs(through, direct, pids, &blob, limit, |outcome: Outcome| {
        if outcome.blob_bytes != expected {
            bail!("received {} blob bytes, expected {expected}", outcome.blob_bytes);
        }
        Ok(expected as f64 / MIB)
    })
    .await?;
    rows[5].daemon = Ok(blobs.daemon_rate);
    rows[5].baseline = Ok(blobs.baseline_rate);
    let mib = plan.blob_bytes as f64 / MIB;
    rows[7].daemon = Ok(blobs.daemon_cpu_s / mib * 1e3);
    rows[7].baseline = Ok(blobs.baseline_cpu_s / mib * 1e3);
    rows[8].daemon = Ok(blobs.client_cpu_s.0 / mib * 1e3);
    rows[8].baseline = Ok(blobs.client_cpu_s.1 / mib * 1e3);
    Ok(())
}

/// Long streams are timed in this many alternating pairs (daemon, then direct); each side keeps its
/// best, so a moment of noise on a shared machine does not decide a row.
const STREAM_PAIRS: usize = 5;

/// What [`stream_pairs`] measured: the best rate of each side (units per second), the CPU seconds
/// one run took, at the median, of the daemon (through it) and of the plugin (direct), and of the
/// bench's own process reading each side (through the daemon, direct).
struct StreamPairs {
    daemon_rate: f64,
    baseline_rate: f64,
    daemon_cpu_s: f64,
    baseline_cpu_s: f64,
    client_cpu_s: (f64, f64),
}

/// Runs one long stream through the daemon and directly, alternating, [`STREAM_PAIRS`] times;
/// `units` checks a run's outcome and answers what it delivered (chunks, MiB).
async fn stream_pairs(
    through: &Invoker,
    direct: &Invoker,
    pids: CpuPids,
    parameters: &Value,
    limit: Duration,
    units: impl Fn(Outcome) -> Result<f64>,
) -> Result<StreamPairs> {
    let mut rates = (Vec::new(), Vec::new());
    let mut cpu = (Vec::new(), Vec::new());
    let mut client = (Vec::new(), Vec::new());
    let me = Some(std::process::id());
    for _ in 0..STREAM_PAIRS {
        for (side, pid, rate, seconds, own) in [
            (through, pids.daemon, &mut rates.0, &mut cpu.0, &mut client.0),
            (direct, pids.direct, &mut rates.1, &mut cpu.1, &mut client.1),
        ] {
            let (((elapsed, outcome), used), mine) = with_cpu(me, with_cpu(pid, timed_once(side, parameters, limit))).await?;
            rate.push(units(outcome)? / elapsed.as_secs_f64());
            seconds.push(used);
            own.push(mine);
        }
    }
    let best = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Ok(StreamPairs {
        daemon_rate: best(&rates.0),
        baseline_rate: best(&rates.1),
        daemon_cpu_s: median(&mut cpu.0),
        baseline_cpu_s: median(&mut cpu.1),
        client_cpu_s: (median(&mut client.0), median(&mut client.1)),
    })
}

/// Opens `count` streams (each waits for its first chunk), reads the RSS growth, then lets go.
async fn held_streams_kib(daemon: &Daemon, through: &ThroughDaemon, count: usize, hold_ms: u64) -> Result<f64> {
    settle().await;
    let before = daemon.rss_mib()?;
    let mut open = Vec::with_capacity(count);
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for _ in 0..count {
        let through = through.clone();
        pending.push(async move { through.open_stream(&json!({"mode": "hold", "count": hold_ms})).await });
    }
    while let Some(stream) = pending.next().await {
        open.push(stream?);
    }
    if started.elapsed() > Duration::from_millis(hold_ms / 2) {
        bail!("opening {count} streams took {:?}, longer than half the hold time", started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = daemon.rss_mib()?;
    drop(open);
    Ok((held - before) * 1024.0 / count as f64)
}

async fn held_baseline_kib(server: &BaselineServer, count: usize, hold_ms: u64) -> Result<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(2048).build()?;
    settle().await;
    let before = server.rss_mib()?;
    let mut pending = futures::stream::FuturesUnordered::new();
    for _ in 0..count {
        let client = client.clone();
        let url = format!("{}/hold/{hold_ms}", server.base);
        pending.push(async move {
            let response = client.get(url).send().await?;
            let mut body = response.bytes_stream();
            let first = body.next().await.ok_or_else(|| anyhow!("stream ended before its first chunk"))??;
            if first.is_empty() {
                bail!("empty first chunk");
            }
            Ok::<_, anyhow::Error>(body)
        });
    }
    let mut open = Vec::with_capacity(count);
    while let Some(stream) = pending.next().await {
        open.push(stream?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = server.rss_mib()?;
    drop(open);
    Ok((held - before) * 1024.0 / count as f64)
}

fn install_rows() -> Vec<Row> {
    vec![
        Row::new(
            "4.1",
            "install SDK plugin: upload → task success → first invocation (uv cache warm)",
            "s",
            "`uv venv` + `uv pip install -r requirements.txt` alone",
            Target::RatioAtMost(1.3),
        ),
        Row::new(
            "4.2",
            "install SDK plugin: upload → task success → first invocation (uv cache warm)",
            "s",
            "`uv venv` + `uv pip install` + plugin start + first invocation, directly",
            Target::None,
        ),
        Row::new(
            "4.3",
            "install SDK plugin with `PLUGIN_STORAGE_TYPE=aws_s3` (moto's S3 server): upload → task success → first invocation",
            "s",
            "the same with local storage (4.2's daemon figure)",
            Target::None,
        ),
        Row::new(
            "4.4",
            "install SDK plugin with `PLUGIN_STORAGE_TYPE=gcs` (fake-gcs-server): upload → task success → first invocation",
            "s",
            "the same with local storage (4.2's daemon figure)",
            Target::None,
        ),
    ]
}

/// A fake-gcs-server (`DIFY_TEST_FAKE_GCS`) on a free port with one bucket, killed on drop.
struct FakeGcsServer {
    _child: tokio::process::Child,
    _data: tempfile::TempDir,
    host: String,
}

impl FakeGcsServer {
    async fn start() -> Result<FakeGcsServer> {
        let program = std::env::var_os("DIFY_TEST_FAKE_GCS")
            .ok_or_else(|| anyhow!("DIFY_TEST_FAKE_GCS is not set (scripts/test installs fake-gcs-server)"))?;
        let port = crate::daemon::free_port()?.to_string();
        let data = tempfile::Builder::new().prefix("bench-gcs-").tempdir()?;
        let host = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new(program)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port, "-backend", "filesystem", "-log-level", "warn"])
            .args(["-external-url", &format!("http://{host}"), "-public-host", &host])
            .arg("-filesystem-root")
            .arg(data.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start fake-gcs-server")?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(format!("http://{host}/")).timeout(Duration::from_secs(2)).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("fake-gcs-server did not answer within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = client.post(format!("http://{host}/storage/v1/b")).json(&json!({"name": BENCH_BUCKET})).send().await?;
        if !created.status().is_success() {
            bail!("creating the bench bucket failed: {}", created.status());
        }
        Ok(FakeGcsServer { _child: child, _data: data, host })
    }
}

/// Row 4.4: the install of row 4.2 on a daemon whose blob storage is a GCS bucket (emulated).
async fn install_time_gcs(tools: &Tools, plan: &Plan, local: Result<f64, String>, row: &mut Row) -> Result<()> {
    row.baseline = local;
    log("4: install rounds with GCS storage");
    let gcs = FakeGcsServer::start().await?;
    let env = [("PLUGIN_STORAGE_TYPE", "gcs"), ("PLUGIN_STORAGE_OSS_BUCKET", BENCH_BUCKET), ("STORAGE_EMULATOR_HOST", gcs.host.as_str())];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let daemon = Daemon::start(tools, DaemonOptions { env, ..Default::default() }).await?;
    let mut times = install_rounds(plan, &daemon, "install_probe_gcs").await?;
    row.daemon = median(&mut times);
    Ok(())
}

/// A moto S3 server (`DIFY_TEST_MOTO_SERVER`) on a free port with one bucket, killed on drop.
struct MotoServer {
    _child: tokio::process::Child,
    endpoint: String,
}

const BENCH_BUCKET: &str = "bench-plugins";

impl MotoServer {
    async fn start() -> Result<MotoServer> {
        let program = std::env::var_os("DIFY_TEST_MOTO_SERVER")
            .ok_or_else(|| anyhow!("DIFY_TEST_MOTO_SERVER is not set (scripts/test installs moto's S3 server)"))?;
        let port = crate::daemon::free_port()?;
        let child = tokio::process::Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start moto_server")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(&endpoint).timeout(Duration::from_secs(2)).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("moto_server did not answer within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = client.put(format!("{endpoint}/{BENCH_BUCKET}")).send().await?;
        if !created.status().is_success() {
            bail!("creating the bench bucket failed: {}", created.status());
        }
        Ok(MotoServer { _child: child, endpoint })
    }
}

/// Upload → install → first invocation of fresh copies of the SDK test plugin, in seconds.
async fn install_rounds(plan: &Plan, daemon: &Daemon, prefix: &str) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for round in 0..plan.install_repeats {
        let name = format!("{prefix}_{round}");
        let package = packages::runtime_tools_package(&name)?;
        let started = Instant::now();
        let uid = daemon.upload(TENANT, &package).await?;
        daemon.install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| daemon.log_tail())?;
        let tool = ToolRef { plugin_id: format!("testing/{name}"), provider: "runtime_tools".into(), tool: "exercise".into() };
        let invoker = Invoker::Daemon(ThroughDaemon::new(daemon, TENANT, tool));
        timed_once(&invoker, &json!({"mode": "echo", "text": "first"}), Duration::from_secs(300)).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// Row 4.3: the install of row 4.2 on a daemon whose blob storage is an S3 bucket.
async fn install_time_s3(tools: &Tools, plan: &Plan, local: Result<f64, String>, row: &mut Row) -> Result<()> {
    row.baseline = local;
    log("4: install rounds with S3 storage");
    let moto = MotoServer::start().await?;
    let env = [
        ("PLUGIN_STORAGE_TYPE", "aws_s3"),
        ("PLUGIN_STORAGE_OSS_BUCKET", BENCH_BUCKET),
        ("S3_USE_AWS", "false"),
        ("S3_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ACCESS_KEY", "bench"),
        ("AWS_SECRET_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
        ("PLUGIN_SHARED_ENVIRONMENTS", "false"),
    ];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let daemon = Daemon::start(tools, DaemonOptions { env, ..Default::default() }).await?;
    let mut times = install_rounds(plan, &daemon, "install_probe_s3").await?;
    row.daemon = median(&mut times);
    Ok(())
}

async fn install_time(tools: &Tools, plan: &Plan, daemon: &Daemon, rows: &mut [Row]) -> Result<()> {
    let mut through = Vec::new();
    let mut alone = Vec::new();
    let mut alone_started = Vec::new();
    for round in 0..plan.install_repeats {
        log(format!("4: install round {}", round + 1));
        let name = format!("install_probe_{round}");
        let package = packages::runtime_tools_package(&name)?;
        let started = Instant::now();
        let uid = daemon.upload(TENANT, &package).await?;
        daemon.install(TENANT, &[uid], Duration::from_secs(600)).await.with_context(|| daemon.log_tail())?;
        let tool = ToolRef { plugin_id: format!("testing/{name}"), provider: "runtime_tools".into(), tool: "exercise".into() };
        let invoker = Invoker::Daemon(ThroughDaemon::new(daemon, TENANT, tool));
        timed_once(&invoker, &json!({"mode": "echo", "text": "first"}), Duration::from_secs(300)).await?;
        through.push(started.elapsed().as_secs_f64());

        let scratch = tempfile::Builder::new().prefix("bench-uv-").tempdir()?;
        packages::copy_runtime_tools(scratch.path())?;
        let started = Instant::now();
        build_venv(tools, scratch.path()).await?;
        alone.push(started.elapsed().as_secs_f64());
        // The same plugin started by hand until its first answer: what any runner has to pay.
        let python = scratch.path().join(".venv/bin/python");
        let tool = ToolRef { plugin_id: String::new(), provider: "runtime_tools".into(), tool: "exercise".into() };
        let direct = DirectPlugin::start(&python, &["-m", "main"], scratch.path(), &[("INSTALL_METHOD", "local")], tool).await?;
        let direct = Invoker::Direct(std::sync::Arc::new(direct));
        timed_once(&direct, &json!({"mode": "echo", "text": "first"}), Duration::from_secs(300)).await?;
        alone_started.push(started.elapsed().as_secs_f64());
    }
    rows[1].daemon = median(&mut through.clone());
    rows[1].baseline = median(&mut alone_started);
    rows[0].daemon = median(&mut through);
    rows[0].baseline = median(&mut alone);
    if let Err(error) = install_time_s3(tools, plan, rows[1].daemon.clone(), &mut rows[2]).await {
        fail_rest(&mut rows[2..3], &error);
    }
    if let Err(error) = install_time_gcs(tools, plan, rows[1].daemon.clone(), &mut rows[3]).await {
        fail_rest(&mut rows[3..], &error);
    }
    Ok(())
}

fn median(values: &mut [f64]) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no rounds".into());
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Ok(values[values.len() / 2])
}

// ------------------------------------------------------------------------------------------- 6

fn tenant_id(t: usize) -> String {
    format!("7a000000-0000-4000-8000-{t:012}")
}

async fn scale_section(tools: &Tools, plan: &Plan, postgres: bool) -> Vec<Row> {
    let db = if postgres { "PostgreSQL" } else { "SQLite" };
    let key = if postgres { 2 } else { 1 };
    let total = plan.scale_tenants * plan.scale_plugins_per_tenant;
    let base = format!("same request with one tenant of {} installs", plan.scale_plugins_per_tenant);
    let mut rows = Vec::new();
    for (i, what) in ["list (page of 256)", "single lookup (GET management/tool)", "dispatch lookup (tool invoke up to the runtime)"]
        .iter()
        .enumerate()
    {
        let label = format!("{db}, {total} installs / {} tenants: {what}", plan.scale_tenants);
        rows.push(Row::new(&format!("6.{key}.{}", i * 2 + 1), format!("{label} p50"), "ms", base.clone(), Target::None));
        rows.push(Row::new(&format!("6.{key}.{}", i * 2 + 2), format!("{label} p99"), "ms", base.clone(), Target::ValueAtMost(20.0)));
    }
    let database = if postgres {
        match PostgresDb::create().await {
            Ok(db) => Some(db),
            Err(error) => {
                fail_rest(&mut rows, &error.context("PostgreSQL at 127.0.0.1:5432 is required"));
                return rows;
            }
        }
    } else {
        None
    };
    let options = DaemonOptions { postgres_database: database.as_ref().map(|d| d.name.clone()), skip_runtime: true, env: Vec::new() };
    let result = match Daemon::start(tools, options).await {
        Ok(daemon) => scale_measure(&daemon, plan, &mut rows).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        fail_rest(&mut rows, &error);
    }
    if let Some(database) = database {
        database.drop_now().await;
    }
    rows
}

async fn seed_tenant(daemon: &Daemon, plan: &Plan, t: usize) -> Result<()> {
    let tenant = tenant_id(t);
    let mut identifiers = Vec::new();
    for i in 0..plan.scale_plugins_per_tenant {
        identifiers.push(daemon.upload(&tenant, &packages::dummy_package(&format!("s{t}_{i}"))?).await?);
    }
    daemon.install(&tenant, &identifiers, Duration::from_secs(300)).await
}

/// The three lookups against tenant `t`, timed.
async fn lookups(daemon: &Daemon, plan: &Plan, pick: &dyn Fn(usize) -> usize) -> Result<[Samples; 3]> {
    let mut times: [Vec<Duration>; 3] = Default::default();
    let started = Instant::now();
    for n in 0..plan.lookup_samples {
        let t = pick(n);
        let tenant = tenant_id(t);
        let plugin = format!("s{t}_{}", n % plan.scale_plugins_per_tenant);

        let begin = Instant::now();
        let list = daemon.get(&format!("/plugin/{tenant}/management/list?page=1&page_size=256")).await?;
        times[0].push(begin.elapsed());
        let listed = list["list"].as_array().map(Vec::len).unwrap_or(0);
        if listed != plan.scale_plugins_per_tenant {
            bail!("tenant {tenant} lists {listed} plugins, expected {}", plan.scale_plugins_per_tenant);
        }

        let begin = Instant::now();
        let tool = daemon.get(&format!("/plugin/{tenant}/management/tool?plugin_id=test/{plugin}&provider=test")).await?;
        times[1].push(begin.elapsed());
        if tool["plugin_id"] != json!(format!("test/{plugin}")) {
            bail!("tool lookup of test/{plugin} answered {tool}");
        }

        let begin = Instant::now();
        let response = daemon
            .client
            .post(daemon.url(&format!("/plugin/{tenant}/dispatch/tool/invoke")))
            .header("X-Api-Key", SERVER_KEY)
            .header("X-Plugin-ID", format!("test/{plugin}"))
            .json(&json!({"user_id": "u", "data": {"provider": "test", "tool": "test", "credentials": {}, "tool_parameters": {}}}))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        times[2].push(begin.elapsed());
        // Installed without a runtime: the lookup succeeds and the runtime is missing.
        if status != 500 || !text.contains("failed to get plugin runtime") {
            bail!("dispatch lookup of test/{plugin} answered HTTP {status}: {text:.300}");
        }
    }
    let wall = started.elapsed();
    Ok(times.map(|t| Samples::new(t, wall)))
}

async fn scale_measure(daemon: &Daemon, plan: &Plan, rows: &mut [Row]) -> Result<()> {
    log("6: seeding the first tenant");
    seed_tenant(daemon, plan, 0).await?;
    let small = lookups(daemon, plan, &|_| 0).await?;
    log(format!("6: seeding {} more tenants through the HTTP API", plan.scale_tenants - 1));
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for t in 1..plan.scale_tenants {
        pending.push(seed_tenant(daemon, plan, t));
        if pending.len() >= 4 {
            if let Some(result) = pending.next().await {
                result?;
            }
        }
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    log(format!(
        "6: seeded {} installs in {:.1} s",
        (plan.scale_tenants - 1) * plan.scale_plugins_per_tenant,
        started.elapsed().as_secs_f64()
    ));
    let tenants = plan.scale_tenants;
    let large = lookups(daemon, plan, &|n| (n * 37) % tenants).await?;
    for i in 0..3 {
        rows[i * 2].daemon = large[i].percentile_ms(0.5).ok_or_else(|| "no samples".into());
        rows[i * 2].baseline = small[i].percentile_ms(0.5).ok_or_else(|| "no samples".into());
        rows[i * 2 + 1].daemon = large[i].percentile_ms(0.99).ok_or_else(|| "no samples".into());
        rows[i * 2 + 1].baseline = small[i].percentile_ms(0.99).ok_or_else(|| "no samples".into());
    }
    Ok(())
}
