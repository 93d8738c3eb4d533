//! Rendering of command results and errors: text, JSON or YAML.
//!
//! A command's `run` function returns a value implementing [`Render`]; the printer chosen from
//! `--output` decides how it appears. Text output reproduces the upstream CLI: results that
//! upstream reported as log lines are printed as `YYYY/MM/DD HH:MM:SS LEVEL message key=value` on
//! stderr, listings go to stdout. Structured output (JSON/YAML) is one document on stdout; a
//! structured error is one JSON/YAML document on stderr. Command logic never branches on the
//! format; this module must not perform any command work.

use std::io::Write;

use serde::Serialize;

use crate::error::CliError;

/// The `--output` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

impl OutputFormat {
    pub fn is_structured(self) -> bool {
        !matches!(self, OutputFormat::Text)
    }
}

/// Severity of a text-mode log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// One line in the upstream log style: a message followed by `key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    pub fn info(message: impl Into<String>) -> Self {
        LogLine { level: Level::Info, message: message.into(), fields: Vec::new() }
    }

    pub fn warn(message: impl Into<String>) -> Self {
        LogLine { level: Level::Warn, message: message.into(), fields: Vec::new() }
    }

    pub fn error(message: impl Into<String>) -> Self {
        LogLine { level: Level::Error, message: message.into(), fields: Vec::new() }
    }

    pub fn field(mut self, key: &str, value: impl ToString) -> Self {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// The line without the timestamp prefix, e.g. `INFO plugin checksum checksum=ab12`.
    pub fn body(&self) -> String {
        let mut s = format!("{} {}", self.level.as_str(), self.message);
        for (k, v) in &self.fields {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&quote_log_value(v));
        }
        s
    }

    /// The full line as upstream's default logger writes it.
    pub fn render(&self) -> String {
        format!("{} {}", chrono::Local::now().format("%Y/%m/%d %H:%M:%S"), self.body())
    }
}

/// Quote a value the way Go's slog text handler does when it contains spaces, quotes or `=`.
fn quote_log_value(v: &str) -> String {
    let needs_quotes = v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
    if needs_quotes {
        serde_json::to_string(v).unwrap_or_else(|_| format!("\"{v}\""))
    } else {
        v.to_string()
    }
}

/// How a result looks in text mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextOutput {
    /// Upstream-style log lines, written to stderr.
    Log(Vec<LogLine>),
    /// Plain text for stdout (tables, listings, version).
    Stdout(String),
    /// A listing on stdout plus log lines on stderr (e.g. the new state after an edit).
    Both { stdout: String, log: Vec<LogLine> },
}

/// A printable command result.
pub trait Render: Serialize {
    fn text(&self) -> TextOutput;
}

/// Writes results and errors in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: OutputFormat,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Printer { format }
    }

    /// Render `value` into (stdout, stderr) strings; separated from the actual writing so it can
    /// be tested.
    pub fn render<R: Render + ?Sized>(&self, value: &R) -> (String, String) {
        match self.format {
            OutputFormat::Json => (to_json(value), String::new()),
            OutputFormat::Yaml => (to_yaml(value), String::new()),
            OutputFormat::Text => match value.text() {
                TextOutput::Stdout(s) => (ensure_newline(s), String::new()),
                TextOutput::Log(lines) => (String::new(), render_lines(&lines)),
                TextOutput::Both { stdout, log } => (ensure_newline(stdout), render_lines(&log)),
            },
        }
    }

    pub fn render_error(&self, error: &CliError) -> (String, String) {
        #[derive(Serialize)]
        struct ErrorDocument<'a> {
            error: &'a CliError,
            exit_code: i32,
        }
        let doc = ErrorDocument { error, exit_code: error.exit_status() };
        match self.format {
            OutputFormat::Json => (String::new(), to_json(&doc)),
            OutputFormat::Yaml => (String::new(), to_yaml(&doc)),
            OutputFormat::Text => {
                let line = LogLine::error(&error.message).render();
                (String::new(), format!("{line}\nhint: {}\n", error.hint))
            }
        }
    }

    pub fn print<R: Render + ?Sized>(&self, value: &R) {
        let (out, err) = self.render(value);
        write_both(&out, &err);
    }

    pub fn print_error(&self, error: &CliError) {
        let (out, err) = self.render_error(error);
        write_both(&out, &err);
    }
}

fn write_both(out: &str, err: &str) {
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
    if !err.is_empty() {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(err.as_bytes());
        let _ = stderr.flush();
    }
}

fn render_lines(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&line.render());
        out.push('\n');
    }
    out
}

fn ensure_newline(mut s: String) -> String {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\":{{\"code\":\"generic\",\"message\":{:?}}}}}\n", e.to_string()),
    }
}

fn to_yaml<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_yaml_ng::to_string(value) {
        Ok(s) => ensure_newline(s),
        Err(e) => format!("error:\n  code: generic\n  message: {:?}\n", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Done {
        output_path: String,
    }

    impl Render for Done {
        fn text(&self) -> TextOutput {
            TextOutput::Log(vec![LogLine::info("plugin packaged successfully").field("output_path", &self.output_path)])
        }
    }

    #[test]
    fn text_results_are_log_lines_on_stderr() {
        let (out, err) = Printer::new(OutputFormat::Text).render(&Done { output_path: "a b.difypkg".into() });
        assert!(out.is_empty());
        assert!(err.ends_with("INFO plugin packaged successfully output_path=\"a b.difypkg\"\n"), "{err}");
    }

    #[test]
    fn json_results_are_one_document_on_stdout() {
        let (out, err) = Printer::new(OutputFormat::Json).render(&Done { output_path: "x.difypkg".into() });
        assert!(err.is_empty());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["output_path"], "x.difypkg");
    }

    #[test]
    fn structured_errors_carry_code_hint_and_exit_code() {
        let e = CliError::usage("bad flag", "see --help");
        let (out, err) = Printer::new(OutputFormat::Json).render_error(&e);
        assert!(out.is_empty());
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["error"]["code"], "usage");
        assert_eq!(v["error"]["hint"], "see --help");
        assert_eq!(v["exit_code"], 2);
        let (_, text) = Printer::new(OutputFormat::Text).render_error(&e);
        assert!(text.contains("ERROR bad flag"));
        assert!(text.contains("hint: see --help"));
    }
}
