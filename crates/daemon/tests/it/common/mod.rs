//! Shared support for the daemon's integration tests: start the real `dify-plugin-daemon` binary on
//! a free port in a temporary working directory with a chosen database, wait for `/health/check`,
//! call routes, and kill the process on drop. Every wait is bounded.
//!
//! Databases: SQLite (a file in the working directory), or a fresh PostgreSQL/MySQL database
//! `t_<random>` created for the test and dropped afterwards. Without a reachable server the test
//! is skipped with a message, unless `CI` is set, in which case it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which SQL engine the daemon under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A database for one test; server databases are dropped on [`TestDb::drop_now`] or drop.
pub struct TestDb {
    pub backend: Backend,
    pub name: String,
    dropped: bool,
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

impl TestDb {
    /// Creates a fresh database. `None` (after printing why) when the server is unreachable and
    /// `CI` is not set; panics when `CI` is set.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let name = format!("t_{}", random_suffix());
        let admin_url = match backend {
            Backend::Sqlite => return Some(TestDb { backend, name, dropped: true }),
            Backend::Postgres => POSTGRES_ADMIN_URL,
            Backend::Mysql => MYSQL_ADMIN_URL,
        };
        sqlx::any::install_default_drivers();
        let connect =
            tokio::time::timeout(Duration::from_secs(10), sqlx::any::AnyPoolOptions::new().max_connections(1).connect(admin_url)).await;
        let pool = match connect {
            Ok(Ok(pool)) => pool,
            other => {
                let reason = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("{backend:?} server at {admin_url} is required in CI: {reason}");
                }
                eprintln!("skipping: {backend:?} server at {admin_url} unreachable: {reason}");
                return None;
            }
        };
        let stmt = match backend {
            Backend::Postgres => format!("CREATE DATABASE \"{name}\""),
            _ => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        };
        sqlx::query(&stmt).execute(&pool).await.expect("create test database");
        pool.close().await;
        Some(TestDb { backend, name, dropped: false })
    }

    /// A handle that drops database `name` (which the test did not create) when dropped.
    pub fn adopt(backend: Backend, name: &str) -> TestDb {
        TestDb { backend, name: name.to_string(), dropped: backend == Backend::Sqlite }
    }

    /// Environment variables that point the daemon at this database.
    pub fn env(&self) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.backend {
            Backend::Sqlite => vec![("DB_TYPE", "sqlite".into()), ("DB_SQLITE_PATH", "daemon.db".into())],
            Backend::Postgres => vec![
                ("DB_TYPE", "postgresql".into()),
                ("DB_HOST", "127.0.0.1".into()),
                ("DB_PORT", "5432".into()),
                ("DB_USERNAME", "postgres".into()),
                ("DB_PASSWORD", String::new()),
                ("DB_DATABASE", self.name.clone()),
                ("DB_MAX_OPEN_CONNS", "10".into()),
            ],
            Backend::Mysql => vec![
                ("DB_TYPE", "mysql".into()),
                ("DB_HOST", "127.0.0.1".into()),
                ("DB_PORT", "3306".into()),
                ("DB_USERNAME", "root".into()),
                ("DB_PASSWORD", String::new()),
                ("DB_DATABASE", self.name.clone()),
                ("DB_MAX_OPEN_CONNS", "10".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// A connection URL to this database (for direct consistency checks).
    pub fn url(&self, workdir: &Path) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", workdir.join("daemon.db").display()),
            Backend::Postgres => format!("postgres://postgres@127.0.0.1:5432/{}", self.name),
            Backend::Mysql => format!("mysql://root@127.0.0.1:3306/{}", self.name),
        }
    }

    /// Drops a server database.
    pub async fn drop_now(mut self) {
        self.dropped = true;
        let (url, stmt) = match self.backend {
            Backend::Sqlite => return,
            Backend::Postgres => (POSTGRES_ADMIN_URL, format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)),
            Backend::Mysql => (MYSQL_ADMIN_URL, format!("DROP DATABASE IF EXISTS `{}`", self.name)),
        };
        if let Ok(Ok(pool)) =
            tokio::time::timeout(Duration::from_secs(10), sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url)).await
        {
            let _ = tokio::time::timeout(Duration::from_secs(20), sqlx::query(&stmt).execute(&pool)).await;
            pool.close().await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Best effort from a synchronous context: a separate runtime on a helper thread.
        let backend = self.backend;
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(TestDb { backend, name, dropped: false }.drop_now());
            }
        })
        .join();
    }
}

/// Path of a file in the workspace's `tests/fixtures/upstream/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream").join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("read fixture {name}: {e}"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub const TEST_KEY: &str = "test-server-key-0123456789";

/// How to start a daemon.
#[derive(Clone, Default)]
pub struct DaemonOptions {
    /// Extra environment (after the database's and the test defaults; later entries win).
    pub env: Vec<(String, String)>,
    /// Use this working directory instead of a new temporary one (restarts).
    pub workdir: Option<PathBuf>,
    /// Do not set `SERVER_KEY` (let the daemon generate one).
    pub no_server_key: bool,
    /// Do not pass any test defaults at all (only PATH and HOME plus `env`).
    pub bare: bool,
}

/// A running daemon process, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub key: String,
    pub workdir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
    env: Vec<(String, String)>,
}

/// What uv inside the daemon needs from this machine to revalidate its cache: certificates and proxies.
pub const NETWORK_PASSTHROUGH: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The launcher of the integration tests: starts a daemon that really prepares plugin runtimes (uv
/// environments, waiting for the first heartbeat), with the machine's certificates and proxies, uv's
/// shared warm cache and `extra` environment on top (later entries win). Tests that need other start
/// options (restarts in one working directory, no server key, a bare environment) call
/// [`Daemon::start`] directly.
pub async fn start_daemon(db: &TestDb, extra: &[(&str, &str)]) -> Daemon {
    let mut env: Vec<(String, String)> =
        vec![("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "false".into()), ("PYTHON_ENV_INIT_TIMEOUT".into(), "60".into())];
    for name in NETWORK_PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    if let Some(cache) = crate::runtime_support::shared_uv_cache() {
        env.push(("UV_CACHE_DIR".into(), cache.display().to_string()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Daemon::start(db, DaemonOptions { env, ..Default::default() }).await
}

/// Variables passed through from the test runner's environment when set (runtime tests need them).
const PASSTHROUGH: &[&str] = &["PATH", "HOME", "UV_PATH", "PYTHON_INTERPRETER_PATH", "UV_CACHE_DIR", "TMPDIR"];

impl Daemon {
    /// Starts the daemon with `db` and options, waiting (bounded) until `/health/check` answers.
    pub async fn start(db: &TestDb, options: DaemonOptions) -> Daemon {
        let (tempdir, workdir) = match &options.workdir {
            Some(dir) => (None, dir.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut env: Vec<(String, String)> = Vec::new();
        if !options.bare {
            env.extend(db.env());
            env.push(("SERVER_HOST".into(), "127.0.0.1".into()));
            if !options.no_server_key {
                env.push(("SERVER_KEY".into(), TEST_KEY.into()));
            }
            env.push(("FORCE_VERIFYING_SIGNATURE".into(), "false".into()));
            env.push(("DIFY_TEST_SKIP_RUNTIME_PREPARATION".into(), "true".into()));
            env.push(("LOG_LEVEL".into(), "warn".into()));
            // Parallel daemons must not compete for the default debug port: each picks a free one.
            env.push(("PLUGIN_REMOTE_INSTALLING_PORT".into(), "0".into()));
        }
        env.extend(options.env.iter().cloned());
        let mut daemon = Daemon {
            child: None,
            port: 0,
            base: String::new(),
            key: TEST_KEY.to_string(),
            workdir,
            _tempdir: tempdir,
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client"),
            env,
        };
        daemon.spawn().await;
        if options.no_server_key || options.bare {
            let key_file = daemon.workdir.join("storage/server_key");
            daemon.key = std::fs::read_to_string(&key_file).map(|k| k.trim().to_string()).unwrap_or_default();
        }
        daemon
    }

    /// Starts the process (again) on a port it picks itself (`SERVER_PORT=0`, read back from its
    /// "listening on" line, so no other process can take the port in between) and waits for health.
    async fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dify-plugin-daemon"));
        cmd.current_dir(&self.workdir).env_clear();
        for name in PASSTHROUGH {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("SERVER_PORT", "0");
        // The log is appended to across restarts: only lines after this point are this start's.
        let log_start = std::fs::metadata(self.workdir.join("daemon.log")).map(|m| m.len() as usize).unwrap_or(0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.workdir.join("daemon.log"))
            .expect("open daemon log");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        let child = cmd.spawn().expect("spawn dify-plugin-daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        self.port = 0;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("daemon exited during start-up ({status}); log:\n{}", self.log());
                }
            }
            if self.port == 0 {
                match self.listening_port(log_start) {
                    Some(port) => {
                        self.port = port;
                        self.base = format!("http://127.0.0.1:{port}");
                    }
                    None if Instant::now() > deadline => panic!("daemon did not listen within 60 s; log:\n{}", self.log()),
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let probe = self.client.get(format!("{}/health/check", self.base)).timeout(Duration::from_secs(2)).send().await;
            if matches!(probe, Ok(ref r) if r.status().is_success()) {
                return;
            }
            if Instant::now() > deadline {
                panic!("daemon did not become healthy within 60 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port of the first "dify-plugin-daemon listening on <host>:<port>" line after `log_start`.
    fn listening_port(&self, log_start: usize) -> Option<u16> {
        let log = std::fs::read(self.workdir.join("daemon.log")).ok()?;
        let text = String::from_utf8_lossy(log.get(log_start..)?);
        let (_, after) = text.split_once("dify-plugin-daemon listening on ")?;
        // Only the address itself, even if another writer's text follows it on the line.
        let address: String = after.chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
        let port: String = address.rsplit_once(':')?.1.chars().take_while(char::is_ascii_digit).collect();
        port.parse().ok().filter(|port| *port != 0)
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.workdir.join("daemon.log")).unwrap_or_default()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns whether it exited in time.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL) and starts again in the same working directory and database.
    pub async fn restart_after_kill(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path` with the API key; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).header("X-Api-Key", &self.key).send().await.expect("GET");
        read_json(r).await
    }

    /// `POST path` with a JSON body and the API key.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.client.post(self.url(path)).header("X-Api-Key", &self.key).json(body).send().await.expect("POST");
        read_json(r).await
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        let r = self.client.post(self.url(path)).header("X-Api-Key", &self.key).send().await.expect("POST");
        read_json(r).await
    }

    /// Uploads a package (`dify_pkg`) for `tenant`.
    pub async fn upload_package(&self, tenant: &str, bytes: &[u8], verify_signature: Option<bool>) -> (u16, Value) {
        self.upload(tenant, "package", "dify_pkg", bytes, verify_signature).await
    }

    /// Uploads a bundle (`dify_bundle`) for `tenant`.
    pub async fn upload_bundle(&self, tenant: &str, bytes: &[u8], verify_signature: Option<bool>) -> (u16, Value) {
        self.upload(tenant, "bundle", "dify_bundle", bytes, verify_signature).await
    }

    async fn upload(&self, tenant: &str, kind: &str, field: &str, bytes: &[u8], verify: Option<bool>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(field.to_string())
            .mime_str("application/octet-stream")
            .expect("mime");
        let mut form = reqwest::multipart::Form::new().part(field.to_string(), part);
        if let Some(v) = verify {
            form = form.text("verify_signature", if v { "true" } else { "false" });
        }
        let r = self
            .client
            .post(self.url(&format!("/plugin/{tenant}/management/install/upload/{kind}")))
            .header("X-Api-Key", &self.key)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        read_json(r).await
    }

    /// Uploads and installs a package for `tenant`, waiting (bounded) for the task to finish.
    /// Returns the unique identifier and the finished task.
    pub async fn install_package(&self, tenant: &str, bytes: &[u8]) -> (String, Value) {
        let (status, body) = self.upload_package(tenant, bytes, None).await;
        assert_eq!((status, &body["code"]), (200, &Value::from(0)), "upload failed: {body}");
        let uid = body["data"]["unique_identifier"].as_str().expect("unique_identifier").to_string();
        let task = self.install_identifier(tenant, &uid).await;
        (uid, task)
    }

    /// Installs an uploaded identifier and waits for its task (or returns `Null` when all were
    /// already installed).
    pub async fn install_identifier(&self, tenant: &str, uid: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/plugin/{tenant}/management/install/identifiers"),
                &serde_json::json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
            )
            .await;
        assert_eq!((status, &body["code"]), (200, &Value::from(0)), "install failed: {body}");
        if body["data"]["all_installed"] == Value::Bool(true) {
            return Value::Null;
        }
        let task_id = body["data"]["task_id"].as_str().expect("task_id").to_string();
        // Includes the environment build and the first heartbeat when the runtime is prepared.
        self.wait_task(tenant, &task_id, Duration::from_secs(300)).await
    }

    /// Polls a task until it is `success` or `failed` (bounded by `within`).
    pub async fn wait_task(&self, tenant: &str, task_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, body) = self.get(&format!("/plugin/{tenant}/management/install/tasks/{task_id}")).await;
            let status = body["data"]["status"].as_str().unwrap_or("");
            if status == "success" || status == "failed" {
                return body["data"].clone();
            }
            if Instant::now() > deadline {
                panic!("task {task_id} did not finish within {within:?}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tenant's installations (first page of 256).
    pub async fn list(&self, tenant: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/plugin/{tenant}/management/list?page=1&page_size=256")).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["list"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a response as `(status, JSON)`; a non-JSON body becomes a JSON string.
pub async fn read_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts an error envelope: HTTP status, code, error type and (when given) exact message.
pub fn assert_error(actual: &(u16, Value), status: u16, code: i64, error_type: &str, message: Option<&str>) {
    let (got_status, body) = actual;
    assert_eq!(*got_status, status, "HTTP status of {body}");
    assert_eq!(body["code"], Value::from(code), "code of {body}");
    assert_eq!(body["data"], Value::Null, "data of {body}");
    let inner: Value = serde_json::from_str(body["message"].as_str().expect("message is a string"))
        .unwrap_or_else(|_| panic!("message is not JSON: {body}"));
    assert_eq!(inner["error_type"], Value::from(error_type), "error_type of {body}");
    assert_eq!(inner["args"], Value::Null, "args of {body}");
    if let Some(message) = message {
        assert_eq!(inner["message"], Value::from(message), "message of {body}");
    }
}

/// Asserts a success envelope and returns its data.
pub fn assert_ok(actual: &(u16, Value)) -> Value {
    let (status, body) = actual;
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["code"], Value::from(0), "{body}");
    assert_eq!(body["message"], Value::from("success"), "{body}");
    assert!(!body["data"].is_null(), "success data must not be null: {body}");
    body["data"].clone()
}

/// Builds a package from `base` with files replaced/added (`None` removes a file).
pub fn repackage(base: &[u8], changes: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let archive = dify_package::read_archive(base, &dify_package::DecodeLimits::default()).expect("read base package");
    let mut files: Vec<(String, Vec<u8>)> = archive.entries.into_iter().map(|e| (e.name, e.data)).collect();
    for (name, content) in changes {
        files.retain(|(n, _)| n != name);
        if let Some(content) = content {
            files.push((name.to_string(), content.to_vec()));
        }
    }
    dify_package::write::package_files(files.iter().map(|(n, d)| (n.as_str(), d.as_slice()))).expect("write package")
}

/// The dummy fixture with another version, name or author in its manifest (and optional readmes).
pub fn dummy_variant(version: &str, name: &str, readmes: &[(&str, &str)]) -> Vec<u8> {
    let base = fixture_bytes("dummy_plugin.difypkg");
    let archive = dify_package::read_archive(&base, &dify_package::DecodeLimits::default()).expect("read dummy");
    let manifest = archive.entries.iter().find(|e| e.name == "manifest.yaml").expect("manifest");
    let text = String::from_utf8(manifest.data.clone()).expect("utf8 manifest");
    let text = text
        .replace("version: 0.0.1\ntype: plugin", &format!("version: {version}\ntype: plugin"))
        .replace("\nname: test\n", &format!("\nname: {name}\n"));
    let mut changes: Vec<(String, Vec<u8>)> = vec![("manifest.yaml".into(), text.into_bytes())];
    for (file, content) in readmes {
        changes.push((file.to_string(), content.as_bytes().to_vec()));
    }
    let refs: Vec<(&str, Option<&[u8]>)> = changes.iter().map(|(n, c)| (n.as_str(), Some(c.as_slice()))).collect();
    repackage(&base, &refs)
}

/// Runs `body` against a fresh database of `backend` (skipping when the server is unavailable
/// outside CI) and drops the database afterwards.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some(db) = common::TestDb::create(common::Backend::Sqlite).await else { return };
                $body(&db).await;
                db.drop_now().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = common::TestDb::create(common::Backend::Postgres).await else { return };
                $body(&db).await;
                db.drop_now().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                let Some(db) = common::TestDb::create(common::Backend::Mysql).await else { return };
                $body(&db).await;
                db.drop_now().await;
            }
        }
    };
}

/// Checks the state invariants directly in the database: every `plugins` row is referenced by
/// exactly `refers` installations, every installation has its `plugins` row, declaration and stored
/// package, and every provider row belongs to an installation.
pub async fn assert_consistent_state(db: &TestDb, workdir: &Path) {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url(workdir))
        .await
        .expect("connect for checks");
    let plugins: Vec<(String, i64)> = sqlx::query("SELECT plugin_unique_identifier, refers FROM plugins")
        .fetch_all(&pool)
        .await
        .expect("plugins")
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    // Tenant ids are UUID columns on PostgreSQL: read them as text everywhere.
    let tenant = match db.backend {
        Backend::Sqlite => "tenant_id",
        Backend::Postgres => "CAST(tenant_id AS TEXT)",
        Backend::Mysql => "CAST(tenant_id AS CHAR(36))",
    };
    let installations: Vec<(String, String, String)> =
        sqlx::query(&format!("SELECT {tenant}, plugin_id, plugin_unique_identifier FROM plugin_installations"))
            .fetch_all(&pool)
            .await
            .expect("installations")
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1), r.get::<String, _>(2)))
            .collect();
    let provider_tables = [
        "tool_installations",
        "ai_model_installations",
        "agent_strategy_installations",
        "datasource_installations",
        "trigger_installations",
    ];
    let providers_sql = provider_tables
        .iter()
        .map(|t| format!("SELECT {tenant}, plugin_id, plugin_unique_identifier FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let providers: Vec<(String, String, String)> = sqlx::query(&providers_sql)
        .fetch_all(&pool)
        .await
        .expect("providers")
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1), r.get::<String, _>(2)))
        .collect();
    let declarations: Vec<String> = sqlx::query("SELECT plugin_unique_identifier FROM plugin_declarations")
        .fetch_all(&pool)
        .await
        .expect("declarations")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    pool.close().await;
    for (uid, refers) in &plugins {
        let count = installations.iter().filter(|(_, _, u)| u == uid).count() as i64;
        assert!(*refers > 0, "plugins row {uid} has refers {refers}");
        assert_eq!(*refers, count, "refers of {uid} vs installations");
    }
    for (tenant, plugin_id, uid) in &installations {
        assert!(plugins.iter().any(|(u, _)| u == uid), "installation {tenant}/{plugin_id} has no plugins row {uid}");
        assert!(declarations.contains(uid), "installation {tenant}/{plugin_id} has no declaration {uid}");
        let package = workdir.join("storage/plugin_packages").join(uid);
        assert!(package.is_file(), "package of {uid} is missing at {}", package.display());
    }
    for provider in &providers {
        assert!(installations.contains(provider), "orphan provider row {provider:?}");
    }
}
