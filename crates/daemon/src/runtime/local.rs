//! The local (stdio) runtime of one plugin: a supervised child process `python -m <entrypoint>`.
//!
//! Owns: spawning the child in its own process group with the allow-listed environment, capturing
//! stderr, readiness on the first heartbeat, the inactivity watchdog, restarting a dead plugin with
//! backoff and a give-up limit, reaping every child, stopping it. Must not: build environments (see
//! `environment`), parse sessions (see `connection`), or know about HTTP and tenants.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dify_protocol::message::PluginSessionError;
use dify_protocol::observe::PluginLogSource;
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::RuntimeConfig;
use super::connection::{ConnectionOptions, PluginConnection};
use super::environment::{plugin_process_environment, CappedLines, OutputTail};
use super::zygote::{ChildProcess, ForkRequest};
use super::UnavailableError;

/// What is needed to start one plugin process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Plugin unique identifier (for logs and errors).
    pub identifier: String,
    pub working_dir: PathBuf,
    /// The venv interpreter.
    pub python: PathBuf,
    /// `meta.runner.entrypoint`, normally `main`.
    pub entrypoint: String,
    /// Extra variables for the plugin (tests and `dify plugin run`).
    pub extra_env: Vec<(String, String)>,
    /// `resource.memory` of the manifest, enforced by the sandbox.
    pub memory_limit: Option<u64>,
    /// Where stderr, `log` events and process notes are kept for operators (`runtime::logs`).
    pub logs: Option<Arc<super::logs::LogRing>>,
}

/// The state of a supervised plugin.
#[derive(Clone)]
pub enum InstanceState {
    /// Spawning or waiting for the first heartbeat.
    Starting,
    /// Ready; sessions go to this connection.
    Running(Arc<PluginConnection>),
    /// Given up or stopped, with the reason.
    Down(String),
}

/// Why a plugin could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("failed to start plugin process: {0}")]
    Spawn(String),
    #[error("failed to start plugin as no heartbeat received within {seconds} seconds{stderr}")]
    NoHeartbeat { seconds: u64, stderr: String },
    #[error("plugin process exited before it was ready ({status}){stderr}")]
    ExitedEarly { status: String, stderr: String },
}

/// A supervised local plugin. Cloneable handle; the supervisor task owns the child.
pub struct LocalPlugin {
    spec: LaunchSpec,
    state: watch::Sender<InstanceState>,
    stop: CancellationToken,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    restarts: std::sync::atomic::AtomicU32,
    /// How many of its starts were forks of a pre-started interpreter (`runtime::zygote`).
    forked_starts: std::sync::atomic::AtomicU32,
    pids: Mutex<Vec<u32>>,
}

struct RunningInstance {
    child: ChildProcess,
    connection: Arc<PluginConnection>,
    stderr_tail: Arc<Mutex<OutputTail>>,
    /// Ends when the child's stderr closes; awaited (briefly) so failure messages quote all of it.
    stderr_reader: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<String>,
    /// The instance's confinement (groups, uid, private directories), released when it is dropped.
    jail: super::sandbox::PluginJail,
}

impl LocalPlugin {
    /// Starts the plugin and waits until it is ready (first heartbeat). On success a supervisor keeps
    /// it running until [`LocalPlugin::stop`].
    pub async fn start(spec: LaunchSpec, config: Arc<RuntimeConfig>) -> Result<Arc<Self>, LaunchError> {
        let (state, _) = watch::channel(InstanceState::Starting);
        let plugin = Arc::new(Self {
            spec,
            state,
            stop: CancellationToken::new(),
            supervisor: Mutex::new(None),
            restarts: Default::default(),
            forked_starts: Default::default(),
            pids: Mutex::new(Vec::new()),
        });
        let instance = plugin.spawn_ready(&config).await?;
        let supervised = plugin.clone();
        let handle = tokio::spawn(async move { supervised.supervise(instance, config).await });
        if let Ok(mut slot) = plugin.supervisor.lock() {
            *slot = Some(handle);
        }
        Ok(plugin)
    }

    pub fn identifier(&self) -> &str {
        &self.spec.identifier
    }

    /// How many times the plugin was restarted after dying.
    pub fn restart_count(&self) -> u32 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many of its starts (the first and restarts) were forked from a pre-started interpreter.
    pub fn forked_starts(&self) -> u32 {
        self.forked_starts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Process ids of every child this plugin ever spawned (for tests and diagnostics).
    pub fn spawned_pids(&self) -> Vec<u32> {
        self.pids.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The current state.
    pub fn state(&self) -> InstanceState {
        self.state.borrow().clone()
    }

    /// The running connection, waiting up to `wait` while the plugin is (re)starting.
    pub async fn connection(&self, wait: Duration) -> Result<Arc<PluginConnection>, UnavailableError> {
        let mut receiver = self.state.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match receiver.borrow_and_update().clone() {
                InstanceState::Running(connection) if !connection.is_closed() => return Ok(connection),
                InstanceState::Down(reason) => return Err(UnavailableError::Down(reason)),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, receiver.changed()).await.map(|r| r.is_err()).unwrap_or(true) {
                return Err(UnavailableError::NotRunning);
            }
        }
    }

    /// Stops the plugin: the supervisor kills the process group and reaps the child. Idempotent.
    pub async fn stop(&self) {
        self.stop.cancel();
        let handle = self.supervisor.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(15), handle).await;
        }
        self.state.send_replace(InstanceState::Down("plugin stopped".into()));
    }

    async fn spawn_ready(&self, config: &RuntimeConfig) -> Result<RunningInstance, LaunchError> {
        let mut instance = self.spawn(config).await?;
        let mut heartbeats = instance.connection.heartbeats();
        let ready_timeout = config.env_init_timeout;
        let outcome = tokio::select! {
            ready = tokio::time::timeout(ready_timeout, heartbeats.wait_for(|count| *count > 0)) => match ready {
                Ok(Ok(_)) => Ok(()),
                // The reader ended (stdout closed) before a heartbeat; the child exit explains why.
                Ok(Err(_)) => Err(None),
                Err(_) => Err(Some(ready_timeout)),
            },
            // Exited before its first heartbeat.
            _ = instance.child.wait() => Err(None),
            _ = self.stop.cancelled() => Err(None),
        };
        match outcome {
            Ok(()) => {
                self.state.send_replace(InstanceState::Running(instance.connection.clone()));
                Ok(instance)
            }
            Err(timeout) => {
                let mut status = terminate(&mut instance).await;
                if let Some(killed) = instance.jail.memory_kill_message() {
                    status = format!("{status}; {killed}");
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut instance.stderr_reader).await;
                let stderr = render_tail(&instance.stderr_tail);
                instance
                    .connection
                    .close(PluginSessionError::new("PluginDaemonInternalServerError", "plugin failed to start"));
                match timeout {
                    Some(waited) => Err(LaunchError::NoHeartbeat { seconds: waited.as_secs(), stderr }),
                    None => Err(LaunchError::ExitedEarly { status, stderr }),
                }
            }
        }
    }

    async fn spawn(&self, config: &RuntimeConfig) -> Result<RunningInstance, LaunchError> {
        let env = plugin_process_environment(config, "local", &self.spec.extra_env);
        // Fork-start from a pre-started interpreter when one matches the plugin's environment.
        let fork = ForkRequest {
            identifier: &self.spec.identifier,
            working_path: &config.working_path,
            working_dir: &self.spec.working_dir,
            python: &self.spec.python,
            entrypoint: &self.spec.entrypoint,
            env: &env,
        };
        let zygote = config.zygotes.candidate(&fork, &plugin_process_environment(config, "local", &[]));
        let extra_read: Vec<std::path::PathBuf> = zygote.iter().map(|z| z.environment().to_path_buf()).collect();
        let request = super::sandbox::JailRequest {
            identifier: &self.spec.identifier,
            working_path: &config.working_path,
            working_dir: &self.spec.working_dir,
            python: &self.spec.python,
            memory_limit: self.spec.memory_limit,
            extra_read: &extra_read,
        };
        let mut jail = config.sandbox.prepare(&request).map_err(|e| LaunchError::Spawn(e.to_string()))?;
        if let Some(zygote) = zygote {
            let mut full_env = env.clone();
            full_env.extend(jail.env().iter().cloned());
            let steps = jail.take_fork_steps();
            match zygote.fork(&ForkRequest { env: &full_env, ..fork }, steps).await {
                Ok(forked) => {
                    self.forked_starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let (Some(pid), Ok(mut pids)) = (forked.child.pid(), self.pids.lock()) {
                        pids.push(pid);
                    }
                    let child = ChildProcess::Forked(forked.child);
                    return Ok(self.connect(config, child, forked.stdout, forked.stdin, forked.stderr, jail));
                }
                Err(error) => {
                    tracing::warn!(plugin = %self.spec.identifier, %error, "fork-start failed; starting normally");
                    // The jail's child-side steps went with the request: a fresh one for the normal start.
                    drop(jail);
                    jail = config.sandbox.prepare(&request).map_err(|e| LaunchError::Spawn(e.to_string()))?;
                }
            }
        }
        let mut command = Command::new(&self.spec.python);
        command
            .args(["-m", &self.spec.entrypoint])
            .current_dir(&self.spec.working_dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Before the hook below: the sandbox changes the uid, which clears the parent-death signal.
        jail.apply(&mut command);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe. The plugin gets SIGKILL when the thread that spawned it exits, so a
        // daemon killed with SIGKILL leaves no plugin behind (tokio's worker threads live as long as
        // the runtime, which is the daemon's lifetime).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| LaunchError::Spawn(format!("{}: {e}", self.spec.python.display())))?;
        if let (Some(pid), Ok(mut pids)) = (child.id(), self.pids.lock()) {
            pids.push(pid);
        }
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            return Err(LaunchError::Spawn("plugin process has no pipes".into()));
        };
        Ok(self.connect(config, ChildProcess::Spawned(child), stdout, stdin, stderr, jail))
    }

    /// Wires a started process's stdio to a connection and the stderr log.
    fn connect(
        &self,
        config: &RuntimeConfig,
        child: ChildProcess,
        stdout: impl tokio::io::AsyncRead + std::os::fd::AsRawFd + Send + Unpin + 'static,
        stdin: impl tokio::io::AsyncWrite + Send + 'static,
        stderr: impl tokio::io::AsyncRead + Send + Unpin + 'static,
        jail: super::sandbox::PluginJail,
    ) -> RunningInstance {
        widen_pipe(stdout.as_raw_fd());
        let options = ConnectionOptions {
            max_line_bytes: config.max_line_bytes,
            label: self.spec.identifier.clone(),
            logs: self.spec.logs.clone(),
            ..Default::default()
        };
        let (connection, reader) = PluginConnection::start(stdout, stdin, options);
        let stderr_tail = Arc::new(Mutex::new(OutputTail::new(20)));
        let tail = stderr_tail.clone();
        let touched = Arc::downgrade(&connection);
        let label = self.spec.identifier.clone();
        let ring = self.spec.logs.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut lines = CappedLines::new(stderr);
            while let Some(line) = lines.next_line().await {
                if let Some(connection) = touched.upgrade() {
                    connection.touch();
                }
                tracing::warn!(plugin = %label, "plugin stderr: {line}");
                if let Some(ring) = &ring {
                    ring.push(PluginLogSource::Stderr, "STDERR", &line);
                }
                if let Ok(mut tail) = tail.lock() {
                    tail.push(line);
                }
            }
        });
        RunningInstance { child, connection, stderr_tail, stderr_reader, reader, jail }
    }

    async fn supervise(self: Arc<Self>, mut instance: RunningInstance, config: Arc<RuntimeConfig>) {
        let mut failures_in_a_row = 0u32;
        loop {
            let started = Instant::now();
            let reason = self.watch_instance(&mut instance, &config).await;
            let status = terminate(&mut instance).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut instance.stderr_reader).await;
            let stopping = self.stop.is_cancelled();
            let stderr = render_tail(&instance.stderr_tail);
            let message = if stopping {
                "plugin stopped".to_string()
            } else if let Some(killed) = instance.jail.memory_kill_message() {
                tracing::error!(plugin = %self.spec.identifier, "{killed}");
                format!("{killed} ({status}){stderr}")
            } else {
                format!("plugin process exited unexpectedly ({reason}; {status}){stderr}")
            };
            instance.connection.close(PluginSessionError::new("PluginDaemonInternalServerError", message.clone()));
            if stopping {
                self.state.send_replace(InstanceState::Down(message));
                return;
            }
            tracing::warn!(plugin = %self.spec.identifier, "{message}");
            self.note("WARNING", &message);
            if started.elapsed() > Duration::from_secs(60) {
                failures_in_a_row = 0;
            }
            // Restart with exponential backoff until the give-up limit.
            loop {
                if failures_in_a_row >= config.max_restarts {
                    let reason = format!("plugin gave up after {failures_in_a_row} restarts: {message}");
                    tracing::error!(plugin = %self.spec.identifier, "{reason}");
                    self.note("ERROR", &reason);
                    self.state.send_replace(InstanceState::Down(reason));
                    return;
                }
                let backoff = config.restart_backoff.saturating_mul(1 << failures_in_a_row.min(6)).min(Duration::from_secs(30));
                failures_in_a_row += 1;
                self.state.send_replace(InstanceState::Starting);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.stop.cancelled() => {
                        self.state.send_replace(InstanceState::Down("plugin stopped".into()));
                        return;
                    }
                }
                self.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match self.spawn_ready(&config).await {
                    Ok(next) => {
                        instance = next;
                        tracing::info!(plugin = %self.spec.identifier, "plugin restarted");
                        self.note("INFO", &format!("plugin restarted (restart {})", self.restart_count()));
                        break;
                    }
                    Err(error) => tracing::warn!(plugin = %self.spec.identifier, %error, "plugin restart failed"),
                }
            }
        }
    }

    /// Records the daemon's own note about the process in the plugin's log ring.
    fn note(&self, level: &str, message: &str) {
        if let Some(ring) = &self.spec.logs {
            ring.push(PluginLogSource::Daemon, level, message);
        }
    }

    /// Waits until the instance dies, goes silent for too long, or the plugin is stopped; says why.
    async fn watch_instance(&self, instance: &mut RunningInstance, config: &RuntimeConfig) -> String {
        let check_every = (config.heartbeat_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(check_every);
        loop {
            tokio::select! {
                status = instance.child.wait() => {
                    return match status { Ok(status) => format!("exit: {status}"), Err(e) => format!("wait failed: {e}") };
                }
                output = &mut instance.reader => {
                    return output.unwrap_or_else(|e| format!("output reader failed: {e}"));
                }
                _ = ticks.tick() => {
                    if instance.connection.idle_for() > config.heartbeat_timeout {
                        return format!("no output or heartbeat for {} seconds", config.heartbeat_timeout.as_secs());
                    }
                }
                _ = self.stop.cancelled() => return "stopped".to_string(),
            }
        }
    }
}

/// Kills the child's whole process group and reaps the child; returns its exit status text.
async fn terminate(instance: &mut RunningInstance) -> String {
    if let Ok(Some(status)) = instance.child.try_wait() {
        kill_group(instance.child.id());
        return status.to_string();
    }
    kill_group(instance.child.id());
    let _ = instance.child.start_kill();
    match tokio::time::timeout(Duration::from_secs(10), instance.child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(error)) => format!("wait failed: {error}"),
        Err(_) => "did not exit after SIGKILL".to_string(),
    }
}

fn kill_group(pid: Option<u32>) {
    // The child leads its own process group (process_group(0)), so its pid is the group id.
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

fn render_tail(tail: &Arc<Mutex<OutputTail>>) -> String {
    let text = tail.lock().map(|t| t.render()).unwrap_or_default();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stderr: {text}")
    }
}

/// Bytes the plugin's stdout pipe may hold (the kernel default is 64 KiB): a plugin streaming
/// output runs ahead of the daemon's reader instead of blocking at every 64 KiB, and the reader
/// gets more lines per read.
const STDOUT_PIPE_BYTES: libc::c_int = 1024 * 1024;

/// Grows the pipe behind `fd` to [`STDOUT_PIPE_BYTES`]; a pipe that cannot grow (system limit
/// `/proc/sys/fs/pipe-max-size`, per-user pipe budget) keeps its size.
fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor this process owns; F_SETPIPE_SZ changes only the pipe's capacity
    // and fails harmlessly on anything that is not a pipe.
    let result = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, STDOUT_PIPE_BYTES) };
    if result < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "plugin stdout pipe keeps its size");
    }
}
