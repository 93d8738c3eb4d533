//! Real storage servers for the object-storage tests, each started as a child process on a free
//! port: an S3 server (`moto_server`, from PyPI) and Azure Blob Storage's emulator (Azurite, from
//! npm). `scripts/test` installs them and exports their paths in `DIFY_TEST_MOTO_SERVER` and
//! `DIFY_TEST_AZURITE`. Without them a test is skipped with a message, unless `CI` is set, in which
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
}

/// A running storage server holding one bucket (container) named [`BUCKET`].
pub struct StorageServer {
    pub kind: Kind,
    pub port: u16,
    program: PathBuf,
    /// Azurite's data directory (kept across restarts); moto keeps its data in memory.
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
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The keys in the bucket under `prefix`, read straight from the server (unsigned requests work
    /// on moto; Azurite's listing is signed like the container creation).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let client = reqwest::Client::new();
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
        };
        let (open, close) = match self.kind {
            Kind::S3 => ("<Key>", "</Key>"),
            Kind::Azure => ("<Name>", "</Name>"),
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
