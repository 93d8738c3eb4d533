//! The local runtime driven directly (no HTTP): a real SDK test plugin from `tests/plugins/` is
//! packaged with `dify-package`, its environment built by uv, launched and supervised by
//! `RuntimeManager`, and invoked through sessions. Covers message kinds, storage backwards calls,
//! a raised error, concurrency, a crash with restart, a plugin that never becomes ready, the
//! execution timeout, and that no child is left a zombie.

use crate::runtime_support;

use std::sync::Arc;
use std::time::Duration;

use dify_daemon::backwards::{BackwardsHandler, DifyBackwards};
use dify_daemon::runtime::{RuntimeConfig, RuntimeManager};
use dify_daemon::session::{start_session, SessionOutput, SessionRequest};
use dify_protocol::access::AccessType;
use dify_protocol::message::InvocationContext;
use runtime_support::*;
use serde_json::{json, Map, Value};

const TENANT: &str = "tenant-runtime";

struct Running {
    manager: Arc<RuntimeManager>,
    uid: dify_protocol::PluginUniqueIdentifier,
    declaration: dify_protocol::PluginDeclaration,
    backwards: Arc<dyn BackwardsHandler>,
    _workdir: tempfile::TempDir,
}

async fn launch(plugin: &str, adjust: impl FnOnce(&mut RuntimeConfig)) -> Result<Running, (String, Vec<String>)> {
    launch_package(package_plugin(plugin), tempfile::tempdir().expect("tempdir"), adjust, Vec::new()).await
}

async fn launch_package(
    package: Vec<u8>,
    workdir: tempfile::TempDir,
    adjust: impl FnOnce(&mut RuntimeConfig),
    plugin_env: Vec<(String, String)>,
) -> Result<Running, (String, Vec<String>)> {
    let mut config = test_runtime_config(workdir.path());
    adjust(&mut config);
    let backwards: Arc<dyn BackwardsHandler> = Arc::new(DifyBackwards::new(&config, Arc::new(MemoryStorage::default())));
    let manager = RuntimeManager::with_plugin_env(config, plugin_env);
    let (uid, declaration) = decode(&package);
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let launched = tokio::time::timeout(Duration::from_secs(240), manager.launch(&uid, &package, &declaration, progress_tx))
        .await
        .expect("launch finished in time");
    let mut progress = Vec::new();
    while let Ok(line) = progress_rx.try_recv() {
        progress.push(line);
    }
    match launched {
        Ok(()) => Ok(Running { manager, uid, declaration, backwards, _workdir: workdir }),
        Err(error) => Err((error.to_string(), progress)),
    }
}

impl Running {
    async fn invoke(&self, parameters: Value) -> Vec<SessionOutput> {
        self.invoke_action(
            AccessType::Tool,
            "invoke_tool",
            json!({
                "provider": "runtime_tools", "tool": "exercise", "credentials": {}, "tool_parameters": parameters,
            }),
        )
        .await
    }

    async fn invoke_action(&self, access_type: AccessType, action: &str, payload: Value) -> Vec<SessionOutput> {
        let plugin = self.manager.plugin(self.uid.as_str()).expect("plugin is managed");
        let connection = plugin.process.connection(Duration::from_secs(60)).await.expect("plugin connection");
        let request = SessionRequest {
            tenant_id: TENANT.into(),
            user_id: "user-1".into(),
            plugin_id: self.uid.plugin_id().into(),
            access_type,
            action: action.into(),
            payload: payload.as_object().cloned().unwrap_or_else(Map::new).into(),
            invocation: InvocationContext::default(),
            permissions: self.declaration.permissions(),
            trace: None,
        };
        let timeout = self.manager.config().max_execution_timeout;
        let mut session = start_session(connection, request, self.backwards.clone(), timeout).await.expect("session starts");
        let mut outputs = Vec::new();
        let collect = async {
            while let Some(output) = session.next().await {
                outputs.push(output);
            }
        };
        tokio::time::timeout(Duration::from_secs(120), collect).await.expect("session finished in time");
        outputs
    }
}

fn texts(outputs: &[SessionOutput]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            SessionOutput::Chunk(c) => {
                let c = c.to_value();
                if c["type"] == "text" {
                    c["message"]["text"].as_str().map(str::to_owned)
                } else {
                    None
                }
            }
            _ => None,
        })
        .collect()
}

fn chunks(outputs: &[SessionOutput]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| if let SessionOutput::Chunk(c) = o { Some(c.to_value()) } else { None })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_plugin_sessions_cover_messages_storage_errors_and_concurrency() {
    let running = launch("runtime_tools", |_| {}).await.unwrap_or_else(|(e, p)| panic!("launch failed: {e}\n{}", p.join("\n")));

    // Validate credentials: a map result passes through.
    let validated = running
        .invoke_action(AccessType::Tool, "validate_tool_credentials", json!({"provider": "runtime_tools", "credentials": {}}))
        .await;
    assert_eq!(chunks(&validated), vec![json!({"result": true})]);

    // Every simple message kind, in order.
    let kinds = running.invoke(json!({"mode": "kinds", "text": "hello"})).await;
    let kinds = chunks(&kinds);
    let types: Vec<&str> = kinds.iter().map(|c| c["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types, vec!["text", "json", "link", "image", "variable", "log"]);
    assert_eq!(kinds[1]["message"]["json_object"], json!({"text": "hello", "length": 5}));
    assert_eq!(kinds[4]["message"], json!({"variable_name": "upper", "variable_value": "HELLO", "stream": false}));
    assert_eq!(kinds[5]["message"]["label"], "step");

    // Storage: exist / set / get / exist / del / exist through backwards invocations.
    let stored = running.invoke(json!({"mode": "storage", "text": "blue", "key": "color"})).await;
    assert_eq!(
        chunks(&stored)[0]["message"]["json_object"],
        json!({"exists_before": false, "read_back": "blue", "exists_after": true, "exists_deleted": false})
    );
    // The manifest's quota (65536 bytes) is checked before the write.
    let over_quota = running.invoke(json!({"mode": "storage_set", "count": 70000, "key": "big"})).await;
    match over_quota.last() {
        Some(SessionOutput::Failed(error)) => {
            assert!(error.message.contains("allocated size is greater than max storage size"), "{error:?}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // A raised error ends the session with the plugin's error after the earlier output.
    let raised = running.invoke(json!({"mode": "raise", "text": "boom"})).await;
    assert_eq!(texts(&raised), vec!["about to fail"]);
    match raised.last() {
        Some(SessionOutput::Failed(error)) => {
            assert_eq!(error.error_type, "ValueError");
            assert_eq!(error.message, "requested failure: boom");
        }
        other => panic!("expected the plugin error, got {other:?}"),
    }

    // 1,000 streamed chunks arrive complete and in order.
    let streamed = running.invoke(json!({"mode": "stream", "count": 1000})).await;
    let expected: Vec<String> = (0..1000).map(|i| format!("chunk {i}")).collect();
    assert_eq!(texts(&streamed), expected);

    // 200 concurrent sessions on one plugin each get exactly their own answer.
    let runs = futures::future::join_all((0..200).map(|i| {
        let running = &running;
        async move { (i, running.invoke(json!({"mode": "echo", "text": format!("n{i}")})).await) }
    }))
    .await;
    for (i, outputs) in runs {
        assert_eq!(texts(&outputs), vec![format!("echo: n{i}")], "session {i}: {outputs:?}");
    }

    let pids = running.manager.plugin(running.uid.as_str()).expect("plugin").process.spawned_pids();
    running.manager.shutdown().await;
    assert!(running.manager.plugin(running.uid.as_str()).is_none());
    for pid in pids {
        assert!(!process_alive(pid), "plugin process {pid} survived shutdown");
    }
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_plugin_fails_only_its_sessions_and_is_restarted() {
    let running = launch("runtime_tools", |_| {}).await.unwrap_or_else(|(e, p)| panic!("launch failed: {e}\n{}", p.join("\n")));
    let plugin = running.manager.plugin(running.uid.as_str()).expect("plugin");

    // A session in flight on the same process and the one that kills it both fail with a clear error.
    let (crashed, sleeping) = tokio::join!(running.invoke(json!({"mode": "exit"})), running.invoke(json!({"mode": "sleep", "count": 30})),);
    assert_eq!(texts(&crashed), vec!["exiting"]);
    for outputs in [&crashed, &sleeping] {
        match outputs.last() {
            Some(SessionOutput::Failed(error)) => assert!(error.message.contains("plugin process exited unexpectedly"), "{error:?}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    // The supervisor restarts it and new sessions work.
    assert!(eventually(Duration::from_secs(60), || plugin.process.restart_count() >= 1).await, "plugin was not restarted");
    let after = running.invoke(json!({"mode": "echo", "text": "again"})).await;
    assert_eq!(texts(&after), vec!["echo: again"]);

    let pids = plugin.process.spawned_pids();
    assert!(pids.len() >= 2, "{pids:?}");
    running.manager.stop(&running.uid).await;
    for pid in pids {
        assert!(!process_alive(pid), "plugin process {pid} survived stop");
    }
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_over_the_execution_timeout_is_killed() {
    // 5 s: the first chunk arrives well before it even on a loaded machine; the plugin would sleep 30 s.
    let running = launch("runtime_tools", |c| c.max_execution_timeout = Duration::from_secs(5))
        .await
        .unwrap_or_else(|(e, p)| panic!("launch failed: {e}\n{}", p.join("\n")));
    let started = std::time::Instant::now();
    let outputs = running.invoke(json!({"mode": "sleep", "count": 30})).await;
    assert_eq!(texts(&outputs), vec!["sleeping"]);
    assert_eq!(outputs.last(), Some(&SessionOutput::TimedOut));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    // The plugin itself keeps serving.
    assert_eq!(texts(&running.invoke(json!({"text": "still here"})).await), vec!["echo: still here"]);
    running.manager.shutdown().await;
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_without_heartbeat_is_killed_and_the_launch_says_why() {
    let started = std::time::Instant::now();
    let failure = launch("no_heartbeat", |c| c.env_init_timeout = Duration::from_secs(6)).await;
    let Err((error, progress)) = failure else { panic!("a plugin without heartbeat must not launch") };
    assert!(error.contains("no heartbeat received within 6 seconds"), "{error}");
    assert!(error.contains("starting but never ready"), "stderr tail missing: {error}");
    assert!(progress.iter().any(|l| l.contains("plugin failed to start")), "{progress:?}");
    assert!(started.elapsed() < Duration::from_secs(200));
    assert!(eventually(Duration::from_secs(10), || zombie_children().is_empty()).await, "zombies: {:?}", zombie_children());
    // Its process is gone (no child of ours runs the silent plugin any more).
    let survivors: Vec<u32> = children_of(std::process::id())
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("-m\0main")))
        .collect();
    assert!(survivors.is_empty(), "plugin processes still running: {survivors:?}");
}

/// A copy of a test plugin directory with some files replaced, packaged.
fn package_variant(plugin: &str, replace: &[(&str, &str)]) -> Vec<u8> {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(&plugin_dir(plugin), copy.path());
    for (file, content) in replace {
        std::fs::write(copy.path().join(file), content).expect("write replaced file");
    }
    dify_package::write::package_dir(copy.path()).expect("package variant")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_environment_build_reports_uv_output_and_is_retried() {
    let package = package_variant("runtime_tools", &[("requirements.txt", "dify-plugin>=0.10.0,<0.11.0\nthis is not ! a requirement\n")]);
    let failure = launch_package(package, tempfile::tempdir().expect("tempdir"), |c| c.env_build_retries = 1, Vec::new()).await;
    let Err((error, progress)) = failure else { panic!("a broken requirements file must fail the build") };
    assert!(error.contains("installing dependencies failed"), "{error}");
    assert!(error.contains("this is not ! a requirement"), "uv's output must be quoted: {error}");
    assert!(progress.iter().any(|l| l.contains("retrying (1/1)")), "{progress:?}");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_environment_is_reused_by_the_next_launch() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let root = workdir.path().to_path_buf();
    let package = package_plugin("runtime_tools");
    let first = launch_package(package.clone(), workdir, |_| {}, Vec::new()).await.unwrap_or_else(|(e, _)| panic!("{e}"));
    first.manager.shutdown().await;
    // A second manager over the same working directory finds the ready marker and skips the build.
    let config = test_runtime_config(&root);
    let manager = RuntimeManager::with_config(config);
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::time::timeout(Duration::from_secs(120), manager.launch(&first.uid, &package, &first.declaration, progress_tx))
        .await
        .expect("in time")
        .expect("second launch");
    let mut progress = Vec::new();
    while let Ok(line) = progress_rx.try_recv() {
        progress.push(line);
    }
    assert!(!progress.iter().any(|l| l.contains("creating virtual environment")), "{progress:?}");
    assert!(progress.iter().any(|l| l == "plugin is running"), "{progress:?}");
    manager.shutdown().await;
    assert!(zombie_children().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_running_plugin_is_killed_by_the_watchdog_and_restarted() {
    // The SDK heartbeats every second here; a stopped (SIGSTOP) process goes silent.
    let running = launch_package(
        package_plugin("runtime_tools"),
        tempfile::tempdir().expect("tempdir"),
        |c| c.heartbeat_timeout = Duration::from_secs(8),
        vec![("HEARTBEAT_INTERVAL".into(), "1".into())],
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("{e}"));
    let plugin = running.manager.plugin(running.uid.as_str()).expect("plugin");
    // Healthy and heartbeating: it outlives the watchdog's limit.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(plugin.process.restart_count(), 0);
    let first_pid = plugin.process.spawned_pids()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid as i32), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    assert!(eventually(Duration::from_secs(40), || plugin.process.restart_count() >= 1).await, "watchdog did not restart the plugin");
    assert!(eventually(Duration::from_secs(10), || !process_alive(first_pid)).await, "stopped process was not killed");
    assert_eq!(texts(&running.invoke(json!({"text": "alive"})).await), vec!["echo: alive"]);
    running.manager.shutdown().await;
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_line_fails_only_its_session_and_a_dropped_caller_ends_its_session() {
    let running = launch("runtime_tools", |c| c.max_line_bytes = 100_000).await.unwrap_or_else(|(e, _)| panic!("{e}"));
    let too_big = running.invoke(json!({"mode": "big_line", "count": 300_000})).await;
    match too_big.last() {
        Some(SessionOutput::Failed(error)) => assert_eq!(error.error_type, "PluginResponseTooLarge", "{error:?}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(texts(&running.invoke(json!({"text": "fine"})).await), vec!["echo: fine"]);

    // A caller that goes away: its session is unregistered from the connection.
    let plugin = running.manager.plugin(running.uid.as_str()).expect("plugin");
    let connection = plugin.process.connection(Duration::from_secs(10)).await.expect("connection");
    let request = SessionRequest {
        tenant_id: TENANT.into(),
        user_id: "u".into(),
        plugin_id: running.uid.plugin_id().into(),
        access_type: AccessType::Tool,
        action: "invoke_tool".into(),
        payload:
            json!({"provider": "runtime_tools", "tool": "exercise", "credentials": {}, "tool_parameters": {"mode": "sleep", "count": 30}})
                .as_object()
                .cloned()
                .expect("object")
                .into(),
        invocation: InvocationContext::default(),
        permissions: running.declaration.permissions(),
        trace: None,
    };
    let mut session = start_session(connection.clone(), request, running.backwards.clone(), Duration::from_secs(60))
        .await
        .expect("start");
    let first = tokio::time::timeout(Duration::from_secs(30), session.next()).await.expect("first item in time");
    assert!(matches!(first, Some(SessionOutput::Chunk(_))), "{first:?}");
    assert_eq!(connection.open_sessions(), 1);
    drop(session);
    assert!(eventually(Duration::from_secs(30), || connection.open_sessions() == 0).await, "session still registered");
    running.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_step_without_output_is_killed_after_the_init_timeout() {
    // A stand-in for uv that prints one line and then hangs (with a child of its own).
    let tools = tempfile::tempdir().expect("tempdir");
    let fake_uv = tools.path().join("uv");
    let marker = tools.path().join("grandchild.pid");
    std::fs::write(&fake_uv, format!("#!/bin/sh\necho resolving\nsleep 300 &\necho $! > {}\nwait\n", marker.display()))
        .expect("write fake uv");
    std::fs::set_permissions(&fake_uv, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let started = std::time::Instant::now();
    let failure = launch_package(
        package_plugin("runtime_tools"),
        tempfile::tempdir().expect("tempdir"),
        |c| {
            c.uv_path = Some(fake_uv.clone());
            c.env_init_timeout = Duration::from_secs(2);
            c.env_build_retries = 0;
        },
        Vec::new(),
    )
    .await;
    let Err((error, progress)) = failure else { panic!("a hanging build must fail") };
    assert!(error.contains("no activity for 2 seconds"), "{error}");
    assert!(error.contains("resolving"), "the step's output must be quoted: {error}");
    assert!(progress.iter().any(|l| l == "resolving"), "{progress:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let grandchild: u32 = std::fs::read_to_string(&marker).expect("pid file").trim().parse().expect("pid");
    assert!(eventually(Duration::from_secs(30), || !process_alive(grandchild)).await, "the step's own child survived");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_that_keeps_crashing_is_given_up() {
    let running = launch("runtime_tools", |c| c.max_restarts = 1).await.unwrap_or_else(|(e, _)| panic!("{e}"));
    let plugin = running.manager.plugin(running.uid.as_str()).expect("plugin");
    running.invoke(json!({"mode": "exit"})).await;
    assert!(eventually(Duration::from_secs(60), || plugin.process.restart_count() >= 1).await, "first crash is restarted");
    running.invoke(json!({"mode": "exit"})).await;
    assert!(eventually(Duration::from_secs(30), || plugin.process.is_down()).await, "second crash in a row gives up");
    let refused = plugin
        .process
        .connection(Duration::from_secs(1))
        .await
        .err()
        .expect("no connection once given up")
        .to_string();
    assert!(refused.contains("gave up after 1 restarts"), "{refused}");
    let pids = plugin.process.spawned_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|pid| !process_alive(*pid)));
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    running.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_that_exits_at_start_reports_its_stderr() {
    let package = package_variant(
        "runtime_tools",
        &[("main.py", "import sys\nprint('broken plugin: missing configuration', file=sys.stderr)\nsys.exit(4)\n")],
    );
    let failure = launch_package(package, tempfile::tempdir().expect("tempdir"), |_| {}, Vec::new()).await;
    let Err((error, _)) = failure else { panic!("a plugin that exits at start must not launch") };
    assert!(error.contains("plugin process exited before it was ready"), "{error}");
    assert!(error.contains("exit status: 4"), "{error}");
    assert!(error.contains("broken plugin: missing configuration"), "{error}");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}
