//! Plugin isolation: what keeps a local plugin process away from the daemon's secrets, files and
//! processes, and from other plugins, using only what Linux offers without extra services.
//!
//! Layers (each applied when the host offers it; [`SandboxReport`] lists which are active):
//! - `non_dumpable`: the daemon marks itself non-dumpable, so processes of its uid cannot read its
//!   `/proc/<pid>/{environ,mem,fd,...}` or attach to it;
//! - `uid`: when the daemon runs as root, each plugin runs under its own unprivileged uid/gid
//!   (`PLUGIN_SANDBOX_UID_BASE` + hash of its identifier), its directory owned by that uid and closed
//!   to others, so it can neither signal nor trace the daemon or another plugin;
//! - `landlock`: file-system rules (no root needed) limiting the plugin to the system directories,
//!   its interpreter, its own directory and its temporary directory; with Landlock ABI 6 it also
//!   cannot signal processes outside its own domain;
//! - `memory_cgroup` / `pids_cgroup`: the manifest's `resource.memory` and
//!   `PLUGIN_SANDBOX_MAX_PROCESSES` enforced per plugin (cgroup v2 or v1); without a memory cgroup
//!   the memory falls back to `RLIMIT_AS` (see [`memory_fallback_limit`]);
//! - `private_tmp`: a mount namespace (root only) where `/tmp` is the plugin's own directory and the
//!   daemon's directories are covered;
//! - `rlimits`: `RLIMIT_NOFILE`, `RLIMIT_CORE` = 0 and (under its own uid) `RLIMIT_NPROC`.
//!
//! Owns: the level setting, probing the host, preparing one plugin's confinement before it is
//! spawned ([`Sandbox::prepare`] → [`PluginJail`]) and the child-side steps between `fork` and
//! `exec` (async-signal-safe only: everything is prepared in the daemon first). Must not: spawn or
//! supervise processes (see `local`) or build environments (see `environment`).

mod cgroup;
mod mounts;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Settings;

pub use cgroup::CgroupVersion;

pub use crate::config::SandboxLevel;

/// The sandbox part of the settings (`PLUGIN_SANDBOX*`), plus the daemon's own directories that
/// plugins must not see.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub level: SandboxLevel,
    pub uid_base: u32,
    pub uid_range: u32,
    pub max_processes: u64,
    pub max_open_files: u64,
    /// Extra read-only paths (`PLUGIN_SANDBOX_READ_PATHS`).
    pub read_paths: Vec<PathBuf>,
    /// Directories of the daemon covered in a plugin's view (current directory, storage root,
    /// database directory, plugin working path).
    pub hidden_paths: Vec<PathBuf>,
}

impl SandboxSettings {
    pub fn from_settings(settings: &Settings) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut hidden = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            hidden.push(cwd);
        }
        hidden.push(absolute(&settings.storage_root()));
        hidden.push(absolute(Path::new(&settings.plugin_working_path)));
        if let Some(parent) = absolute(Path::new(&settings.db_sqlite_path)).parent() {
            hidden.push(parent.to_path_buf());
        }
        Self {
            level: settings.plugin_sandbox,
            uid_base: settings.plugin_sandbox_uid_base,
            uid_range: settings.plugin_sandbox_uid_range.max(1),
            max_processes: settings.plugin_sandbox_max_processes,
            max_open_files: settings.plugin_sandbox_max_open_files,
            read_paths: std::env::split_paths(settings.plugin_sandbox_read_paths.as_deref().unwrap_or_default())
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            hidden_paths: hidden,
        }
    }
}

/// Why a plugin could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("PLUGIN_SANDBOX=strict but these isolation layers are unavailable on this host: {0}")]
    Unavailable(String),
    #[error("no free plugin uid in PLUGIN_SANDBOX_UID_BASE..+PLUGIN_SANDBOX_UID_RANGE")]
    NoFreeUid,
    #[error("cannot prepare the plugin sandbox ({step}): {source}")]
    Io { step: &'static str, source: io::Error },
    #[error("cannot build the Landlock rules: {0}")]
    Landlock(String),
}

fn io_step(step: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Io { step, source }
}

/// Which layers are active, for the start-up log and `/health/check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxReport {
    pub level: SandboxLevel,
    pub layers: BTreeMap<&'static str, bool>,
    /// The kernel's Landlock ABI version (0 = none).
    pub landlock_abi: i32,
    /// `v1` or `v2` when a memory cgroup is used.
    pub memory_cgroup_version: Option<&'static str>,
}

impl SandboxReport {
    /// The layers that are not active, comma-separated.
    pub fn missing(&self) -> String {
        self.layers.iter().filter(|(_, on)| !**on).map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

/// What a plugin process may read besides its interpreter, its own directory and its `/tmp`.
const SYSTEM_READ_PATHS: &[&str] =
    &["/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys", "/run/systemd/resolve", "/run/resolvconf"];

/// Variables of the plugin environment naming files it must be able to read.
const PATH_VARIABLES: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TIKTOKEN_CACHE_DIR"];

/// What the host offers, probed once.
struct Host {
    root: bool,
    landlock_abi: i32,
    cgroups: cgroup::Hierarchies,
}

/// The daemon-wide sandbox: settings, what the host offers, and the uids in use.
pub struct Sandbox {
    settings: SandboxSettings,
    host: OnceLock<Host>,
    /// uid → (identifier, running instances).
    uids: Mutex<HashMap<u32, (String, usize)>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("settings", &self.settings).finish()
    }
}

/// Distinguishes the per-spawn directories and groups of successive instances of one plugin.
static SPAWNS: AtomicU64 = AtomicU64::new(0);

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Arc<Self> {
        Arc::new(Self { settings, host: OnceLock::new(), uids: Mutex::new(HashMap::new()) })
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    pub fn level(&self) -> SandboxLevel {
        self.settings.level
    }

    fn host(&self) -> &Host {
        self.host.get_or_init(|| Host {
            // SAFETY: geteuid cannot fail.
            root: unsafe { libc::geteuid() } == 0,
            landlock_abi: landlock_abi(),
            cgroups: cgroup::detect(),
        })
    }

    /// Marks this process non-dumpable (unless the level is `off`); returns whether it now is.
    /// Called at daemon (and `dify plugin run`) start-up, and again before the first plugin starts.
    pub fn protect_this_process(&self) -> bool {
        if self.settings.level == SandboxLevel::Off {
            return false;
        }
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 }
    }

    /// Which layers are active.
    pub fn report(&self) -> SandboxReport {
        let on = self.settings.level != SandboxLevel::Off;
        let mut layers = BTreeMap::new();
        let (abi, memory_version) = if on {
            let host = self.host();
            // SAFETY: prctl with integer arguments only.
            let non_dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } == 0;
            layers.insert("non_dumpable", non_dumpable);
            layers.insert("uid", host.root);
            layers.insert("landlock", host.landlock_abi >= 1);
            layers.insert("memory_cgroup", host.cgroups.memory.is_some());
            layers.insert("pids_cgroup", host.cgroups.pids.is_some());
            layers.insert("private_tmp", host.root);
            layers.insert("rlimits", true);
            (host.landlock_abi, host.cgroups.memory.as_ref().map(|c| c.version.as_str()))
        } else {
            for name in ["non_dumpable", "uid", "landlock", "memory_cgroup", "pids_cgroup", "private_tmp", "rlimits"] {
                layers.insert(name, false);
            }
            (0, None)
        };
        SandboxReport { level: self.settings.level, layers, landlock_abi: abi.max(0), memory_cgroup_version: memory_version }
    }

    /// Prepares the confinement of one plugin instance. Nothing is applied to the daemon itself except
    /// non-dumpability; the returned jail is applied to the child [`PluginJail::apply`].
    pub fn prepare(self: &Arc<Self>, request: &JailRequest<'_>) -> Result<PluginJail, SandboxError> {
        if self.settings.level == SandboxLevel::Off {
            return Ok(PluginJail::none());
        }
        self.protect_this_process();
        let report = self.report();
        if self.settings.level == SandboxLevel::Strict && report.layers.values().any(|on| !on) {
            return Err(SandboxError::Unavailable(report.missing()));
        }
        let host = self.host();
        let spawn = SPAWNS.fetch_add(1, Ordering::Relaxed);
        // Unique per daemon process and instance: daemons on one host share the cgroup parent.
        let slug = format!("{}-{}-{spawn}", short_hash(request.identifier), std::process::id());
        let state_dir = request.working_path.join(".sandbox");
        let working_dir = request.working_dir.canonicalize().map_err(io_step("working directory"))?;
        let mut jail = PluginJail::none();
        jail.memory_limit = request.memory_limit.filter(|m| *m > 0);

        // Identity.
        let ids = if host.root {
            let uid = self.lease_uid(request.identifier)?;
            jail.uid = Some(uid);
            jail.release = Some(self.clone());
            own_plugin_directory(&working_dir, uid).map_err(io_step("working directory ownership"))?;
            Some(uid)
        } else {
            None
        };

        // Temporary directory, fresh for every instance.
        let private_tmp = state_dir.join("tmp").join(&slug);
        recreate_dir(&private_tmp, ids).map_err(io_step("private /tmp"))?;
        jail.private_tmp = Some(private_tmp.clone());
        let visible_tmp = if host.root { PathBuf::from("/tmp") } else { private_tmp.clone() };
        jail.env.push(("TMPDIR".into(), visible_tmp.display().to_string()));
        jail.env.push(("HOME".into(), visible_tmp.display().to_string()));
        if ids.is_some() {
            // The environment stays read-only to the plugin; its bytecode goes to its own directory.
            jail.env.push(("PYTHONPYCACHEPREFIX".into(), working_dir.join(".pycache").display().to_string()));
        }

        // What the plugin must reach: a shared environment (`.venv` linking outside the plugin's
        // directory) is readable, never writable.
        let mut interpreter = interpreter_prefixes(&working_dir, request.python);
        if let Ok(environment) = working_dir.join(".venv").canonicalize() {
            if !environment.starts_with(&working_dir) {
                interpreter.push(environment);
            }
        }
        let mut readable: Vec<PathBuf> = SYSTEM_READ_PATHS.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
        readable.extend(interpreter.iter().cloned());
        readable.extend(self.settings.read_paths.iter().filter_map(|p| p.canonicalize().ok()));
        readable.extend(request.extra_read.iter().filter_map(|p| p.canonicalize().ok()));
        let env_paths: Vec<PathBuf> = PATH_VARIABLES
            .iter()
            .filter_map(std::env::var_os)
            .filter_map(|p| PathBuf::from(p).canonicalize().ok())
            .collect();
        readable.extend(env_paths.iter().cloned());

        let mut child = ChildSetup::default();
        if host.root {
            let mut needed = vec![working_dir.clone()];
            needed.extend(interpreter.iter().cloned());
            needed.extend(self.settings.read_paths.iter().filter_map(|p| p.canonicalize().ok()));
            needed.extend(request.extra_read.iter().filter_map(|p| p.canonicalize().ok()));
            needed.extend(env_paths.iter().cloned());
            let hidden: Vec<PathBuf> = self
                .settings
                .hidden_paths
                .iter()
                .filter_map(|p| p.canonicalize().ok())
                .filter(|p| coverable(p, &needed))
                .collect();
            let shadow = state_dir.join("shadow").join(&slug);
            let plan = mounts::MountPlan::new(&private_tmp, &hidden, &needed, &shadow, &working_dir)
                .map_err(io_step("private mount namespace"))?;
            jail.shadow = Some(shadow);
            child.mounts = Some(plan);
        }

        // Control groups.
        let group_name = format!("{}-{slug}", sanitize(request.identifier));
        if let (Some(controller), Some(limit)) = (&host.cgroups.memory, jail.memory_limit) {
            let group = cgroup::Group::create(controller, &group_name).map_err(io_step("memory cgroup"))?;
            group.limit_memory(limit).map_err(io_step("memory limit"))?;
            child.cgroup_fds.push(group.procs_fd().map_err(io_step("memory cgroup"))?);
            jail.oom_baseline = group.oom_kills();
            jail.memory_group = Some(group);
        }
        if let Some(controller) = &host.cgroups.pids {
            let same_group = jail.memory_group.as_ref().filter(|g| g.dir.starts_with(&controller.base));
            if same_group.is_none() {
                let group = cgroup::Group::create(controller, &group_name).map_err(io_step("pids cgroup"))?;
                group.limit_pids(self.settings.max_processes).map_err(io_step("pids limit"))?;
                child.cgroup_fds.push(group.procs_fd().map_err(io_step("pids cgroup"))?);
                jail.pids_group = Some(group);
            } else if let Some(group) = &jail.memory_group {
                group.limit_pids(self.settings.max_processes).map_err(io_step("pids limit"))?;
            }
        }

        // Resource limits.
        child.rlimits.push((libc::RLIMIT_CORE, 0));
        child.rlimits.push((libc::RLIMIT_NOFILE, self.settings.max_open_files));
        if ids.is_some() {
            child.rlimits.push((libc::RLIMIT_NPROC, self.settings.max_processes));
        }
        if let (None, Some(limit)) = (&jail.memory_group, jail.memory_limit) {
            child.rlimits.push((libc::RLIMIT_AS, memory_fallback_limit(limit)));
        }
        child.ids = ids;

        // File-system rules.
        if host.landlock_abi >= 1 {
            let writable = vec![working_dir.clone(), private_tmp.clone()];
            child.landlock = build_landlock(&readable, &writable)?;
        }
        jail.child = Some(child);
        Ok(jail)
    }

    fn lease_uid(&self, identifier: &str) -> Result<u32, SandboxError> {
        let range = self.settings.uid_range.max(1);
        let start = (hash64(identifier) % u64::from(range)) as u32;
        let mut uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        for step in 0..range {
            let uid = self.settings.uid_base.saturating_add((start + step) % range);
            match uids.get_mut(&uid) {
                Some((owner, count)) if owner == identifier => {
                    *count += 1;
                }
                Some(_) => continue,
                None => {
                    uids.insert(uid, (identifier.to_string(), 1));
                }
            }
            return Ok(uid);
        }
        Err(SandboxError::NoFreeUid)
    }

    /// The uid a plugin currently runs under, if the uid layer gave it one.
    pub fn uid_of(&self, identifier: &str) -> Option<u32> {
        let uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        uids.iter().find(|(_, (owner, _))| owner == identifier).map(|(uid, _)| *uid)
    }

    fn release_uid(&self, uid: u32) {
        let mut uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, count)) = uids.get_mut(&uid) {
            *count -= 1;
            if *count == 0 {
                uids.remove(&uid);
            }
        }
    }
}

/// Makes the daemon non-dumpable and says which layers are active (log and standard error).
pub fn report_at_start_up(sandbox: &Sandbox) {
    sandbox.protect_this_process();
    let report = sandbox.report();
    let active: Vec<&str> = report.layers.iter().filter(|(_, on)| **on).map(|(name, _)| *name).collect();
    let missing = report.missing();
    tracing::info!(level = report.level.as_str(), active = ?active, unavailable = %missing, "plugin sandbox");
    if report.level != SandboxLevel::Off {
        eprintln!(
            "plugin sandbox: {} (active: {}; unavailable: {})",
            report.level.as_str(),
            if active.is_empty() { "none".to_string() } else { active.join(", ") },
            if missing.is_empty() { "none" } else { &missing }
        );
    } else {
        eprintln!("plugin sandbox: off (plugins run with the daemon's uid and see its files)");
    }
}

/// The address-space limit used when no memory cgroup exists: twice the declared memory, at least
/// the declared memory plus 1 GiB. `RLIMIT_AS` counts reserved virtual memory (thread stacks,
/// arenas, mapped files), not resident memory, and applies per process, not to the plugin's
/// children together; an allocation past it fails (Python raises `MemoryError`) instead of the
/// process being killed.
pub fn memory_fallback_limit(declared: u64) -> u64 {
    declared.saturating_mul(2).max(declared.saturating_add(1 << 30))
}

/// What [`Sandbox::prepare`] needs to know about the plugin.
pub struct JailRequest<'a> {
    pub identifier: &'a str,
    /// `PLUGIN_WORKING_PATH` (the sandbox keeps its per-instance directories in `.sandbox` there).
    pub working_path: &'a Path,
    pub working_dir: &'a Path,
    /// The venv interpreter the plugin runs with.
    pub python: &'a Path,
    /// `resource.memory` of the manifest.
    pub memory_limit: Option<u64>,
    /// More paths the plugin must read (a fork server's environment, see `runtime::zygote`).
    pub extra_read: &'a [PathBuf],
}

/// One plugin instance's confinement: applied to its command, then kept until the instance is gone
/// (removes its groups and directories, frees its uid when dropped).
pub struct PluginJail {
    env: Vec<(String, String)>,
    child: Option<ChildSetup>,
    memory_limit: Option<u64>,
    memory_group: Option<cgroup::Group>,
    oom_baseline: u64,
    pids_group: Option<cgroup::Group>,
    /// The uid leased from `release`'s table.
    uid: Option<u32>,
    private_tmp: Option<PathBuf>,
    shadow: Option<PathBuf>,
    release: Option<Arc<Sandbox>>,
}

impl PluginJail {
    fn none() -> Self {
        PluginJail {
            env: Vec::new(),
            child: None,
            memory_limit: None,
            memory_group: None,
            oom_baseline: 0,
            pids_group: None,
            uid: None,
            private_tmp: None,
            shadow: None,
            release: None,
        }
    }

    /// Adds the jail's variables and its pre-`exec` steps to `command`. Call after the command's
    /// environment is set and before any other `pre_exec` hook, so the parent-death signal set by a
    /// later hook survives the uid change.
    pub fn apply(&mut self, command: &mut tokio::process::Command) {
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(child) = self.child.take() {
            // SAFETY: `ChildSetup::enter` only makes async-signal-safe syscalls on data prepared
            // before the fork.
            unsafe {
                command.pre_exec(move || child.enter());
            }
        }
    }

    /// The jail's variables for the plugin process (`TMPDIR`, `HOME`, `PYTHONPYCACHEPREFIX`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The child-side steps as data, for a child that applies them itself after a fork from a
    /// pre-started interpreter (`runtime::zygote`) instead of [`PluginJail::apply`]'s pre-`exec`
    /// hook. `None` when there are none (level `off`). Taken once.
    pub fn take_fork_steps(&mut self) -> Option<ForkSteps> {
        let child = self.child.take()?;
        let (binds, chdir) = match &child.mounts {
            Some(plan) => {
                let (binds, chdir) = plan.steps();
                (binds, Some(chdir))
            }
            None => (Vec::new(), None),
        };
        Some(ForkSteps {
            binds,
            chdir,
            cgroup_fds: child.cgroup_fds,
            rlimits: child.rlimits.into_iter().map(|(resource, value)| (resource as i32, value)).collect(),
            ids: child.ids,
            landlock: child.landlock,
        })
    }

    /// The uid the plugin runs under, when the uid layer applies.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// When the kernel killed the plugin for exceeding its memory limit: the message saying so.
    pub fn memory_kill_message(&self) -> Option<String> {
        let group = self.memory_group.as_ref()?;
        let limit = self.memory_limit?;
        (group.oom_kills() > self.oom_baseline)
            .then(|| format!("plugin was killed for exceeding its memory limit of {limit} bytes (resource.memory of its manifest)"))
    }
}

impl Drop for PluginJail {
    fn drop(&mut self) {
        if let Some(group) = self.memory_group.take() {
            group.remove();
        }
        if let Some(group) = self.pids_group.take() {
            group.remove();
        }
        for dir in [self.private_tmp.take(), self.shadow.take()].into_iter().flatten() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let (Some(uid), Some(sandbox)) = (self.uid.take(), self.release.take()) {
            sandbox.release_uid(uid);
        }
    }
}

/// [`ChildSetup`] as data for a forked child that applies it itself, in the same order: bind mounts
/// in a new mount namespace (then `chdir`), join the cgroups (write `0` to each `cgroup.procs`
/// descriptor), resource limits, uid/gid without supplementary groups, parent-death signal, then
/// `no_new_privs` and `landlock_restrict_self` with the ruleset descriptor.
pub struct ForkSteps {
    pub binds: Vec<(PathBuf, PathBuf)>,
    pub chdir: Option<PathBuf>,
    pub cgroup_fds: Vec<OwnedFd>,
    /// `(RLIMIT_* number, value)`, soft = hard.
    pub rlimits: Vec<(i32, u64)>,
    /// uid = gid.
    pub ids: Option<u32>,
    pub landlock: Option<OwnedFd>,
}

/// Everything the child does between `fork` and `exec`, prepared in the daemon.
#[derive(Default)]
struct ChildSetup {
    mounts: Option<mounts::MountPlan>,
    cgroup_fds: Vec<OwnedFd>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// uid = gid.
    ids: Option<u32>,
    landlock: Option<OwnedFd>,
}

impl ChildSetup {
    /// Runs in the forked child: mounts (as root), cgroups, limits, identity, then Landlock.
    fn enter(&self) -> io::Result<()> {
        // SAFETY: only async-signal-safe syscalls on memory prepared before the fork.
        unsafe {
            if let Some(mounts) = &self.mounts {
                mounts.enter()?;
            }
            for fd in &self.cgroup_fds {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (resource, value) in &self.rlimits {
                let limit = libc::rlimit { rlim_cur: *value, rlim_max: *value };
                if libc::setrlimit(*resource, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(id) = self.ids {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setresgid(id, id, id) != 0 || libc::setresuid(id, id, id) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // A uid change clears the parent-death signal: set it again.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(ruleset) = &self.landlock {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// The kernel's Landlock ABI version, 0 when Landlock is absent or disabled.
fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: no ruleset pointer, size 0.
    let abi = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<libc::c_void>(), 0usize, LANDLOCK_CREATE_RULESET_VERSION)
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

/// A Landlock ruleset: read (and execute) `readable`, everything in `writable`, read/write devices
/// in `/dev`; with ABI 6, no signals or abstract sockets beyond the plugin's own domain.
fn build_landlock(readable: &[PathBuf], writable: &[PathBuf]) -> Result<Option<OwnedFd>, SandboxError> {
    use landlock::{Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI};
    let abi = ABI::V6;
    let error = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(error)?
        .scope(Scope::from_all(abi))
        .map_err(error)?
        .create()
        .map_err(error)?;
    let mut rules: Vec<(&Path, landlock::BitFlags<AccessFs>)> = Vec::new();
    for path in readable {
        let access = if path.is_dir() { AccessFs::from_read(abi) } else { AccessFs::from_read(abi) & !AccessFs::ReadDir };
        rules.push((path, access));
    }
    for path in writable {
        rules.push((path, AccessFs::from_all(abi)));
    }
    rules.push((Path::new("/dev"), AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::IoctlDev));
    for (path, access) in rules {
        // A path that vanished since it was listed is simply not granted.
        let Ok(fd) = PathFd::new(path) else { continue };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(error)?;
    }
    Ok(Option::<OwnedFd>::from(ruleset))
}

/// The interpreter installation(s) the venv uses: `home` of `pyvenv.cfg` and where the venv's
/// `python` really is, each as its installation prefix (the parent of its `bin`).
fn interpreter_prefixes(working_dir: &Path, python: &Path) -> Vec<PathBuf> {
    let mut prefixes = Vec::new();
    let config = std::fs::read_to_string(working_dir.join(".venv/pyvenv.cfg")).unwrap_or_default();
    for line in config.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "home" {
                if let Some(prefix) = Path::new(value.trim()).canonicalize().ok().and_then(|bin| bin.parent().map(Path::to_path_buf)) {
                    prefixes.push(prefix);
                }
            }
        }
    }
    if let Some(prefix) = python.canonicalize().ok().and_then(|real| real.parent()?.parent().map(Path::to_path_buf)) {
        prefixes.push(prefix);
    }
    prefixes.sort();
    prefixes.dedup();
    // A prefix such as `/usr` is already readable; covering or exposing it is not needed, but is
    // harmless: exposure only binds it at its own path.
    prefixes.retain(|p| p != Path::new("/"));
    prefixes
}

/// Whether a daemon directory may be covered in the plugin's view: not `/`, not a system directory
/// or an ancestor of one, and not itself a path the plugin needs (needed paths below it are exposed
/// inside the cover). A daemon directory inside a system directory (say `/usr/local/dify`) is covered.
fn coverable(path: &Path, needed: &[PathBuf]) -> bool {
    if path == Path::new("/") {
        return false;
    }
    let system = SYSTEM_READ_PATHS.iter().map(Path::new).any(|s| s.starts_with(path));
    // A needed path equal to the directory is exposed by not covering it at all.
    !system && !needed.iter().any(|n| n == path)
}

/// Gives the plugin's uid its directory (everything but `.venv`, which stays read-only to it), and
/// closes the directory to other users. Skipped when already done.
fn own_plugin_directory(dir: &Path, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    if meta.uid() == uid && meta.mode() & 0o077 == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == ".venv" {
            continue;
        }
        chown_tree(&entry.path(), uid)?;
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn chown_tree(path: &Path, uid: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// Removes and makes `dir` again: mode 0700, owned by `uid` when given.
fn recreate_dir(dir: &Path, uid: Option<u32>) -> io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
    }
    Ok(())
}

fn hash64(text: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

fn short_hash(text: &str) -> String {
    format!("{:012x}", hash64(text) >> 16)
}

/// A file-name-safe short form of an identifier (for cgroup names).
fn sanitize(identifier: &str) -> String {
    let name: String = identifier
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .take(48)
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FromSetting;

    #[test]
    fn levels_parse() {
        assert_eq!(SandboxLevel::from_setting("off"), Ok(SandboxLevel::Off));
        assert_eq!(SandboxLevel::from_setting("best-effort"), Ok(SandboxLevel::BestEffort));
        assert_eq!(SandboxLevel::from_setting("STRICT"), Ok(SandboxLevel::Strict));
        assert!(SandboxLevel::from_setting("paranoid").is_err());
        assert_eq!(Settings::default().plugin_sandbox, SandboxLevel::BestEffort);
    }

    #[test]
    fn uids_are_stable_distinct_and_released() {
        let mut settings = SandboxSettings::from_settings(&Settings::default());
        settings.uid_base = 30000;
        settings.uid_range = 2;
        let sandbox = Sandbox::new(settings);
        let a = sandbox.lease_uid("author/a:1@x").unwrap();
        let a_again = sandbox.lease_uid("author/a:1@x").unwrap();
        assert_eq!(a, a_again);
        let b = sandbox.lease_uid("author/b:1@y").unwrap();
        assert_ne!(a, b);
        assert!((30000..30002).contains(&a) && (30000..30002).contains(&b));
        assert!(matches!(sandbox.lease_uid("author/c:1@z"), Err(SandboxError::NoFreeUid)));
        sandbox.release_uid(b);
        assert_eq!(sandbox.lease_uid("author/c:1@z").unwrap(), b);
        // The same identifier maps to the same uid in another daemon (stable across restarts).
        let mut other = SandboxSettings::from_settings(&Settings::default());
        other.uid_base = 30000;
        other.uid_range = 2;
        assert_eq!(Sandbox::new(other).lease_uid("author/a:1@x").unwrap(), a);
    }

    #[test]
    fn fallback_memory_limit_leaves_headroom() {
        assert_eq!(memory_fallback_limit(256 << 20), (256 << 20) + (1 << 30));
        assert_eq!(memory_fallback_limit(4 << 30), 8 << 30);
    }

    #[test]
    fn strict_refuses_to_start_without_every_layer() {
        let mut settings = SandboxSettings::from_settings(&Settings::default());
        settings.level = SandboxLevel::Strict;
        let sandbox = Sandbox::new(settings);
        // A host without root, Landlock or cgroups.
        let _ = sandbox.host.set(Host { root: false, landlock_abi: 0, cgroups: cgroup::Hierarchies::default() });
        let dir = tempfile::tempdir().unwrap();
        let request = JailRequest {
            identifier: "author/name:1@x",
            working_path: dir.path(),
            working_dir: dir.path(),
            python: Path::new("/usr/bin/python3"),
            memory_limit: Some(1 << 28),
            extra_read: &[],
        };
        let error = sandbox.prepare(&request).err().expect("strict must refuse");
        let message = error.to_string();
        for layer in ["uid", "landlock", "memory_cgroup", "pids_cgroup", "private_tmp"] {
            assert!(message.contains(layer), "{message}");
        }
        assert!(!dir.path().join(".sandbox").exists(), "nothing is prepared for a refused plugin");
    }

    #[test]
    fn daemon_directories_are_covered_but_never_system_ones() {
        let needed = vec![PathBuf::from("/srv/app/cwd/testing/plugin")];
        assert!(coverable(Path::new("/srv/app"), &needed));
        assert!(coverable(Path::new("/usr/local/dify"), &needed));
        assert!(!coverable(Path::new("/"), &needed));
        assert!(!coverable(Path::new("/usr"), &needed));
        assert!(!coverable(Path::new("/run"), &needed));
        assert!(!coverable(Path::new("/srv/app/cwd/testing/plugin"), &needed));
    }

    #[test]
    fn off_reports_nothing_active() {
        let mut settings = SandboxSettings::from_settings(&Settings::default());
        settings.level = SandboxLevel::Off;
        let report = Sandbox::new(settings).report();
        assert!(report.layers.values().all(|on| !on));
        assert_eq!(serde_json::to_value(&report).unwrap()["level"], "off");
    }
}
