//! Several daemon nodes on one PostgreSQL database, one Redis (a unique `REDIS_KEY_PREFIX` per test)
//! and one S3 bucket (moto), three real daemon processes on loopback, each with its own working
//! directory: an install on one node is invocable through the others and an uninstall on one is seen
//! by the next dispatch on every node; a plugin placed on one node is served to the others through
//! forwarding (`X-Dify-Served-By`); a debugging plugin attached to one node is invoked through the
//! others; killing a node under load loses requests only for a bounded window; killing and
//! restarting nodes in turn never makes an installed plugin unavailable; and Redis going away turns
//! the installation cache off (never a stale answer) until it is back.
//!
//! Without PostgreSQL, Redis or moto a test is skipped with a message, unless `CI` is set.

use crate::common;
use crate::debug_support;
use crate::runtime_support;
use crate::storage_support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Daemon, TestDb};
use serde_json::{json, Value};
use storage_support::{Kind, StorageServer};

pub(crate) const TENANT: &str = "0c7a2f3e-55d1-4b8e-9a61-3e2f1d0c9b8a";
pub(crate) const PLUGIN_ID: &str = "testing/runtime_tools";
pub(crate) const NOT_FOUND_BODY: &str =
    r#"{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",\"args\":null}","data":null}"#;
pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// Whether the shared Redis answers; panics in CI when it does not.
async fn redis_available() -> bool {
    let attempt = async {
        let client = redis::Client::open(REDIS_URL)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(_)) => true,
        other => {
            let reason = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            if std::env::var_os("CI").is_some() {
                panic!("Redis at {REDIS_URL} is required in CI: {reason}");
            }
            eprintln!("skipping: Redis at {REDIS_URL} unreachable: {reason}");
            false
        }
    }
}

/// Deletes every key under `prefix` on the shared Redis.
async fn clear_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else { return };
    let Ok(Ok(mut connection)) = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection()).await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap_or_default();
    if !keys.is_empty() {
        let _ = redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut connection).await;
    }
}

/// The shared services of one test's cluster and its nodes.
pub(crate) struct TestCluster {
    db: Option<TestDb>,
    pub(crate) s3: StorageServer,
    pub(crate) prefix: String,
    redis_port: u16,
    extra: Vec<(String, String)>,
    pub(crate) nodes: Vec<Daemon>,
}

impl TestCluster {
    /// PostgreSQL + moto + Redis (`redis_port`, the shared one unless a test runs its own) and
    /// `count` nodes with `extra` settings; `None` when a service is missing outside CI.
    pub(crate) async fn start(count: usize, redis_port: u16, extra: &[(&str, &str)]) -> Option<TestCluster> {
        if redis_port == 6379 && !redis_available().await {
            return None;
        }
        let db = TestDb::create(Backend::Postgres).await?;
        let s3 = StorageServer::start(Kind::S3).await?;
        let prefix = format!("t_cluster_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut cluster = TestCluster {
            db: Some(db),
            s3,
            prefix,
            redis_port,
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            nodes: Vec::new(),
        };
        for _ in 0..count {
            let node = cluster.start_node().await;
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.s3.daemon_env();
        env.extend([
            ("REDIS_HOST".to_string(), "127.0.0.1".to_string()),
            ("REDIS_PORT".to_string(), self.redis_port.to_string()),
            ("REDIS_KEY_PREFIX".to_string(), self.prefix.clone()),
        ]);
        env.extend(self.extra.iter().cloned());
        env
    }

    async fn start_node(&self) -> Daemon {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::start_daemon(self.db.as_ref().expect("database"), &pairs).await
    }

    pub(crate) fn node_id(&self, index: usize) -> String {
        std::fs::read_to_string(self.nodes[index].workdir.join("cwd/.node_id")).expect("node id").trim().to_string()
    }

    /// Waits until every running node sees `expected` live nodes in the registry.
    pub(crate) async fn wait_registry(&self, expected: usize) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.redis_port)).expect("redis client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:node:*", self.prefix))
                    .query_async(&mut connection)
                    .await
                    .unwrap_or_default();
                if keys.len() == expected {
                    // One more heartbeat so every node has read the registry.
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the registry never held {expected} nodes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.nodes.iter().enumerate().map(|(i, node)| format!("--- node {i} ---\n{}\n", node.log())).collect()
    }

    pub(crate) async fn finish(mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if self.redis_port == 6379 {
            clear_prefix(&self.prefix).await;
        }
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
    }
}

/// The echo tool's answer through `daemon`: status, body, and the node that served it when forwarded.
pub(crate) async fn echo(daemon: &Daemon, client: &reqwest::Client, text: &str) -> Result<(u16, String, Option<String>), String> {
    let body = json!({"user_id": "user-1", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
        "credential_type": "api-key", "tool_parameters": {"mode": "echo", "text": text}}});
    let response = client
        .post(daemon.url(&format!("/plugin/{TENANT}/dispatch/tool/invoke")))
        .header("X-Api-Key", &daemon.key)
        .header("X-Plugin-ID", PLUGIN_ID)
        .timeout(Duration::from_secs(150))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let served_by = response.headers().get("x-dify-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, body, served_by))
}

pub(crate) fn echo_line(text: &str) -> String {
    let data = json!({"type": "text", "message": {"text": format!("echo: {text}")}, "meta": null});
    format!("data: {}\n\n", json!({"code": 0, "message": "success", "data": data}))
}

pub(crate) async fn assert_echo(cluster: &TestCluster, index: usize, text: &str) -> Option<String> {
    let node = &cluster.nodes[index];
    let (status, body, served_by) = echo(node, &node.client, text).await.unwrap_or_else(|e| panic!("node {index}: {e}"));
    assert_eq!((status, body.as_str()), (200, echo_line(text).as_str()), "through node {index}\n{}", cluster.logs());
    served_by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_on_one_node_invoke_on_others_uninstall_on_a_third() {
    // One replica: the plugin runs on exactly one node and the two others forward to it.
    let Some(cluster) = TestCluster::start(3, 6379, &[("PLUGIN_PLACEMENT_REPLICAS", "1")]).await else { return };
    cluster.wait_registry(3).await;
    let ids: Vec<String> = (0..3).map(|i| cluster.node_id(i)).collect();
    let (uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    let owner = dify_daemon::coord::placement(
        &uid,
        &ids.iter().map(|id| dify_daemon::coord::NodeInfo { id: id.clone(), url: String::new() }).collect::<Vec<_>>(),
        1,
    )[0]
    .id
    .clone();

    // Through nodes 2 and 3 (and 1), twice each: the second lookup comes from each node's cache.
    for round in 0..2 {
        for index in [1, 2, 0] {
            let served_by = assert_echo(&cluster, index, &format!("r{round} n{index}")).await;
            if ids[index] == owner {
                assert_eq!(served_by, None, "the owner serves its own requests");
            } else {
                assert_eq!(served_by.as_deref(), Some(owner.as_str()), "node {index} forwards to the owner");
            }
        }
    }

    // Uninstall through node 3: the next dispatch on every node answers "not installed".
    let list = cluster.nodes[2].list(TENANT).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let (status, answer) = cluster.nodes[2]
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": list[0]["id"]}))
        .await;
    assert_eq!((status, &answer["data"]), (200, &json!(true)), "{answer}");
    for index in [0, 1, 2, 0, 1, 2] {
        let node = &cluster.nodes[index];
        let (status, body, _) = echo(node, &node.client, "gone").await.expect("request");
        assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY), "node {index} after the uninstall");
    }

    // Installed again through node 2: every node serves it at once.
    let task = cluster.nodes[1].install_identifier(TENANT, &uid).await;
    assert_eq!(task["status"], "success", "reinstall: {task}\n{}", cluster.logs());
    for index in [0, 1, 2] {
        assert_echo(&cluster, index, "back").await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debugging_plugin_on_one_node_is_invoked_through_the_others() {
    let remote = [
        ("PLUGIN_REMOTE_INSTALLING_ENABLED", "true"),
        ("PLUGIN_REMOTE_INSTALLING_HOST", "127.0.0.1"),
        ("PLUGIN_REMOTE_INSTALLING_PORT", "0"),
    ];
    let Some(cluster) = TestCluster::start(3, 6379, &remote).await else { return };
    cluster.wait_registry(3).await;
    let holder = &cluster.nodes[1];
    let health: Value = holder.client.get(holder.url("/health/check")).send().await.expect("health").json().await.expect("json");
    let address = health["remote_debugging_address"].as_str().expect("debugging address").to_string();
    let tenant = debug_support::new_tenant();
    let key = debug_support::debugging_key(&cluster.nodes[0], &tenant).await;
    let plugin = debug_support::RemotePluginProcess::start("runtime_tools", &address, &key, &holder.workdir);
    let plugin_id = format!("{tenant}/runtime_tools");
    let appeared = debug_support::eventually(Duration::from_secs(180), || async {
        cluster.nodes[0].list(&tenant).await.iter().any(|p| p["runtime_type"] == "remote")
    })
    .await;
    assert!(appeared, "the debugging plugin never appeared; plugin log:\n{}\n{}", plugin.log_text(), cluster.logs());

    let holder_id = cluster.node_id(1);
    for index in [0, 2, 1] {
        let node = &cluster.nodes[index];
        let response =
            debug_support::invoke_tool(node, &tenant, &plugin_id, "runtime_tools", "exercise", json!({"mode": "echo", "text": "dbg"}))
                .await;
        assert_eq!(response.status(), 200, "through node {index}");
        let served_by = response.headers().get("x-dify-served-by").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.text().await.expect("body");
        let expected = json!({"code": 0, "message": "success", "data": {"type": "text", "message": {"text": "echo: dbg"}, "meta": null}});
        assert_eq!(body, format!("data: {expected}\n\n"), "through node {index}\n{}", cluster.logs());
        if index == 1 {
            assert_eq!(served_by, None);
        } else {
            assert_eq!(served_by.as_deref(), Some(holder_id.as_str()), "node {index} forwards to the node holding the connection");
        }
    }
    drop(plugin);
    cluster.finish().await;
}

/// One request's outcome in the load test: when it was sent, through which node, whether it succeeded.
#[derive(Clone)]
struct Outcome {
    sent: Instant,
    node: usize,
    ok: bool,
    detail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_node_under_load_loses_requests_only_for_a_short_window() {
    let Some(mut cluster) = TestCluster::start(3, 6379, &[]).await else { return };
    cluster.wait_registry(3).await;
    let ids: Vec<String> = (0..3).map(|i| cluster.node_id(i)).collect();
    let (uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    // Warm every node (placement runs the plugin on two; the third forwards).
    for round in 0..2 {
        for index in 0..3 {
            assert_echo(&cluster, index, &format!("warm {round}")).await;
        }
    }
    // The victim is the plugin's first-placed node, so its loss moves the plugin.
    let infos: Vec<_> = ids.iter().map(|id| dify_daemon::coord::NodeInfo { id: id.clone(), url: String::new() }).collect();
    let victim_id = dify_daemon::coord::placement(&uid, &infos, 1)[0].id.clone();
    let victim = ids.iter().position(|id| *id == victim_id).expect("victim");

    // Steady load: four workers round-robin over the nodes a load balancer still sends to.
    let alive = Arc::new(Mutex::new(vec![true; 3]));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let targets: Arc<Vec<(String, String)>> = Arc::new(cluster.nodes.iter().map(|n| (n.base.clone(), n.key.clone())).collect());
    let mut workers = Vec::new();
    for worker in 0..4usize {
        let (alive, outcomes, stop, targets) = (alive.clone(), outcomes.clone(), stop.clone(), targets.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(150)).build().expect("client");
            let mut turn = worker;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                turn += 1;
                let node = {
                    let alive = alive.lock().unwrap();
                    let live: Vec<usize> = (0..3).filter(|i| alive[*i]).collect();
                    live[turn % live.len()]
                };
                let (base, key) = &targets[node];
                let body = json!({"user_id": "u", "data": {"provider": "runtime_tools", "tool": "exercise", "credentials": {},
                    "credential_type": "api-key", "tool_parameters": {"mode": "echo", "text": "load"}}});
                let sent = Instant::now();
                let result = client
                    .post(format!("{base}/plugin/{TENANT}/dispatch/tool/invoke"))
                    .header("X-Api-Key", key)
                    .header("X-Plugin-ID", PLUGIN_ID)
                    .json(&body)
                    .send()
                    .await;
                let (ok, detail) = match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_else(|e| format!("<body error {e}>"));
                        (status == 200 && text == echo_line("load"), format!("{status} {text}"))
                    }
                    Err(error) => (false, error.to_string()),
                };
                outcomes.lock().unwrap().push(Outcome { sent, node, ok, detail });
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // kill -9, and the load balancer stops sending to it.
    alive.lock().unwrap()[victim] = false;
    let killed_at = Instant::now();
    cluster.nodes[victim].kill();
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent < killed_at).collect();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent >= killed_at).collect();
    let failed_after: Vec<&Outcome> = after.iter().copied().filter(|o| !o.ok).collect();
    let window = failed_after.iter().map(|o| o.sent.duration_since(killed_at)).max().unwrap_or_default();
    let failed_before = before.iter().filter(|o| !o.ok && o.node != victim).count();
    let in_flight_lost = before.iter().filter(|o| !o.ok).count();
    println!(
        "failover: {} requests before the kill ({in_flight_lost} failed, in flight at the kill), {} after ({} failed); \
         failure window {:.2} s",
        before.len(),
        after.len(),
        failed_after.len(),
        window.as_secs_f64()
    );
    for failure in failed_after.iter().take(5) {
        println!("  failed after the kill through node {}: {}", failure.node, failure.detail);
    }
    assert!(before.len() >= 4, "the load ran before the kill");
    assert!(after.len() >= 8, "the load ran after the kill: {}", after.len());
    assert!(window <= Duration::from_secs(5), "requests failed up to {window:?} after the kill\n{}", cluster.logs());
    let late: Vec<&&Outcome> = after.iter().filter(|o| o.sent.duration_since(killed_at) > Duration::from_secs(5)).collect();
    assert!(!late.is_empty() && late.iter().all(|o| o.ok), "after the window every request succeeds (victim {victim})\n{}", cluster.logs());
    // Before the kill, requests failed only if they were in flight on the killed node's connections.
    assert!(failed_before <= 4, "{failed_before} requests through surviving nodes failed before the kill");

    // The killed node restarts with its working directory and rejoins.
    cluster.nodes[victim].restart_after_kill().await;
    cluster.wait_registry(3).await;
    assert_echo(&cluster, victim, "rejoined").await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_killed_and_restarted_in_turn_never_lose_an_installed_plugin() {
    let Some(mut cluster) = TestCluster::start(3, 6379, &[]).await else { return };
    cluster.wait_registry(3).await;
    let (_uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    for turn in 0..3 {
        cluster.nodes[turn].kill();
        for other in (0..3).filter(|i| *i != turn) {
            assert_echo(&cluster, other, &format!("turn {turn} via {other}")).await;
        }
        cluster.nodes[turn].restart_after_kill().await;
        assert_echo(&cluster, turn, &format!("turn {turn} restarted")).await;
    }
    // Down to one node: it serves alone.
    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    assert_echo(&cluster, 2, "alone").await;
    cluster.finish().await;
}

/// A private `redis-server` on a free port that the test stops and starts.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Option<PrivateRedis> {
        let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok();
        if !found {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is required in CI");
            }
            eprintln!("skipping: redis-server is not installed");
            return None;
        }
        let mut redis = PrivateRedis { port: common::free_port(), dir: tempfile::tempdir().expect("tempdir"), child: None };
        redis.spawn().await;
        Some(redis)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_turns_the_cache_off_and_recovery_turns_it_back_on() {
    let Some(mut redis) = PrivateRedis::start().await else { return };
    let Some(cluster) = TestCluster::start(2, redis.port, &[("PLUGIN_PLACEMENT_REPLICAS", "0")]).await else { return };
    cluster.wait_registry(2).await;
    let (uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    for index in [0, 1, 0, 1] {
        assert_echo(&cluster, index, "cached").await;
    }

    // Redis goes away: both nodes go on serving from the database.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for index in [0, 1] {
        assert_echo(&cluster, index, "no redis").await;
    }
    // An uninstall through node 1 cannot be published; node 2 must not answer from its cache.
    let list = cluster.nodes[0].list(TENANT).await;
    let (status, answer) = cluster.nodes[0]
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": list[0]["id"]}))
        .await;
    assert_eq!((status, &answer["data"]), (200, &json!(true)), "{answer}");
    for index in [1, 0] {
        let node = &cluster.nodes[index];
        let (status, body, _) = echo(node, &node.client, "gone").await.expect("request");
        assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY), "node {index} during the outage\n{}", cluster.logs());
    }

    // Redis returns: the nodes rejoin and invalidations flow again.
    redis.spawn().await;
    cluster.wait_registry(2).await;
    let task = cluster.nodes[1].install_identifier(TENANT, &uid).await;
    assert_eq!(task["status"], "success", "reinstall: {task}\n{}", cluster.logs());
    for index in [0, 1, 0, 1] {
        assert_echo(&cluster, index, "recovered").await;
    }
    let list = cluster.nodes[1].list(TENANT).await;
    let (status, _) = cluster.nodes[1]
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": list[0]["id"]}))
        .await;
    assert_eq!(status, 200);
    for index in [0, 1] {
        let node = &cluster.nodes[index];
        let (status, body, _) = echo(node, &node.client, "gone again").await.expect("request");
        assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY), "node {index} after recovery");
    }
    cluster.finish().await;
}
