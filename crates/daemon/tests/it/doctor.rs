//! `dify-plugin-daemon doctor` as a process: a healthy setup passes (exit 0), and each problem that
//! blocks start-up fails its check with a fix and exit status 1: no uv, a Python older than 3.12, a
//! database that is down, an unparsable value, Redis down, a strict sandbox missing a layer. A
//! misspelled variable or a best-effort sandbox missing a layer only warns.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python >= 3.12 from the test runner's setting (as `scripts/test` exports it).
fn good_python() -> String {
    std::env::var("PYTHON_INTERPRETER_PATH").expect("PYTHON_INTERPRETER_PATH (set by scripts/test)")
}

fn uv() -> String {
    std::env::var("UV_PATH").expect("UV_PATH (set by scripts/test)")
}

/// An interpreter older than 3.12: the machine's own if it has one, else a stand-in script that
/// answers the version probe as Python 3.11 would.
fn old_python(dir: &Path) -> PathBuf {
    for candidate in ["python3.11", "python3.10", "python3"] {
        let Ok(output) = Command::new(candidate).args(["-c", "import sys; print(sys.executable); print(sys.version_info[1])"]).output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let mut lines = text.lines();
        if let (Some(path), Some(minor)) = (lines.next(), lines.next()) {
            if output.status.success() && minor.parse::<u32>().is_ok_and(|m| m < 12) {
                return PathBuf::from(path);
            }
        }
    }
    let script = dir.join("python3.11");
    std::fs::write(&script, "#!/bin/sh\necho 3.11.9\n").expect("write stand-in python");
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).expect("chmod");
    script
}

/// Runs `doctor` in a fresh directory with only PATH, HOME and `env`; returns (status, stdout).
fn doctor(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    command.arg("doctor").current_dir(dir).env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run doctor");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains(" checks, "), "no summary line; stdout:\n{stdout}\nstderr:\n{stderr}");
    (output.status.code(), stdout)
}

fn line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{report}"))
}

/// The `fix:` line right under the first line starting with `prefix`.
fn fix_of<'a>(report: &'a str, prefix: &str) -> &'a str {
    let mut lines = report.lines().skip_while(|l| !l.starts_with(prefix));
    lines.next();
    lines
        .find(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or_else(|| panic!("no fix under {prefix:?} in:\n{report}"))
}

#[test]
fn a_healthy_setup_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = good_python();
    let uv = uv();
    let (status, report) =
        doctor(dir.path(), &[("PYTHON_INTERPRETER_PATH", &python), ("UV_PATH", &uv), ("SERVER_KEY", "a-long-random-test-key")]);
    assert_eq!(status, Some(0), "{report}");
    assert!(line(&report, "[ ok ] python:").contains("(Python 3.1"), "{report}");
    assert!(line(&report, "[ ok ] uv:").contains("uv "), "{report}");
    assert!(line(&report, "[ ok ] database:").contains("SQLite dify_plugin_daemon.db: connected"), "{report}");
    line(&report, "[ ok ] configuration: every value parses");
    line(&report, "[ ok ] storage: local directory storage");
    line(&report, "[ ok ] working directory:");
    assert!(!report.contains("[FAIL]") && !report.contains("[warn]"), "{report}");
    assert!(report.trim_end().ends_with("0 failed, 0 warnings: ready to start"), "{report}");
    // Doctor opened the database as start-up would.
    assert!(dir.path().join("dify_plugin_daemon.db").exists());
}

#[test]
fn a_missing_uv_is_reported_with_a_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = good_python();
    let (status, report) = doctor(dir.path(), &[("PYTHON_INTERPRETER_PATH", &python), ("UV_PATH", "/nonexistent/bin/uv")]);
    assert_eq!(status, Some(1), "{report}");
    assert_eq!(line(&report, "[FAIL] uv:"), "[FAIL] uv: UV_PATH /nonexistent/bin/uv does not exist");
    assert!(fix_of(&report, "[FAIL] uv:").contains("install uv"), "{report}");
    line(&report, "[ ok ] python:");
    assert!(report.trim_end().ends_with("1 failed, 0 warnings: the daemon cannot start as configured"), "{report}");

    // Not configured and not on PATH either (PATH without uv, an interpreter without the uv module).
    if Command::new(&python).args(["-c", "import uv"]).output().is_ok_and(|o| o.status.success()) {
        return; // this interpreter brings uv along: discovery would find it
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    command
        .arg("doctor")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", empty.path())
        .env("PYTHON_INTERPRETER_PATH", &python);
    let output = command.output().expect("run doctor");
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    // Not a blocker: the daemon installs its own uv on the first install, and doctor installs nothing.
    assert_eq!(output.status.code(), Some(0), "{report}");
    let warning = line(&report, "[warn] uv:");
    assert!(warning.starts_with("[warn] uv: uv not found (set UV_PATH); the daemon will install one into "), "{report}");
    assert!(!dir.path().join("cwd/tools/uv").exists(), "doctor must not install uv: {report}");
}

#[test]
fn a_python_older_than_3_12_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = old_python(dir.path());
    let uv = uv();
    let (status, report) = doctor(dir.path(), &[("PYTHON_INTERPRETER_PATH", python.to_str().unwrap()), ("UV_PATH", &uv)]);
    assert_eq!(status, Some(1), "{report}");
    let failed = line(&report, "[FAIL] python:");
    assert!(failed.contains("is Python 3.") && failed.ends_with("plugins need Python >= 3.12"), "{report}");
    assert!(fix_of(&report, "[FAIL] python:").contains("PYTHON_INTERPRETER_PATH"), "{report}");
    line(&report, "[ ok ] uv:");
    line(&report, "[ ok ] database:");

    let (status, report) = doctor(dir.path(), &[("PYTHON_INTERPRETER_PATH", "/nonexistent/python3.12"), ("UV_PATH", &uv)]);
    assert_eq!(status, Some(1), "{report}");
    assert_eq!(line(&report, "[FAIL] python:"), "[FAIL] python: PYTHON_INTERPRETER_PATH /nonexistent/python3.12 does not exist");
}

#[test]
fn a_database_that_is_down_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = good_python();
    let uv = uv();
    let port = common::free_port().to_string();
    let (status, report) = doctor(
        dir.path(),
        &[
            ("PYTHON_INTERPRETER_PATH", &python),
            ("UV_PATH", &uv),
            ("DB_TYPE", "postgresql"),
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_CONNECT_TIMEOUT", "2"),
        ],
    );
    assert_eq!(status, Some(1), "{report}");
    let failed = line(&report, "[FAIL] database:");
    assert!(failed.starts_with(&format!("[FAIL] database: Postgres 127.0.0.1:{port}/dify_plugin: ")), "{report}");
    assert!(fix_of(&report, "[FAIL] database:").contains("start the database server"), "{report}");
}

#[test]
fn bad_values_fail_misspelled_names_warn_and_redis_is_checked_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = good_python();
    let uv = uv();
    let base = [("PYTHON_INTERPRETER_PATH", python.as_str()), ("UV_PATH", uv.as_str())];

    let mut env = base.to_vec();
    env.extend([("PLUGIN_MAX_RESTART", "3"), ("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", "6379")]);
    let (status, report) = doctor(dir.path(), &env);
    assert_eq!(status, Some(0), "a warning does not block start-up:\n{report}");
    assert_eq!(
        line(&report, "[warn] configuration:"),
        "[warn] configuration: PLUGIN_MAX_RESTART is not a setting of the daemon; it is ignored"
    );
    assert_eq!(fix_of(&report, "[warn] configuration:").trim(), "fix: did you mean PLUGIN_MAX_RESTARTS? Rename the variable");
    assert_eq!(line(&report, "[ ok ] redis:"), "[ ok ] redis: 127.0.0.1:6379: PING answered");

    let port = common::free_port().to_string();
    let mut env = base.to_vec();
    env.extend([("SERVER_PORT", "fifty"), ("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", port.as_str())]);
    let (status, report) = doctor(dir.path(), &env);
    assert_eq!(status, Some(1), "{report}");
    assert!(line(&report, "[FAIL] configuration:").starts_with("[FAIL] configuration: SERVER_PORT=\"fifty\" is not valid"), "{report}");
    assert!(line(&report, "[FAIL] redis:").starts_with(&format!("[FAIL] redis: 127.0.0.1:{port}: cannot connect")), "{report}");
    assert!(report.trim_end().ends_with("2 failed, 0 warnings: the daemon cannot start as configured"), "{report}");
}

/// The `sandbox` line of a report (ok, warn or fail).
fn sandbox_line(report: &str) -> &str {
    report.lines().find(|l| l.contains("] sandbox: ")).unwrap_or_else(|| panic!("no sandbox line in:\n{report}"))
}

#[test]
fn sandbox_layers_are_reported_and_strict_with_a_missing_layer_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = good_python();
    let uv = uv();
    let base = [("PYTHON_INTERPRETER_PATH", python.as_str()), ("UV_PATH", uv.as_str())];

    // As this user: best_effort lists the layers; ok when none is missing, else a warning that does
    // not block start-up; strict agrees with it (ok, or a blocking failure).
    let mut env = base.to_vec();
    env.push(("PLUGIN_SANDBOX", "best_effort"));
    let (status, report) = doctor(dir.path(), &env);
    let best_effort = sandbox_line(&report).to_string();
    assert!(best_effort.contains("sandbox: PLUGIN_SANDBOX=best_effort; active: "), "{report}");
    assert!(best_effort.contains("rlimits"), "{report}");
    let complete = best_effort.ends_with("; unavailable: none");
    assert_eq!(best_effort.starts_with("[ ok ]"), complete, "{report}");
    assert_eq!(best_effort.starts_with("[warn]"), !complete, "{report}");
    assert_eq!(status, Some(0), "a sandbox warning does not block start-up:\n{report}");

    let mut env = base.to_vec();
    env.push(("PLUGIN_SANDBOX", "strict"));
    let (status, report) = doctor(dir.path(), &env);
    if complete {
        assert!(sandbox_line(&report).starts_with("[ ok ] sandbox: PLUGIN_SANDBOX=strict; active: "), "{report}");
        assert_eq!(status, Some(0), "{report}");
    } else {
        assert!(sandbox_line(&report).starts_with("[FAIL] sandbox: PLUGIN_SANDBOX=strict;"), "{report}");
        assert!(fix_of(&report, "[FAIL] sandbox:").contains("PLUGIN_SANDBOX=best_effort"), "{report}");
        assert_eq!(status, Some(1), "{report}");
    }

    let mut env = base.to_vec();
    env.push(("PLUGIN_SANDBOX", "off"));
    let (status, report) = doctor(dir.path(), &env);
    assert_eq!(sandbox_line(&report), "[ ok ] sandbox: PLUGIN_SANDBOX=off: plugins run without isolation layers");
    assert_eq!(status, Some(0), "{report}");

    // Unprivileged (when the tests run as root): the per-plugin uid and the private /tmp need root,
    // so strict fails on them and best_effort warns about them.
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || Command::new("setpriv").arg("--version").output().is_err() {
        return;
    }
    let unprivileged = |level: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        let output = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_dify-plugin-daemon"))
            .arg("doctor")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("PLUGIN_SANDBOX", level)
            .output()
            .expect("run doctor unprivileged");
        let report = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(report.contains(" checks, "), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
        (output.status.code(), report)
    };
    let (status, report) = unprivileged("strict");
    let failed = sandbox_line(&report);
    assert!(failed.starts_with("[FAIL] sandbox: PLUGIN_SANDBOX=strict;"), "{report}");
    let unavailable = failed.split("; unavailable: ").nth(1).expect("unavailable list");
    assert!(unavailable.contains("uid") && unavailable.contains("private_tmp"), "{report}");
    assert!(fix_of(&report, "[FAIL] sandbox:").contains("uid needs the daemon running as root"), "{report}");
    assert_eq!(status, Some(1), "{report}");
    let (_, report) = unprivileged("best_effort");
    assert!(sandbox_line(&report).starts_with("[warn] sandbox: PLUGIN_SANDBOX=best_effort;"), "{report}");
    assert!(fix_of(&report, "[warn] sandbox:").contains("plugins run with fewer isolation layers"), "{report}");
}
