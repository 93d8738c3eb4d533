//! `cargo run --release -p bench [-- --smoke]`: starts the real daemon binary and real plugins,
//! measures invocation overhead, the daemon's own ceiling, streaming, install time, memory and
//! state at scale, and prints one Markdown table in which every figure stands next to a baseline
//! measured in the same run. Exits non-zero when any row could not be measured.
//!
//! Owns: command line, finding the programs (building them with cargo when run through cargo), the
//! order of the sections. Must not: hide a failed measurement (a failed row is printed as FAILED).

mod cluster;
mod daemon;
mod fork_start;
mod http1;
mod idle_env;
mod invoke;
mod load;
mod memory;
mod packages;
mod report;
mod sandbox;
mod scenarios;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use daemon::Tools;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    /// Invocations per concurrency level for the SDK plugin (1, 16, 64).
    pub sdk_invocations: [usize; 3],
    /// Invocations per concurrency level for the native plugin (64, 256).
    pub native_invocations: [usize; 2],
    pub stream_chunks: u64,
    pub blob_bytes: u64,
    pub install_repeats: usize,
    pub memory_plugins: usize,
    pub memory_streams: usize,
    pub scale_tenants: usize,
    pub scale_plugins_per_tenant: usize,
    pub lookup_samples: usize,
}

impl Plan {
    fn full() -> Self {
        Plan {
            smoke: false,
            sdk_invocations: [2000, 1600, 3200],
            native_invocations: [40_000, 40_000],
            stream_chunks: 100_000,
            blob_bytes: 100 * 1024 * 1024,
            install_repeats: 3,
            memory_plugins: 50,
            memory_streams: 1000,
            scale_tenants: 100,
            scale_plugins_per_tenant: 10,
            lookup_samples: 300,
        }
    }

    fn smoke() -> Self {
        Plan {
            smoke: true,
            sdk_invocations: [10, 32, 64],
            native_invocations: [512, 512],
            stream_chunks: 2_000,
            blob_bytes: 1024 * 1024,
            install_repeats: 1,
            memory_plugins: 3,
            memory_streams: 200,
            scale_tenants: 4,
            scale_plugins_per_tenant: 5,
            lookup_samples: 20,
        }
    }
}

struct Args {
    smoke: bool,
    no_build: bool,
    daemon_bin: Option<PathBuf>,
    only: Vec<String>,
    native_invocations: Option<usize>,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args { smoke: false, no_build: false, daemon_bin: None, only: Vec::new(), native_invocations: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => args.smoke = true,
            "--no-build" => args.no_build = true,
            "--daemon-bin" => args.daemon_bin = Some(it.next().ok_or_else(|| anyhow!("--daemon-bin needs a path"))?.into()),
            "--native-invocations" => {
                let count = it.next().ok_or_else(|| anyhow!("--native-invocations needs a number"))?;
                args.native_invocations = Some(count.parse().with_context(|| format!("--native-invocations {count:?}"))?);
            }
            "--only" => args.only = it.next().ok_or_else(|| anyhow!("--only needs a list"))?.split(',').map(str::to_string).collect(),
            "baseline-http-server" => {
                memory::run_baseline_server(it.next().ok_or_else(|| anyhow!("baseline-http-server needs a port"))?.parse()?)?;
                return Ok(None);
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench [--smoke] [--only 1,2,3,4,5,6,7,8,9,10] [--no-build] [--daemon-bin PATH] [--native-invocations N]\n\n\
                     Runs the daemon benchmark and prints a Markdown table; exits 1 if any row failed.\n\
                     --native-invocations N: invocations per concurrency level in section 2 (a fixed workload for profiling)."
                );
                return Ok(None);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(Some(args))
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return,
        Err(error) => {
            eprintln!("bench: {error:#}");
            std::process::exit(2);
        }
    };
    let tools = match find_tools(&args) {
        Ok(tools) => tools,
        Err(error) => {
            eprintln!("bench: {error:#}");
            std::process::exit(2);
        }
    };
    let mut plan = if args.smoke { Plan::smoke() } else { Plan::full() };
    if let Some(count) = args.native_invocations {
        plan.native_invocations = [count, count];
    }
    // One runtime on one thread: the bench must not take the daemon's cores.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("bench: tokio runtime: {error}");
            std::process::exit(2);
        }
    };
    eprintln!("bench: {} run; daemon {}", if plan.smoke { "smoke" } else { "full" }, tools.daemon.display());
    let started = std::time::Instant::now();
    let rows = runtime.block_on(scenarios::run_all(&tools, &plan, &args.only));
    println!("{}", machine_description());
    println!("{}", own_cpu_use(started.elapsed()));
    println!();
    println!("{}", report::render(&rows));
    if rows.iter().any(|r| !r.complete()) || rows.is_empty() {
        std::process::exit(1);
    }
}

/// `nproc`, CPU model and memory of this machine, one line.
pub fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!(
        "machine: {cpus} CPUs (nproc), {model}, {:.1} GiB memory; the bench, the daemon and the plugins share these CPUs",
        mem_kib / 1024.0 / 1024.0
    )
}

/// CPU time the bench process itself used (user + system) against the run's wall time.
fn own_cpu_use(wall: std::time::Duration) -> String {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    format!(
        "bench process: {cpu:.1} s CPU over {:.1} s wall ({:.0} % of one core, on one tokio thread)",
        wall.as_secs_f64(),
        100.0 * cpu / wall.as_secs_f64().max(1e-9)
    )
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
}

fn find_tools(args: &Args) -> Result<Tools> {
    let exe = std::env::current_exe().context("current_exe")?;
    let bin_dir = exe.parent().ok_or_else(|| anyhow!("bench binary has no directory"))?.to_path_buf();
    let release = bin_dir.file_name().is_some_and(|n| n == "release");
    if let (Some(cargo), false) = (std::env::var_os("CARGO"), args.no_build) {
        let mut command = Command::new(cargo);
        command.args(["build", "-q", "-p", "dify-daemon", "--bin", "dify-plugin-daemon", "-p", "bench", "--bin", "bench-native-plugin"]);
        if release {
            command.arg("--release");
        }
        let status = command.current_dir(packages::workspace_root()).status().context("cargo build")?;
        if !status.success() {
            bail!("building dify-plugin-daemon and bench-native-plugin failed ({status})");
        }
    }
    let daemon = args.daemon_bin.clone().unwrap_or_else(|| bin_dir.join("dify-plugin-daemon"));
    let native_plugin = bin_dir.join("bench-native-plugin");
    for path in [&daemon, &native_plugin] {
        if !path.is_file() {
            bail!("{} not found; build it (cargo build [--release] -p dify-daemon -p bench) or run through cargo", path.display());
        }
    }
    let uv = std::env::var_os("UV_PATH")
        .map(PathBuf::from)
        .or_else(|| find_on_path("uv"))
        .ok_or_else(|| anyhow!("uv not found (set UV_PATH)"))?;
    let python = find_python().ok_or_else(|| anyhow!("no Python >= 3.12 found (set PYTHON_INTERPRETER_PATH)"))?;
    let uv_cache = match std::env::var_os("UV_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let output = Command::new(&uv).args(["cache", "dir"]).output().context("uv cache dir")?;
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    Ok(Tools { daemon, native_plugin, uv, python, uv_cache })
}

fn usable_python(path: &Path) -> bool {
    Command::new(path)
        .args(["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PYTHON_INTERPRETER_PATH") {
        return Some(PathBuf::from(path));
    }
    let mut candidates: Vec<PathBuf> = ["python3.13", "python3.12"].iter().filter_map(|n| find_on_path(n)).collect();
    if let Some(home) = std::env::var_os("HOME") {
        if let Ok(entries) = std::fs::read_dir(PathBuf::from(home).join(".pyenv/versions")) {
            let mut versions: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin/python3")).collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev());
        }
    }
    candidates.into_iter().find(|p| usable_python(p))
}
