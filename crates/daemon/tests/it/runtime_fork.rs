//! Fork-start of local plugins (`runtime::zygote`), with the real SDK test plugin `fork_probe`: the
//! plugin itself reports whether the SDK was already imported when its `main` ran, its parent and
//! process group. A stopped plugin whose environment matches a ready fork server is forked from it;
//! a plugin whose environment pins another version of one dependency starts normally; both answer.
//! A forked plugin that is stopped or killed is reaped (no process, no zombie, in `/proc`).

use crate::runtime_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dify_daemon::config::{SandboxLevel, Settings};
use dify_daemon::runtime::sandbox::{Sandbox, SandboxSettings};
use dify_daemon::runtime::zygote::ZygotePool;
use dify_daemon::runtime::{RuntimeConfig, RuntimeManager};
use dify_daemon::session::{start_session, SessionOutput, SessionRequest};
use dify_protocol::access::AccessType;
use dify_protocol::message::InvocationContext;
use dify_protocol::{PluginDeclaration, PluginUniqueIdentifier};
use runtime_support::*;
use serde_json::{json, Map, Value};

/// A runtime with the sandbox off and fork-start on.
fn fork_config(workdir: &Path) -> RuntimeConfig {
    fork_config_with(workdir, SandboxLevel::Off)
}

fn fork_config_with(workdir: &Path, level: SandboxLevel) -> RuntimeConfig {
    let mut config = test_runtime_config(workdir);
    let settings = Settings { plugin_sandbox: level, ..Settings::default() };
    config.sandbox = Sandbox::new(SandboxSettings::from_settings(&settings));
    config.zygotes = ZygotePool::new(true, 4);
    config
}

struct Plugin {
    uid: PluginUniqueIdentifier,
    declaration: PluginDeclaration,
    package: Vec<u8>,
}

impl Plugin {
    fn from_dir(dir: &Path) -> Self {
        let package = dify_package::write::package_dir(dir).unwrap_or_else(|e| panic!("package {}: {e}", dir.display()));
        let (uid, declaration) = decode(&package);
        Self { uid, declaration, package }
    }
}

async fn launch(manager: &RuntimeManager, plugin: &Plugin) {
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let launched =
        tokio::time::timeout(Duration::from_secs(240), manager.launch(&plugin.uid, &plugin.package, &plugin.declaration, progress_tx))
            .await
            .expect("launch finished in time");
    if let Err(error) = launched {
        let mut progress = Vec::new();
        while let Ok(line) = progress_rx.try_recv() {
            progress.push(line);
        }
        panic!("launch of {} failed: {error}\n{}", plugin.uid.as_str(), progress.join("\n"));
    }
}

/// Invokes the probe tool and returns its JSON answer.
async fn probe(manager: &RuntimeManager, plugin: &Plugin) -> Value {
    let managed = manager.plugin(plugin.uid.as_str()).expect("plugin is managed");
    let connection = managed.process.connection(Duration::from_secs(60)).await.expect("plugin connection");
    let request = SessionRequest {
        tenant_id: "tenant-fork".into(),
        user_id: "user-1".into(),
        plugin_id: plugin.uid.plugin_id().into(),
        access_type: AccessType::Tool,
        action: "invoke_tool".into(),
        payload: json!({"provider": "fork_probe", "tool": "probe", "credentials": {}, "tool_parameters": {}})
            .as_object()
            .cloned()
            .unwrap_or_else(Map::new)
            .into(),
        invocation: InvocationContext::default(),
        permissions: plugin.declaration.permissions(),
        trace: None,
    };
    let backwards: Arc<dyn dify_daemon::backwards::BackwardsHandler> =
        Arc::new(dify_daemon::backwards::DifyBackwards::new(manager.config(), Arc::new(MemoryStorage::default())));
    let mut session = start_session(connection, request, backwards, Duration::from_secs(60)).await.expect("session starts");
    let collect = async {
        let mut answer = None;
        while let Some(output) = session.next().await {
            match output {
                SessionOutput::Chunk(chunk) => {
                    let chunk = chunk.to_value();
                    if chunk["type"] == "json" {
                        answer = Some(chunk["message"]["json_object"].clone());
                    }
                }
                SessionOutput::Failed(error) => panic!("probe failed: {error:?}"),
                _ => {}
            }
        }
        answer
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .expect("probe finished in time")
        .expect("the probe answered with a JSON message")
}

/// `fork_probe` copied with `edit` applied to its requirements and a new plugin name.
fn probe_variant(root: &Path, name: &str, requirements: &str) -> PathBuf {
    let dir = root.join(name);
    copy_tree(&plugin_dir("fork_probe"), &dir);
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml")).expect("manifest");
    std::fs::write(dir.join("manifest.yaml"), manifest.replace("name: fork_probe", &format!("name: {name}"))).expect("manifest");
    std::fs::write(dir.join("requirements.txt"), requirements).expect("requirements");
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// True when `/proc` has no entry for `pid` at all: neither running nor a zombie.
fn gone_from_proc(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn as_u32(value: &Value) -> u32 {
    value.as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or_else(|| panic!("not a pid: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_plugin_is_forked_from_a_ready_fork_server_and_reaped() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let config = fork_config(workdir.path());
    let zygotes = config.zygotes.clone();
    let manager = RuntimeManager::with_config(config);
    let plugin = Plugin::from_dir(&plugin_dir("fork_probe"));

    // First start: no fork server for this environment yet, so a normal start (which starts one).
    launch(&manager, &plugin).await;
    let first = probe(&manager, &plugin).await;
    assert_eq!(first["sdk_preloaded"], false, "{first}");
    assert_eq!(as_u32(&first["ppid"]), std::process::id(), "{first}");
    assert!(eventually(Duration::from_secs(180), || !zygotes.ready_pids().is_empty()).await, "the fork server never became ready");
    let zygote = zygotes.ready_pids()[0];

    // Stopped, then started again: forked from the fork server, and answering.
    manager.stop(&plugin.uid).await;
    let started = Instant::now();
    launch(&manager, &plugin).await;
    let forked = probe(&manager, &plugin).await;
    let cold = started.elapsed();
    eprintln!("forked plugin answered {cold:?} after its launch began");
    assert_eq!(forked["sdk_preloaded"], true, "{forked}");
    assert_eq!(as_u32(&forked["ppid"]), zygote, "{forked}");
    let pid = as_u32(&forked["pid"]);
    assert_eq!(as_u32(&forked["pgid"]), pid, "a forked plugin leads its own process group: {forked}");
    assert_eq!(forked["install_method"], "local");
    assert_eq!(forked["cwd"], first["cwd"]);
    assert_eq!(forked["idna"], first["idna"]);
    assert!(forked["executable"].as_str().is_some_and(|e| e.ends_with(".venv/bin/python")), "{forked}");
    let managed = manager.plugin(plugin.uid.as_str()).expect("managed");
    let local = managed.process.as_local().expect("local plugin").clone();
    assert_eq!(local.forked_starts(), 1);

    // Killed from outside: the fork server reaps it, the supervisor sees the exit and forks again.
    // The fork server keeps no copy of the plugin's pipes (else their ends never close when it dies).
    let stdio: Vec<PathBuf> = (0..3).filter_map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()).collect();
    assert_eq!(stdio.len(), 3, "{stdio:?}");
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{zygote}/fd"))
        .expect("fork server fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert!(stdio.iter().all(|pipe| !held.contains(pipe)), "the fork server holds the plugin's stdio: {held:?} / {stdio:?}");
    let killed = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    assert!(eventually(Duration::from_secs(20), || gone_from_proc(pid)).await, "killed plugin {pid} left a process or zombie");
    assert!(eventually(Duration::from_secs(60), || local.restart_count() >= 1).await, "not restarted");
    let again = probe(&manager, &plugin).await;
    eprintln!("killed forked plugin answered again after {:?}", killed.elapsed());
    assert_eq!(again["sdk_preloaded"], true, "{again}");
    let restarted = as_u32(&again["pid"]);
    assert_ne!(restarted, pid);
    assert_eq!(local.forked_starts(), 2);

    // Stopped: reaped too.
    manager.stop(&plugin.uid).await;
    assert!(eventually(Duration::from_secs(20), || gone_from_proc(restarted)).await, "stopped plugin {restarted} left a process or zombie");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_pinning_another_dependency_version_starts_normally() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let mut config = fork_config(workdir.path());
    // One fork server only: the pinned environment can never get its own.
    config.zygotes = ZygotePool::new(true, 1);
    let zygotes = config.zygotes.clone();
    let manager = RuntimeManager::with_config(config);
    let plugin = Plugin::from_dir(&plugin_dir("fork_probe"));
    launch(&manager, &plugin).await;
    let normal = probe(&manager, &plugin).await;
    assert!(eventually(Duration::from_secs(180), || !zygotes.ready_pids().is_empty()).await, "the fork server never became ready");

    // The same plugin with one dependency at another version: its environment differs from the
    // fork server's, so it starts normally, and works.
    let variants = tempfile::tempdir().expect("tempdir");
    let pinned_dir = probe_variant(variants.path(), "fork_probe_pinned", "dify-plugin>=0.10.0,<0.11.0\nidna==3.10\n");
    let pinned = Plugin::from_dir(&pinned_dir);
    launch(&manager, &pinned).await;
    let answer = probe(&manager, &pinned).await;
    assert_eq!(answer["idna"], "3.10", "{answer}");
    assert_ne!(answer["idna"], normal["idna"], "the pin must differ from the SDK's resolution");
    assert_eq!(answer["sdk_preloaded"], false, "{answer}");
    assert_eq!(as_u32(&answer["ppid"]), std::process::id(), "{answer}");
    let managed = manager.plugin(pinned.uid.as_str()).expect("managed");
    assert_eq!(managed.process.as_local().expect("local").forked_starts(), 0);

    // Restarted while a fork server for the first environment is ready: still a normal start.
    manager.stop(&pinned.uid).await;
    launch(&manager, &pinned).await;
    let again = probe(&manager, &pinned).await;
    assert_eq!(again["sdk_preloaded"], false, "{again}");
    assert_eq!(again["idna"], "3.10");
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_plugin_is_confined_like_a_normally_started_one() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let config = fork_config_with(workdir.path(), SandboxLevel::BestEffort);
    let report = config.sandbox.report();
    eprintln!("sandbox layers: {:?}", report.layers);
    let zygotes = config.zygotes.clone();
    let manager = RuntimeManager::with_config(config);
    let plugin = Plugin::from_dir(&plugin_dir("fork_probe"));
    launch(&manager, &plugin).await;
    let normal = probe(&manager, &plugin).await;
    assert_eq!(normal["sdk_preloaded"], false, "{normal}");
    assert!(eventually(Duration::from_secs(180), || !zygotes.ready_pids().is_empty()).await, "the fork server never became ready");

    manager.stop(&plugin.uid).await;
    launch(&manager, &plugin).await;
    let forked = probe(&manager, &plugin).await;
    assert_eq!(forked["sdk_preloaded"], true, "{forked}");
    // Everything the sandbox decides is the same inside the forked plugin.
    for field in ["uid", "home", "root_listable", "no_new_privs", "pycache_prefix", "install_method", "cwd", "idna"] {
        assert_eq!(forked[field], normal[field], "{field}: forked {forked} normal {normal}");
    }
    if report.layers["uid"] {
        assert_ne!(forked["uid"], 0, "{forked}");
        assert_eq!(forked["home"], "/tmp", "{forked}");
    }
    if report.layers["landlock"] {
        assert_eq!(forked["no_new_privs"], "1", "{forked}");
        assert_eq!(forked["root_listable"], false, "{forked}");
    }
    let pid = as_u32(&forked["pid"]);
    manager.stop(&plugin.uid).await;
    assert!(eventually(Duration::from_secs(20), || gone_from_proc(pid)).await, "stopped plugin {pid} left a process or zombie");
    manager.shutdown().await;
}
