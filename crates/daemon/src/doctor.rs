//! `dify-plugin-daemon doctor`: checks what the daemon needs before it can start and serve plugins,
//! and prints each check with what to do about a problem.
//!
//! Owns the checks (configuration values and unknown or misspelled variable names, Python ≥ 3.12 and
//! uv for the local runtime, the plugin sandbox layers the host offers, the database, Redis when configured, blob storage, the plugin working
//! directory, free disk) and their report. A failed check is one that would stop start-up or make
//! every plugin install fail; the command then exits with status 1. Warnings do not change the status.
//! Must not: start the server or any plugin. Opening the database runs its migrations, as start-up
//! would; directories start-up would create are created.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{ConfigError, Platform, SandboxLevel, Settings, SETTINGS, WELL_KNOWN_PUBLIC_KEYS};
use crate::runtime::{RuntimeConfig, Toolchain};
use crate::store::Db;

/// Below this much free space a directory check fails.
const DISK_FAIL_BYTES: u64 = 256 * 1024 * 1024;
/// Below this much free space a directory check warns.
const DISK_WARN_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Bound of every external probe (interpreter, uv, Redis).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    /// Blocks start-up (or every plugin install).
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, for a warning or a failure.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check { name, status: Status::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Runs `doctor` against the process environment (after `.env`) and prints the report on stdout.
/// Exit status: 0 when nothing blocks start-up, 1 otherwise.
pub fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let (settings, invalid) = Settings::from_lookup_lenient(&|name| std::env::var(name).ok());
    let names: Vec<String> = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let checks = runtime.block_on(run_checks(&settings, &invalid, &names));
    print!("{}", render(&checks));
    if checks.iter().any(|c| c.status == Status::Fail) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Every check, in report order. `invalid` are the values that did not parse; `env_names` the names
/// of the variables set (for the unknown-variable check).
pub async fn run_checks(settings: &Settings, invalid: &[ConfigError], env_names: &[String]) -> Vec<Check> {
    let mut checks = configuration_checks(settings, invalid, env_names);
    let runtime = RuntimeConfig::from_settings(settings);
    if settings.platform() == Platform::Local {
        checks.push(python_check(&runtime).await);
        checks.push(uv_check(&runtime).await);
        checks.push(directory_check("working directory", &runtime.working_path, "PLUGIN_WORKING_PATH"));
        checks.push(sandbox_check(&runtime));
    } else {
        checks.push(Check::ok("python", "not needed: plugins run behind the serverless connector"));
    }
    checks.push(database_check(settings).await);
    if let Some(check) = redis_check(settings).await {
        checks.push(check);
    }
    checks.push(storage_check(settings));
    checks
}

/// What a missing sandbox layer needs from the host.
fn sandbox_layer_needs(layer: &str) -> &'static str {
    match layer {
        "uid" | "private_tmp" => "the daemon running as root",
        "landlock" => "a kernel with Landlock enabled (5.13 or newer, `lsm=` including landlock)",
        "memory_cgroup" | "pids_cgroup" => "a writable cgroup hierarchy with that controller",
        "non_dumpable" => "prctl(PR_SET_DUMPABLE) to be allowed",
        _ => "a host offering it",
    }
}

/// The plugin isolation layers this host offers at the configured `PLUGIN_SANDBOX` level: `strict`
/// with a missing layer fails (no plugin would start), `best_effort` with missing layers warns.
fn sandbox_check(runtime: &RuntimeConfig) -> Check {
    const NAME: &str = "sandbox";
    let sandbox = &runtime.sandbox;
    if sandbox.level() == SandboxLevel::Off {
        return Check::ok(NAME, "PLUGIN_SANDBOX=off: plugins run without isolation layers");
    }
    // As the daemon does at start-up, so the report shows what it would have.
    sandbox.protect_this_process();
    let report = sandbox.report();
    let active: Vec<&str> = report.layers.iter().filter(|(_, on)| **on).map(|(name, _)| *name).collect();
    let missing: Vec<&str> = report.layers.iter().filter(|(_, on)| !**on).map(|(name, _)| *name).collect();
    let level = report.level.as_str();
    let detail = format!(
        "PLUGIN_SANDBOX={level}; active: {}; unavailable: {}",
        if active.is_empty() { "none".to_string() } else { active.join(", ") },
        if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
    );
    if missing.is_empty() {
        return Check::ok(NAME, detail);
    }
    let needs = missing
        .iter()
        .map(|layer| format!("{layer} needs {}", sandbox_layer_needs(layer)))
        .collect::<Vec<_>>()
        .join("; ");
    match report.level {
        SandboxLevel::Strict => {
            Check::fail(NAME, format!("{detail}: no plugin can start"), format!("{needs}; or set PLUGIN_SANDBOX=best_effort"))
        }
        _ => Check::warn(NAME, detail, format!("plugins run with fewer isolation layers: {needs}")),
    }
}

/// The report: one line per check (`[ ok ]`, `[warn]`, `[FAIL]`), a `fix:` line under each problem,
/// and a summary line.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let tag = match check.status {
            Status::Ok => "[ ok ]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        let _ = writeln!(out, "{tag} {}: {}", check.name, check.detail.replace('\n', "\n       "));
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let verdict = if failed > 0 { "the daemon cannot start as configured" } else { "ready to start" };
    let _ = writeln!(out, "{} checks, {failed} failed, {warned} warnings: {verdict}", checks.len());
    out
}

// ------------------------------------------------------------------ configuration

/// Prefixes of the daemon's own variables: a set name with one of them that the daemon does not read
/// is reported even without a close known name.
const OWN_PREFIXES: &[&str] = &["DB_", "REDIS_", "PLUGIN_", "SERVER_", "DIFY_PLUGIN_DAEMON_", "OTEL_", "OTLP_"];
/// Prefixes of names that may be ours: reported only when close to a known name.
const NEAR_PREFIXES: &[&str] = &[
    "DIFY_",
    "PYTHON_",
    "UV_",
    "PIP_",
    "S3_",
    "AWS_",
    "ALIYUN_",
    "TENCENT_",
    "AZURE_",
    "GCS_",
    "HUAWEI_",
    "VOLCENGINE_",
    "BAIDU_",
    "SENTRY_",
    "ADMIN_",
    "LOG_",
    "MAX_",
    "PERSISTENCE_",
    "THIRD_PARTY_",
    "FORCE_",
    "ENFORCE_",
    "ROUTINE_",
    "LIFETIME_",
    "INSTALL_",
    "HEALTH_",
    "PROMETHEUS_",
    "PPROF_",
    "GIN_",
    "ENABLE_",
    "DEBUGGING_",
    "PLATFORM",
];
/// Names read by the tools around the daemon (the clients, the test runner), not by the daemon.
const OTHER_KNOWN: &[&str] = &[
    "DIFY_PLUGIN_DAEMON_URL",
    "DIFY_PLUGIN_DAEMON_KEY",
    "DIFY_PLUGIN_DAEMON_TIMEOUT",
    "DIFY_PLUGIN_TENANT_ID",
    "DIFY_TEST_SDK_PYTHON",
    "PYTHON_VERSION",
    "PYTHON_SHA256",
    "PYTHON_GET_PIP_URL",
    "PYTHON_GET_PIP_SHA256",
    "PYTHON_PIP_VERSION",
    "PYTHON_SETUPTOOLS_VERSION",
];

fn configuration_checks(settings: &Settings, invalid: &[ConfigError], env_names: &[String]) -> Vec<Check> {
    let mut checks = Vec::new();
    for error in invalid {
        let ConfigError::Invalid { name, value, reason } = error;
        let default = SETTINGS.iter().find(|s| s.name == *name).map(|s| s.default).unwrap_or("");
        checks.push(Check::fail(
            "configuration",
            format!("{name}={value:?} is not valid: {reason}"),
            format!("set {name} to a valid value or unset it (default {default:?})"),
        ));
    }
    if let Err(error) = settings.validate() {
        checks.push(Check::fail("configuration", error.to_string(), "change the setting named above"));
    }
    let known: Vec<&str> = SETTINGS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.fallbacks.iter().copied()))
        .chain(OTHER_KNOWN.iter().copied())
        .collect();
    let mut unknown: Vec<&String> = env_names.iter().filter(|name| !known.contains(&name.as_str())).collect();
    unknown.sort();
    for name in unknown {
        let nearest = known
            .iter()
            .map(|candidate| (edit_distance(name, candidate), *candidate))
            .min()
            .filter(|(distance, _)| *distance <= 2.max(name.len() / 8));
        let ours = OWN_PREFIXES.iter().any(|p| name.starts_with(p));
        let maybe_ours = ours || NEAR_PREFIXES.iter().any(|p| name.starts_with(p));
        match nearest {
            Some((_, candidate)) if maybe_ours => checks.push(Check::warn(
                "configuration",
                format!("{name} is not a setting of the daemon; it is ignored"),
                format!("did you mean {candidate}? Rename the variable"),
            )),
            None if ours => checks.push(Check::warn(
                "configuration",
                format!("{name} is not a setting of the daemon; it is ignored"),
                "remove it, or see the configuration table in the README for the names the daemon reads",
            )),
            _ => {}
        }
    }
    match settings.server_key.as_deref() {
        None => checks.push(Check::ok(
            "server key",
            "SERVER_KEY unset: a random key is generated on first start and stored under PLUGIN_STORAGE_LOCAL_ROOT",
        )),
        Some(key) if WELL_KNOWN_PUBLIC_KEYS.contains(&key) => checks.push(Check::warn(
            "server key",
            "SERVER_KEY is a published sample key; anyone can call the API",
            "set SERVER_KEY (and Dify's PLUGIN_DAEMON_KEY) to a long random value",
        )),
        Some(_) => checks.push(Check::ok("server key", "SERVER_KEY is set")),
    }
    if !checks.iter().any(|c| c.name == "configuration") {
        checks.insert(0, Check::ok("configuration", format!("every value parses ({} settings known)", SETTINGS.len())));
    }
    checks
}

/// Levenshtein distance over bytes (names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

// ------------------------------------------------------------------ toolchain

/// Runs `program args` bounded by [`PROBE_TIMEOUT`]; stdout (trimmed) on success, else why not.
async fn probe(program: &Path, args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(PROBE_TIMEOUT, output).await {
        Err(_) => Err(format!("{} did not answer within {} s", program.display(), PROBE_TIMEOUT.as_secs())),
        Ok(Err(error)) => Err(format!("cannot run {}: {error}", program.display())),
        Ok(Ok(output)) if !output.status.success() => {
            Err(format!("{} failed ({}): {}", program.display(), output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
        Ok(Ok(output)) => Ok(String::from_utf8_lossy(&output.stdout).trim().to_string()),
    }
}

const PYTHON_FIX: &str = "install Python 3.12 or newer (e.g. `uv python install 3.12`) and set PYTHON_INTERPRETER_PATH to its interpreter";

async fn python_check(runtime: &RuntimeConfig) -> Check {
    let python = match &runtime.python_interpreter_path {
        Some(path) => path.clone(),
        None => {
            // Discovery of the interpreter alone: uv is checked separately, so a stand-in uv path keeps
            // a missing uv from hiding the interpreter.
            let mut config = runtime.clone();
            config.uv_path = Some(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("uv")));
            match Toolchain::discover(&config).await {
                Ok(toolchain) => toolchain.python,
                Err(error) => return Check::fail("python", error.to_string(), PYTHON_FIX),
            }
        }
    };
    if !python.exists() {
        return Check::fail("python", format!("PYTHON_INTERPRETER_PATH {} does not exist", python.display()), PYTHON_FIX);
    }
    let version = match probe(&python, &["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).await {
        Ok(version) => version,
        Err(error) => return Check::fail("python", error, PYTHON_FIX),
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (3, 12) {
        return Check::fail("python", format!("{} is Python {version}; plugins need Python >= 3.12", python.display()), PYTHON_FIX);
    }
    Check::ok("python", format!("{} (Python {version})", python.display()))
}

async fn uv_check(runtime: &RuntimeConfig) -> Check {
    const FIX: &str = "install uv (`pip install uv` or https://docs.astral.sh/uv/) and set UV_PATH to the `uv` binary";
    let uv = match &runtime.uv_path {
        Some(path) if !path.exists() => {
            return Check::fail("uv", format!("UV_PATH {} does not exist", path.display()), FIX);
        }
        Some(path) => path.clone(),
        None => match Toolchain::existing_uv(runtime).await {
            Some(uv) => uv,
            // Not a blocker: the daemon installs its own uv on the first install (runtime::uv_provision).
            None => {
                let dir = crate::runtime::uv_provision::provision_dir(runtime);
                return Check::warn(
                    "uv",
                    format!("uv not found (set UV_PATH); the daemon will install one into {} on the first install", dir.display()),
                    "nothing to do if this machine reaches the package index (PIP_MIRROR_URL or PyPI); otherwise install uv and set UV_PATH",
                );
            }
        },
    };
    match probe(&uv, &["--version"]).await {
        Ok(version) => Check::ok("uv", format!("{} ({version})", uv.display())),
        Err(error) => Check::fail("uv", error, FIX),
    }
}

// ------------------------------------------------------------------ services

async fn database_check(settings: &Settings) -> Check {
    const FIX: &str = "start the database server or correct DB_TYPE, DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD";
    let kind = match settings.db_kind() {
        Ok(kind) => kind,
        Err(error) => return Check::fail("database", error.to_string(), FIX),
    };
    let target = match kind {
        crate::config::DbKind::Sqlite => format!("SQLite {}", settings.db_sqlite_path),
        _ => format!(
            "{:?} {}:{}/{}",
            kind,
            settings.db_host.as_deref().unwrap_or("localhost"),
            settings.db_port.map(|p| p.to_string()).unwrap_or_else(|| "default port".into()),
            settings.db_database
        ),
    };
    let budget = Duration::from_secs(settings.db_connect_timeout.max(1) * 2 + 30);
    match tokio::time::timeout(budget, Db::connect(settings)).await {
        Err(_) => Check::fail("database", format!("{target}: no answer within {} s", budget.as_secs()), FIX),
        Ok(Err(error)) => Check::fail("database", format!("{target}: {error}"), FIX),
        Ok(Ok(db)) => {
            db.close().await;
            Check::ok("database", format!("{target}: connected, migrations up to date"))
        }
    }
}

async fn redis_check(settings: &Settings) -> Option<Check> {
    if settings.redis_use_sentinel {
        return Some(sentinel_check(settings).await);
    }
    let host = settings.redis_host.as_deref().filter(|h| !h.is_empty())?;
    const FIX: &str = "start Redis or correct REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD (or unset REDIS_HOST)";
    let address = format!("{host}:{}", settings.redis_port);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await.map_err(|e| format!("cannot connect: {e}"))?;
        if settings.redis_use_ssl {
            return Ok("reachable (TLS handshake not checked)".to_string());
        }
        let mut request = Vec::new();
        if let Some(password) = settings.redis_password.as_deref() {
            let mut args = vec!["AUTH"];
            if let Some(user) = settings.redis_username.as_deref() {
                args.push(user);
            }
            args.push(password);
            request.extend(resp_command(&args));
        }
        request.extend(resp_command(&["PING"]));
        stream.write_all(&request).await.map_err(|e| format!("write failed: {e}"))?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 512];
        while !String::from_utf8_lossy(&answer).contains("PONG") {
            let n = stream.read(&mut buffer).await.map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if answer.starts_with(b"-") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&answer).trim().to_string();
        if text.contains("PONG") && !text.starts_with('-') {
            Ok("PING answered".to_string())
        } else {
            Err(format!("unexpected answer {text:?}"))
        }
    };
    Some(match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Err(_) => Check::fail("redis", format!("{address}: no answer within 5 s"), FIX),
        Ok(Err(error)) => Check::fail("redis", format!("{address}: {error}"), FIX),
        Ok(Ok(detail)) => Check::ok("redis", format!("{address}: {detail}")),
    })
}

/// Asks the sentinels for the master (`REDIS_USE_SENTINEL`); the master itself is not contacted.
async fn sentinel_check(settings: &Settings) -> Check {
    const FIX: &str = "start the sentinels or correct REDIS_SENTINELS, REDIS_SENTINEL_SERVICE_NAME, \
                       REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD";
    let source = match crate::coord::redis::SentinelSource::from_settings(settings) {
        Ok(source) => source,
        Err(error) => return Check::fail("redis", format!("{error:#}"), FIX),
    };
    let described = format!("Sentinel {} ({})", source.described(), source.service());
    match source.master_address().await {
        Ok((host, port)) => Check::ok("redis", format!("{described}: master {host}:{port}")),
        Err(error) => Check::fail("redis", format!("{described}: {error}"), FIX),
    }
}

fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

fn storage_check(settings: &Settings) -> Check {
    if settings.plugin_storage_type == "local" {
        let mut check = directory_check("storage", &settings.storage_root(), "PLUGIN_STORAGE_LOCAL_ROOT");
        if check.status == Status::Ok {
            check.detail = format!("local directory {}", check.detail);
        }
        return check;
    }
    let bucket = settings.plugin_storage_oss_bucket.as_deref().unwrap_or("(no bucket)");
    Check::warn(
        "storage",
        format!("{} bucket {bucket}: not checked by doctor", settings.plugin_storage_type),
        "upload a package after start-up to confirm the bucket is reachable",
    )
}

// ------------------------------------------------------------------ directories and disk

/// The directory exists (or can be created), is writable, and its file system has room.
fn directory_check(name: &'static str, dir: &Path, variable: &str) -> Check {
    let fix = format!("point {variable} at a writable directory on a disk with free space");
    if let Err(error) = std::fs::create_dir_all(dir) {
        return Check::fail(name, format!("cannot create {}: {error}", dir.display()), fix);
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(error) = std::fs::write(&probe, b"probe") {
        return Check::fail(name, format!("{} is not writable: {error}", dir.display()), fix);
    }
    let _ = std::fs::remove_file(&probe);
    match free_bytes(dir) {
        Some(free) if free < DISK_FAIL_BYTES => {
            Check::fail(name, format!("{}: only {} free", dir.display(), human(free)), "free disk space")
        }
        Some(free) if free < DISK_WARN_BYTES => Check::warn(
            name,
            format!("{}: {} free; plugin environments take hundreds of MiB each", dir.display(), human(free)),
            "free disk space",
        ),
        Some(free) => Check::ok(name, format!("{} ({} free)", dir.display(), human(free))),
        None => Check::ok(name, format!("{} (free space unknown)", dir.display())),
    }
}

/// Free bytes for an unprivileged user on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stats` points to writable memory of the
    // right type; statvfs fills it completely when it returns 0, and only then is it read.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    #[allow(clippy::unnecessary_cast)]
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

fn human(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if bytes as f64 >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{} MiB", bytes / (1024 * 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelled_and_unknown_names_are_reported_with_a_suggestion() {
        let names: Vec<String> = ["PLUGIN_WORKNG_PATH", "DB_HOSTNAME_X", "REDIS_HOST", "HOME", "PYTHON_INTERPETER_PATH", "UNRELATED_THING"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let checks = configuration_checks(&Settings::default(), &[], &names);
        let warnings: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Warn).collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings.iter().any(|c| c.detail.starts_with("PLUGIN_WORKNG_PATH")
            && c.fix.as_deref() == Some("did you mean PLUGIN_WORKING_PATH? Rename the variable")));
        assert!(warnings
            .iter()
            .any(|c| c.detail.starts_with("PYTHON_INTERPETER_PATH") && c.fix.as_deref().unwrap_or("").contains("PYTHON_INTERPRETER_PATH")));
        assert!(warnings.iter().any(|c| c.detail.starts_with("DB_HOSTNAME_X")));
    }

    #[test]
    fn invalid_values_fail_and_the_report_counts() {
        let (settings, invalid) = Settings::from_lookup_lenient(&|name| (name == "SERVER_PORT").then(|| "not-a-port".to_string()));
        let checks = configuration_checks(&settings, &invalid, &[]);
        assert!(checks.iter().any(|c| c.status == Status::Fail && c.detail.starts_with("SERVER_PORT=\"not-a-port\"")));
        let report = render(&checks);
        assert!(report.contains("[FAIL] configuration: SERVER_PORT"), "{report}");
        assert!(report.contains("       fix: set SERVER_PORT to a valid value or unset it (default \"5002\")"), "{report}");
        assert!(report.trim_end().ends_with("failed, 0 warnings: the daemon cannot start as configured"), "{report}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
