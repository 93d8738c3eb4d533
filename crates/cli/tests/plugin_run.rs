//! `dify plugin run` end to end: the built binary runs the SDK test plugin `tests/plugins/run_demo`
//! (a real uv-built environment, a real plugin process) in stdio and TCP mode. Needs `UV_PATH` (or uv
//! on PATH) and a Python >= 3.12 (`PYTHON_INTERPRETER_PATH`), as `scripts/test` provides.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Building the plugin environment and starting the SDK may take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn demo_plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plugins/run_demo")
}

/// Lines of a stream, read on a thread, received with bounded waits.
struct Lines {
    receiver: Receiver<String>,
    seen: Vec<Value>,
}

impl Lines {
    fn new(stream: impl std::io::Read + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self { receiver, seen: Vec::new() }
    }

    /// The next JSON line, or a panic after `timeout`.
    fn next(&mut self, timeout: Duration) -> Value {
        let line = self
            .receiver
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no output line within {timeout:?} ({e}); seen so far: {:#?}", self.seen));
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("output line is not JSON ({e}): {line}"));
        self.seen.push(value.clone());
        value
    }

    /// Reads lines until one matches; returns it.
    fn until(&mut self, timeout: Duration, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out waiting for {what}; seen: {:#?}", self.seen);
            }
            let line = self.next(left);
            if matches(&line) {
                return line;
            }
        }
    }
}

fn is(line: &Value, kind: &str, invoke_id: &str) -> bool {
    line["type"] == kind && line["invoke_id"] == invoke_id
}

fn invoke(invoke_id: &str, parameters: Value) -> String {
    json!({
        "invoke_id": invoke_id,
        "type": "tool",
        "action": "invoke_tool",
        "request": {"provider": "run_demo", "tool": "demo", "tool_parameters": parameters, "credentials": {}},
    })
    .to_string()
        + "\n"
}

fn spawn_dify(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dify")
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for dify") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dify did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose working directory is inside `dir` (the plugin runs there).
fn processes_inside(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd.starts_with(dir) || cwd.to_string_lossy().starts_with(&*dir.to_string_lossy()) {
                found.push(name);
            }
        }
    }
    found
}

/// Kills the process on drop so a failing test leaves nothing behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stdio_session_pipelines_invocations_and_shows_plugin_logs() {
    let dir = demo_plugin_dir();
    let mut guard = Guard(spawn_dify(&["plugin", "run", dir.to_str().unwrap(), "-r", "json", "-l"]));
    let child = &mut guard.0;
    let mut out = Lines::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();

    let loading = out.next(STEP_TIMEOUT);
    assert_eq!(loading["type"], "info", "{loading}");
    assert_eq!(loading["response"]["info"], "loading plugin");
    let working_dir = PathBuf::from(loading["response"]["working_dir"].as_str().expect("working_dir"));
    assert!(working_dir.file_name().unwrap().to_string_lossy().starts_with("plugin-run-"), "{working_dir:?}");
    assert!(working_dir.is_dir());
    let ready = out.until(READY_TIMEOUT, "plugin_ready", |l| l["type"] == "plugin_ready");
    assert_eq!(ready["response"]["info"], "plugin loaded");
    assert!(!processes_inside(&working_dir).is_empty(), "the plugin process runs in the working directory");

    // Three pipelined invocations, sent at once; the slowest one goes first.
    // Delays 2 s apart, so a loaded machine cannot reorder them.
    let batch = invoke("slow", json!({"text": "a", "delay_ms": 4000}))
        + &invoke("fast", json!({"text": "b"}))
        + &invoke("mid", json!({"text": "c", "delay_ms": 2000}));
    stdin.write_all(batch.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut ends = Vec::new();
    let mut texts = std::collections::HashMap::new();
    while ends.len() < 3 {
        let line = out.until(STEP_TIMEOUT, "three invocation ends", |l| l["type"] == "plugin_invoke_end" || l["type"] == "plugin_response");
        let id = line["invoke_id"].as_str().unwrap().to_string();
        if line["type"] == "plugin_invoke_end" {
            assert_eq!(line["response"]["info"], "plugin invoke end");
            assert!(texts.contains_key(&id), "end of {id} before its response");
            ends.push(id);
        } else {
            assert_eq!(line["response"]["type"], "text", "{line}");
            texts.insert(id, line["response"]["message"]["text"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ends, vec!["fast", "mid", "slow"], "answered in the order they finished, not as sent");
    assert_eq!(texts["slow"], "echo: a");
    assert_eq!(texts["fast"], "echo: b");
    assert_eq!(texts["mid"], "echo: c");

    // Malformed lines get an error line and the session goes on.
    stdin.write_all(b"this is not json\n").unwrap();
    let error = out.until(STEP_TIMEOUT, "error for invalid JSON", |l| l["type"] == "error");
    assert_eq!(error["invoke_id"], "");
    assert!(error["response"]["error"].as_str().unwrap().starts_with("invalid JSON"), "{error}");
    stdin.write_all(b"{\"type\":\"tool\",\"action\":\"invoke_tool\",\"request\":{}}\n").unwrap();
    let error = out.until(STEP_TIMEOUT, "error for a missing invoke_id", |l| l["type"] == "error");
    assert_eq!(error["response"]["error"], "invoke_id is required");
    stdin.write_all(b"{\"invoke_id\":\"no-action\",\"type\":\"tool\"}\n").unwrap();
    let error = out.until(STEP_TIMEOUT, "error for a missing action", |l| l["type"] == "error");
    assert_eq!(error["invoke_id"], "no-action");
    assert_eq!(error["response"]["error"], "action and type are required");

    // A plugin-side exception: `error` with the plugin's error, then the end of the invocation.
    stdin.write_all(invoke("boom", json!({"mode": "raise", "text": "now"})).as_bytes()).unwrap();
    let error = out.until(STEP_TIMEOUT, "plugin error", |l| is(l, "error", "boom"));
    let inner: Value = serde_json::from_str(error["response"]["error"].as_str().unwrap()).expect("error text is the plugin's error object");
    assert_eq!(inner["error_type"], "ValueError");
    assert_eq!(inner["message"], "demo failure: now");
    // Nothing else of `boom` between its error and its end (plugin log lines may interleave).
    let error_at = out.seen.len();
    out.until(STEP_TIMEOUT, "end of the failed invocation", |l| is(l, "plugin_invoke_end", "boom"));
    let between: Vec<&Value> = out.seen[error_at..out.seen.len() - 1].iter().filter(|l| l["invoke_id"] == "boom").collect();
    assert!(between.is_empty(), "lines of boom between its error and its end: {between:?}");

    // Storage through the mock works across invocations.
    stdin
        .write_all(invoke("set", json!({"mode": "storage_set", "key": "color", "text": "blue"})).as_bytes())
        .unwrap();
    let stored = out.until(STEP_TIMEOUT, "storage set", |l| is(l, "plugin_response", "set"));
    assert_eq!(stored["response"]["message"]["text"], "stored");
    out.until(STEP_TIMEOUT, "end of storage set", |l| is(l, "plugin_invoke_end", "set"));
    stdin.write_all(invoke("get", json!({"mode": "storage_get", "key": "color"})).as_bytes()).unwrap();
    let read = out.until(STEP_TIMEOUT, "storage get", |l| is(l, "plugin_response", "get"));
    assert_eq!(read["response"]["message"]["text"], "value: blue");

    // Backwards LLM call answered by the mock.
    stdin.write_all(invoke("llm", json!({"mode": "llm", "text": "hi"})).as_bytes()).unwrap();
    let answer = out.until(STEP_TIMEOUT, "mocked llm", |l| is(l, "plugin_response", "llm"));
    assert_eq!(answer["response"]["message"]["text"], "llm: mocked LLM answer");

    // -l: the plugin's own log line and its stderr line show up as `log` lines. They travel on
    // different pipes (stdout and stderr), so either may come first.
    stdin.write_all(invoke("log", json!({"mode": "log", "text": "hello"})).as_bytes()).unwrap();
    let log_message = |l: &Value, text: &str| l["type"] == "log" && l["response"]["message"].as_str().is_some_and(|m| m.contains(text));
    let (mut log, mut stderr) = (None, None);
    while log.is_none() || stderr.is_none() {
        let line = out.until(STEP_TIMEOUT, "plugin log and stderr lines", |l| {
            log_message(l, "demo log line: hello") || log_message(l, "demo stderr line: hello")
        });
        if log_message(&line, "demo log line: hello") {
            log = Some(line);
        } else {
            stderr = Some(line);
        }
    }
    assert_eq!(log.unwrap()["response"]["level"], "INFO");
    assert_eq!(stderr.unwrap()["response"]["level"], "STDERR");
    if !out.seen.iter().any(|l| is(l, "plugin_invoke_end", "log")) {
        out.until(STEP_TIMEOUT, "end of log", |l| is(l, "plugin_invoke_end", "log"));
    }

    // EOF ends the run after in-flight invocations finish; the working directory is removed.
    stdin.write_all(invoke("last", json!({"text": "z", "delay_ms": 1000})).as_bytes()).unwrap();
    drop(stdin);
    let last = out.until(STEP_TIMEOUT, "in-flight invocation finished after EOF", |l| is(l, "plugin_response", "last"));
    assert_eq!(last["response"]["message"]["text"], "echo: z");
    out.until(STEP_TIMEOUT, "end after EOF", |l| is(l, "plugin_invoke_end", "last"));
    let status = wait_for_exit(child, STEP_TIMEOUT);
    assert!(status.success(), "{status}");
    assert!(!working_dir.exists(), "temporary directory {working_dir:?} was not removed");
    assert_eq!(processes_inside(&working_dir), Vec::<String>::new(), "plugin processes left behind");
}

#[test]
fn unreadable_input_is_a_clear_error_in_both_formats() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("missing.difypkg");
    let output = Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "run", missing.to_str().unwrap(), "-r", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("run dify");
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["response"]["info"], "loading plugin");
    let working_dir = PathBuf::from(lines[0]["response"]["working_dir"].as_str().unwrap());
    assert!(!working_dir.exists());
    assert_eq!(lines[1]["type"], "error");
    assert!(lines[1]["response"]["error"].as_str().unwrap().starts_with("read plugin file error"), "{}", lines[1]);

    let not_a_package = scratch.path().join("junk.difypkg");
    std::fs::write(&not_a_package, b"not a zip").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "run", not_a_package.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run dify");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("[info] map[info:loading plugin working_dir:"), "{text}");
    assert!(lines[1].starts_with("[error] map[error:decode plugin file error"), "{text}");

    let output = Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "run", not_a_package.to_str().unwrap(), "-m", "udp"])
        .stdin(Stdio::null())
        .output()
        .expect("run dify");
    assert_eq!(output.status.code(), Some(2), "an unknown mode is a usage error");
}

/// A TCP client of the run server.
struct Client {
    writer: TcpStream,
    lines: Lines,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to dify plugin run");
        let reader = stream.try_clone().unwrap();
        Self { writer: stream, lines: Lines::new(reader) }
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }
}

#[test]
fn tcp_mode_serves_concurrent_clients() {
    let scratch = tempfile::tempdir().unwrap();
    let package_path = scratch.path().join("run_demo.difypkg");
    let packaged = Command::new(env!("CARGO_BIN_EXE_dify"))
        .args(["plugin", "package", demo_plugin_dir().to_str().unwrap(), "-o", package_path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run dify plugin package");
    assert!(packaged.status.success(), "{}", String::from_utf8_lossy(&packaged.stderr));

    let mut guard = Guard(spawn_dify(&["plugin", "run", package_path.to_str().unwrap(), "-m", "tcp", "-r", "json", "--host", "127.0.0.1"]));
    let child = &mut guard.0;
    let mut console = Lines::new(child.stdout.take().unwrap());
    let first = console.next(STEP_TIMEOUT);
    assert_eq!(first["type"], "info", "{first}");
    assert_eq!(first["response"]["host"], "127.0.0.1");
    let port = first["response"]["port"].as_u64().expect("port in the first info line") as u16;
    assert!(port > 0);
    let working_dir = PathBuf::from(first["response"]["working_dir"].as_str().unwrap());
    let running = console.until(READY_TIMEOUT, "plugin is running", |l| {
        l["type"] == "info" && l["response"]["info"].as_str().is_some_and(|i| i.starts_with("plugin is running on"))
    });
    assert_eq!(running["response"]["info"], format!("plugin is running on 127.0.0.1:{port}"));
    assert_eq!(running["response"]["port"], port);

    let mut first_client = Client::connect(port);
    let mut second_client = Client::connect(port);
    let ready = first_client.lines.next(STEP_TIMEOUT);
    assert!(is(&ready, "plugin_ready", ""), "{ready}");
    let ready = second_client.lines.next(STEP_TIMEOUT);
    assert!(is(&ready, "plugin_ready", ""), "{ready}");

    // The first client's invocation is still running while the second one's completes.
    first_client.send(&invoke("one", json!({"text": "first", "delay_ms": 2000})));
    second_client.send(&invoke("two", json!({"text": "second"})));
    let answer = second_client.lines.until(STEP_TIMEOUT, "second client's answer", |l| is(l, "plugin_response", "two"));
    assert_eq!(answer["response"]["message"]["text"], "echo: second");
    second_client.lines.until(STEP_TIMEOUT, "second client's end", |l| is(l, "plugin_invoke_end", "two"));
    let answer = first_client.lines.until(STEP_TIMEOUT, "first client's answer", |l| is(l, "plugin_response", "one"));
    assert_eq!(answer["response"]["message"]["text"], "echo: first");
    first_client.lines.until(STEP_TIMEOUT, "first client's end", |l| is(l, "plugin_invoke_end", "one"));
    // Responses go to the client that asked, never to the other one.
    assert!(!first_client.lines.seen.iter().any(|l| l["invoke_id"] == "two"));
    assert!(!second_client.lines.seen.iter().any(|l| l["invoke_id"] == "one"));

    // A backwards tool call answered by the mock, and a malformed line on a client.
    second_client.send("{\"invoke_id\":\n");
    let error = second_client.lines.until(STEP_TIMEOUT, "error line", |l| l["type"] == "error");
    assert!(error["response"]["error"].as_str().unwrap().starts_with("invalid JSON"), "{error}");
    second_client.send(&invoke("tool", json!({"mode": "tool", "text": "q"})));
    let answer = second_client.lines.until(STEP_TIMEOUT, "mocked tool", |l| is(l, "plugin_response", "tool"));
    assert_eq!(answer["response"]["message"]["json_object"]["from_tool"]["message"]["text"], "mocked tool output");

    // SIGTERM stops the run cleanly and removes the working directory.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    let status = wait_for_exit(child, STEP_TIMEOUT);
    assert!(status.success(), "{status}");
    assert!(!working_dir.exists(), "temporary directory {working_dir:?} was not removed");
}
