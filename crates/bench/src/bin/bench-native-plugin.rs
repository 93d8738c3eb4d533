//! A minimal native plugin that speaks the daemon ⇄ plugin protocol (docs/protocol.md §0, §1.3,
//! §2.4) so the bench can measure the daemon's own ceiling without a Python interpreter in the way.
//!
//! Owns: answering `invoke_tool` requests of the bench's single tool (`work`) in a few modes, and
//! heartbeats. Modes (`tool_parameters.mode`): `echo` (one text message), `stream` (`count` text
//! messages), `blob` (`count` bytes as 8 KiB `blob_chunk`s, like the SDK), `hold` (one text message,
//! then `end` after `count` milliseconds). Every other action gets only `end`.
//!
//! Transports: `stdio` (the local runtime: lines on stdin/stdout) and
//! `remote <host:port> <key> <registration.json>` (the debug runtime: TCP, registration sequence
//! first; the JSON file holds `{"manifest": …, "tools": [ … ]}`).
//!
//! Must not: do real work, sleep on the request path (except `hold`), or allocate per chunk more
//! than needed — it is the fastest plugin the protocol allows, so the daemon is what gets measured.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// Bytes of one blob chunk before base64 (the SDK uses 8 KiB).
const BLOB_CHUNK: usize = 8192;

type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Held sessions waiting for their `end`: (when, session id).
type Holds = Sender<(Instant, String)>;

/// One thread ends every held session when its time comes (a thread per held session would hit
/// the sandbox's process limit long before a thousand streams).
fn start_holder(writer: SharedWriter) -> Holds {
    let (sender, receiver) = channel::<(Instant, String)>();
    std::thread::spawn(move || {
        let mut due: BinaryHeap<Reverse<(Instant, String)>> = BinaryHeap::new();
        loop {
            let next = match due.peek() {
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(Reverse((at, _))) => receiver.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match next {
                Ok(hold) => due.push(Reverse(hold)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while due.peek().is_some_and(|Reverse((at, _))| *at <= Instant::now()) {
                if let Some(Reverse((_, session))) = due.pop() {
                    let _ = send(&writer, &end(&session), true);
                }
            }
        }
    });
    sender
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("stdio") | None => serve(Box::new(std::io::stdin()), Box::new(std::io::stdout())),
        Some("remote") if args.len() == 4 => remote(&args[1], &args[2], &args[3]),
        _ => Err("usage: bench-native-plugin [stdio | remote <host:port> <key> <registration.json>]".to_string()),
    };
    if let Err(error) = result {
        eprintln!("bench-native-plugin: {error}");
        std::process::exit(2);
    }
}

fn remote(address: &str, key: &str, registration_path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(registration_path).map_err(|e| format!("read {registration_path}: {e}"))?;
    let registration: Value = serde_json::from_str(&text).map_err(|e| format!("parse {registration_path}: {e}"))?;
    let stream = std::net::TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    for line in [
        json!({"type": "handshake", "data": {"key": key}}),
        json!({"type": "manifest_declaration", "data": registration["manifest"]}),
        json!({"type": "tool_declaration", "data": registration["tools"]}),
        json!({"type": "end", "data": {}}),
    ] {
        serde_json::to_writer(&mut hello, &line).map_err(|e| e.to_string())?;
        hello.extend_from_slice(b"\n\n");
    }
    writer.write_all(&hello).map_err(|e| format!("send registration: {e}"))?;
    serve(Box::new(stream), Box::new(writer))
}

/// Reads request lines until EOF and answers them; a heartbeat thread keeps the plugin alive.
fn serve(input: Box<dyn Read + Send>, output: Box<dyn Write + Send>) -> Result<(), String> {
    let writer: SharedWriter = Arc::new(Mutex::new(Box::new(std::io::BufWriter::with_capacity(1 << 16, output))));
    send(&writer, &json!({"event": "heartbeat", "session_id": null, "data": {}}), true)?;
    {
        let writer = writer.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(10));
            if send(&writer, &json!({"event": "heartbeat", "session_id": null, "data": {}}), true).is_err() {
                std::process::exit(0);
            }
        });
    }
    let blob_piece = base64::engine::general_purpose::STANDARD.encode(pattern(BLOB_CHUNK));
    let holds = start_holder(writer.clone());
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(trimmed) else {
            send(&writer, &json!({"event": "error", "session_id": null, "data": {"error": "invalid JSON line"}}), true)?;
            continue;
        };
        if message["event"] != "request" {
            continue;
        }
        let session = message["session_id"].as_str().unwrap_or_default().to_string();
        answer(&writer, &session, &message["data"], &blob_piece, &holds)?;
        // Batch answers of requests that are already buffered; flush once the input is drained.
        if reader.buffer().is_empty() {
            flush(&writer)?;
        }
    }
}

fn answer(writer: &SharedWriter, session: &str, data: &Value, blob_piece: &str, holds: &Holds) -> Result<(), String> {
    if data["action"] != "invoke_tool" {
        if data["action"] == "validate_tool_credentials" {
            send(writer, &stream_item(session, json!({"result": true})), false)?;
        }
        return send(writer, &end(session), false);
    }
    let parameters = &data["tool_parameters"];
    let mode = parameters["mode"].as_str().unwrap_or("echo");
    let count = parameters["count"].as_f64().unwrap_or(0.0).max(0.0) as u64;
    match mode {
        "stream" => {
            for i in 0..count {
                send(writer, &text(session, &format!("chunk {i}")), false)?;
            }
        }
        "blob" => {
            let total = count as usize;
            let chunks = total.div_ceil(BLOB_CHUNK);
            let id = format!("{:032x}", 0x5eed_u128);
            let meta = json!({"mime_type": "application/octet-stream"});
            for sequence in 0..chunks {
                let len = (total - sequence * BLOB_CHUNK).min(BLOB_CHUNK);
                let piece = if len == BLOB_CHUNK {
                    blob_piece.to_string()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(&pattern(BLOB_CHUNK)[..len])
                };
                let item = json!({"type": "blob_chunk", "message": {"id": id, "sequence": sequence, "total_length": total,
                    "blob": piece, "end": false}, "meta": meta});
                send(writer, &stream_item(session, item), false)?;
            }
            let last = json!({"type": "blob_chunk", "message": {"id": id, "sequence": chunks, "total_length": total,
                "blob": "", "end": true}, "meta": meta});
            send(writer, &stream_item(session, last), false)?;
        }
        "hold" => {
            send(writer, &text(session, "held"), true)?;
            holds
                .send((Instant::now() + Duration::from_millis(count), session.to_string()))
                .map_err(|_| "holder thread ended".to_string())?;
            return Ok(());
        }
        _ => {
            let input = parameters["text"].as_str().unwrap_or_default();
            send(writer, &text(session, &format!("echo: {input}")), false)?;
        }
    }
    send(writer, &end(session), false)
}

fn flush(writer: &SharedWriter) -> Result<(), String> {
    writer.lock().unwrap_or_else(|p| p.into_inner()).flush().map_err(|e| format!("flush: {e}"))
}

fn stream_item(session: &str, item: Value) -> Value {
    json!({"event": "session", "session_id": session, "data": {"type": "stream", "data": item}})
}

fn text(session: &str, text: &str) -> Value {
    stream_item(session, json!({"type": "text", "message": {"text": text}, "meta": null}))
}

fn end(session: &str) -> Value {
    json!({"event": "session", "session_id": session, "data": {"type": "end", "data": {}}})
}

/// The blob content: a fixed byte pattern (the bench checks lengths, not content).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Writes one message line (`\n\n`-terminated like the SDK); `flush` when a reader waits for it.
fn send(writer: &SharedWriter, message: &Value, flush: bool) -> Result<(), String> {
    let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    line.extend_from_slice(b"\n\n");
    let mut out = writer.lock().unwrap_or_else(|p| p.into_inner());
    out.write_all(&line).map_err(|e| format!("write: {e}"))?;
    if flush {
        out.flush().map_err(|e| format!("flush: {e}"))?;
    }
    Ok(())
}
