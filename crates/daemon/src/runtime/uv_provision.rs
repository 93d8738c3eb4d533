//! uv for machines that have a Python but no uv: when neither `UV_PATH`, the interpreter's `uv`
//! module nor `PATH` gives one, the daemon installs uv itself into `<PLUGIN_WORKING_PATH>/tools/uv`
//! (a venv made with the Python it found, then `pip install uv` from the index plugins install from:
//! `PIP_MIRROR_URL` when set, else pip's own configuration).
//!
//! Owns: that directory, the single-flight lock (concurrent installs provision once; a half-built
//! directory is never used because the venv is built beside it and renamed into place), the time
//! bound of the whole provisioning and its error. Must not: build plugin environments.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::Mutex;

use super::config::RuntimeConfig;

/// Longest time provisioning may take (venv creation plus the download of uv).
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(600);

/// One provisioning at a time in this process; the rename makes it safe across processes too.
static PROVISION_LOCK: Mutex<()> = Mutex::const_new(());

/// Why uv could not be provisioned.
#[derive(Debug, thiserror::Error)]
#[error("uv not found (set UV_PATH), and installing it into {dir} failed: {reason}")]
pub struct ProvisionError {
    pub dir: String,
    pub reason: String,
}

/// Where a provisioned uv lives for `config`.
pub fn provision_dir(config: &RuntimeConfig) -> PathBuf {
    let dir = config.working_path.join("tools").join("uv");
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The uv binary inside a provisioned directory.
pub fn provisioned_uv(dir: &Path) -> PathBuf {
    dir.join("bin").join("uv")
}

/// Variables pip may see: its own configuration, certificates and proxies; nothing of the daemon's.
const PIP_ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_CONFIG_FILE",
    "PIP_NO_INDEX",
    "PIP_CLIENT_CERT",
];

fn pip_environment(config: &RuntimeConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        PIP_ENV_ALLOW_LIST.iter().filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v))).collect();
    for (name, value) in [("HTTP_PROXY", &config.http_proxy), ("HTTPS_PROXY", &config.https_proxy), ("NO_PROXY", &config.no_proxy)] {
        if let Some(value) = value {
            env.push((name.to_string(), value.clone()));
        }
    }
    env.push(("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()));
    env
}

/// The uv provisioned for `config`, installing it first (with `python`) when it is not there yet.
pub async fn provision_uv(config: &RuntimeConfig, python: &Path) -> Result<PathBuf, ProvisionError> {
    let dir = provision_dir(config);
    let uv = provisioned_uv(&dir);
    if uv.is_file() {
        return Ok(uv);
    }
    let _guard = PROVISION_LOCK.lock().await;
    if uv.is_file() {
        return Ok(uv);
    }
    let fail = |reason: String| ProvisionError { dir: dir.display().to_string(), reason };
    tracing::info!(dir = %dir.display(), python = %python.display(), "no uv found: installing uv for plugin environments");
    let parent = dir.parent().ok_or_else(|| fail("no parent directory".into()))?;
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let staging = parent.join(format!(".uv-{}", uuid::Uuid::new_v4().simple()));
    let result = tokio::time::timeout(PROVISION_TIMEOUT, install_into(&staging, python, config)).await;
    let outcome = match result {
        Ok(Ok(())) => match tokio::fs::rename(&staging, &dir).await {
            // Another process finished first: its copy is as good as ours.
            Err(_) if uv.is_file() => Ok(()),
            Err(e) => Err(format!("cannot move the new uv into place: {e}")),
            Ok(()) => Ok(()),
        },
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("timed out after {} seconds", PROVISION_TIMEOUT.as_secs())),
    };
    let _ = tokio::fs::remove_dir_all(&staging).await;
    match outcome {
        Ok(()) if uv.is_file() => {
            tracing::info!(uv = %uv.display(), "uv installed");
            Ok(uv)
        }
        Ok(()) => Err(fail("pip finished but left no uv binary".into())),
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), %reason, "installing uv failed");
            Err(fail(reason))
        }
    }
}

/// `python -m venv <dir>` then `<dir>/bin/python -m pip install uv`.
async fn install_into(dir: &Path, python: &Path, config: &RuntimeConfig) -> Result<(), String> {
    let env = pip_environment(config);
    let dir_text = dir.display().to_string();
    run(python, &["-m", "venv", dir_text.as_str()], &env)
        .await
        .map_err(|e| format!("creating a venv with {}: {e}", python.display()))?;
    let mut args: Vec<String> = ["-m", "pip", "install", "-q", "uv"].iter().map(|s| s.to_string()).collect();
    if let Some(mirror) = &config.pip_mirror_url {
        args.push("-i".into());
        args.push(mirror.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&dir.join("bin").join("python"), &args, &env).await.map_err(|e| format!("pip install uv: {e}"))
}

/// Runs a command to completion (killed when the caller's timeout drops it); the error is its
/// exit status and the tail of its output.
async fn run(program: &Path, args: &[&str], env: &[(String, String)]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("exited with {}\n{}", output.status, tail.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_existing_provisioned_uv_is_reused_and_failures_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig { working_path: dir.path().to_path_buf(), ..RuntimeConfig::default() };
        // A python that cannot make a venv: the error names the directory and the step.
        let error = provision_uv(&config, Path::new("/nonexistent/python3")).await.unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("uv not found (set UV_PATH), and installing it into "), "{text}");
        assert!(text.contains("tools/uv") && text.contains("creating a venv"), "{text}");
        // No staging directory is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tools")).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let uv = provisioned_uv(&provision_dir(&config));
        std::fs::create_dir_all(uv.parent().unwrap()).unwrap();
        std::fs::write(&uv, b"#!/bin/sh\n").unwrap();
        assert_eq!(provision_uv(&config, Path::new("/nonexistent/python3")).await.unwrap(), uv);
    }
}
