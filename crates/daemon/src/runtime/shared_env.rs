//! Shared plugin environments: plugins whose dependency set, interpreter and uv are the same use one
//! virtual environment on disk, `<PLUGIN_WORKING_PATH>/.envs/<key>`, linked from each plugin's
//! `.venv`.
//!
//! Owns: the environment key ([`environment_key`]: a hash of the normalised dependency
//! declaration, the wheels it points at, the interpreter's version and machine, uv's version and the
//! install settings), the per-environment build lock, reference counting by the plugins' `.venv`
//! links ([`environment_references`]) and removing environments no plugin links to
//! ([`collect_unused_environments`]). Must not: build environments (see `environment`) or start
//! plugins.
//!
//! A plugin's own directory stays its own: only the environment is shared, and it is read-only to a
//! sandboxed plugin (a plugin's writes go to its working directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::config::RuntimeConfig;
use super::environment::{choose_dependency_file, DependencyFile, EnvironmentError, Toolchain};

/// Directory of the shared environments.
pub fn environments_dir(config: &RuntimeConfig) -> PathBuf {
    config.working_path.join(".envs")
}

/// True when a shared environment finished building (interpreter and ready marker present).
pub fn shared_environment_is_ready(env_dir: &Path) -> bool {
    env_dir.join("bin/python").exists() && env_dir.join("dify/plugin.json").is_file()
}

/// The lock held while an environment is built, linked or removed (one per environment directory).
pub fn build_lock(env_dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = std::sync::OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(env_dir.to_path_buf()).or_default().clone()
}

/// What an environment is keyed by: `name` (the directory name) and the text it was hashed from.
#[derive(Debug, Clone)]
pub struct EnvironmentKey {
    pub name: String,
    pub inputs: String,
}

/// The key of the environment `working_dir` needs. Two plugins get the same key when their
/// normalised dependency declarations (requirement lines without comments, blank lines, order or
/// duplicates; files they include; the names and sizes of wheels in local `--find-links`
/// directories) are equal, with the same interpreter version and machine, uv version, package index,
/// extra uv arguments and daemon wheel directory. A `pyproject.toml` plugin is keyed by the whole
/// file and its `uv.lock`.
pub async fn environment_key(
    working_dir: &Path,
    config: &RuntimeConfig,
    toolchain: &Toolchain,
) -> Result<EnvironmentKey, EnvironmentError> {
    let limit = config.env_init_timeout.min(Duration::from_secs(30));
    let python =
        tool_output(&toolchain.python, &["-c", "import sys, platform; print(sys.version.split()[0], platform.machine())"], limit).await?;
    // A uv that does not say its version is keyed as such; its install step reports what is wrong.
    let uv = match tool_output(&toolchain.uv, &["--version"], limit).await {
        Ok(version) => version,
        Err(error) => {
            tracing::warn!(%error, "uv did not report its version");
            "unknown".to_string()
        }
    };
    let mut inputs = vec![format!("python {python}"), format!("uv {uv}")];
    inputs.push(format!("index {}", config.pip_mirror_url.as_deref().unwrap_or("")));
    inputs.push(format!("extra-args {}", config.pip_extra_args.join(" ")));
    inputs.push(format!("ignore-uv-lock {}", config.ignore_uv_lock));
    inputs.push(format!("offline {}", config.offline_install));
    if let Some(wheels) = &config.wheels_dir {
        inputs.push(format!("daemon-wheels {}", wheels.display()));
        inputs.extend(wheel_listing(wheels));
    }
    match choose_dependency_file(working_dir, config)? {
        DependencyFile::Requirements => {
            inputs.push("requirements".into());
            inputs.extend(normalized_requirements(working_dir, Path::new("requirements.txt"), 0));
        }
        DependencyFile::PyProject => {
            inputs.push("pyproject".into());
            inputs.push(std::fs::read_to_string(working_dir.join("pyproject.toml"))?);
            if let Ok(lock) = std::fs::read_to_string(working_dir.join("uv.lock")) {
                inputs.push("uv.lock".into());
                inputs.push(lock);
            }
        }
    }
    let inputs = inputs.join("\n");
    let digest = hex::encode(Sha256::digest(inputs.as_bytes()));
    let version: String = python.split_whitespace().next().unwrap_or("").split('.').take(2).collect::<Vec<_>>().join(".");
    Ok(EnvironmentKey { name: format!("py{version}-{}", &digest[..20]), inputs: inputs + "\n" })
}

/// What `program args` prints (trimmed), remembered per program and arguments for the daemon's
/// lifetime. Bounded by `limit`; the probe runs in its own process group, killed on a timeout.
async fn tool_output(program: &Path, args: &[&str], limit: Duration) -> Result<String, EnvironmentError> {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<HashMap<String, String>>> = std::sync::OnceLock::new();
    let cache_key = format!("{} {}", program.display(), args.join(" "));
    if let Some(known) = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key) {
        return Ok(known.clone());
    }
    let failed = |reason: String| EnvironmentError::StepFailed { step: "environment key".into(), reason, output: String::new() };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| failed(format!("{}: {e}", program.display())))?,
        Err(_) => {
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
            }
            return Err(failed(format!("`{cache_key}` did not answer within {} seconds", limit.as_secs())));
        }
    };
    if !output.status.success() {
        return Err(failed(format!("`{cache_key}` exited with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner()).insert(cache_key, text.clone());
    Ok(text)
}

/// The requirement lines of `file` (relative to `working_dir`), normalised and sorted, with the
/// lines of files it includes (`-r`, `-c`) and the wheels of local `--find-links` directories.
fn normalized_requirements(working_dir: &Path, file: &Path, depth: usize) -> Vec<String> {
    let text = std::fs::read_to_string(working_dir.join(file)).unwrap_or_default();
    let mut lines = Vec::new();
    let mut extra = Vec::new();
    for line in text.replace("\\\n", " ").lines() {
        let line = match line.find('#') {
            Some(0) => "",
            Some(at) if line[..at].ends_with(char::is_whitespace) => &line[..at],
            _ => line,
        };
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split(' ').collect();
        let mut index = 0;
        while index < tokens.len() {
            let (option, inline) = match tokens[index].split_once('=') {
                Some((option, value)) if option.starts_with('-') => (option, Some(value)),
                _ => (tokens[index], None),
            };
            if matches!(option, "-r" | "--requirement" | "-c" | "--constraint" | "-f" | "--find-links") {
                let value = match inline {
                    Some(value) => Some(value),
                    None => {
                        index += 1;
                        tokens.get(index).copied()
                    }
                };
                let Some(value) = value else { break };
                extra.push(format!("{option} {value} {{"));
                if option.starts_with("-f") || option == "--find-links" {
                    if !value.contains("://") {
                        extra.extend(wheel_listing(&working_dir.join(value)));
                    }
                } else if depth < 4 {
                    extra.extend(normalized_requirements(working_dir, Path::new(value), depth + 1));
                }
                extra.push("}".into());
            }
            index += 1;
        }
        lines.push(line);
    }
    lines.sort();
    lines.dedup();
    lines.extend(extra);
    lines
}

/// `name size` of every file in `dir`, sorted.
fn wheel_listing(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| Some(format!("{} {}", e.file_name().to_string_lossy(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every shared environment with the plugin working directories linked to it (its reference count
/// is the length of the list). Environments nothing links to are listed with an empty list.
pub fn environment_references(config: &RuntimeConfig) -> HashMap<PathBuf, Vec<PathBuf>> {
    let envs = environments_dir(config);
    let mut references: HashMap<PathBuf, Vec<PathBuf>> = std::fs::read_dir(&envs)
        .map(|entries| entries.filter_map(Result::ok).map(|e| (e.path(), Vec::new())).collect())
        .unwrap_or_default();
    // Working directories are `<working path>/<author>/<name>-<version>@<checksum>`.
    let authors = std::fs::read_dir(&config.working_path).into_iter().flatten().filter_map(Result::ok);
    for author in authors.filter(|a| a.path() != envs && a.file_type().is_ok_and(|t| t.is_dir())) {
        for plugin in std::fs::read_dir(author.path()).into_iter().flatten().filter_map(Result::ok) {
            let link = plugin.path().join(".venv");
            if let Ok(target) = std::fs::read_link(&link) {
                if target.starts_with(&envs) {
                    references.entry(target).or_default().push(plugin.path());
                }
            }
        }
    }
    references
}

/// Removes the shared environments no plugin links to (skipping one being built or linked right
/// now); returns the directories removed.
pub async fn collect_unused_environments(config: &RuntimeConfig) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let unused: Vec<PathBuf> =
        environment_references(config).into_iter().filter(|(_, links)| links.is_empty()).map(|(env, _)| env).collect();
    for env in unused {
        let lock = build_lock(&env);
        let Ok(_building) = lock.try_lock() else { continue };
        // Checked again under the lock: a link made since the scan keeps the environment.
        if environment_references(config).get(&env).is_some_and(|links| !links.is_empty()) {
            continue;
        }
        match tokio::fs::remove_dir_all(&env).await {
            Ok(()) => {
                tracing::info!(environment = %env.display(), "removed an unused shared plugin environment");
                removed.push(env);
            }
            Err(error) => tracing::warn!(environment = %env.display(), %error, "removing an unused shared plugin environment failed"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_normalisation_ignores_layout_but_not_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("requirements.txt"), "# deps\ndify-plugin>=0.10.0,<0.11.0\nhttpx==0.27\n").unwrap();
        std::fs::write(b.path().join("requirements.txt"), "httpx==0.27   # pinned\n\n  dify-plugin>=0.10.0,<0.11.0\nhttpx==0.27\n")
            .unwrap();
        let file = Path::new("requirements.txt");
        assert_eq!(normalized_requirements(a.path(), file, 0), normalized_requirements(b.path(), file, 0));
        std::fs::write(b.path().join("requirements.txt"), "dify-plugin>=0.10.0,<0.11.0\nhttpx==0.28\n").unwrap();
        assert_ne!(normalized_requirements(a.path(), file, 0), normalized_requirements(b.path(), file, 0));

        // Shipped wheels are part of the key: another wheel, another environment.
        std::fs::create_dir(a.path().join("wheels")).unwrap();
        std::fs::write(a.path().join("requirements.txt"), "--no-index --find-links=./wheels/\ndify-plugin\n").unwrap();
        std::fs::write(a.path().join("wheels/x-1.0-py3-none-any.whl"), b"wheel").unwrap();
        let with_one = normalized_requirements(a.path(), file, 0);
        assert!(with_one.iter().any(|l| l == "x-1.0-py3-none-any.whl 5"), "{with_one:?}");
        std::fs::write(a.path().join("wheels/y-1.0-py3-none-any.whl"), b"wheel").unwrap();
        assert_ne!(with_one, normalized_requirements(a.path(), file, 0));
    }

    #[tokio::test]
    async fn unreferenced_environments_are_collected() {
        let root = tempfile::tempdir().unwrap();
        let config = RuntimeConfig { working_path: root.path().to_path_buf(), ..RuntimeConfig::default() };
        let envs = environments_dir(&config);
        for name in ["used", "unused"] {
            std::fs::create_dir_all(envs.join(name).join("bin")).unwrap();
        }
        let plugin = root.path().join("author/plugin-0.0.1@abc");
        std::fs::create_dir_all(&plugin).unwrap();
        std::os::unix::fs::symlink(envs.join("used"), plugin.join(".venv")).unwrap();
        let references = environment_references(&config);
        assert_eq!(references.get(&envs.join("used")), Some(&vec![plugin.clone()]));
        assert_eq!(references.get(&envs.join("unused")), Some(&vec![]));
        assert_eq!(collect_unused_environments(&config).await, vec![envs.join("unused")]);
        assert!(envs.join("used").is_dir() && !envs.join("unused").exists());
    }
}
