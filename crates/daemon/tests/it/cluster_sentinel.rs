//! Cluster coordination through Redis Sentinel, against real servers started by the test: a Redis
//! master and a replica on free ports and one sentinel monitoring them (the shared Redis on 6379 is
//! not touched), two daemon nodes on PostgreSQL and moto S3 configured only with
//! `REDIS_USE_SENTINEL` (no `REDIS_HOST`). An install on one node is invocable through the other;
//! after `SENTINEL FAILOVER` (the old master is demoted and answers `READONLY`) and after the new
//! master is killed (connections refused), both nodes heartbeat and subscribe on the master the
//! sentinel names within a bound the test prints, and an uninstall on one node is seen by the
//! other's next dispatch. Start-up fails with a clear message when no sentinel answers or the
//! service name is unknown.
//!
//! Without `redis-server` (or PostgreSQL, moto) a test is skipped with a message, unless `CI` is set.

use crate::cluster::{self, TestCluster, NOT_FOUND_BODY, TENANT};
use crate::common;
use crate::runtime_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// How long the nodes may take to follow a new master (heartbeating and subscribed there).
const FOLLOW_BOUND: Duration = Duration::from_secs(10);

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0)
}

/// Whether `redis-server` runs here; panics in CI when it does not.
fn redis_server_available() -> bool {
    let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("redis-server is required in CI");
        }
        eprintln!("skipping: redis-server is not installed");
    }
    found
}

/// A `redis-server` process (a data server or, with `--sentinel`, a sentinel) with its own
/// directory and configuration file; killed (SIGKILL) and reaped when dropped.
struct Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(root: &Path, name: &str, config: &str, sentinel: bool) -> Server {
        let port = common::free_port();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("server dir");
        let conf = dir.join("redis.conf");
        let text = format!("port {port}\nbind 127.0.0.1\ndir {}\n{}\n", dir.display(), config.replace("{port}", &port.to_string()));
        std::fs::write(&conf, text).expect("write redis.conf");
        let log = std::fs::File::create(dir.join("server.log")).expect("server log");
        let mut command = Command::new("redis-server");
        command.arg(&conf);
        if sentinel {
            command.arg("--sentinel");
        }
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        Server { port, dir, child: Some(child) }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One command to the server on `port`, bounded; `None` when it cannot be reached or errs.
async fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Option<T> {
    let attempt = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        command.query_async::<T>(&mut connection).await
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok()?.ok()
}

async fn role(port: u16) -> Option<String> {
    let answer: Vec<redis::Value> = query(port, &redis::cmd("ROLE")).await?;
    match answer.first()? {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// Polls `check` every 50 ms until it holds; how long that took. Panics after `within` with `what()`.
async fn wait_for<F, Fut>(within: Duration, what: impl FnOnce() -> String, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        if started.elapsed() >= within {
            panic!("{}: not within {within:?}", what());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A master, a replica and a sentinel monitoring them as `service`.
struct Topology {
    _root: tempfile::TempDir,
    service: String,
    /// Index 0 starts as the master, index 1 as its replica.
    servers: Vec<Server>,
    sentinel: Server,
}

impl Topology {
    async fn start() -> Topology {
        let root = tempfile::tempdir().expect("tempdir");
        let service = format!("svc_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let data = "save \"\"\nappendonly no";
        let master = Server::start(root.path(), "a", data, false);
        let replica = Server::start(root.path(), "b", &format!("{data}\nreplicaof 127.0.0.1 {}", master.port), false);
        let sentinel_config = format!(
            "sentinel monitor {service} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 10000\nsentinel parallel-syncs {service} 1",
            master.port
        );
        let sentinel = Server::start(root.path(), "sentinel", &sentinel_config, true);
        let topology = Topology { _root: root, service, servers: vec![master, replica], sentinel };
        topology.wait_replicated(0, 1).await;
        topology
    }

    /// Waits until `replica` is an in-sync replica of `master` and the sentinel lists it as a
    /// healthy replica (so a failover can pick it).
    async fn wait_replicated(&self, master: usize, replica: usize) {
        let (master_port, replica_port) = (self.servers[master].port, self.servers[replica].port);
        let what = || format!("replica on {replica_port} in sync with {master_port} and known to the sentinel\n{}", self.logs());
        wait_for(Duration::from_secs(30), what, || async {
            let info: String = query(replica_port, redis::cmd("INFO").arg("replication")).await.unwrap_or_default();
            if !info.contains("master_link_status:up") || !info.contains(&format!("master_port:{master_port}")) {
                return false;
            }
            let replicas: Vec<HashMap<String, String>> =
                query(self.sentinel.port, redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.service)).await.unwrap_or_default();
            replicas.iter().any(|r| {
                r.get("port").map(String::as_str) == Some(&replica_port.to_string())
                    && r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
            })
        })
        .await;
    }

    /// The port of the master the sentinel names.
    async fn sentinel_master(&self) -> Option<u16> {
        let answer: Option<(String, String)> =
            query(self.sentinel.port, redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.service)).await?;
        answer?.1.parse().ok()
    }

    /// Waits until server `index` is the master and the sentinel names it; the wall-clock time
    /// (ms) at which both were seen.
    async fn wait_promoted(&self, index: usize, within: Duration) -> f64 {
        let port = self.servers[index].port;
        let what = || format!("server on {port} promoted\n{}", self.logs());
        wait_for(within, what, || async { role(port).await.as_deref() == Some("master") && self.sentinel_master().await == Some(port) })
            .await;
        now_ms()
    }

    fn logs(&self) -> String {
        let mut text = format!("--- sentinel ---\n{}", self.sentinel.log());
        for (index, server) in self.servers.iter().enumerate() {
            text.push_str(&format!("--- redis {index} ({}) ---\n{}", server.port, server.log()));
        }
        text
    }
}

/// Daemon settings that reach Redis only through the sentinel (a dead sentinel listed first).
fn sentinel_env(topology: &Topology, dead_sentinel: u16) -> Vec<(String, String)> {
    [
        ("REDIS_HOST", String::new()),
        ("REDIS_PORT", "1".to_string()),
        ("REDIS_USE_SENTINEL", "true".to_string()),
        ("REDIS_SENTINELS", format!("127.0.0.1:{dead_sentinel},127.0.0.1:{}", topology.sentinel.port)),
        ("REDIS_SENTINEL_SERVICE_NAME", topology.service.clone()),
        ("REDIS_SENTINEL_SOCKET_TIMEOUT", "0.5".to_string()),
        ("PLUGIN_PLACEMENT_REPLICAS", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Waits until both nodes have written their heartbeat to the server on `port` after `since_ms`
/// (a write that can only have reached it as master) and both are subscribed there; how long the
/// two took from the call.
async fn wait_followed(cluster: &TestCluster, topology: &Topology, port: u16, since_ms: f64) -> (Duration, Duration) {
    let ids: Vec<String> = (0..2).map(|i| cluster.node_id(i)).collect();
    let index = format!("{}:nodes", cluster.prefix);
    let what = || format!("both nodes heartbeat on {port}\n{}\n{}", topology.logs(), cluster.logs());
    let heartbeats = wait_for(FOLLOW_BOUND, what, || async {
        let mut fresh = 0;
        for id in &ids {
            let score: Option<f64> = query(port, redis::cmd("ZSCORE").arg(&index).arg(id)).await.flatten();
            if score.is_some_and(|score| score > since_ms) {
                fresh += 1;
            }
        }
        fresh == ids.len()
    })
    .await;
    let channel = format!("{}:installations", cluster.prefix);
    let what = || format!("both nodes subscribed on {port}\n{}\n{}", topology.logs(), cluster.logs());
    let subscriptions = wait_for(FOLLOW_BOUND, what, || async {
        let answer: Option<(String, i64)> = query(port, redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel)).await;
        answer.is_some_and(|(_, count)| count == 2)
    })
    .await;
    // Every node key on the new master is live.
    let keys: Vec<String> = query(port, redis::cmd("KEYS").arg(format!("{}:node:*", cluster.prefix))).await.unwrap_or_default();
    assert_eq!(keys.len(), 2, "registry on {port}: {keys:?}");
    (heartbeats, heartbeats + subscriptions)
}

/// Uninstalls through node `from`; the next dispatch through every node answers "not installed";
/// then installs again through node `to`, and both nodes serve it.
async fn uninstall_then_reinstall(cluster: &TestCluster, uid: &str, from: usize, to: usize, label: &str) {
    let list = cluster.nodes[from].list(TENANT).await;
    assert_eq!(list.len(), 1, "{label}: {list:?}");
    let (status, answer) = cluster.nodes[from]
        .post(&format!("/plugin/{TENANT}/management/uninstall"), &json!({"plugin_installation_id": list[0]["id"]}))
        .await;
    assert_eq!((status, &answer["data"]), (200, &json!(true)), "{label}: {answer}");
    for index in [to, from] {
        let node = &cluster.nodes[index];
        let (status, body, _) = cluster::echo(node, &node.client, "gone").await.expect("request");
        assert_eq!((status, body.as_str()), (404, NOT_FOUND_BODY), "{label}: node {index} after the uninstall\n{}", cluster.logs());
    }
    let task = cluster.nodes[to].install_identifier(TENANT, uid).await;
    assert_eq!(task["status"], "success", "{label}: reinstall {task}\n{}", cluster.logs());
    for index in [from, to, from, to] {
        cluster::assert_echo(cluster, index, label).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_the_master_the_sentinel_names_through_two_failovers() {
    if !redis_server_available() {
        return;
    }
    let mut topology = Topology::start().await;
    let env = sentinel_env(&topology, common::free_port());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let Some(cluster) = TestCluster::start(2, topology.servers[0].port, &pairs).await else { return };
    cluster.wait_registry(2).await;

    // Install through node 1, invoke through node 2 (and 1); both subscribed on the master.
    let (uid, task) = cluster.nodes[0].install_package(TENANT, &runtime_support::package_plugin("runtime_tools")).await;
    assert_eq!(task["status"], "success", "install task: {task}\n{}", cluster.logs());
    for index in [1, 0, 1, 0] {
        cluster::assert_echo(&cluster, index, "before").await;
    }
    wait_followed(&cluster, &topology, topology.servers[0].port, 0.0).await;

    // 1. SENTINEL FAILOVER: the replica is promoted, the old master demoted (READONLY for writers).
    let started = Instant::now();
    let answer: Option<String> = query(topology.sentinel.port, redis::cmd("SENTINEL").arg("FAILOVER").arg(&topology.service)).await;
    assert_eq!(answer.as_deref(), Some("OK"), "SENTINEL FAILOVER\n{}", topology.logs());
    let promoted_ms = topology.wait_promoted(1, Duration::from_secs(30)).await;
    let promoted = started.elapsed();
    let (heartbeats, subscribed) = wait_followed(&cluster, &topology, topology.servers[1].port, promoted_ms).await;
    println!(
        "failover 1 (SENTINEL FAILOVER): new master named after {:.2} s; both nodes heartbeat there {:.2} s later \
         and are subscribed there {:.2} s later",
        promoted.as_secs_f64(),
        heartbeats.as_secs_f64(),
        subscribed.as_secs_f64()
    );
    uninstall_then_reinstall(&cluster, &uid, 0, 1, "after failover 1").await;

    // 2. The new master dies (kill -9): the sentinel notices (down-after 1 s) and promotes the first.
    topology.wait_replicated(1, 0).await;
    let started = Instant::now();
    topology.servers[1].kill();
    let promoted_ms = topology.wait_promoted(0, Duration::from_secs(40)).await;
    let promoted = started.elapsed();
    let (heartbeats, subscribed) = wait_followed(&cluster, &topology, topology.servers[0].port, promoted_ms).await;
    println!(
        "failover 2 (master killed): new master named after {:.2} s; both nodes heartbeat there {:.2} s later \
         and are subscribed there {:.2} s later",
        promoted.as_secs_f64(),
        heartbeats.as_secs_f64(),
        subscribed.as_secs_f64()
    );
    uninstall_then_reinstall(&cluster, &uid, 1, 0, "after failover 2").await;

    cluster.finish().await;
    drop(topology);
}

/// Runs the daemon binary (SQLite, no plugins) with `env` and waits (bounded) for it to exit;
/// its exit status and output.
fn run_daemon_until_exit(env: &[(&str, String)], within: Duration) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
    command.current_dir(dir.path()).env_clear();
    for name in ["PATH", "HOME", "UV_PATH", "PYTHON_INTERPRETER_PATH", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .env("SERVER_PORT", "0")
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_KEY", common::TEST_KEY)
        .env("LOG_LEVEL", "warn");
    command.env("PLUGIN_REMOTE_INSTALLING_PORT", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("spawn daemon");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log_path).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_clearly_without_a_sentinel_or_with_an_unknown_service_name() {
    // No sentinel listens on either address: the daemon retries for its start-up budget (15 s), then
    // exits naming every sentinel and why it did not answer.
    let (a, b) = (common::free_port(), common::free_port());
    let sentinels = format!("127.0.0.1:{a},127.0.0.1:{b}");
    let env = [
        ("REDIS_USE_SENTINEL", "true".to_string()),
        ("REDIS_SENTINELS", sentinels.clone()),
        ("REDIS_SENTINEL_SERVICE_NAME", "mymaster".to_string()),
    ];
    let started = Instant::now();
    let (status, log) = run_daemon_until_exit(&env, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(status, Some(1), "exit status; log:\n{log}");
    assert!(log.contains(&format!("cannot find the Redis master \"mymaster\" through Redis Sentinel ({sentinels}) within 15 s")), "{log}");
    assert!(log.contains("no Redis Sentinel of REDIS_SENTINELS answered"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{a}: ")) && log.contains(&format!("127.0.0.1:{b}: ")), "{log}");
    assert!(took < Duration::from_secs(40), "gave up after {took:?}");
    println!("start-up with no reachable sentinel failed after {:.1} s", took.as_secs_f64());

    // Settings that cannot work are refused before anything is contacted.
    let (status, log) = run_daemon_until_exit(&[("REDIS_USE_SENTINEL", "true".to_string())], Duration::from_secs(30));
    assert_ne!(status, Some(0), "{log}");
    assert!(log.contains("REDIS_SENTINELS"), "{log}");

    // A sentinel that answers but does not monitor the name: start-up fails at once.
    if !redis_server_available() {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let sentinel = Server::start(root.path(), "sentinel", &format!("sentinel monitor known 127.0.0.1 {} 1", common::free_port()), true);
    wait_for(
        Duration::from_secs(20),
        || "the sentinel answers".to_string(),
        || async { query::<String>(sentinel.port, &redis::cmd("PING")).await.is_some() },
    )
    .await;
    let env = [
        ("REDIS_USE_SENTINEL", "true".to_string()),
        ("REDIS_SENTINELS", format!("127.0.0.1:{}", sentinel.port)),
        ("REDIS_SENTINEL_SERVICE_NAME", "unknown".to_string()),
    ];
    let started = Instant::now();
    let (status, log) = run_daemon_until_exit(&env, Duration::from_secs(30));
    assert_eq!(status, Some(1), "exit status; log:\n{log}");
    assert!(
        log.contains(&format!(
            "the Redis Sentinels (127.0.0.1:{}) do not know the service name \"unknown\" (REDIS_SENTINEL_SERVICE_NAME)",
            sentinel.port
        )),
        "{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "an unknown name fails at once: {:?}", started.elapsed());
    drop(sentinel);
}
