//! End to end: the library and the `dify-plugin-client` binary against the real
//! `dify-plugin-daemon` binary running a real SDK tool plugin from `tests/plugins/`, packaged with
//! `dify-package`: upload → install (task polled to success) → list → manifest → readme → tool
//! providers → invoke with streamed output → direct invocation by identifier (`/v2/invoke`, `extract`) →
//! the admin API's answers on the local platform → uninstall.
//!
//! The daemon runs on free ports with SQLite and storage in a temporary directory, in its own
//! process group, and is stopped (SIGTERM, then SIGKILL) when the test ends. It needs the daemon
//! binary in the workspace `target/debug` (`./scripts/test` builds it), uv and a Python >= 3.12.
//! `DIFY_CLIENT_E2E_PLUGIN` may name another plugin directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dify_client::wire::{PluginInstallTaskStatus, ToolInvokeMessage, ToolProviderRef};
use dify_client::{ClientConfig, ClientError, DirectCaller, PluginDaemonClient, ReinstallEvent, ToolInvocation};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const TENANT: &str = "6a1c3f0e-4b2d-4e8f-9a7b-2c5d8e1f3a4b";
/// A tenant that did not install the plugin: `/v2` runs for the body's tenant all the same.
const OTHER_TENANT: &str = "7b2d4a1f-5c3e-4f9a-8b6c-3d6e9f2a4b5c";
const ADMIN_KEY: &str = "e2e-admin-key-0123456789";
const STARTUP: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(480);
const WHOLE_TEST: Duration = Duration::from_secs(840);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn daemon_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_absolute() { target } else { workspace_root().join(target) };
    let binary = target.join("debug").join("dify-plugin-daemon");
    assert!(binary.exists(), "daemon binary {} is missing: run `cargo build -p dify-daemon` or ./scripts/test", binary.display());
    binary
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn is_usable_python(candidate: &Path) -> bool {
    std::process::Command::new(candidate)
        .args(["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A Python >= 3.12 for the plugin environment: the runner's setting, then PATH, then pyenv.
fn plugin_python() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(configured) = std::env::var_os("PYTHON_INTERPRETER_PATH") {
        candidates.push(PathBuf::from(configured));
    }
    for name in ["python3.13", "python3.12"] {
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
        }
    }
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(versions) = pyenv.map(|root| root.join("versions")) {
        let mut found: Vec<PathBuf> = std::fs::read_dir(versions)
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path().join("bin/python3")).collect())
            .unwrap_or_default();
        found.sort();
        found.reverse();
        candidates.extend(found);
    }
    candidates
        .iter()
        .find(|candidate| candidate.exists() && is_usable_python(candidate))
        .cloned()
        .unwrap_or_else(|| panic!("no usable Python >= 3.12 (tried {candidates:?}): set PYTHON_INTERPRETER_PATH"))
}

fn uv_path() -> PathBuf {
    if let Some(configured) = std::env::var_os("UV_PATH").map(PathBuf::from).filter(|p| p.exists()) {
        return configured;
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("uv")).find(|p| p.exists()))
        .expect("uv not found: set UV_PATH or put uv on PATH")
}

/// The SDK tool plugin: `tests/plugins/runtime_tools` (tool `exercise`, whose `mode` parameter
/// selects the output), unless `DIFY_CLIENT_E2E_PLUGIN` names another directory of the same plugin.
fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("DIFY_CLIENT_E2E_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/plugins/runtime_tools"));
    assert!(dir.join("manifest.yaml").exists(), "test plugin {} is missing", dir.display());
    dir
}

/// One daemon process in its own process group.
struct Daemon {
    child: std::process::Child,
    url: String,
    key: String,
    log: PathBuf,
}

impl Daemon {
    async fn start(workdir: &Path) -> Daemon {
        let key = format!("e2e-key-{}", std::process::id());
        let log = workdir.join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let mut command = std::process::Command::new(daemon_binary());
        use std::os::unix::process::CommandExt;
        command
            .current_dir(workdir)
            .env_remove("DB_HOST")
            .env_remove("REDIS_HOST")
            .envs([
                ("SERVER_HOST", "127.0.0.1".to_string()),
                // The daemon picks a free port and names it in its "listening on" line.
                ("SERVER_PORT", "0".to_string()),
                ("SERVER_KEY", key.clone()),
                ("PLATFORM", "local".to_string()),
                ("DB_TYPE", "sqlite".to_string()),
                ("DB_SQLITE_PATH", workdir.join("daemon.db").display().to_string()),
                ("PLUGIN_STORAGE_LOCAL_ROOT", workdir.join("storage").display().to_string()),
                ("PLUGIN_WORKING_PATH", workdir.join("cwd").display().to_string()),
                ("PYTHON_INTERPRETER_PATH", plugin_python().display().to_string()),
                ("UV_PATH", uv_path().display().to_string()),
                ("FORCE_VERIFYING_SIGNATURE", "false".to_string()),
                ("PLUGIN_REMOTE_INSTALLING_ENABLED", "false".to_string()),
                ("PLUGIN_REMOTE_INSTALLING_PORT", "0".to_string()),
                ("DIFY_INNER_API_URL", format!("http://127.0.0.1:{}", free_port())),
                ("DIFY_INNER_API_KEY", "e2e-inner-key".to_string()),
                ("ADMIN_API_ENABLED", "true".to_string()),
                ("ADMIN_API_KEY", ADMIN_KEY.to_string()),
            ])
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .process_group(0);
        let child = command.spawn().expect("start the daemon");
        let mut daemon = Daemon { child, url: String::new(), key, log };
        daemon.wait_healthy().await;
        daemon
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP;
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited with {status} during start-up:\n{}", self.log_tail());
            }
            if self.url.is_empty() {
                match self.listening_port() {
                    Some(port) => self.url = format!("http://127.0.0.1:{port}"),
                    None => {
                        assert!(Instant::now() < deadline, "daemon did not listen within {STARTUP:?}:\n{}", self.log_tail());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let health = http.get(format!("{}/health/check", self.url)).timeout(Duration::from_secs(2)).send().await;
            if matches!(health, Ok(ref response) if response.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "daemon not healthy within {STARTUP:?}:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The port of the daemon's "dify-plugin-daemon listening on <host>:<port>" line.
    fn listening_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let (_, after) = text.split_once("dify-plugin-daemon listening on ")?;
        let address: String = after.chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
        let port: String = address.rsplit_once(':')?.1.chars().take_while(char::is_ascii_digit).collect();
        port.parse().ok().filter(|port| *port != 0)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn client(&self) -> PluginDaemonClient {
        PluginDaemonClient::new(ClientConfig::new(&self.url, &self.key).with_timeout(Duration::from_secs(120))).expect("client")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: signals the process group this test started (the daemon and its plugins).
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; whatever is left of the group is killed.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `daemon` and returns (exit status, stdout, stderr).
async fn cli(daemon: &Daemon, home: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dify-plugin-client"));
    command
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("DIFY_PLUGIN_DAEMON_URL", &daemon.url)
        .env("DIFY_PLUGIN_DAEMON_KEY", &daemon.key)
        .env("DIFY_PLUGIN_TENANT_ID", TENANT)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("CLI finished in time")
        .expect("CLI started");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_and_cli_against_the_real_daemon() {
    let workdir = tempfile::tempdir().expect("workdir");
    let home = tempfile::tempdir().expect("home");
    let plugin = plugin_dir();
    let package = dify_package::write::package_dir(&plugin).expect("package the plugin");
    let readme_on_disk = std::fs::read_to_string(plugin.join("README.md")).ok();

    let daemon = Daemon::start(workdir.path()).await;
    let outcome = tokio::time::timeout(WHOLE_TEST, scenario(&daemon, home.path(), package, readme_on_disk)).await;
    if outcome.is_err() {
        panic!("end-to-end scenario exceeded {WHOLE_TEST:?}; daemon log:\n{}", daemon.log_tail());
    }
}

async fn scenario(daemon: &Daemon, home: &Path, package: Vec<u8>, readme_on_disk: Option<String>) {
    let client = daemon.client();
    let log = || daemon.log_tail();

    // Upload and install, polling the task to success.
    let uploaded = client.upload_pkg(TENANT, package, false).await.unwrap_or_else(|e| panic!("upload: {e}\n{}", log()));
    let identifier = uploaded.unique_identifier.to_string();
    let plugin_id = uploaded.manifest.plugin_id();
    assert!(identifier.starts_with(&format!("{plugin_id}:")), "{identifier}");
    let started = client
        .install_from_identifiers(TENANT, std::slice::from_ref(&identifier), "package", &[json!({})])
        .await
        .unwrap_or_else(|e| panic!("install: {e}\n{}", log()));
    assert!(!started.all_installed);
    let task = client
        .wait_for_installation_task(TENANT, &started.task_id, Duration::from_secs(1), INSTALL, |_| {})
        .await
        .unwrap_or_else(|e| panic!("install task: {e}\n{}", log()));
    assert_eq!(task.status, PluginInstallTaskStatus::Success, "task {task:?}\n{}", log());

    // Discovery.
    let plugins = client.list_plugins(TENANT).await.expect("list");
    let installed = plugins.iter().find(|p| p.plugin_unique_identifier == identifier).expect("installed plugin listed");
    assert_eq!(installed.plugin_id, plugin_id);
    let manifest = client.fetch_plugin_manifest(TENANT, &identifier).await.expect("manifest");
    assert_eq!(manifest.name, uploaded.manifest.name);
    assert!(client.fetch_plugin_by_identifier(TENANT, &identifier).await.expect("fetch identifier"));
    let readme = client.fetch_plugin_readme(TENANT, &identifier, "en_US").await.expect("readme");
    match &readme_on_disk {
        Some(text) => assert_eq!(readme.trim(), text.trim()),
        None => assert_eq!(readme, ""),
    }

    // Tool providers.
    let providers = client.fetch_tool_providers(TENANT).await.expect("tool providers");
    let provider = providers.iter().find(|p| p.plugin_id == plugin_id).expect("the plugin's tool provider");
    let provider_name = provider.declaration.identity.name.clone();
    assert_eq!(provider_name, format!("{plugin_id}/{}", provider.provider));
    let tool = provider.declaration.tools.iter().find(|t| t.identity.name == "exercise").expect("tool `exercise`");
    assert!(tool.parameters.iter().any(|p| p.name == "mode"));
    let one = client.fetch_tool_provider(TENANT, &provider_name).await.expect("one tool provider");
    assert_eq!(one.declaration.identity.name, provider_name);
    let exists = client
        .check_tools_existence(TENANT, &[ToolProviderRef { plugin_id: plugin_id.clone(), provider_name: provider.provider.clone() }])
        .await
        .expect("check existence");
    assert_eq!(exists, vec![true]);

    // Streamed invocations through the library.
    let invoke = |parameters: Value| {
        let mut invocation = ToolInvocation::new("e2e-user", &provider_name, "exercise");
        invocation.tool_parameters = parameters.as_object().expect("object").clone();
        let client = client.clone();
        async move {
            let stream = client.invoke_tool(TENANT, invocation).await.expect("invocation starts");
            stream.collect::<Vec<_>>().await
        }
    };
    let messages = invoke(json!({"mode": "stream", "count": "4"})).await;
    let texts: Vec<&str> = messages.iter().map(|m| m.as_ref().expect("message").text().expect("text")).collect();
    assert_eq!(texts, ["chunk 0", "chunk 1", "chunk 2", "chunk 3"], "{}", log());

    let messages = invoke(json!({"mode": "kinds", "text": "hi"})).await;
    let kinds: Vec<&str> = messages.iter().map(|m| m.as_ref().expect("message").message_type.as_str()).collect();
    assert_eq!(kinds, ["text", "json", "link", "image", "variable", "log"]);

    // 20000 bytes arrive as 8 KiB blob_chunks from the SDK and are merged into one blob.
    let messages = invoke(json!({"mode": "blob", "count": 20000})).await;
    let messages: Vec<ToolInvokeMessage> = messages.into_iter().map(|m| m.expect("message")).collect();
    let digest = messages[0].text().expect("digest text").to_string();
    let blobs: Vec<&ToolInvokeMessage> = messages.iter().filter(|m| m.message_type == "blob").collect();
    assert_eq!(blobs.len(), 1, "{:?}", messages.iter().map(|m| &m.message_type).collect::<Vec<_>>());
    let bytes = STANDARD.decode(blobs[0].message["blob"].as_str().expect("base64")).expect("decode");
    assert_eq!(bytes.len(), 20000);
    assert_eq!(hex_sha256(&bytes), digest);

    let messages = invoke(json!({"mode": "raise", "text": "on purpose"})).await;
    assert_eq!(messages[0].as_ref().expect("first message").text(), Some("about to fail"));
    match messages.last() {
        Some(Err(ClientError::PluginInvokeError { description, .. })) => {
            assert!(description.contains("requested failure: on purpose"), "{description}")
        }
        other => panic!("expected a PluginInvokeError, got {other:?}"),
    }
    let rejected = client
        .invoke(
            TENANT,
            "e2e-user",
            &provider_name,
            "exercise",
            Map::new(),
            json!({"count": "many"}).as_object().cloned().unwrap_or_default(),
        )
        .await;
    assert!(matches!(rejected, Err(ClientError::Validation(_))), "a bad number is rejected before dispatch");

    // The same through the CLI (settings from the environment).
    let (status, stdout, stderr) = cli(daemon, home, &["list", "-o", "name"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.lines().any(|line| line == identifier), "{stdout}");
    let (status, stdout, stderr) = cli(daemon, home, &["tools"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert!(stdout.contains(&format!("{provider_name}  exercise")), "{stdout}");
    let (status, stdout, stderr) = cli(daemon, home, &["manifest", &identifier, "-o", "json"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).expect("manifest json")["name"], json!(manifest.name));
    let (status, stdout, stderr) = cli(daemon, home, &["readme", &identifier]).await;
    assert_eq!((status, stdout.trim()), (0, readme.trim()), "{stderr}");
    let invoke_args = |params: &'static str| -> Vec<String> {
        ["invoke", "--user", "e2e-user", "--provider", &provider_name, "--tool", "exercise", "--params", params]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let args = invoke_args(r#"{"mode":"stream","count":3}"#);
    let (status, stdout, stderr) = cli(daemon, home, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 0, "{stderr}\n{}", log());
    assert_eq!(stdout, "chunk 0chunk 1chunk 2\n", "text streams without separators, as Dify shows it");
    let mut args = invoke_args(r#"{"mode":"kinds","text":"hi"}"#);
    args.extend(["-o".to_string(), "json".to_string()]);
    let (status, stdout, stderr) = cli(daemon, home, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 0, "{stderr}");
    let streamed: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON message per line")).collect();
    assert_eq!(streamed.len(), 6, "{stdout}");
    assert_eq!(streamed[1]["message"]["json_object"], json!({"text": "hi", "length": 2}));
    let args = invoke_args(r#"{"mode":"raise","text":"on purpose"}"#);
    let (status, stdout, stderr) = cli(daemon, home, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stdout, "about to fail\n");
    assert!(stderr.contains("requested failure: on purpose"), "{stderr}");

    // Direct invocation by unique identifier, for a tenant that did not install the plugin.
    let data = |parameters: Value| -> Map<String, Value> {
        let value = json!({"provider": provider.provider, "tool": "exercise", "credentials": {}, "credential_type": "api-key",
                           "tool_parameters": parameters});
        value.as_object().cloned().expect("object")
    };
    let caller = DirectCaller::new(OTHER_TENANT, "v2-user");
    let items: Vec<Value> = client
        .invoke_v2(&identifier, "/tool/invoke", &caller, data(json!({"mode": "kinds", "text": "v2"})))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "invoke_v2: {e}
{}",
                log()
            )
        })
        .map(|item| item.expect("v2 item"))
        .collect()
        .await;
    assert_eq!(items.len(), 6, "{items:?}");
    assert_eq!(items[1]["message"]["json_object"], json!({"text": "v2", "length": 2}), "{items:?}");
    let mut failing = client
        .invoke_v2(&identifier, "tool/invoke", &caller, data(json!({"mode": "raise", "text": "v2 failure"})))
        .await
        .expect("v2 stream starts");
    let mut failure = None;
    while let Some(item) = failing.next().await {
        if let Err(error) = item {
            failure = Some(error);
        }
    }
    assert!(
        matches!(&failure, Some(ClientError::PluginInvokeError { description, .. }) if description.contains("v2 failure")),
        "{failure:?}"
    );
    let absent = "testing/absent:0.0.1@0000000000000000000000000000000000000000000000000000000000000000";
    let error = match client.invoke_v2(absent, "/tool/invoke", &caller, data(json!({}))).await {
        Err(error) => error,
        Ok(mut stream) => stream.next().await.expect("one item").expect_err("an absent version fails"),
    };
    assert!(
        matches!(&error, ClientError::PluginDaemonInternalServerError { message } if message.contains("plugin runtime not found")),
        "{error:?}"
    );
    let extracted = client.extract_v2(&identifier).await.unwrap_or_else(|e| panic!("extract: {e}"));
    assert_eq!(extracted["unique_identifier"], json!(identifier));
    assert_eq!(extracted["manifest"]["name"], json!(manifest.name));
    let (status, stdout, stderr) = cli(
        daemon,
        home,
        &[
            "invoke-v2",
            "--identifier",
            &identifier,
            "--route",
            "/tool/invoke",
            "--user",
            "v2-cli",
            "--data",
            &Value::Object(data(json!({"mode": "kinds", "text": "cli"}))).to_string(),
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(status, 0, "{stderr}\n{}", log());
    let streamed: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON item per line")).collect();
    assert_eq!(streamed[1]["message"]["json_object"], json!({"text": "cli", "length": 3}), "{stdout}");
    let (status, stdout, stderr) = cli(daemon, home, &["extract", &identifier, "-o", "json"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).expect("extract json")["manifest"]["name"], json!(manifest.name));

    // The admin API on the local platform: upstream's "not supported" answers, typed; a wrong key is refused.
    let events: Vec<ReinstallEvent> = client
        .admin_reinstall_serverless(ADMIN_KEY, &identifier)
        .await
        .expect("reinstall stream")
        .map(|event| event.expect("event"))
        .collect()
        .await;
    assert_eq!(events, vec![ReinstallEvent { event: "error".into(), data: "reinstall is not supported on local platform".into() }]);
    let switched = client.admin_switch_serverless_endpoint(ADMIN_KEY, &identifier, "fn-1", "http://127.0.0.1:9").await;
    assert!(
        matches!(&switched, Err(ClientError::PluginDaemonInternalServerError { message }) if message == "switch serverless runtime is not supported on local platform"),
        "{switched:?}"
    );
    let refused = client.admin_switch_serverless_endpoint("wrong-admin-key", &identifier, "fn-1", "http://127.0.0.1:9").await;
    assert!(matches!(refused, Err(ClientError::PluginDaemonUnauthorizedError { .. })), "{refused:?}");
    let (status, stdout, stderr) = cli(daemon, home, &["admin", "--admin-key", ADMIN_KEY, "reinstall", "--identifier", &identifier]).await;
    assert_eq!((status, stdout.as_str()), (1, "error: reinstall is not supported on local platform\n"), "{stderr}");
    let (status, _, stderr) = cli(
        daemon,
        home,
        &[
            "admin",
            "--admin-key",
            ADMIN_KEY,
            "switch-endpoint",
            "--identifier",
            &identifier,
            "--function-name",
            "f",
            "--function-url",
            "http://127.0.0.1:9",
        ],
    )
    .await;
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("switch serverless runtime is not supported on local platform"), "{stderr}");
    let (status, _, stderr) = cli(daemon, home, &["admin", "reinstall", "--identifier", &identifier]).await;
    assert_eq!(status, 2, "no admin key: {stderr}");
    let (status, _, stderr) =
        cli(daemon, home, &["admin", "--admin-key", "wrong-admin-key", "reinstall", "--identifier", &identifier]).await;
    assert_eq!(status, 4, "a wrong admin key: {stderr}");

    // Uninstall through the CLI; the plugin is gone from the list.
    let (status, _, stderr) = cli(daemon, home, &["uninstall", &plugin_id]).await;
    assert_eq!(status, 0, "{stderr}");
    let after = client.list_plugins(TENANT).await.expect("list after uninstall");
    assert!(after.iter().all(|p| p.plugin_id != plugin_id), "still installed: {after:?}");
    let (status, _, stderr) = cli(daemon, home, &["tools", "--provider", &provider_name]).await;
    assert_eq!(status, 1, "the provider is gone: {stderr}");
}
