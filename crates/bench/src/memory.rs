//! The baseline HTTP server: a trivial tokio + axum HTTP server (multi-threaded runtime, like the
//! daemon) run as a child process of the bench (`bench baseline-http-server <port>`). Its idle RSS
//! is the floor any Rust HTTP daemon pays; its RSS while holding N open streaming responses gives
//! the per-stream floor; its answers to `POST /sse` (the request body read, one fixed SSE event
//! streamed back like an invocation's answer) give the throughput and CPU of HTTP alone.
//!
//! Owns: that server and its process. Must not: share memory or a runtime with the bench.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Body;
use axum::extract::Path;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;

/// The one event `POST /sse` answers: what the daemon sends for one echo of the native plugin.
pub const FIXED_SSE_EVENT: &[u8] =
    b"data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\":\"text\",\"message\":{\"text\":\"hello\"},\"meta\":null}}\n\n";

/// `POST /sse`: reads the body, answers [`FIXED_SSE_EVENT`] as a streamed `text/event-stream` body
/// (chunked, as the daemon's answers are).
async fn fixed_sse(body: bytes::Bytes) -> axum::response::Response {
    drop(body);
    let event = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(FIXED_SSE_EVENT)) });
    let mut response = axum::response::Response::new(Body::from_stream(event));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    response
}

/// Runs the baseline server until killed.
pub fn run_baseline_server(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = Router::new().route("/", get(|| async { "ok" })).route("/sse", post(fixed_sse)).route(
            "/hold/{ms}",
            get(|Path(ms): Path<u64>| async move {
                let first = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data: held\n\n")) });
                let rest = futures::stream::once(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, std::io::Error>(bytes::Bytes::new())
                });
                Body::from_stream(futures::StreamExt::chain(first, rest))
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        // As the daemon: small streamed writes leave at once.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok::<_, anyhow::Error>(())
    })
}

/// The baseline server as a child process, killed on drop.
pub struct BaselineServer {
    child: Child,
    pub base: String,
}

impl BaselineServer {
    pub async fn start() -> Result<Self> {
        let port = crate::daemon::free_port()?;
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["baseline-http-server", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn baseline server")?;
        let server = Self { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if client.get(&server.base).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("baseline server did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_mib(&self) -> Result<f64> {
        crate::daemon::rss_mib(self.child.id()).map_err(|e| anyhow!("baseline server: {e}"))
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
