//! Fork-start of local plugins: pre-started Python interpreters ("zygotes") that already imported the
//! plugin SDK and fork a ready interpreter per plugin start, instead of `python -m main` importing
//! the SDK again (about 1.5 s of a cold start).
//!
//! Owns: the pool of zygotes (one per environment fingerprint, at most `PLUGIN_FORK_START_ZYGOTES`),
//! the environment fingerprint (interpreter + the `name-version` set of installed distributions,
//! cached in `.venv/dify/fork-fingerprint`), deciding whether a plugin may be forked (otherwise the
//! caller starts it normally), the fork request (the plugin's stdio pipes, and the sandbox's cgroup
//! and Landlock descriptors, travel as `SCM_RIGHTS`; the child applies the sandbox's steps itself),
//! and [`ChildProcess`], the handle `local` supervises for either kind of start. The zygote stays
//! the parent of what it forks: it reaps every child and reports its exit status here, so a forked
//! plugin never becomes a zombie and is killed like a spawned one (its own process group).
//! Must not: supervise plugins (see `local`), build environments (see `environment`) or decide the
//! sandbox (see `sandbox`, whose prepared steps it forwards).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::sandbox::ForkSteps;
use tokio_util::sync::CancellationToken;

/// The zygote's program, run with `python -c`.
const ZYGOTE_SCRIPT: &str = include_str!("zygote.py");

/// Where the fingerprint of an environment is cached (inside the venv, so a rebuilt venv drops it).
const FINGERPRINT_FILE: &str = "dify/fork-fingerprint";

/// Where, under the working path, the zygotes' own environments are.
const FORK_SERVER_DIR: &str = ".fork-servers";

/// How long a fork request may wait for the zygote's answer.
const FORK_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fork request failed (the caller then starts the plugin normally).
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("cannot reach the fork server: {0}")]
    Io(#[from] io::Error),
    #[error("the fork server refused: {0}")]
    Refused(String),
    #[error("the fork server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the fork server exited")]
    Gone,
}

/// The pool of zygotes of one runtime configuration.
pub struct ZygotePool {
    enabled: bool,
    max_zygotes: usize,
    zygotes: Mutex<HashMap<String, Arc<Slot>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for ZygotePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZygotePool").field("enabled", &self.enabled).field("max_zygotes", &self.max_zygotes).finish()
    }
}

impl Drop for ZygotePool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a fork needs to know about the plugin (the same facts as a normal start).
pub struct ForkRequest<'a> {
    pub identifier: &'a str,
    /// `PLUGIN_WORKING_PATH` (fork servers keep their environments in `.fork-servers` there).
    pub working_path: &'a Path,
    pub working_dir: &'a Path,
    /// The plugin venv's interpreter.
    pub python: &'a Path,
    pub entrypoint: &'a str,
    /// The complete environment of the plugin process.
    pub env: &'a [(String, String)],
}

/// What a fork produced: the child and the daemon's ends of its stdio.
pub struct Forked {
    pub child: ForkedChild,
    pub stdin: tokio::net::unix::pipe::Sender,
    pub stdout: tokio::net::unix::pipe::Receiver,
    pub stderr: tokio::net::unix::pipe::Receiver,
}

impl ZygotePool {
    pub fn new(enabled: bool, max_zygotes: usize) -> Arc<Self> {
        Arc::new(Self { enabled, max_zygotes, zygotes: Mutex::new(HashMap::new()), stop: CancellationToken::new() })
    }

    pub fn enabled(&self) -> bool {
        self.enabled && self.max_zygotes > 0
    }

    /// Pids of the zygotes that are ready (for tests and diagnostics).
    pub fn ready_pids(&self) -> Vec<u32> {
        let zygotes = self.zygotes.lock().unwrap_or_else(|p| p.into_inner());
        zygotes.values().filter_map(|slot| slot.process.get()?.ready.borrow().as_ref().map(|r| r.pid)).collect()
    }

    /// The ready zygote the plugin may be forked from ([`Zygote::fork`]). `None` means "start it
    /// normally": fork-start is off, the environment has no ready zygote yet (one is started in the
    /// background when the pool has room), or something about the plugin differs from what the
    /// zygote imported. `request.env` is the plugin's environment without the sandbox's variables.
    pub fn candidate(&self, request: &ForkRequest<'_>, base_env: &[(String, String)]) -> Option<Arc<Zygote>> {
        if !self.enabled() {
            return None;
        }
        let venv = request.python.parent()?.parent()?.to_path_buf();
        let fingerprint = match environment_fingerprint(&venv) {
            Ok(fingerprint) => fingerprint,
            Err(error) => {
                tracing::debug!(plugin = request.identifier, %error, "no environment fingerprint; normal start");
                return None;
            }
        };
        let zygote = {
            let mut zygotes = self.zygotes.lock().unwrap_or_else(|p| p.into_inner());
            zygotes.retain(|_, slot| !slot.gone());
            match zygotes.get(&fingerprint) {
                Some(slot) => slot.process.get()?.clone(),
                None => {
                    if zygotes.len() < self.max_zygotes {
                        let slot = Arc::new(Slot::default());
                        zygotes.insert(fingerprint.clone(), slot.clone());
                        tracing::info!(plugin = request.identifier, fingerprint = %&fingerprint[..12], "starting a fork server for this environment");
                        let source = venv.clone();
                        let home = request.working_path.join(FORK_SERVER_DIR).join(&fingerprint[..32]);
                        let env = base_env.to_vec();
                        let stop = self.stop.child_token();
                        tokio::spawn(async move {
                            let copied = tokio::task::spawn_blocking(move || dedicated_environment(&source, &home).map(|_| home)).await;
                            let started = match copied {
                                Ok(Ok(home)) => Zygote::start(&home, &env, stop),
                                Ok(Err(error)) => Err(error),
                                Err(error) => Err(io::Error::other(error)),
                            };
                            match started {
                                Ok(zygote) => {
                                    let _ = slot.process.set(zygote);
                                }
                                Err(error) => {
                                    // Kept in the pool (failed), so the failure is not retried at every start.
                                    tracing::warn!(%error, "cannot start a fork server; plugins of this environment start normally");
                                    slot.failed.store(true, Ordering::Relaxed);
                                }
                            }
                        });
                    }
                    return None;
                }
            }
        };
        let ready = zygote.ready.borrow().clone()?;
        if let Some(reason) = mismatch(&ready, request, base_env) {
            tracing::debug!(plugin = request.identifier, reason, "not forked; normal start");
            return None;
        }
        Some(zygote)
    }
}

/// Why a plugin must not be forked from this zygote, if it must not.
fn mismatch(ready: &Ready, request: &ForkRequest<'_>, base_env: &[(String, String)]) -> Option<String> {
    // Variables read at interpreter start-up must be what the zygote started with.
    let python_vars = |env: &[(String, String)]| -> Vec<(String, String)> {
        let mut vars: Vec<_> = env.iter().filter(|(k, _)| k.starts_with("PYTHON") && k != "PYTHONPYCACHEPREFIX").cloned().collect();
        vars.sort();
        vars
    };
    // (`PYTHONPYCACHEPREFIX` of the sandbox is set in the child as `sys.pycache_prefix`.)
    if python_vars(request.env) != python_vars(base_env) {
        return Some("PYTHON* variables differ from the fork server's".into());
    }
    // A module of the plugin's own directory would shadow a module the zygote already imported.
    let entries = std::fs::read_dir(request.working_dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let module = name.split('.').next().unwrap_or_default();
        if name != ".venv" && ready.modules.contains(module) {
            return Some(format!("`{name}` in the plugin directory shadows the preloaded module `{module}`"));
        }
    }
    None
}

/// The identity of a Python environment: the interpreter the venv was made from and the
/// `name-version` set of its installed distributions (the `*.dist-info` / `*.egg-info` names that
/// `importlib.metadata` enumerates) and its `.pth` files. Two venvs with the same fingerprint import
/// the same code. Computed once per venv and cached in it.
pub fn environment_fingerprint(venv: &Path) -> io::Result<String> {
    use sha2::Digest;
    let cache = venv.join(FINGERPRINT_FILE);
    if let Ok(cached) = std::fs::read_to_string(&cache) {
        if cached.trim().len() == 64 {
            return Ok(cached.trim().to_string());
        }
    }
    let mut lines = Vec::new();
    let config = std::fs::read_to_string(venv.join("pyvenv.cfg"))?;
    for line in config.lines() {
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            if matches!(key, "home" | "implementation" | "version" | "version_info" | "include-system-site-packages") {
                lines.push(format!("cfg {key}={}", value.trim()));
            }
        }
    }
    lines.push(format!("python {}", venv.join("bin/python").canonicalize()?.display()));
    let mut found_site = false;
    for lib in std::fs::read_dir(venv.join("lib"))?.flatten() {
        let site = lib.path().join("site-packages");
        let Ok(entries) = std::fs::read_dir(&site) else { continue };
        found_site = true;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".dist-info") || name.ends_with(".egg-info") {
                lines.push(format!("dist {name}"));
            } else if name.ends_with(".pth") {
                let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
                lines.push(format!("pth {name} {}", hex::encode(sha2::Sha256::digest(content.as_bytes()))));
            }
        }
    }
    if !found_site {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no site-packages in the environment"));
    }
    lines.sort();
    let fingerprint = hex::encode(sha2::Sha256::digest(lines.join("\n").as_bytes()));
    if let Some(parent) = cache.parent() {
        let _ = std::fs::create_dir_all(parent);
        let _ = std::fs::write(&cache, &fingerprint);
    }
    Ok(fingerprint)
}

/// A place in the pool: the zygote once its environment is ready and it was started.
#[derive(Default)]
struct Slot {
    process: std::sync::OnceLock<Arc<Zygote>>,
    failed: std::sync::atomic::AtomicBool,
}

impl Slot {
    /// A zygote that exited (removed, so the next start of its environment starts a new one). A
    /// slot whose start failed stays.
    fn gone(&self) -> bool {
        self.process.get().is_some_and(|z| z.gone.load(Ordering::Relaxed))
    }
}

/// The zygote's own environment: a hard-linked copy of the first plugin environment with its
/// fingerprint, in `<PLUGIN_WORKING_PATH>/.fork-servers/<fingerprint>/.venv`, so the files the
/// zygote imported (and paths modules computed at import, such as a CA bundle) outlive that plugin's
/// uninstall. Reused when it exists with the same fingerprint.
fn dedicated_environment(source: &Path, home: &Path) -> io::Result<PathBuf> {
    let venv = home.join(".venv");
    let expected = environment_fingerprint(source)?;
    if venv.is_dir() && environment_fingerprint(&venv).ok().as_deref() == Some(expected.as_str()) {
        return Ok(venv);
    }
    let staging = home.join(format!(".venv.{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(home)?;
    link_tree(source, &staging)?;
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    std::fs::rename(&staging, &venv)?;
    let copied = environment_fingerprint(&venv)?;
    if copied != expected {
        return Err(io::Error::other(format!("the copied environment differs from its source ({copied} != {expected})")));
    }
    Ok(venv)
}

/// Recreates `from` at `to`: directories made, symlinks copied, files hard-linked (copied when a
/// hard link is impossible).
fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// What a zygote said when it became ready.
#[derive(Clone)]
struct Ready {
    pid: u32,
    /// Top-level names of every module it imported.
    modules: Arc<HashSet<String>>,
}

/// One fork server process.
pub struct Zygote {
    control: tokio::sync::Mutex<UnixStream>,
    ready: watch::Receiver<Option<Ready>>,
    pending: Pending,
    gone: Arc<std::sync::atomic::AtomicBool>,
    next_id: AtomicU64,
    own_python: PathBuf,
    /// Its environment's directory (`.fork-servers/<fingerprint>`).
    home: PathBuf,
}

impl Zygote {
    fn start(home: &Path, env: &[(String, String)], stop: CancellationToken) -> io::Result<Arc<Self>> {
        let python = home.join(".venv/bin/python");
        let python = python.as_path();
        let (daemon_end, zygote_end) = UnixStream::pair()?;
        let zygote_fd = zygote_end.as_raw_fd();
        let mut command = tokio::process::Command::new(python);
        command
            .args(["-c", ZYGOTE_SCRIPT])
            .current_dir("/")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only dup2/fcntl/prctl, which are async-signal-safe, between fork and exec. The
        // control socket becomes descriptor 3; the zygote dies with the thread that spawned it.
        unsafe {
            command.pre_exec(move || {
                let ok = if zygote_fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(zygote_fd, 3) };
                if ok == -1 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(zygote_end);
        let (ready_tx, ready) = watch::channel(None);
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let reader = daemon_end.try_clone()?;
        {
            let pending = pending.clone();
            let gone = gone.clone();
            std::thread::Builder::new()
                .name("plugin-fork-server".into())
                .spawn(move || read_answers(reader, ready_tx, pending, gone))?;
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = super::environment::CappedLines::new(stderr);
                while let Some(line) = lines.next_line().await {
                    tracing::warn!("plugin fork server stderr: {line}");
                }
            });
        }
        let mut ready_wait = ready.clone();
        let gone_flag = gone.clone();
        tokio::spawn(async move {
            let became_ready = async move { ready_wait.wait_for(|r| r.is_some()).await.map(|_| ()) };
            tokio::select! {
                status = child.wait() => {
                    tracing::warn!(?status, "plugin fork server exited before it was ready");
                    gone_flag.store(true, Ordering::Relaxed);
                    return;
                }
                answer = tokio::time::timeout(Duration::from_secs(300), became_ready) => {
                    if !matches!(answer, Ok(Ok(_))) {
                        tracing::warn!("plugin fork server did not become ready; stopping it");
                        gone_flag.store(true, Ordering::Relaxed);
                        let _ = child.start_kill();
                        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                        return;
                    }
                }
                _ = stop.cancelled() => {}
            }
            tokio::select! {
                status = child.wait() => tracing::warn!(?status, "plugin fork server exited"),
                _ = stop.cancelled() => {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                }
            }
            gone_flag.store(true, Ordering::Relaxed);
        });
        Ok(Arc::new(Self {
            control: tokio::sync::Mutex::new(daemon_end),
            ready,
            pending,
            gone,
            next_id: AtomicU64::new(1),
            own_python: python.to_path_buf(),
            home: home.to_path_buf(),
        }))
    }

    /// The zygote's own environment directory (the plugin's sandbox must let it read there).
    pub fn environment(&self) -> &Path {
        &self.home
    }

    /// Forks the plugin. `steps` are the sandbox's child-side steps, applied by the child itself;
    /// `request.env` is the plugin's complete environment (the sandbox's variables included).
    pub async fn fork(&self, request: &ForkRequest<'_>, steps: Option<ForkSteps>) -> Result<Forked, ForkError> {
        let (stdin_read, stdin_write) = pipe()?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let venv = request.python.parent().and_then(Path::parent).unwrap_or(request.working_dir);
        let site: Vec<String> = std::fs::read_dir(venv.join("lib"))?
            .flatten()
            .map(|lib| lib.path().join("site-packages"))
            .filter(|site| site.is_dir())
            .map(|site| site.display().to_string())
            .collect();
        let (sandbox, extra_fds) = match &steps {
            None => (serde_json::Value::Null, Vec::new()),
            Some(steps) => {
                let mut fds: Vec<RawFd> = steps.cgroup_fds.iter().map(AsRawFd::as_raw_fd).collect();
                fds.extend(steps.landlock.as_ref().map(AsRawFd::as_raw_fd));
                let sandbox = serde_json::json!({
                    "binds": steps.binds.iter().map(|(s, t)| [s.display().to_string(), t.display().to_string()]).collect::<Vec<_>>(),
                    "chdir": steps.chdir.as_ref().map(|p| p.display().to_string()),
                    "cgroups": steps.cgroup_fds.len(),
                    "rlimits": steps.rlimits,
                    "uid": steps.ids,
                    "landlock": steps.landlock.is_some(),
                    "landlock_restrict_self": libc::SYS_landlock_restrict_self,
                });
                (sandbox, fds)
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let env: serde_json::Map<String, serde_json::Value> =
            request.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let line = serde_json::json!({
            "id": id,
            "cwd": request.working_dir.display().to_string(),
            "env": env,
            "site": site,
            "executable": request.python.display().to_string(),
            "prefix": venv.display().to_string(),
            "module": request.entrypoint,
            "fds": 3 + extra_fds.len(),
            "sandbox": sandbox,
        })
        .to_string()
            + "\n";
        let (answer_tx, answer) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, answer_tx);
        {
            let control = self.control.lock().await;
            if self.gone.load(Ordering::Relaxed) {
                return Err(ForkError::Gone);
            }
            let mut fds = vec![stdin_read.as_raw_fd(), stdout_write.as_raw_fd(), stderr_write.as_raw_fd()];
            fds.extend(&extra_fds);
            let sent = send_with_fds(&control, line.as_bytes(), &fds)?;
            (&*control).write_all(&line.as_bytes()[sent..])?;
        }
        // The child has its own copies now (or the request failed): the daemon keeps only its ends.
        drop((stdin_read, stdout_write, stderr_write, steps));
        let answer = match tokio::time::timeout(FORK_ANSWER_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(ForkError::Gone),
            Err(_) => {
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                return Err(ForkError::Timeout(FORK_ANSWER_TIMEOUT));
            }
        };
        let (pid, exit) = answer.map_err(ForkError::Refused)?;
        tracing::debug!(pid, zygote = %self.own_python.display(), "plugin forked");
        Ok(Forked {
            child: ForkedChild { pid, exit },
            stdin: tokio::net::unix::pipe::Sender::from_owned_fd(stdin_write)?,
            stdout: tokio::net::unix::pipe::Receiver::from_owned_fd(stdout_read)?,
            stderr: tokio::net::unix::pipe::Receiver::from_owned_fd(stderr_read)?,
        })
    }
}

/// A forked child's pid and exit status, or why the zygote refused.
type ForkAnswer = Result<(u32, watch::Receiver<Option<ExitStatus>>), String>;
/// Fork requests waiting for their answer, by request id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ForkAnswer>>>>;

/// The zygote's answers, on a thread of their own: `ready`, `forked`/`failed` (to the waiting
/// request) and `exit` (to the child's handle). When the zygote is gone its children are too (they
/// have its parent-death signal); their handles then report a kill.
fn read_answers(stream: UnixStream, ready: watch::Sender<Option<Ready>>, pending: Pending, gone: Arc<std::sync::atomic::AtomicBool>) {
    let mut exits: HashMap<u32, watch::Sender<Option<ExitStatus>>> = HashMap::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            tracing::warn!("unreadable answer of the plugin fork server: {line}");
            continue;
        };
        if message["ready"] == true {
            let modules = message["modules"]
                .as_array()
                .map(|m| m.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let pid = message["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
            ready.send_replace(Some(Ready { pid, modules: Arc::new(modules) }));
        } else if let Some(id) = message["forked"].as_u64() {
            let Some(pid) = message["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else { continue };
            let (exit_tx, exit_rx) = watch::channel(None);
            exits.insert(pid, exit_tx);
            let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            match waiter {
                Some(waiter) => {
                    if let Err(Ok((pid, _))) = waiter.send(Ok((pid, exit_rx))) {
                        kill_group(pid);
                    }
                }
                // Nobody waits any more (timed out): the child must not live on unsupervised.
                None => kill_group(pid),
            }
        } else if let Some(id) = message["failed"].as_u64() {
            let error = message["error"].as_str().unwrap_or("unknown error").to_string();
            if let Some(waiter) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                let _ = waiter.send(Err(error));
            }
        } else if let Some(pid) = message["exit"].as_u64().and_then(|p| u32::try_from(p).ok()) {
            let status = message["status"].as_i64().and_then(|s| i32::try_from(s).ok()).unwrap_or(libc::SIGKILL);
            if let Some(exit) = exits.remove(&pid) {
                exit.send_replace(Some(ExitStatus::from_raw(status)));
            }
        }
    }
    gone.store(true, Ordering::Relaxed);
    ready.send_replace(None);
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    for (_, exit) in exits {
        exit.send_replace(Some(ExitStatus::from_raw(libc::SIGKILL)));
    }
}

/// A plugin process forked by a zygote. The zygote reaps it; this handle learns its exit status and
/// kills its process group (also when dropped while it runs, like `kill_on_drop`).
pub struct ForkedChild {
    pid: u32,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl ForkedChild {
    /// The pid while the child has not exited.
    pub fn pid(&self) -> Option<u32> {
        self.exited().is_none().then_some(self.pid)
    }

    fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }
}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if self.exited().is_none() {
            kill_group(self.pid);
        }
    }
}

/// A supervised plugin process: spawned by the daemon, or forked by a zygote.
pub enum ChildProcess {
    Spawned(tokio::process::Child),
    Forked(ForkedChild),
}

impl ChildProcess {
    /// The pid while the process has not been reaped.
    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Spawned(child) => child.id(),
            Self::Forked(child) => child.pid(),
        }
    }

    /// Whether the zygote forked it.
    pub fn is_forked(&self) -> bool {
        matches!(self, Self::Forked(_))
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Spawned(child) => child.wait().await,
            Self::Forked(child) => {
                let status = *child.exit.wait_for(|s| s.is_some()).await.map_err(|_| io::Error::other("fork server gone"))?;
                Ok(status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL)))
            }
        }
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Self::Spawned(child) => child.try_wait(),
            Self::Forked(child) => Ok(child.exited()),
        }
    }

    pub fn start_kill(&mut self) -> io::Result<()> {
        match self {
            Self::Spawned(child) => child.start_kill(),
            Self::Forked(child) => {
                if child.exited().is_none() {
                    let pid = i32::try_from(child.pid).map_err(io::Error::other)?;
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
                }
                Ok(())
            }
        }
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A pipe, both ends close-on-exec: `(read, write)`.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`); returns how many bytes of `data` went out.
fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header with `fds` (CMSG_SPACE above).
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(header), fd_bytes);
    }
    loop {
        // SAFETY: a valid socket and a message built above.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv_with(dir: &Path, dists: &[&str]) -> PathBuf {
        let venv = dir.join(".venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\nversion_info = 3.12.1\nprompt = x\n").unwrap();
        std::os::unix::fs::symlink("/bin/sh", venv.join("bin/python")).unwrap();
        let site = venv.join("lib/python3.12/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        for dist in dists {
            std::fs::create_dir_all(site.join(format!("{dist}.dist-info"))).unwrap();
        }
        venv
    }

    #[test]
    fn fingerprints_follow_distribution_versions() {
        let root = tempfile::tempdir().unwrap();
        let a = venv_with(&root.path().join("a"), &["dify_plugin-0.10.2", "six-1.16.0"]);
        let b = venv_with(&root.path().join("b"), &["six-1.16.0", "dify_plugin-0.10.2"]);
        let c = venv_with(&root.path().join("c"), &["dify_plugin-0.10.2", "six-1.17.0"]);
        let d = venv_with(&root.path().join("d"), &["dify_plugin-0.10.2"]);
        let fa = environment_fingerprint(&a).unwrap();
        assert_eq!(fa, environment_fingerprint(&b).unwrap());
        assert_ne!(fa, environment_fingerprint(&c).unwrap());
        assert_ne!(fa, environment_fingerprint(&d).unwrap());
        // Cached next to the venv, and read back from there.
        assert_eq!(std::fs::read_to_string(a.join(FINGERPRINT_FILE)).unwrap(), fa);
        assert_eq!(environment_fingerprint(&a).unwrap(), fa);
        assert!(environment_fingerprint(&root.path().join("none")).is_err());
    }

    #[test]
    fn local_modules_that_shadow_preloaded_ones_prevent_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.py"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("tools")).unwrap();
        let ready = Ready { pid: 1, modules: Arc::new(["yaml".to_string(), "dify_plugin".to_string()].into_iter().collect()) };
        let env = vec![("PATH".to_string(), "/bin".to_string())];
        let request = ForkRequest {
            identifier: "a/b:1@x",
            working_path: dir.path(),
            working_dir: dir.path(),
            python: Path::new("/x"),
            entrypoint: "main",
            env: &env,
        };
        assert_eq!(mismatch(&ready, &request, &env), None);
        let other = vec![("PYTHONUNBUFFERED".to_string(), "1".to_string())];
        assert!(mismatch(&ready, &request, &other).is_some());
        std::fs::write(dir.path().join("yaml.py"), "").unwrap();
        assert!(mismatch(&ready, &request, &env).unwrap().contains("yaml"));
    }
}
