//! The plugin's private view of the file system (a mount namespace, needs root): `/tmp` replaced by
//! the plugin's own temporary directory, and the daemon's directories (its working directory,
//! storage root, plugin working path) plus every directory the plugin's uid cannot traverse (such as
//! `/root`, where pyenv keeps the interpreter) covered by a shadow directory into which only what the
//! plugin needs (its own directory, its interpreter) is bind-mounted back at the same path.
//!
//! Owns: planning those mounts in the daemon (directories and C strings made before
//! `fork`) and performing them in the child ([`MountPlan::enter`], async-signal-safe syscalls only).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mounts to make in the child, in order, with the descriptors they refer to.
pub struct MountPlan {
    /// `(source, target)` paths, ordered so that no source is covered before it is mounted: what is
    /// exposed first, then the covers, the one containing the shadow directories last. (Descriptors
    /// opened before `unshare` cannot serve as sources: they belong to the daemon's namespace.)
    binds: Vec<(CString, CString)>,
    /// The working directory again, entered once the mounts are made.
    chdir: CString,
}

/// A directory covered in the plugin's view, with what of it is shown again.
#[derive(Debug)]
struct Cover {
    target: PathBuf,
    shadow: PathBuf,
    exposed: Vec<PathBuf>,
}

impl MountPlan {
    /// Plans the view: `/tmp` becomes `private_tmp`; each of `hidden` is covered; each of `needed`
    /// stays reachable at its own path (exposed inside whatever cover contains it). Shadow
    /// directories are made fresh under `shadow_root`.
    pub fn new(
        private_tmp: &Path,
        hidden: &[PathBuf],
        needed: &[PathBuf],
        shadow_root: &Path,
        working_dir: &Path,
    ) -> io::Result<MountPlan> {
        let mut targets: Vec<PathBuf> = vec![PathBuf::from("/tmp")];
        targets.extend(hidden.iter().filter(|h| h.is_dir()).cloned());
        for path in needed {
            if let Some(closed) = untraversable_ancestor(path) {
                targets.push(closed);
            }
        }
        // Only the outermost covers: one inside another would be hidden by it anyway.
        targets.sort();
        targets.dedup();
        let outer: Vec<PathBuf> = targets.iter().filter(|t| !targets.iter().any(|o| o != *t && t.starts_with(o))).cloned().collect();
        if shadow_root.exists() {
            std::fs::remove_dir_all(shadow_root)?;
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(shadow_root)?;
        let mut covers: Vec<Cover> = Vec::new();
        for (index, target) in outer.into_iter().enumerate() {
            let shadow = if target == Path::new("/tmp") { private_tmp.to_path_buf() } else { shadow_root.join(index.to_string()) };
            if shadow != private_tmp {
                std::fs::DirBuilder::new().mode(0o755).create(&shadow)?;
                std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o755))?;
            }
            let inside = |p: &&PathBuf| p.starts_with(&target) && **p != target;
            // A needed path inside another needed path comes along with the outer one.
            let exposed = needed
                .iter()
                .filter(inside)
                .filter(|p| !needed.iter().filter(inside).any(|q| q != *p && p.starts_with(q)))
                .cloned()
                .collect();
            covers.push(Cover { target, shadow, exposed });
        }
        // The cover containing the shadow directories (and the private /tmp) goes last.
        covers.sort_by_key(|cover| shadow_root.starts_with(&cover.target) || private_tmp.starts_with(&cover.target));
        let mut inner = Vec::new();
        let mut outer_binds = Vec::new();
        for cover in &covers {
            for path in &cover.exposed {
                let Ok(relative) = path.strip_prefix(&cover.target) else { continue };
                let mount_point = cover.shadow.join(relative);
                let is_dir = path.is_dir();
                make_mount_point(&cover.shadow, &mount_point, is_dir)?;
                inner.push((c_path(path)?, c_path(&mount_point)?));
            }
            outer_binds.push((c_path(&cover.shadow)?, c_path(&cover.target)?));
        }
        inner.extend(outer_binds);
        Ok(MountPlan { binds: inner, chdir: c_path(working_dir)? })
    }

    /// The plan as data, for a child that applies it itself (a forked plugin, `runtime::zygote`):
    /// the bind mounts `(source, target)` in order, and the directory to change to afterwards.
    pub fn steps(&self) -> (Vec<(PathBuf, PathBuf)>, PathBuf) {
        use std::os::unix::ffi::OsStrExt as _;
        let path = |c: &CString| PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes()));
        (self.binds.iter().map(|(s, t)| (path(s), path(t))).collect(), path(&self.chdir))
    }

    /// In the child, before `exec`: a new mount namespace, no propagation back to the host, the
    /// planned bind mounts, then the working directory entered again through the new view.
    ///
    /// # Safety
    /// Only async-signal-safe syscalls; call only between `fork` and `exec`.
    pub unsafe fn enter(&self) -> io::Result<()> {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        let root = c"/";
        if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for (source, target) in &self.binds {
            if libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::chdir(self.chdir.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The outermost ancestor of `path` (not `/`) that other users cannot traverse (no `o+x`).
fn untraversable_ancestor(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut current = PathBuf::from("/");
    for component in path.components().skip(1) {
        current.push(component);
        if current == path {
            break;
        }
        match std::fs::metadata(&current) {
            Ok(meta) if meta.is_dir() && meta.mode() & 0o001 == 0 => return Some(current),
            _ => {}
        }
    }
    None
}

/// Creates the (empty, world-traversable) directory or file a bind mount lands on.
fn make_mount_point(shadow: &Path, point: &Path, is_dir: bool) -> io::Result<()> {
    let parent = if is_dir { point } else { point.parent().unwrap_or(shadow) };
    let mut current = shadow.to_path_buf();
    if let Ok(relative) = parent.strip_prefix(shadow) {
        for component in relative.components() {
            current.push(component);
            if !current.is_dir() {
                std::fs::DirBuilder::new().mode(0o755).create(&current)?;
                std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    if !is_dir && !point.exists() {
        std::fs::File::create(point)?;
    }
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_tmp_hidden_and_closed_directories_exposing_what_is_needed() {
        let root = tempfile::tempdir().unwrap();
        let closed = root.path().join("closed");
        std::fs::create_dir_all(closed.join("python/bin")).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let work = root.path().join("work");
        std::fs::create_dir_all(work.join("plugin")).unwrap();
        let private_tmp = root.path().join("ptmp");
        std::fs::create_dir_all(&private_tmp).unwrap();
        let needed = vec![closed.join("python"), work.join("plugin")];
        let plan =
            MountPlan::new(&private_tmp, std::slice::from_ref(&work), &needed, &root.path().join("shadow"), &work.join("plugin")).unwrap();
        let targets: Vec<String> = plan.binds.iter().map(|(_, t)| t.to_string_lossy().into_owned()).collect();
        // The temporary directory itself is below /tmp here, so /tmp is the one outer cover
        // (closed and work are inside it): both needed paths are exposed in the private /tmp.
        let under_tmp = root.path().starts_with("/tmp");
        if under_tmp {
            assert_eq!(targets.last().map(String::as_str), Some("/tmp"));
            let exposed = private_tmp.join(closed.join("python").strip_prefix("/tmp").unwrap());
            assert!(exposed.is_dir(), "{targets:?}");
            assert!(targets.contains(&exposed.to_string_lossy().into_owned()));
        } else {
            assert!(targets.contains(&closed.to_string_lossy().into_owned()), "{targets:?}");
            assert!(targets.contains(&work.to_string_lossy().into_owned()), "{targets:?}");
        }
        // No source lies below a target mounted before it.
        for (index, (_, target)) in plan.binds.iter().enumerate() {
            let target = Path::new(target.to_str().unwrap());
            for (source, _) in &plan.binds[index + 1..] {
                assert!(
                    !Path::new(source.to_str().unwrap()).starts_with(target) || target.starts_with(private_tmp.as_path()),
                    "{targets:?}"
                );
            }
        }
    }

    #[test]
    fn finds_the_outermost_closed_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::fs::create_dir_all(a.join("b/c")).unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(a.join("b"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(untraversable_ancestor(&a.join("b/c")), Some(root.path().to_path_buf()));
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(untraversable_ancestor(&a.join("b/c")), Some(a.clone()));
    }
}
