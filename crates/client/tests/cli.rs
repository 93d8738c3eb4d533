//! The `dify-plugin-client` binary against the fixture daemon: commands, output formats, exit
//! codes, JSON errors, streamed invoke output and settings precedence (flags > environment >
//! config file > defaults). `HOME` points at a temporary directory in every run. Printed output is
//! compared with snapshots (`tests/snapshots/`).

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::{identifier, FixtureServer, Scenario, API_KEY, PLUGIN_ID, PROVIDER, TENANT};

const BIN: &str = env!("CARGO_BIN_EXE_dify-plugin-client");

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, only the given environment variables (plus PATH) and `home` as HOME.
async fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).env_clear().env("HOME", home).kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output: Output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the CLI finished in time")
        .expect("the CLI started");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Run {
    /// Exit code, stdout and stderr as one text, for snapshots.
    fn transcript(&self) -> String {
        format!("exit: {}\n--- stdout\n{}\n--- stderr\n{}\n", self.status, self.stdout.trim_end(), self.stderr.trim_end())
    }
}

/// Snapshot settings: fixture servers' addresses become `[URL]`, the temporary home `[HOME]`.
fn snapshots(home: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"http://127\.0\.0\.1:\d+", "[URL]");
    settings.add_filter(&home.display().to_string().replace('.', r"\."), "[HOME]");
    settings
}

/// Connection flags for `server`.
fn flags(server: &FixtureServer) -> Vec<String> {
    vec!["--url".into(), server.url.clone(), "--key".into(), API_KEY.into(), "--tenant".into(), TENANT.into()]
}

async fn run_with(server: &FixtureServer, home: &Path, args: &[&str]) -> Run {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(flags(server));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run(home, &[], &refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_list_and_inspect() {
    let home = tempfile::tempdir().unwrap();
    let server = FixtureServer::start(Scenario::Happy).await;
    let package = home.path().join("echo.difypkg");
    std::fs::write(&package, b"PK fake").unwrap();

    let install = run_with(&server, home.path(), &["install", "--file", package.to_str().unwrap()]).await;
    assert_eq!(install.status, 0, "{}", install.stderr);
    // No progress display without a TTY: stderr stays empty.
    let settings = snapshots(home.path());
    settings.bind(|| insta::assert_snapshot!("install_package", install.transcript()));
    assert_eq!(server.requests_to("install/upload/package").len(), 1);
    assert!(server.requests_to("install/tasks/task-1").len() >= 2, "the task is polled until it finishes");

    let list = run_with(&server, home.path(), &["list"]).await;
    assert_eq!(list.status, 0, "{}", list.stderr);
    settings.bind(|| insta::assert_snapshot!("list_text", list.transcript()));

    let names = run_with(&server, home.path(), &["list", "-o", "name"]).await;
    assert_eq!(names.stdout, format!("{}\n", identifier()));

    let json = run_with(&server, home.path(), &["-o", "json", "list"]).await;
    let value: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["total"], 1);
    assert_eq!(value["list"][0]["plugin_unique_identifier"], identifier());

    let yaml = run_with(&server, home.path(), &["list", "--output", "yaml"]).await;
    settings.bind(|| insta::assert_snapshot!("list_yaml", yaml.transcript()));

    let wide = run_with(&server, home.path(), &["tools", "-o", "wide"]).await;
    assert_eq!(wide.status, 0, "{}", wide.stderr);
    settings.bind(|| insta::assert_snapshot!("tools_wide", wide.transcript()));

    let manifest = run_with(&server, home.path(), &["manifest", &identifier(), "-o", "json"]).await;
    let value: Value = serde_json::from_str(&manifest.stdout).unwrap();
    assert_eq!(value["name"], "echo");

    let readme = run_with(&server, home.path(), &["readme", &identifier()]).await;
    assert_eq!(readme.stdout, "# Echo\n\nRepeats text.\n");
    let no_readme = run_with(&server, home.path(), &["readme", &identifier(), "--language", "ja_JP"]).await;
    assert_eq!((no_readme.status, no_readme.stdout.as_str()), (0, ""));

    let missing = run_with(&server, home.path(), &["missing", &identifier()]).await;
    assert_eq!(missing.stdout, "nothing missing\n");

    let tasks = run_with(&server, home.path(), &["tasks", "-o", "name"]).await;
    assert_eq!(tasks.stdout, "task-1\n");

    let uploaded = run_with(&server, home.path(), &["upload-pkg", "--file", package.to_str().unwrap(), "-o", "name"]).await;
    assert_eq!((uploaded.status, uploaded.stdout.clone()), (0, format!("{}\n", identifier())), "{}", uploaded.stderr);
    let task = run_with(&server, home.path(), &["task", "task-1", "-o", "json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&task.stdout).unwrap()["status"], "success");
    let newer = format!("fixture/echo:0.0.2@{}", support::CHECKSUM);
    let upgrade = run_with(&server, home.path(), &["upgrade", "--from", &identifier(), "--to", &newer]).await;
    assert_eq!(upgrade.status, 0, "{}", upgrade.stderr);
    assert_eq!(upgrade.stdout, format!("{newer}: already installed\n"));
    assert_eq!(server.requests_to("install/upgrade")[0].json()["new_plugin_unique_identifier"], newer.as_str());
    let missing_package = run_with(&server, home.path(), &["upload-pkg", "--file", "/nonexistent/x.difypkg"]).await;
    assert_eq!(missing_package.status, 1);
    settings.bind(|| insta::assert_snapshot!("upload_missing_package", missing_package.transcript()));

    let uninstall = run_with(&server, home.path(), &["uninstall", PLUGIN_ID]).await;
    assert_eq!(uninstall.status, 0, "{}", uninstall.stderr);
    assert_eq!(server.requests_to("management/uninstall")[0].json()["plugin_installation_id"], "inst-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_prints_text_as_it_streams() {
    let home = tempfile::tempdir().unwrap();
    let server = FixtureServer::start(Scenario::Happy).await;
    let args = ["invoke", "--user", "u1", "--provider", PROVIDER, "--tool", "echo", "--params", r#"{"text":"hello"}"#];
    let text = run_with(&server, home.path(), &args).await;
    assert_eq!(text.status, 0, "{}", text.stderr);
    assert_eq!(text.stdout, "hello again\n[blob] 6 bytes (text/plain)\n[json] {\"echoed\":\"hello\"}\n");

    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let json = run_with(&server, home.path(), &json_args).await;
    let lines: Vec<Value> = json.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["type"], "text");
    assert_eq!(lines[2]["message"]["blob"], "aGVsbG8h");
    assert_eq!(lines[3]["message"]["json_object"]["echoed"], "hello");

    let bad = run_with(
        &server,
        home.path(),
        &["invoke", "--user", "u", "--provider", PROVIDER, "--tool", "echo", "--params", r#"{"times":"x"}"#],
    )
    .await;
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    let settings = snapshots(home.path());
    settings.bind(|| insta::assert_snapshot!("invoke_missing_parameter", bad.transcript()));
    let not_json =
        run_with(&server, home.path(), &["invoke", "--user", "u", "--provider", PROVIDER, "--tool", "echo", "--params", "{text"]).await;
    assert_eq!(not_json.status, 2);
    settings.bind(|| insta::assert_snapshot!("invoke_params_not_json", not_json.transcript()));
    assert_eq!(server.requests_to("dispatch/tool/invoke").len(), 2, "invalid input is never dispatched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_messages() {
    let home = tempfile::tempdir().unwrap();

    let server = FixtureServer::start(Scenario::InstallFails).await;
    let install = run_with(&server, home.path(), &["install", "--identifier", &identifier()]).await;
    assert_eq!(install.status, 1, "{}", install.stderr);
    let settings = snapshots(home.path());
    settings.bind(|| insta::assert_snapshot!("install_task_fails", install.transcript()));

    let server = FixtureServer::start(Scenario::InvokeFails).await;
    let invoke = run_with(
        &server,
        home.path(),
        &["invoke", "--user", "u", "--provider", PROVIDER, "--tool", "echo", "--params", r#"{"text":"hi"}"#],
    )
    .await;
    assert_eq!(invoke.status, 1);
    assert_eq!(invoke.stdout, "hi \n", "text before the error is printed");
    settings.bind(|| insta::assert_snapshot!("invoke_plugin_error", invoke.transcript()));

    let server = FixtureServer::start(Scenario::Unauthorized).await;
    let denied = run_with(&server, home.path(), &["list"]).await;
    assert_eq!(denied.status, 4, "a rejected key exits 4: {}", denied.stderr);
    settings.bind(|| insta::assert_snapshot!("key_rejected", denied.transcript()));
    let denied_json = run_with(&server, home.path(), &["list", "-o", "json"]).await;
    assert_eq!(denied_json.status, 4);
    let error: Value = serde_json::from_str(&denied_json.stderr).unwrap();
    assert_eq!(error["error"]["code"], "auth");
    assert_eq!(error["error"]["type"], "PluginDaemonUnauthorizedError");

    let server = FixtureServer::start(Scenario::NotADaemon).await;
    let compat = run_with(&server, home.path(), &["list"]).await;
    assert_eq!(compat.status, 6, "{}", compat.stderr);

    let server = FixtureServer::start(Scenario::DaemonError { status: 200, body: support::payloads::PLUGIN_NOT_FOUND }).await;
    let not_found = run_with(&server, home.path(), &["tools", "--provider", PROVIDER, "-o", "yaml"]).await;
    assert_eq!(not_found.status, 1);
    settings.bind(|| insta::assert_snapshot!("tools_plugin_not_found_yaml", not_found.transcript()));

    let server = FixtureServer::start(Scenario::Happy).await;
    let no_tenant = run(home.path(), &[], &["list", "--url", &server.url, "--key", API_KEY]).await;
    assert_eq!(no_tenant.status, 2);
    settings.bind(|| insta::assert_snapshot!("no_tenant", no_tenant.transcript()));
    let bad_usage = run(home.path(), &[], &["install"]).await;
    assert_eq!(bad_usage.status, 2);
    assert!(server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_daemon_is_retried_by_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let server = FixtureServer::start(Scenario::Slow { busy_answers: 1 }).await;
    let list = run_with(&server, home.path(), &["list", "-o", "name"]).await;
    assert_eq!(list.status, 0, "{}", list.stderr);
    assert_eq!(server.requests_to("management/list").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_precedence_flags_env_file_defaults() {
    let home = tempfile::tempdir().unwrap();
    let server = FixtureServer::start(Scenario::Happy).await;
    let dead = format!("http://{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());

    // Defaults: no settings at all means http://localhost:5002 and no tenant.
    let defaults = run(home.path(), &[], &["list", "--tenant", TENANT, "--timeout", "2", "-o", "json"]).await;
    // Either nothing listens there (the error names the URL) or a daemon rejects the empty key.
    assert!(defaults.stderr.contains("localhost:5002") || defaults.status == 4, "{}: {}", defaults.status, defaults.stderr);
    assert_ne!(defaults.status, 0);

    // The config file overrides the defaults (and supplies the tenant).
    let config = format!(r#"{{"url":"{}","key":"{API_KEY}","timeout":5,"tenant":"{TENANT}"}}"#, server.url);
    std::fs::write(home.path().join(".dify"), config).unwrap();
    let from_file = run(home.path(), &[], &["list", "-o", "name"]).await;
    assert_eq!(from_file.status, 0, "{}", from_file.stderr);
    assert_eq!(from_file.stdout, format!("{}\n", identifier()));

    // The environment overrides the file: a bad key from the environment is used and rejected.
    let from_env = run(home.path(), &[("DIFY_PLUGIN_DAEMON_KEY", "wrong")], &["list"]).await;
    assert_eq!(from_env.status, 4, "{}", from_env.stderr);
    let env_tenant = run(home.path(), &[("DIFY_PLUGIN_TENANT_ID", "other-tenant")], &["list"]).await;
    assert_eq!(env_tenant.status, 6, "unknown tenant path: {}", env_tenant.stderr);
    let env_url = run(home.path(), &[("DIFY_PLUGIN_DAEMON_URL", &dead), ("DIFY_PLUGIN_DAEMON_TIMEOUT", "2")], &["list"]).await;
    assert_eq!(env_url.status, 1);
    assert!(env_url.stderr.contains(&dead), "{}", env_url.stderr);

    // Flags override the environment, before or after the command name.
    let env = [("DIFY_PLUGIN_DAEMON_URL", dead.as_str()), ("DIFY_PLUGIN_DAEMON_KEY", "wrong"), ("DIFY_PLUGIN_TENANT_ID", "other")];
    let from_flags = run(home.path(), &env, &["--url", &server.url, "list", "--key", API_KEY, "--tenant", TENANT, "-o", "name"]).await;
    assert_eq!(from_flags.status, 0, "{}", from_flags.stderr);
    let bad_timeout_flag = run(home.path(), &[("DIFY_PLUGIN_DAEMON_TIMEOUT", "3")], &["list", "--timeout", "later"]).await;
    assert_eq!(bad_timeout_flag.status, 2);
    assert!(bad_timeout_flag.stderr.contains("--timeout"), "{}", bad_timeout_flag.stderr);

    // --config replaces ~/.dify.
    let other = home.path().join("other.json");
    std::fs::write(&other, format!(r#"{{"url":"{dead}","key":"{API_KEY}","tenant":"{TENANT}","timeout":"2"}}"#)).unwrap();
    let explicit = run(home.path(), &[], &["list", "--config", other.to_str().unwrap()]).await;
    assert_eq!(explicit.status, 1);
    assert!(explicit.stderr.contains(&dead), "{}", explicit.stderr);

    // A malformed config file is a usage error naming the file.
    std::fs::write(home.path().join(".dify"), "{\"url\": ").unwrap();
    let malformed = run(home.path(), &[], &["list"]).await;
    assert_eq!(malformed.status, 2, "{}", malformed.stderr);
    let shown = home.path().join(".dify").display().to_string();
    assert!(malformed.stderr.contains(&format!("malformed config file {shown}")), "{}", malformed.stderr);
    let malformed_json = run(home.path(), &[], &["list", "-o", "json"]).await;
    let error: Value = serde_json::from_str(&malformed_json.stderr).unwrap();
    assert_eq!(error["error"]["code"], "config");
    assert_eq!(error["error"]["exit_status"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_output_is_written_while_the_stream_is_open() {
    use tokio::io::AsyncReadExt;
    let home = tempfile::tempdir().unwrap();
    let server = FixtureServer::start(Scenario::Happy).await;
    let mut args: Vec<String> = ["invoke", "--user", "u", "--provider", PROVIDER, "--tool", "echo", "--params", r#"{"text":"hello"}"#]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(flags(&server));
    let mut child = tokio::process::Command::new(BIN)
        .args(&args)
        .env_clear()
        .env("HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(30), stdout.read_exact(&mut first)).await.unwrap().unwrap();
    let first_at = std::time::Instant::now();
    assert_eq!(&first, b"hello ");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    // The fixture sends the remaining lines 150 ms apart: the first text was printed long before the end.
    assert!(first_at.elapsed() >= Duration::from_millis(200), "{:?}", first_at.elapsed());
}
