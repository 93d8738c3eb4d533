//! Building a plugin's Python environment with uv, and the environment variables a plugin process
//! gets.
//!
//! Owns: finding `uv` and a Python >= 3.12, `uv venv`, `uv sync` / `uv pip install`, the inactivity and
//! hard timeouts of those steps, the ready marker `.venv/dify/plugin.json`, linking a plugin to a
//! shared environment (see `shared_env`), offline installs (`PLUGIN_WHEELS_DIR`, `--offline`) and
//! naming the dependency such an install cannot find, and the allow-list of variables passed to
//! plugin processes. Must not: launch the plugin itself or know about sessions.
//! Used by the local runtime and by `dify plugin run`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::config::RuntimeConfig;
use super::shared_env::{build_lock, environment_key, environments_dir, shared_environment_is_ready};

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("no Python >= 3.12 found (set PYTHON_INTERPRETER_PATH)")]
    PythonNotFound,
    #[error("uv not found (set UV_PATH)")]
    UvNotFound,
    #[error(transparent)]
    UvProvision(#[from] super::uv_provision::ProvisionError),
    #[error("neither pyproject.toml nor requirements.txt found in plugin directory")]
    NoDependencyFile,
    #[error("{step} failed: {reason}\n{output}")]
    StepFailed { step: String, reason: String, output: String },
    /// A dependency has no distribution where the install may look (offline, or the index is unreachable).
    #[error("installing dependencies failed: {reason}\n{output}")]
    DependencyUnavailable { distribution: String, reason: String, output: String },
    #[error("i/o error while preparing the plugin environment: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the tools of an environment build are.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub uv: PathBuf,
    pub python: PathBuf,
}

impl Toolchain {
    /// Finds uv and Python as upstream does: `UV_PATH`, else the interpreter's `uv` module, else `PATH`
    /// (else a uv the daemon installs itself, see `uv_provision`);
    /// `PYTHON_INTERPRETER_PATH`, else `python3.13`/`python3.12` on `PATH`, else pyenv's newest 3.12+.
    pub async fn discover(config: &RuntimeConfig) -> Result<Self, EnvironmentError> {
        let python = find_python(config).ok_or(EnvironmentError::PythonNotFound)?;
        let uv = match &config.uv_path {
            Some(path) => path.clone(),
            None => match uv_from_python_module(&python).await {
                Some(path) => path,
                None => match find_on_path("uv") {
                    Some(path) => path,
                    // None anywhere: the daemon installs its own (runtime::uv_provision).
                    None => super::uv_provision::provision_uv(config, &python).await?,
                },
            },
        };
        Ok(Self { uv, python })
    }

    /// The uv [`Toolchain::discover`] would use, without installing one: `UV_PATH`, the interpreter's
    /// `uv` module, `PATH`, or a uv the daemon installed earlier. `None` when the daemon would install
    /// its own on the first install (what `doctor` reports instead of installing it).
    pub async fn existing_uv(config: &RuntimeConfig) -> Option<PathBuf> {
        if let Some(path) = &config.uv_path {
            return Some(path.clone());
        }
        if let Some(python) = find_python(config) {
            if let Some(path) = uv_from_python_module(&python).await {
                return Some(path);
            }
        }
        if let Some(path) = find_on_path("uv") {
            return Some(path);
        }
        let provisioned = super::uv_provision::provisioned_uv(&super::uv_provision::provision_dir(config));
        provisioned.is_file().then_some(provisioned)
    }
}

fn find_python(config: &RuntimeConfig) -> Option<PathBuf> {
    if let Some(path) = &config.python_interpreter_path {
        return Some(path.clone());
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")));
    find_usable_python(std::env::var_os("PATH").as_deref(), pyenv_root.as_deref())
}

/// The first usable interpreter: `python3.13`, then `python3.12` in the directories of `path_var`,
/// then the newest pyenv version under `pyenv_root`. A candidate counts only if it runs and reports a
/// version >= 3.12 (pyenv puts shims on `PATH` for versions that are not selected; they exit 127).
fn find_usable_python(path_var: Option<&std::ffi::OsStr>, pyenv_root: Option<&Path>) -> Option<PathBuf> {
    for name in ["python3.13", "python3.12"] {
        if let Some(path) = path_var {
            for candidate in std::env::split_paths(path).map(|dir| dir.join(name)) {
                if candidate.is_file() && python_is_usable(&candidate) {
                    return Some(candidate);
                }
            }
        }
    }
    let mut candidates: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(pyenv_root?.join("versions"))
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            let python = entry.path().join("bin/python3");
            (version.len() >= 2 && version[0] == 3 && version[1] >= 12 && python.exists()).then_some((version, python))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().rev().map(|(_, path)| path).find(|path| python_is_usable(path))
}

/// Runs `python` (bounded to 10 seconds) and checks that it reports a version >= 3.12.
fn python_is_usable(python: &Path) -> bool {
    let probe = std::process::Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = probe else { return false };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return false,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut output);
    }
    let mut parts = output.trim().split('.').map(|p| p.parse::<u32>());
    matches!((parts.next(), parts.next()), (Some(Ok(3)), Some(Ok(minor))) if minor >= 12)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

async fn uv_from_python_module(python: &Path) -> Option<PathBuf> {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(python)
            .args(["-c", "from uv._find_uv import find_uv_bin; print(find_uv_bin())"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// The venv python of a working directory.
pub fn venv_python(working_dir: &Path) -> PathBuf {
    working_dir.join(".venv/bin/python")
}

fn ready_marker(working_dir: &Path) -> PathBuf {
    working_dir.join(".venv/dify/plugin.json")
}

/// True when the working directory holds a finished environment (venv, interpreter, ready marker).
pub fn environment_is_ready(working_dir: &Path) -> bool {
    working_dir.join(".venv").is_dir() && venv_python(working_dir).exists() && ready_marker(working_dir).is_file()
}

/// Makes the plugin environment of `working_dir` ready and returns its interpreter. Human-readable
/// progress lines go to `progress`.
///
/// With shared environments (the default), the environment lives in
/// `<PLUGIN_WORKING_PATH>/.envs/<key>` ([`environment_key`]) and `working_dir/.venv` is a symbolic link
/// to it: a plugin whose dependency set, interpreter and uv match an existing environment reuses it
/// with no download and no build. A `.venv` directory of an earlier build keeps being used as is.
pub async fn prepare_environment(
    working_dir: &Path,
    config: &RuntimeConfig,
    progress: &mpsc::UnboundedSender<String>,
) -> Result<PathBuf, EnvironmentError> {
    if environment_is_ready(working_dir) {
        return Ok(venv_python(working_dir));
    }
    let toolchain = Toolchain::discover(config).await?;
    if !config.shared_environments {
        let venv = working_dir.join(".venv");
        remove_link_or_dir(&venv).await?;
        build_with_retries(working_dir, &venv, config, &toolchain, progress).await?;
        compile_plugin_sources(working_dir, &venv_python(working_dir), config, progress).await;
        return Ok(venv_python(working_dir));
    }
    let key = environment_key(working_dir, config, &toolchain).await?;
    let env_dir = environments_dir(config).join(&key.name);
    let lock = build_lock(&env_dir);
    let _building = lock.lock().await;
    if shared_environment_is_ready(&env_dir) {
        let _ = progress.send(format!("reusing shared environment {}", key.name));
        tracing::info!(environment = %key.name, dir = %working_dir.display(), "reusing a shared plugin environment");
    } else {
        let _ = progress.send(format!("building shared environment {}", key.name));
        tracing::info!(environment = %key.name, dir = %working_dir.display(), "building a shared plugin environment");
        remove_link_or_dir(&env_dir).await?;
        build_with_retries(working_dir, &env_dir, config, &toolchain, progress).await?;
        tokio::fs::write(env_dir.join("dify/key.txt"), &key.inputs).await?;
    }
    let link = working_dir.join(".venv");
    remove_link_or_dir(&link).await?;
    tokio::fs::symlink(&env_dir, &link).await?;
    compile_plugin_sources(working_dir, &venv_python(working_dir), config, progress).await;
    Ok(venv_python(working_dir))
}

/// Removes a symbolic link, a file or a directory tree at `path`; nothing there is fine.
async fn remove_link_or_dir(path: &Path) -> std::io::Result<()> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

async fn build_with_retries(
    working_dir: &Path,
    venv: &Path,
    config: &RuntimeConfig,
    toolchain: &Toolchain,
    progress: &mpsc::UnboundedSender<String>,
) -> Result<(), EnvironmentError> {
    let mut attempt = 0;
    loop {
        match build_environment(working_dir, venv, config, toolchain, progress).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < config.env_build_retries && matches!(error, EnvironmentError::StepFailed { .. }) => {
                attempt += 1;
                let _ = progress.send(format!("environment build failed, retrying ({attempt}/{})", config.env_build_retries));
                tracing::warn!(dir = %working_dir.display(), %error, "plugin environment build failed, retrying");
            }
            Err(error) => return Err(error),
        }
    }
}

/// Builds a virtual environment at `venv` with the dependencies declared in `working_dir` (uv runs
/// in `working_dir`, so relative paths of the dependency file, such as `--find-links ./wheels`,
/// resolve against the plugin) and writes its ready marker.
async fn build_environment(
    working_dir: &Path,
    venv: &Path,
    config: &RuntimeConfig,
    toolchain: &Toolchain,
    progress: &mpsc::UnboundedSender<String>,
) -> Result<(), EnvironmentError> {
    if tokio::fs::symlink_metadata(venv).await.is_ok() {
        let _ = progress.send("removing an incomplete plugin environment".to_string());
        remove_link_or_dir(venv).await?;
    }
    if let Some(parent) = venv.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let dependency_file = choose_dependency_file(working_dir, config)?;
    let uv_env = uv_environment(venv, config);

    let _ = progress.send(format!("creating virtual environment with {}", toolchain.python.display()));
    let mut venv_args: Vec<String> = vec!["venv".into(), venv.display().to_string(), "--python".into()];
    venv_args.push(toolchain.python.display().to_string());
    run_step("uv venv", &toolchain.uv, &venv_args, working_dir, &uv_env, config, progress).await?;

    let mut install_args: Vec<String> = match dependency_file {
        DependencyFile::PyProject => {
            // The project itself is not installed: the plugin runs from its own directory, and the
            // environment may be shared with other plugins.
            let mut args = vec!["sync".to_string(), "--no-dev".to_string(), "--no-install-project".to_string()];
            if working_dir.join("uv.lock").exists() && !config.ignore_uv_lock {
                args.push("--frozen".into());
            }
            args
        }
        DependencyFile::Requirements => vec!["pip".into(), "install".into(), "-r".into(), "requirements.txt".into()],
    };
    if let Some(mirror) = &config.pip_mirror_url {
        install_args.push("-i".into());
        install_args.push(mirror.clone());
    }
    if let Some(wheels) = &config.wheels_dir {
        install_args.push("--find-links".into());
        install_args.push(wheels.display().to_string());
    }
    if config.offline_install {
        install_args.push("--offline".into());
    }
    if config.pip_verbose {
        install_args.push("-v".into());
    }
    for extra in &config.pip_extra_args {
        if !(extra == "--frozen" && install_args.iter().any(|a| a == "--frozen")) {
            install_args.push(extra.clone());
        }
    }
    let _ = progress.send("installing plugin dependencies".to_string());
    run_step("installing dependencies", &toolchain.uv, &install_args, working_dir, &uv_env, config, progress)
        .await
        .map_err(explain_unavailable_dependency)?;

    let marker = venv.join("dify/plugin.json");
    if let Some(parent) = marker.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    tokio::fs::write(&marker, format!("{{\"timestamp\":{now}}}")).await?;
    let _ = progress.send("plugin environment ready".to_string());
    Ok(())
}

/// Turns uv's "not found" and "index unreachable" failures into [`EnvironmentError::DependencyUnavailable`]
/// naming the distribution; other errors are returned unchanged.
fn explain_unavailable_dependency(error: EnvironmentError) -> EnvironmentError {
    let EnvironmentError::StepFailed { step, reason, output } = error else { return error };
    if let Some((distribution, place)) = missing_distribution(&output) {
        let reason = match place.as_str() {
            "cache" => format!(
                "no distribution of `{distribution}` is available offline: add its wheel to the plugin's wheels directory or \
                 PLUGIN_WHEELS_DIR (uv runs with --offline, so only those and uv's cache are used)"
            ),
            "provided package locations" => format!(
                "no distribution of `{distribution}` in the package's wheels directory or PLUGIN_WHEELS_DIR (the dependency file says --no-index)"
            ),
            other => format!("no distribution of `{distribution}` found in the {other}"),
        };
        return EnvironmentError::DependencyUnavailable { distribution, reason, output };
    }
    if let Some(url) = output.lines().find_map(|l| l.trim().strip_prefix("cause: Failed to fetch: ")) {
        let url = url.trim();
        let distribution = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url).to_string();
        let reason = format!(
            "the package index is unreachable while looking up `{distribution}` ({url}); for installs without network set \
             PLUGIN_INSTALL_OFFLINE=true and ship the wheels (the package's wheels directory or PLUGIN_WHEELS_DIR)"
        );
        return EnvironmentError::DependencyUnavailable { distribution, reason, output };
    }
    EnvironmentError::StepFailed { step, reason, output }
}

/// `("httpx", "cache")` from uv's "Because httpx was not found in the cache and ..." resolution error.
fn missing_distribution(output: &str) -> Option<(String, String)> {
    let (_, after) = output.split_once("Because ")?;
    let (name, rest) = after.split_once(" was not found in the ")?;
    let place = rest.split([' ', ',']).take_while(|w| !matches!(*w, "and" | "so")).collect::<Vec<_>>().join(" ");
    let name = name.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| (name.to_string(), place))
}

/// Pre-compiles the plugin's own sources (not its environment); a failure is only logged.
async fn compile_plugin_sources(working_dir: &Path, python: &Path, config: &RuntimeConfig, progress: &mpsc::UnboundedSender<String>) {
    let uv_env = uv_environment(&working_dir.join(".venv"), config);
    let compile_args: Vec<String> =
        ["-m", "compileall", "-q", "-x", r"\.venv|\.uv-cache|wheels", "."].iter().map(|s| s.to_string()).collect();
    if let Err(error) = run_step("compileall", python, &compile_args, working_dir, &uv_env, config, progress).await {
        tracing::warn!(%error, "pre-compiling plugin sources failed");
    }
}

pub(super) enum DependencyFile {
    PyProject,
    Requirements,
}

pub(super) fn choose_dependency_file(working_dir: &Path, config: &RuntimeConfig) -> Result<DependencyFile, EnvironmentError> {
    let requirements = working_dir.join("requirements.txt").is_file();
    let pyproject = working_dir.join("pyproject.toml").is_file();
    if config.pip_mirror_url.is_some() && requirements {
        Ok(DependencyFile::Requirements)
    } else if pyproject {
        Ok(DependencyFile::PyProject)
    } else if requirements {
        Ok(DependencyFile::Requirements)
    } else {
        Err(EnvironmentError::NoDependencyFile)
    }
}

/// The environment of uv: replaced, not inherited (no daemon secrets reach a package build script).
/// `venv` is the environment being built (`uv sync` is pointed at it too).
fn uv_environment(venv: &Path, config: &RuntimeConfig) -> Vec<(String, String)> {
    let mut env = vec![
        ("VIRTUAL_ENV".to_string(), venv.display().to_string()),
        ("UV_PROJECT_ENVIRONMENT".to_string(), venv.display().to_string()),
        ("UV_CACHE_DIR".to_string(), config.uv_cache_dir().display().to_string()),
    ];
    for name in [
        "PATH",
        "HOME",
        "UV_INDEX_NEXUS_USERNAME",
        "UV_INDEX_NEXUS_PASSWORD",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "UV_OFFLINE",
        "UV_HTTP_TIMEOUT",
        "UV_HTTP_RETRIES",
        "UV_NATIVE_TLS",
        "UV_SYSTEM_CERTS",
    ] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    push_proxies(&mut env, config);
    env
}

fn push_proxies(env: &mut Vec<(String, String)>, config: &RuntimeConfig) {
    for (name, value) in [("HTTP_PROXY", &config.http_proxy), ("HTTPS_PROXY", &config.https_proxy), ("NO_PROXY", &config.no_proxy)] {
        if let Some(value) = value {
            env.push((name.to_string(), value.clone()));
        }
    }
}

/// Variables a plugin process may see from the daemon's environment. Everything else (the daemon's
/// `SERVER_KEY`, database, Redis, storage and cloud credentials, the inner API key) is withheld.
const PLUGIN_ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PYTHONIOENCODING",
    "TIKTOKEN_CACHE_DIR",
];

/// The complete environment of a plugin process: the allow-listed daemon variables, the configured
/// proxies, `INSTALL_METHOD` and `extra` (later entries win).
pub fn plugin_process_environment(config: &RuntimeConfig, install_method: &str, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PLUGIN_ENV_ALLOW_LIST
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect();
    push_proxies(&mut env, config);
    env.push(("INSTALL_METHOD".into(), install_method.into()));
    env.extend(extra.iter().cloned());
    env
}

/// Runs one build step, streaming its output to `progress`, killing it after `env_init_timeout`
/// without output or `env_build_timeout` in total. The error carries the tail of the output.
async fn run_step(
    step: &str,
    program: &Path,
    args: &[String],
    working_dir: &Path,
    env: &[(String, String)],
    config: &RuntimeConfig,
    progress: &mpsc::UnboundedSender<String>,
) -> Result<(), EnvironmentError> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(working_dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever the step started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EnvironmentError::StepFailed {
            step: step.into(),
            reason: format!("cannot start {}: {e}", program.display()),
            output: String::new(),
        })?;
    let tail = Arc::new(Mutex::new(OutputTail::new(40)));
    let last_output = Arc::new(Mutex::new(Instant::now()));
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(pump_output(stdout, tail.clone(), last_output.clone(), progress.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(pump_output(stderr, tail.clone(), last_output.clone(), progress.clone())));
    }
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| e.to_string()),
            _ = poll.tick() => {
                let silent_for = last_output.lock().map(|t| t.elapsed()).unwrap_or_default();
                if silent_for >= config.env_init_timeout {
                    kill_process_group(&child);
                    let _ = child.kill().await;
                    break Err(format!("init process exited due to no activity for {} seconds", config.env_init_timeout.as_secs()));
                }
                if started.elapsed() >= config.env_build_timeout {
                    kill_process_group(&child);
                    let _ = child.kill().await;
                    break Err(format!("timed out after {} seconds", config.env_build_timeout.as_secs()));
                }
            }
        }
    };
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let output = tail.lock().map(|t| t.render()).unwrap_or_default();
    match outcome {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(EnvironmentError::StepFailed { step: step.into(), reason: format!("exited with {status}"), output }),
        Err(reason) => Err(EnvironmentError::StepFailed { step: step.into(), reason, output }),
    }
}

fn kill_process_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

async fn pump_output(
    stream: impl AsyncRead + Unpin,
    tail: Arc<Mutex<OutputTail>>,
    last_output: Arc<Mutex<Instant>>,
    progress: mpsc::UnboundedSender<String>,
) {
    let mut lines = CappedLines::new(stream);
    while let Some(line) = lines.next_line().await {
        if let Ok(mut t) = last_output.lock() {
            *t = Instant::now();
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        let _ = progress.send(line.clone());
        if let Ok(mut t) = tail.lock() {
            t.push(line);
        }
    }
}

/// Lines of a child's output stream, each cut to at most 64 KiB (a longer line continues as the
/// next one), so a process printing without newlines cannot grow the daemon's memory.
pub struct CappedLines<R> {
    reader: BufReader<R>,
    buffer: Vec<u8>,
}

impl<R: AsyncRead + Unpin> CappedLines<R> {
    const MAX_LINE: u64 = 64 * 1024;

    pub fn new(stream: R) -> Self {
        Self { reader: BufReader::new(stream), buffer: Vec::new() }
    }

    /// The next line without its line ending; `None` at the end of the stream or on a read error.
    pub async fn next_line(&mut self) -> Option<String> {
        self.buffer.clear();
        match (&mut self.reader).take(Self::MAX_LINE).read_until(b'\n', &mut self.buffer).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&self.buffer).trim_end_matches(['\r', '\n']).to_string()),
        }
    }
}

/// The last lines of a process's output, quoted in failure messages.
#[derive(Debug)]
pub struct OutputTail {
    lines: VecDeque<String>,
    capacity: usize,
}

impl OutputTail {
    pub fn new(capacity: usize) -> Self {
        Self { lines: VecDeque::new(), capacity }
    }
    pub fn push(&mut self, line: String) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
    pub fn render(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_environment_has_no_secrets() {
        // Read-only check over the current process environment: whatever secret-looking variables
        // exist here, none may be passed through.
        let env = plugin_process_environment(&RuntimeConfig::default(), "local", &[]);
        for (name, _) in &env {
            assert!(
                !name.contains("KEY") && !name.contains("PASSWORD") && !name.starts_with("DB_") && !name.starts_with("REDIS_"),
                "{name}"
            );
        }
        assert!(env.iter().any(|(k, v)| k == "INSTALL_METHOD" && v == "local"));
    }

    #[tokio::test]
    async fn capped_lines_split_long_lines() {
        let input = format!("short\r\n{}\nlast", "y".repeat(70 * 1024));
        let mut lines = CappedLines::new(input.as_bytes());
        assert_eq!(lines.next_line().await.as_deref(), Some("short"));
        assert_eq!(lines.next_line().await.map(|l| l.len()), Some(64 * 1024));
        assert_eq!(lines.next_line().await.map(|l| l.len()), Some(6 * 1024));
        assert_eq!(lines.next_line().await.as_deref(), Some("last"));
        assert_eq!(lines.next_line().await, None);
    }

    fn fake_python(path: &Path, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn python_candidates_must_run_and_be_recent() {
        let root = tempfile::tempdir().unwrap();
        let shims = root.path().join("shims");
        let old = root.path().join("old");
        let good = root.path().join("good");
        // A pyenv shim for a version that is not selected, then an interpreter that is too old.
        fake_python(&shims.join("python3.13"), "echo 'pyenv: python3.13: command not found' >&2; exit 127");
        fake_python(&shims.join("python3.12"), "exit 127");
        fake_python(&old.join("python3.12"), "echo 3.11");
        fake_python(&good.join("python3.12"), "echo 3.12");
        let path = std::env::join_paths([&shims, &old, &good]).unwrap();
        assert_eq!(find_usable_python(Some(&path), None), Some(good.join("python3.12")));

        // Nothing usable on PATH: the newest pyenv version that runs wins.
        let path = std::env::join_paths([&shims, &old]).unwrap();
        let pyenv = root.path().join("pyenv");
        fake_python(&pyenv.join("versions/3.13.0/bin/python3"), "exit 127");
        fake_python(&pyenv.join("versions/3.12.1/bin/python3"), "echo 3.12");
        fake_python(&pyenv.join("versions/3.11.9/bin/python3"), "echo 3.11");
        assert_eq!(find_usable_python(Some(&path), Some(&pyenv)), Some(pyenv.join("versions/3.12.1/bin/python3")));
        std::fs::remove_file(pyenv.join("versions/3.12.1/bin/python3")).unwrap();
        assert_eq!(find_usable_python(Some(&path), Some(&pyenv)), None);
        assert_eq!(find_usable_python(None, None), None);
    }

    #[test]
    fn unavailable_dependencies_are_named() {
        let failed = |output: &str| EnvironmentError::StepFailed {
            step: "installing dependencies".into(),
            reason: "exited with 1".into(),
            output: output.into(),
        };
        let offline = "error: No solution found when resolving dependencies\n  cause: Because httpx was not found in the cache and all versions of dify-plugin depend on httpx>=0.28.1, we can conclude that all versions of dify-plugin cannot be used.";
        match explain_unavailable_dependency(failed(offline)) {
            EnvironmentError::DependencyUnavailable { distribution, reason, .. } => {
                assert_eq!(distribution, "httpx");
                assert!(reason.contains("no distribution of `httpx` is available offline"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let no_index = "  cause: Because yarl was not found in the provided package locations and aiohttp depends on yarl";
        match explain_unavailable_dependency(failed(no_index)) {
            EnvironmentError::DependencyUnavailable { distribution, reason, .. } => {
                assert_eq!(distribution, "yarl");
                assert!(reason.contains("wheels directory"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let unreachable = "error: Request failed after 3 retries in 9.7s\n  cause: Failed to fetch: http://127.0.0.1:9/dify-plugin/\n  cause: tcp connect error";
        match explain_unavailable_dependency(failed(unreachable)) {
            EnvironmentError::DependencyUnavailable { distribution, .. } => assert_eq!(distribution, "dify-plugin"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(explain_unavailable_dependency(failed("some other failure")), EnvironmentError::StepFailed { .. }));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let mut tail = OutputTail::new(2);
        for line in ["a", "b", "c"] {
            tail.push(line.into());
        }
        assert_eq!(tail.render(), "b\nc");
    }
}
