//! `dify plugin run <package-or-dir> [-m stdio|tcp] [-r text|json] [-l]`: run a plugin locally,
//! without a daemon, and talk to it in line-JSON (docs/protocol.md §5).
//!
//! Owns: loading the input (a `.difypkg`, or a plugin directory packaged in memory), the temporary
//! working directory (removed on exit and on SIGINT/SIGTERM), the client loops (stdio: one client on
//! the CLI's own stdin/stdout; tcp: any number of clients), request parsing and the output lines.
//!
//! Everything that touches the plugin is the daemon's runtime code, reused as it is: extraction
//! (`runtime::extract_package`), the uv build (`prepare_environment`), the supervised child
//! (`LocalPlugin`), the line framing (`PluginConnection`) and sessions (`start_session`). Backwards
//! calls go to [`mock::MockBackwards`]. Must not: open the daemon's database or HTTP server.

pub mod logs;
pub mod messages;
pub mod mock;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dify_daemon::backwards::BackwardsHandler;
use dify_daemon::runtime::{self as daemon_runtime, LaunchSpec, LocalPlugin, RuntimeConfig};
use dify_daemon::session::{start_session, SessionOutput, SessionRequest};
use dify_protocol::access::AccessType;
use dify_protocol::manifest::PluginPermissions;
use dify_protocol::message::InvocationContext;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use messages::{MessageKind, ResponseFormat, RunMessage};

/// Longest request line a client may send (as upstream: 15 MiB).
pub const MAX_REQUEST_LINE_BYTES: usize = 15 * 1024 * 1024;
/// How long an invocation waits for a restarting plugin.
const PLUGIN_WAIT: Duration = Duration::from_secs(20);

/// Why the plugin could not be loaded or started (shown as an `error` line, exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("package plugin directory error: {0}")]
    PackageDir(dify_package::PackageError),
    #[error("read plugin file error: {path}: {source}")]
    ReadPackage { path: PathBuf, source: std::io::Error },
    #[error("decode plugin file error: {0}")]
    DecodePackage(dify_package::PackageError),
    #[error("unsupported language `{0}`: only python plugins can run locally")]
    UnsupportedLanguage(String),
    #[error("plugin identifier `{0}` is not a safe directory name")]
    UnsafeIdentifier(String),
    #[error("extract plugin error: {0}")]
    Extract(#[from] daemon_runtime::RuntimeError),
    #[error("cannot create the plugin's working directory: {0}")]
    WorkingDir(std::io::Error),
    #[error("init environment error: {0}")]
    Environment(#[from] daemon_runtime::EnvironmentError),
    #[error(transparent)]
    Launch(#[from] daemon_runtime::LaunchError),
}

/// Why a request line was rejected (answered with an `error` line; the session continues).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("request must be a JSON object")]
    NotAnObject { invoke_id: String },
    #[error("invoke_id is required")]
    MissingInvokeId,
    #[error("action and type are required")]
    MissingTypeOrAction { invoke_id: String },
    #[error("unknown type: {access_type}")]
    UnknownType { invoke_id: String, access_type: String },
}

impl RequestError {
    /// The request's `invoke_id` when it was readable, else empty.
    pub fn invoke_id(&self) -> &str {
        match self {
            RequestError::NotAnObject { invoke_id }
            | RequestError::MissingTypeOrAction { invoke_id }
            | RequestError::UnknownType { invoke_id, .. } => invoke_id,
            RequestError::InvalidJson(_) | RequestError::MissingInvokeId => "",
        }
    }
}

/// `-m/--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunMode {
    /// One client: the CLI's own stdin and stdout.
    Stdio,
    /// A TCP server; any number of clients, each with its own session loop.
    Tcp,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A `.difypkg` file or a plugin directory.
    pub plugin_path: PathBuf,
    pub mode: RunMode,
    pub response_format: ResponseFormat,
    /// Show the plugin's own log lines and stderr as `log` lines on stdout, and the environment build
    /// output on stderr.
    pub enable_logs: bool,
    /// TCP mode: address to listen on.
    pub host: String,
    /// TCP mode: port to listen on (0 = a free port).
    pub port: u16,
    /// After the input ends, how long unfinished invocations may still run.
    pub drain_timeout: Duration,
}

/// Runs the command to completion; returns the process exit status (0 after a clean end, 1 when the
/// plugin could not be started).
pub fn run(opts: RunOptions) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("{}", RunMessage::error("", format!("cannot start the async runtime: {error}")).render(opts.response_format));
            return 1;
        }
    };
    // The plugin is spawned from this (main) thread, which lives as long as the process: the
    // runtime kills plugins whose launching thread exits.
    let status = runtime.block_on(run_async(opts));
    // Stdin is read on a blocking thread that cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    status
}

/// Where output lines go, and in which format.
#[derive(Clone)]
struct Output {
    lines: mpsc::UnboundedSender<String>,
    format: ResponseFormat,
}

impl Output {
    fn send(&self, message: RunMessage) {
        let _ = self.lines.send(message.render(self.format));
    }
}

/// Writes lines to `writer` (one write + flush each) until every sender is gone or
/// [`LineWriter::finish`] is called.
fn spawn_line_writer<W: AsyncWrite + Unpin + Send + 'static>(mut writer: W) -> (mpsc::UnboundedSender<String>, LineWriter) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
    let (finish, mut finishing) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut finishing_requested = false;
        loop {
            tokio::select! {
                biased;
                line = receiver.recv() => {
                    let Some(mut line) = line else { return };
                    line.push('\n');
                    if writer.write_all(line.as_bytes()).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
                // Finish (or the handle dropped): write what is already queued, then stop.
                _ = &mut finishing, if !finishing_requested => {
                    finishing_requested = true;
                    receiver.close();
                }
            }
        }
    });
    (sender, LineWriter { finish, task })
}

/// The task behind [`spawn_line_writer`].
struct LineWriter {
    finish: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl LineWriter {
    /// Writes the queued lines and stops (bounded: a stuck writer is abandoned after 5 seconds).
    async fn finish(self) {
        let _ = self.finish.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// What every client loop needs to invoke the plugin.
struct RunContext {
    plugin: Arc<LocalPlugin>,
    plugin_id: String,
    permissions: PluginPermissions,
    backwards: Arc<dyn BackwardsHandler>,
    execution_timeout: Duration,
    drain_timeout: Duration,
}

async fn run_async(opts: RunOptions) -> i32 {
    let (console_lines, console_writer) = spawn_line_writer(tokio::io::stdout());
    let console = Output { lines: console_lines, format: opts.response_format };
    if opts.enable_logs {
        match logs::collect_plugin_logs() {
            Ok(mut lines) => {
                let console = console.clone();
                tokio::spawn(async move {
                    while let Some(line) = lines.recv().await {
                        let mut response = Map::new();
                        response.insert("level".into(), Value::String(line.level));
                        response.insert("message".into(), Value::String(line.message));
                        console.send(RunMessage::new("", MessageKind::Log, response));
                    }
                });
            }
            Err(error) => console.send(RunMessage::error("", error)),
        }
    }
    let status = match tempfile::Builder::new().prefix("plugin-run-").tempdir() {
        Ok(temp_dir) => {
            let status = run_in(&opts, temp_dir.path(), &console).await;
            if let Err(error) = temp_dir.close() {
                console.send(RunMessage::error("", format!("cannot remove the temporary directory: {error}")));
            }
            status
        }
        Err(error) => {
            console.send(RunMessage::error("", format!("create temp directory error: {error}")));
            1
        }
    };
    drop(console);
    console_writer.finish().await;
    status
}

/// Watches SIGINT/SIGTERM from the start of the run; `wait` resolves once one has arrived (also when
/// it arrived before `wait` was called).
#[derive(Clone)]
struct Termination(tokio::sync::watch::Receiver<bool>);

impl Termination {
    /// Installs the handlers at once (from here on the signals no longer kill the process).
    fn watch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let (sender, receiver) = tokio::sync::watch::channel(false);
        let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        tokio::spawn(async move {
            match handlers {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    let _ = sender.send(true);
                }
                _ => drop(sender),
            }
            // Keep the sender alive so waiting receivers do not see a closed channel.
            std::future::pending::<()>().await;
        });
        Self(receiver)
    }

    /// Resolves once SIGINT or SIGTERM arrived; never when the handlers could not be installed.
    async fn wait(mut self) {
        if self.0.wait_for(|terminated| *terminated).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The settings of the daemon's runtime, with the working directory and uv cache of this run.
fn runtime_config(temp_dir: &Path) -> RuntimeConfig {
    let mut config = RuntimeConfig::from_env();
    config.working_path = temp_dir.to_path_buf();
    if config.uv_cache_path.is_none() {
        // uv's own default cache, so packages downloaded once are reused by every run.
        let cache_home = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
        config.uv_cache_path = Some(cache_home.map(|dir| dir.join("uv")).unwrap_or_else(|| temp_dir.join(".uv-cache")));
    }
    config
}

/// Loads the input as package bytes: the file itself, or a directory packaged in memory.
fn load_package(path: &Path) -> Result<(Vec<u8>, dify_package::Package), RunError> {
    let bytes = if path.is_dir() {
        dify_package::write::package_dir(path).map_err(RunError::PackageDir)?
    } else {
        std::fs::read(path).map_err(|source| RunError::ReadPackage { path: path.to_path_buf(), source })?
    };
    let package =
        dify_package::Package::from_bytes(bytes.clone(), &dify_package::DecodeLimits::default()).map_err(RunError::DecodePackage)?;
    Ok((bytes, package))
}

async fn run_in(opts: &RunOptions, temp_dir: &Path, console: &Output) -> i32 {
    let termination = Termination::watch();
    // TCP mode listens before the plugin is built, so the very first line names the address; early
    // clients wait in the listen backlog until the plugin is ready.
    let listener = match opts.mode {
        RunMode::Stdio => None,
        RunMode::Tcp => match tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                console.send(RunMessage::error("", format!("cannot listen on {}:{}: {error}", opts.host, opts.port)));
                return 1;
            }
        },
    };
    let port = listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port());
    let mut loading = Map::new();
    loading.insert("info".into(), Value::String("loading plugin".into()));
    loading.insert("working_dir".into(), Value::String(temp_dir.display().to_string()));
    if let Some(port) = port {
        loading.insert("host".into(), Value::String(opts.host.clone()));
        loading.insert("port".into(), Value::from(port));
    }
    console.send(RunMessage::new("", MessageKind::Info, loading));

    let launched = tokio::select! {
        launched = launch(opts, temp_dir) => launched,
        _ = termination.clone().wait() => return 0,
    };
    let plugin = match launched {
        Ok(plugin) => plugin,
        Err(error) => {
            console.send(RunMessage::error("", error.to_string()));
            return 1;
        }
    };
    let status = tokio::select! {
        status = serve(opts, plugin.clone(), console, listener) => status,
        _ = termination.wait() => 0,
    };
    // Kills the plugin's process group and reaps the child.
    plugin.stop().await;
    status
}

struct LaunchedPlugin {
    process: Arc<LocalPlugin>,
    plugin_id: String,
    permissions: PluginPermissions,
    config: Arc<RuntimeConfig>,
}

impl LaunchedPlugin {
    async fn stop(&self) {
        self.process.stop().await;
    }
}

async fn launch(opts: &RunOptions, temp_dir: &Path) -> Result<Arc<LaunchedPlugin>, RunError> {
    let (bytes, package) = load_package(&opts.plugin_path)?;
    let declaration = package.declaration().clone();
    let runner = &declaration.meta.runner;
    if !runner.language.is_empty() && runner.language != "python" {
        return Err(RunError::UnsupportedLanguage(runner.language.clone()));
    }
    let entrypoint = if runner.entrypoint.is_empty() { "main".to_string() } else { runner.entrypoint.clone() };
    let identifier = package.unique_identifier().map_err(RunError::DecodePackage)?.as_str().to_string();

    // The daemon's layout: `<working path>/<author>/<name>-<version>@<checksum>`.
    let relative = PathBuf::from(identifier.replace(':', "-"));
    if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(RunError::UnsafeIdentifier(identifier));
    }
    let working_dir = temp_dir.join(relative);
    daemon_runtime::extract_package(&bytes, &working_dir).await?;
    std::fs::create_dir_all(working_dir.join("_assets")).map_err(RunError::WorkingDir)?;

    let config = Arc::new(runtime_config(temp_dir));
    let (progress, mut progress_lines) = mpsc::unbounded_channel::<String>();
    let show_progress = opts.enable_logs;
    tokio::spawn(async move {
        while let Some(line) = progress_lines.recv().await {
            if show_progress {
                eprintln!("{line}");
            }
        }
    });
    let python = daemon_runtime::prepare_environment(&working_dir, &config, &progress).await?;
    drop(progress);
    // The same isolation as in the daemon: this process non-dumpable, the plugin confined.
    config.sandbox.protect_this_process();
    let memory_limit = u64::try_from(declaration.resource.memory).ok().filter(|m| *m > 0);
    let spec = LaunchSpec { identifier, working_dir, python, entrypoint, extra_env: Vec::new(), memory_limit, logs: None };
    let process = LocalPlugin::start(spec, config.clone()).await?;
    Ok(Arc::new(LaunchedPlugin {
        process,
        plugin_id: format!("{}/{}", declaration.author, declaration.name),
        permissions: declaration.permissions(),
        config,
    }))
}

async fn serve(opts: &RunOptions, plugin: Arc<LaunchedPlugin>, console: &Output, listener: Option<tokio::net::TcpListener>) -> i32 {
    let context = Arc::new(RunContext {
        plugin: plugin.process.clone(),
        plugin_id: plugin.plugin_id.clone(),
        permissions: plugin.permissions.clone(),
        backwards: Arc::new(mock::MockBackwards::new(&plugin.config)),
        execution_timeout: plugin.config.max_execution_timeout,
        drain_timeout: opts.drain_timeout,
    });
    match listener {
        None => {
            serve_client(tokio::io::stdin(), console.clone(), context).await;
            0
        }
        Some(listener) => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(opts.port);
            let mut running = Map::new();
            running.insert("info".into(), Value::String(format!("plugin is running on {}:{port}", opts.host)));
            running.insert("host".into(), Value::String(opts.host.clone()));
            running.insert("port".into(), Value::from(port));
            console.send(RunMessage::new("", MessageKind::Info, running));
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let (reader, writer) = stream.into_split();
                        let (lines, writer) = spawn_line_writer(writer);
                        let output = Output { lines, format: opts.response_format };
                        let context = context.clone();
                        tokio::spawn(async move {
                            serve_client(reader, output, context).await;
                            writer.finish().await;
                        });
                    }
                    Err(error) => {
                        console.send(RunMessage::error("", format!("accept failed: {error}")));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}

/// One client: `plugin_ready`, then one invocation per request line, answered as they finish. At the
/// end of the input, unfinished invocations get `drain_timeout` to complete.
async fn serve_client<R: AsyncRead + Unpin>(reader: R, output: Output, context: Arc<RunContext>) {
    output.send(RunMessage::info(MessageKind::PluginReady, "", "plugin loaded"));
    let caller = Arc::new(ClientIdentity { tenant_id: uuid::Uuid::new_v4().to_string(), user_id: uuid::Uuid::new_v4().to_string() });
    let mut requests = RequestLines::new(reader, MAX_REQUEST_LINE_BYTES);
    let mut invocations = JoinSet::new();
    loop {
        let line = tokio::select! {
            line = requests.next_line() => line,
            Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
        };
        let line = match line {
            RequestLine::End => break,
            RequestLine::TooLong => {
                output.send(RunMessage::error("", format!("request line exceeds {MAX_REQUEST_LINE_BYTES} bytes")));
                continue;
            }
            RequestLine::Line(line) => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        output.send(RunMessage::info(MessageKind::Info, "", "received request"));
        match parse_request(&line) {
            Ok(request) => {
                invocations.spawn(invoke(context.clone(), caller.clone(), output.clone(), request));
            }
            Err(error) => output.send(RunMessage::error(error.invoke_id(), error.to_string())),
        }
    }
    let unfinished = invocations.len();
    let drained = tokio::time::timeout(context.drain_timeout, async { while invocations.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        output.send(RunMessage::error(
            "",
            format!(
                "input ended; gave up waiting for {} of {unfinished} invocations after {} seconds",
                invocations.len(),
                context.drain_timeout.as_secs()
            ),
        ));
        invocations.shutdown().await;
    }
}

/// The random tenant and user of one client (as upstream: fresh UUIDs per client).
struct ClientIdentity {
    tenant_id: String,
    user_id: String,
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeRequest {
    pub invoke_id: String,
    pub access_type: AccessType,
    pub action: String,
    pub payload: Map<String, Value>,
}

/// Parses `{"invoke_id","type","action","request"}`.
pub fn parse_request(line: &str) -> Result<InvokeRequest, RequestError> {
    let value: Value = serde_json::from_str(line).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(RequestError::NotAnObject { invoke_id: String::new() });
    };
    let invoke_id = match object.get("invoke_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(RequestError::MissingInvokeId),
    };
    let text =
        |object: &Map<String, Value>, key: &str| object.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let (Some(access_type), Some(action)) = (text(&object, "type"), text(&object, "action")) else {
        return Err(RequestError::MissingTypeOrAction { invoke_id });
    };
    let Ok(parsed_type) = serde_json::from_value::<AccessType>(Value::String(access_type.clone())) else {
        return Err(RequestError::UnknownType { invoke_id, access_type });
    };
    let payload = match object.remove("request") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(payload)) => payload,
        Some(_) => return Err(RequestError::NotAnObject { invoke_id }),
    };
    Ok(InvokeRequest { invoke_id, access_type: parsed_type, action, payload })
}

async fn invoke(context: Arc<RunContext>, caller: Arc<ClientIdentity>, output: Output, request: InvokeRequest) {
    let invoke_id = request.invoke_id.clone();
    match context.plugin.connection(PLUGIN_WAIT).await {
        Err(reason) => output.send(RunMessage::error(&invoke_id, reason.to_string())),
        Ok(connection) => {
            let session = SessionRequest {
                tenant_id: caller.tenant_id.clone(),
                user_id: caller.user_id.clone(),
                plugin_id: context.plugin_id.clone(),
                access_type: request.access_type,
                action: request.action,
                payload: request.payload.into(),
                invocation: InvocationContext::default(),
                permissions: context.permissions.clone(),
                trace: None,
            };
            match start_session(connection, session, context.backwards.clone(), context.execution_timeout).await {
                Err(error) => output.send(RunMessage::error(&invoke_id, error.to_string())),
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            SessionOutput::Chunk(item) => output.send(RunMessage::plugin_response(&invoke_id, item.to_value())),
                            SessionOutput::Failed(error) => output.send(RunMessage::error(&invoke_id, error.to_sorted_json())),
                            SessionOutput::TimedOut => output.send(RunMessage::error(&invoke_id, "killed by timeout")),
                        }
                    }
                }
            }
        }
    }
    output.send(RunMessage::info(MessageKind::PluginInvokeEnd, &invoke_id, "plugin invoke end"));
}

enum RequestLine {
    Line(String),
    TooLong,
    End,
}

/// Request lines of a client, each at most `limit` bytes (a longer one is skipped and reported).
struct RequestLines<R> {
    reader: BufReader<R>,
    limit: usize,
}

impl<R: AsyncRead + Unpin> RequestLines<R> {
    fn new(reader: R, limit: usize) -> Self {
        Self { reader: BufReader::new(reader), limit }
    }

    async fn next_line(&mut self) -> RequestLine {
        let mut buffer = Vec::new();
        match (&mut self.reader).take(self.limit as u64 + 1).read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return RequestLine::End,
            Ok(_) => {}
        }
        if buffer.len() > self.limit && !buffer.ends_with(b"\n") {
            // Skip the rest of the oversized line.
            loop {
                buffer.clear();
                match (&mut self.reader).take(64 * 1024).read_until(b'\n', &mut buffer).await {
                    Ok(0) | Err(_) => return RequestLine::TooLong,
                    Ok(_) if buffer.ends_with(b"\n") => return RequestLine::TooLong,
                    Ok(_) => {}
                }
            }
        }
        RequestLine::Line(String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = parse_request(r#"{"invoke_id":"1","type":"tool","action":"invoke_tool","request":{"a":1}}"#).unwrap();
        assert_eq!(ok.invoke_id, "1");
        assert_eq!(ok.access_type, AccessType::Tool);
        assert_eq!(ok.payload["a"], 1);
        let message = |line: &str| parse_request(line).unwrap_err().to_string();
        let invoke_id = |line: &str| parse_request(line).unwrap_err().invoke_id().to_string();
        assert_eq!(invoke_id("{nope"), "");
        assert!(message("{nope").starts_with("invalid JSON"));
        assert_eq!(message(r#"{"type":"tool","action":"x"}"#), "invoke_id is required");
        assert_eq!(message(r#"{"invoke_id":"2","type":"tool"}"#), "action and type are required");
        assert_eq!(invoke_id(r#"{"invoke_id":"2","type":"tool"}"#), "2");
        assert_eq!(message(r#"{"invoke_id":"3","type":"tool","action":""}"#), "action and type are required");
        assert_eq!(message(r#"{"invoke_id":"4","type":"nope","action":"a"}"#), "unknown type: nope");
        assert_eq!(invoke_id(r#"{"invoke_id":"4","type":"nope","action":"a"}"#), "4");
        assert_eq!(message(r#"{"invoke_id":"5","type":"tool","action":"a","request":[1]}"#), "request must be a JSON object");
        assert_eq!(invoke_id(r#"{"invoke_id":"5","type":"tool","action":"a","request":[1]}"#), "5");
        assert_eq!(message(r#"[1]"#), "request must be a JSON object");
    }

    #[tokio::test]
    async fn line_writer_finishes_with_senders_still_alive() {
        let (writer_side, mut reader_side) = tokio::io::duplex(1024);
        let (lines, writer) = spawn_line_writer(writer_side);
        lines.send("one".into()).unwrap();
        lines.send("two".into()).unwrap();
        // `lines` stays alive (like the log forwarder); finishing must not wait for it.
        tokio::time::timeout(Duration::from_secs(5), writer.finish()).await.expect("finish is prompt");
        let mut written = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader_side.read_to_string(&mut written)).await.unwrap().unwrap();
        assert_eq!(written, "one\ntwo\n");
        assert!(lines.send("late".into()).is_err());
    }

    #[tokio::test]
    async fn long_request_lines_are_skipped() {
        let input = format!("{}\nshort\nlast", "x".repeat(100));
        let mut lines = RequestLines::new(input.as_bytes(), 10);
        assert!(matches!(lines.next_line().await, RequestLine::TooLong));
        assert!(matches!(lines.next_line().await, RequestLine::Line(l) if l == "short"));
        assert!(matches!(lines.next_line().await, RequestLine::Line(l) if l == "last"));
        assert!(matches!(lines.next_line().await, RequestLine::End));
    }
}
