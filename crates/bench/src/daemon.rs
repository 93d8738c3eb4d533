//! Starting the real `dify-plugin-daemon` binary for a measurement: a scratch working directory, a
//! free port, a chosen database (SQLite file or a fresh PostgreSQL database), bounded waits for
//! health and install tasks, and its RSS read from `/proc`. The process is killed on drop.
//!
//! Owns: the daemon's process and scratch state. Must not: measure or judge anything.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

pub const SERVER_KEY: &str = "bench-server-key-0123456789";
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh PostgreSQL database for one daemon, dropped by [`PostgresDb::drop_now`].
pub struct PostgresDb {
    pub name: String,
}

impl PostgresDb {
    pub async fn create() -> Result<Self> {
        sqlx::any::install_default_drivers();
        let name = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let pool =
            tokio::time::timeout(Duration::from_secs(10), sqlx::any::AnyPoolOptions::new().max_connections(1).connect(POSTGRES_ADMIN_URL))
                .await
                .map_err(|_| anyhow!("connecting to {POSTGRES_ADMIN_URL} timed out"))?
                .with_context(|| format!("connecting to {POSTGRES_ADMIN_URL}"))?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&pool).await.context("CREATE DATABASE")?;
        pool.close().await;
        Ok(Self { name })
    }

    pub async fn drop_now(self) {
        if let Ok(Ok(pool)) =
            tokio::time::timeout(Duration::from_secs(10), sqlx::any::AnyPoolOptions::new().max_connections(1).connect(POSTGRES_ADMIN_URL))
                .await
        {
            let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = tokio::time::timeout(Duration::from_secs(30), sqlx::query(&statement).execute(&pool)).await;
            pool.close().await;
        }
    }
}

/// Paths of the programs a run needs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub daemon: PathBuf,
    pub native_plugin: PathBuf,
    pub uv: PathBuf,
    pub python: PathBuf,
    pub uv_cache: PathBuf,
}

/// How to start one daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub postgres_database: Option<String>,
    /// Install without launching runtimes (state-at-scale rows only).
    pub skip_runtime: bool,
    pub env: Vec<(String, String)>,
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub base: String,
    pub workdir: PathBuf,
    _scratch: tempfile::TempDir,
    pub client: reqwest::Client,
    pub debug_port: u16,
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Daemon {
    pub async fn start(tools: &Tools, options: DaemonOptions) -> Result<Daemon> {
        let scratch = tempfile::Builder::new().prefix("bench-daemon-").tempdir().context("scratch dir")?;
        let workdir = scratch.path().to_path_buf();
        let port = free_port()?;
        let debug_port = free_port()?;
        let mut command = Command::new(&tools.daemon);
        command.current_dir(&workdir).env_clear();
        for name in ["PATH", "HOME", "TMPDIR", "SSL_CERT_FILE"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", port.to_string())
            .env("SERVER_KEY", SERVER_KEY)
            .env("LOG_LEVEL", "warn")
            .env("FORCE_VERIFYING_SIGNATURE", "false")
            .env("UV_PATH", &tools.uv)
            .env("UV_CACHE_DIR", &tools.uv_cache)
            .env("PYTHON_INTERPRETER_PATH", &tools.python)
            .env("PLUGIN_REMOTE_INSTALLING_HOST", "127.0.0.1")
            .env("PLUGIN_REMOTE_INSTALLING_PORT", debug_port.to_string())
            .env("PLUGIN_MAX_EXECUTION_TIMEOUT", "600")
            // The native plugin's package execs this binary, outside the plugin's own directory.
            .env("PLUGIN_SANDBOX_READ_PATHS", &tools.native_plugin);
        match &options.postgres_database {
            Some(name) => {
                command
                    .env("DB_TYPE", "postgresql")
                    .env("DB_HOST", "127.0.0.1")
                    .env("DB_PORT", "5432")
                    .env("DB_USERNAME", "postgres")
                    .env("DB_PASSWORD", "")
                    .env("DB_DATABASE", name);
            }
            None => {
                command.env("DB_TYPE", "sqlite").env("DB_SQLITE_PATH", "daemon.db");
            }
        }
        if options.skip_runtime {
            command.env("DIFY_TEST_SKIP_RUNTIME_PREPARATION", "true");
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let log = std::fs::File::create(workdir.join("daemon.log")).context("daemon log")?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = command.spawn().with_context(|| format!("spawn {}", tools.daemon.display()))?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(900))
            .build()?;
        let mut daemon =
            Daemon { child: Some(child), base: format!("http://127.0.0.1:{port}"), workdir, _scratch: scratch, client, debug_port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(|c| c.try_wait()) {
                bail!("daemon exited during start-up ({status}): {}", daemon.log_tail());
            }
            let probe = daemon.client.get(daemon.url("/health/check")).timeout(Duration::from_secs(2)).send().await;
            if matches!(probe, Ok(ref r) if r.status().is_success()) {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                bail!("daemon not healthy within 60 s: {}", daemon.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The last 2 KiB of the daemon's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.workdir.join("daemon.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2048);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Resident set size of the daemon process, MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        rss_mib(self.pid().ok_or_else(|| anyhow!("daemon not running"))?)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self.client.get(self.url(path)).header("X-Api-Key", SERVER_KEY).send().await?;
        envelope(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self.client.post(self.url(path)).header("X-Api-Key", SERVER_KEY).json(body).send().await?;
        envelope(response).await
    }

    /// Uploads a package; returns its unique identifier.
    pub async fn upload(&self, tenant: &str, package: &[u8]) -> Result<String> {
        let part = reqwest::multipart::Part::bytes(package.to_vec()).file_name("dify_pkg").mime_str("application/octet-stream")?;
        let form = reqwest::multipart::Form::new().part("dify_pkg", part).text("verify_signature", "false");
        let response = self
            .client
            .post(self.url(&format!("/plugin/{tenant}/management/install/upload/package")))
            .header("X-Api-Key", SERVER_KEY)
            .multipart(form)
            .send()
            .await?;
        let data = envelope(response).await?;
        data["unique_identifier"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("upload answered without unique_identifier: {data}"))
    }

    /// Installs uploaded identifiers (≤ 64) for a tenant and waits for the task to succeed.
    pub async fn install(&self, tenant: &str, identifiers: &[String], within: Duration) -> Result<()> {
        let metas: Vec<Value> = identifiers.iter().map(|_| json!({})).collect();
        let data = self
            .post(
                &format!("/plugin/{tenant}/management/install/identifiers"),
                &json!({"plugin_unique_identifiers": identifiers, "source": "package", "metas": metas}),
            )
            .await?;
        if data["all_installed"] == Value::Bool(true) {
            return Ok(());
        }
        let task = data["task_id"].as_str().ok_or_else(|| anyhow!("install answered without task_id: {data}"))?.to_string();
        let deadline = Instant::now() + within;
        loop {
            let task_data = self.get(&format!("/plugin/{tenant}/management/install/tasks/{task}")).await?;
            match task_data["status"].as_str() {
                Some("success") => return Ok(()),
                Some("failed") => bail!("install task failed: {task_data}"),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("install task not finished within {within:?}: {task_data}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A tenant's debugging key.
    pub async fn debugging_key(&self, tenant: &str) -> Result<String> {
        let data = self.post(&format!("/plugin/{tenant}/debugging/key"), &json!({})).await?;
        data["key"].as_str().map(str::to_string).ok_or_else(|| anyhow!("debugging/key answered without key: {data}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a `{code, message, data}` envelope; a non-zero code is an error.
pub async fn envelope(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    let body: Value = serde_json::from_str(&text).map_err(|_| anyhow!("HTTP {status}: not JSON: {text}"))?;
    if body["code"] != json!(0) {
        bail!("HTTP {status}: {body}");
    }
    Ok(body["data"].clone())
}

/// `VmRSS` of a process, MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let kib: f64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("bad VmRSS line {line}"))?;
    Ok(kib / 1024.0)
}

/// CPU time a process has used so far, seconds. Nanosecond-precise where the kernel keeps
/// scheduler statistics: the sum over the process's threads of the run time in
/// `/proc/<pid>/task/<tid>/schedstat` (a thread that exits is no longer counted, so only a
/// difference over a window in which no busy thread exits is meaningful; the plugins' threads and
/// the daemon's runtime workers live as long as the process). Otherwise `utime` + `stime` of
/// `/proc/<pid>/stat`, in clock ticks (10 ms each, too coarse for a short window).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    match scheduled_seconds(pid) {
        Some(seconds) => Ok(seconds),
        None => tick_seconds(pid),
    }
}

/// The sum of the first field (nanoseconds on a CPU) of every thread's `schedstat`.
fn scheduled_seconds(pid: u32) -> Option<f64> {
    let mut nanoseconds: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread that ended between the listing and the read counts as nothing.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        nanoseconds += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    (nanoseconds > 0).then_some(nanoseconds as f64 / 1e9)
}

fn tick_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are plain.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |index: usize| fields.get(index - 3).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| anyhow!("bad /proc/{pid}/stat"));
    let total = ticks(14)? + ticks(15)?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok(total as f64 / per_second as f64)
}
