//! slim's stdout lines, as upstream's JSON encoder writes them: one compact object per line,
//! `{"event":"chunk","data":…}`, `{"event":"done","data":null}`, `{"event":"error","data":{"code",
//! "message"}}`, `{"event":"message","data":{"message","stage"}}`, with `<`, `>`, `&`, U+2028 and
//! U+2029 escaped the way Go's encoder escapes them by default.

use std::io::Write;

use serde_json::{json, Value};

use super::ErrorCode;

/// Go's default HTML-safe escaping of already serialised JSON (these characters only occur inside
/// strings, so replacing them keeps the JSON equal).
pub fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Writes output events, one line each, flushed at once.
pub struct OutputWriter {
    sink: Box<dyn Write + Send>,
}

impl OutputWriter {
    pub fn stdout() -> Self {
        OutputWriter { sink: Box::new(std::io::stdout()) }
    }

    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        OutputWriter { sink }
    }

    fn event(&mut self, event: &str, data: Value) -> std::io::Result<()> {
        let line = serde_json::to_string(&json!({"event": event, "data": data})).unwrap_or_default();
        let mut line = go_html_escape(&line);
        line.push('\n');
        self.sink.write_all(line.as_bytes())?;
        self.sink.flush()
    }

    pub fn chunk(&mut self, data: Value) -> std::io::Result<()> {
        self.event("chunk", data)
    }

    pub fn done(&mut self) -> std::io::Result<()> {
        self.event("done", Value::Null)
    }

    pub fn error(&mut self, code: ErrorCode, message: &str) -> std::io::Result<()> {
        self.event("error", json!({"code": code.as_str(), "message": message}))
    }

    /// A progress message; upstream's map encodes its keys sorted (`message` before `stage`).
    pub fn message(&mut self, stage: &str, message: &str) -> std::io::Result<()> {
        self.event("message", json!({"message": message, "stage": stage}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(go_html_escape(r#"{"a":"<b>&"}"#), r#"{"a":"\u003cb\u003e\u0026"}"#);
    }
}
