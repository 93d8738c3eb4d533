//! Per-plugin control groups: the memory limit declared by the manifest (`resource.memory`) and the
//! process limit, on cgroup v2 (`memory.max`, `pids.max`) or v1 (`memory.limit_in_bytes`, `pids.max`),
//! whichever hierarchy the host offers. Groups are created below the daemon's own group
//! (`<own group>/dify-plugins/<plugin>`), so the daemon's own limits still bound its plugins.
//!
//! Owns: finding the hierarchies, creating, limiting, counting OOM kills of and removing the
//! groups. The child joins its groups itself before `exec` (writing `0` to `cgroup.procs` through a
//! descriptor opened here), so no plugin instruction ever runs outside its limits.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which cgroup hierarchy a controller lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

/// A usable controller: the directory below which per-plugin groups are created.
#[derive(Debug, Clone)]
pub struct Controller {
    pub version: CgroupVersion,
    pub base: PathBuf,
}

/// The controllers found on this host (each `None` when unusable, e.g. not mounted or not writable).
#[derive(Debug, Clone, Default)]
pub struct Hierarchies {
    pub memory: Option<Controller>,
    pub pids: Option<Controller>,
}

const GROUP_DIR: &str = "dify-plugins";

/// Finds the memory and pids controllers: cgroup v2 when it has them (enabling them for the
/// plugins' parent group), else the v1 hierarchies. Never fails; what cannot be used is `None`.
pub fn detect() -> Hierarchies {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let membership = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mounts = parse_mounts(&mountinfo);
    let mut found = Hierarchies::default();
    if let Some(v2) = v2_base(&mounts, &membership) {
        let controllers = fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        let available: Vec<&str> = controllers.split_whitespace().collect();
        let wanted: Vec<&str> = ["memory", "pids"].into_iter().filter(|c| available.contains(c)).collect();
        if !wanted.is_empty() && enable_v2(&v2, &wanted).is_ok() {
            let controller =
                |name: &str| wanted.contains(&name).then(|| Controller { version: CgroupVersion::V2, base: v2.join(GROUP_DIR) });
            found.memory = controller("memory");
            found.pids = controller("pids");
        }
    }
    for (name, slot) in [("memory", &mut found.memory), ("pids", &mut found.pids)] {
        if slot.is_some() {
            continue;
        }
        if let Some(base) = v1_base(&mounts, &membership, name) {
            let base = base.join(GROUP_DIR);
            if fs::create_dir_all(&base).is_ok() && writable_group(&base) {
                *slot = Some(Controller { version: CgroupVersion::V1, base });
            }
        }
    }
    found
}

struct Mount {
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?.to_string();
            let _source = right.next();
            let options = right.next().unwrap_or_default().split(',').map(str::to_owned).collect();
            Some(Mount { point: PathBuf::from(point.replace("\\040", " ")), fstype, options })
        })
        .collect()
}

/// `<cgroup2 mount>/<own v2 path>`.
fn v2_base(mounts: &[Mount], membership: &str) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let own = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.point.join(own.trim_start_matches('/')))
}

/// `<v1 mount of controller>/<own path in that hierarchy>`.
fn v1_base(mounts: &[Mount], membership: &str, controller: &str) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))?;
    let own = membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',').any(|c| c == controller).then_some(path)
    })?;
    Some(mount.point.join(own.trim_start_matches('/')))
}

/// A group directory is usable when a child group can be created and removed in it.
fn writable_group(base: &Path) -> bool {
    let probe = base.join(format!(".probe-{}", std::process::id()));
    let created = fs::create_dir(&probe).is_ok();
    if created {
        let _ = fs::remove_dir(&probe);
    }
    created
}

/// Makes `controllers` available to `<own>/dify-plugins/*`. A v2 group that holds processes cannot
/// hand controllers to children, so the daemon first moves itself into a leaf `<own>/dify-daemon`.
fn enable_v2(own: &Path, controllers: &[&str]) -> io::Result<()> {
    let request: String = controllers.iter().map(|c| format!("+{c} ")).collect();
    let request = request.trim_end();
    if fs::write(own.join("cgroup.subtree_control"), request).is_err() {
        let leaf = own.join("dify-daemon");
        fs::create_dir_all(&leaf)?;
        fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())?;
        fs::write(own.join("cgroup.subtree_control"), request)?;
    }
    let plugins = own.join(GROUP_DIR);
    fs::create_dir_all(&plugins)?;
    fs::write(plugins.join("cgroup.subtree_control"), request)?;
    if !writable_group(&plugins) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "cgroup not writable"));
    }
    Ok(())
}

/// One plugin's group in one hierarchy.
#[derive(Debug)]
pub struct Group {
    pub version: CgroupVersion,
    pub dir: PathBuf,
}

impl Group {
    /// Creates (or reuses, after killing what was left in it) the group `name` below `controller`.
    pub fn create(controller: &Controller, name: &str) -> io::Result<Group> {
        let group = Group { version: controller.version, dir: controller.base.join(name) };
        if group.dir.is_dir() {
            group.kill_members();
        } else {
            fs::create_dir(&group.dir)?;
        }
        Ok(group)
    }

    /// Sets the memory limit (and forbids swapping past it where the host allows).
    pub fn limit_memory(&self, bytes: u64) -> io::Result<()> {
        match self.version {
            CgroupVersion::V2 => {
                fs::write(self.dir.join("memory.max"), bytes.to_string())?;
                let _ = fs::write(self.dir.join("memory.swap.max"), "0");
            }
            CgroupVersion::V1 => {
                // memsw must never be below the memory limit: lower order depends on direction.
                let memsw = self.dir.join("memory.memsw.limit_in_bytes");
                if fs::write(self.dir.join("memory.limit_in_bytes"), bytes.to_string()).is_err() {
                    let _ = fs::write(&memsw, bytes.to_string());
                    fs::write(self.dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                }
                let _ = fs::write(&memsw, bytes.to_string());
            }
        }
        Ok(())
    }

    /// Sets the limit of processes and threads.
    pub fn limit_pids(&self, max: u64) -> io::Result<()> {
        fs::write(self.dir.join("pids.max"), max.to_string())
    }

    /// A descriptor of `cgroup.procs`; the child writes `0` to it to join.
    pub fn procs_fd(&self) -> io::Result<OwnedFd> {
        let file = fs::OpenOptions::new().write(true).open(self.dir.join("cgroup.procs"))?;
        Ok(OwnedFd::from(file))
    }

    /// How many processes the kernel's OOM killer killed in this group so far.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }

    fn members(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process still in the group (children that left the plugin's process group).
    pub fn kill_members(&self) {
        for pid in self.members() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Kills what is left and removes the group (bounded: a few short retries while the kernel reaps).
    pub fn remove(&self) {
        for _ in 0..20 {
            self.kill_members();
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        tracing::debug!(group = %self.dir.display(), "could not remove a plugin cgroup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_paths() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                         31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                         32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let membership = "8:pids:/\n4:memory:/svc/abc\n0::/user.slice\n";
        let mounts = parse_mounts(mountinfo);
        assert_eq!(v1_base(&mounts, membership, "memory"), Some(PathBuf::from("/sys/fs/cgroup/memory/svc/abc")));
        assert_eq!(v1_base(&mounts, membership, "pids"), Some(PathBuf::from("/sys/fs/cgroup/pids/")));
        assert_eq!(v2_base(&mounts, membership), Some(PathBuf::from("/sys/fs/cgroup/unified/user.slice")));
        assert_eq!(v1_base(&mounts, membership, "cpu"), None);
    }
}
