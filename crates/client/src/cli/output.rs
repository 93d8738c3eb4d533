//! Printers chosen from `--output`: `text` (a table or plain lines), `wide` (more columns),
//! `name` (one identifier per line), `json` and `yaml`. Commands return a [`Render`] value and
//! never branch on the format themselves.
//!
//! Owns formatting of results and errors. It must not talk to the daemon.

use std::io::Write;

use serde_json::Value;

use super::error::CliError;

/// The `-o/--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Wide,
    Name,
    Json,
    Yaml,
}

impl OutputFormat {
    /// JSON and YAML are for programs: errors are structured and progress is never shown.
    pub fn is_structured(self) -> bool {
        matches!(self, OutputFormat::Json | OutputFormat::Yaml)
    }
}

/// A command's result, printable in every format.
pub trait Render {
    /// The full result for `json`/`yaml`.
    fn to_value(&self) -> Value;
    /// Human-readable lines; `wide` asks for more columns.
    fn to_text(&self, wide: bool) -> String;
    /// The identifiers for `name`.
    fn names(&self) -> Vec<String>;
}

/// Writes `result` to `out` in `format`.
pub fn print(format: OutputFormat, result: &dyn Render, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        OutputFormat::Text => write_text(out, &result.to_text(false)),
        OutputFormat::Wide => write_text(out, &result.to_text(true)),
        OutputFormat::Name => {
            for name in result.names() {
                writeln!(out, "{name}")?;
            }
            Ok(())
        }
        OutputFormat::Json => writeln!(out, "{}", pretty_json(&result.to_value())),
        OutputFormat::Yaml => write_text(out, &to_yaml(&result.to_value())),
    }
}

fn write_text(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    if text.ends_with('\n') {
        write!(out, "{text}")
    } else {
        writeln!(out, "{text}")
    }
}

pub fn pretty_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|_| pretty_json(value))
}

/// Writes an error: structured for `json`/`yaml`, `error:`/`hint:` lines otherwise.
pub fn print_error(format: OutputFormat, error: &CliError, err: &mut dyn Write) {
    let _ = match format {
        OutputFormat::Json => writeln!(err, "{}", pretty_json(&error.to_json())),
        OutputFormat::Yaml => write!(err, "{}", to_yaml(&error.to_json())),
        _ => {
            let mut text = format!("error: {}\n", error.message);
            for line in &error.details {
                text.push_str(&format!("  {line}\n"));
            }
            if let Some(hint) = &error.hint {
                text.push_str(&format!("hint: {hint}\n"));
            }
            write!(err, "{text}")
        }
    };
}

/// Lays out rows under a header, columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A result that is one JSON value with a fixed text form.
pub struct Plain {
    pub value: Value,
    pub text: String,
    pub names: Vec<String>,
}

impl Render for Plain {
    fn to_value(&self) -> Value {
        self.value.clone()
    }
    fn to_text(&self, _wide: bool) -> String {
        self.text.clone()
    }
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_pads_columns() {
        let text = table(&["A", "BB"], &[vec!["long".into(), "x".into()], vec!["s".into(), "y".into()]]);
        assert_eq!(text, "A     BB\nlong  x\ns     y\n");
    }

    #[test]
    fn every_format_prints() {
        let plain = Plain { value: json!({"a": 1}), text: "one".into(), names: vec!["n1".into(), "n2".into()] };
        let render = |format| {
            let mut out = Vec::new();
            print(format, &plain, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render(OutputFormat::Text), "one\n");
        assert_eq!(render(OutputFormat::Name), "n1\nn2\n");
        assert_eq!(serde_json::from_str::<Value>(&render(OutputFormat::Json)).unwrap(), json!({"a": 1}));
        assert_eq!(render(OutputFormat::Yaml), "a: 1\n");
    }

    #[test]
    fn structured_errors() {
        let error = CliError::usage("bad").with_hint("fix it");
        let mut out = Vec::new();
        print_error(OutputFormat::Json, &error, &mut out);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["error"]["code"], "usage");
        assert_eq!(value["error"]["exit_status"], 2);
        let mut out = Vec::new();
        print_error(OutputFormat::Text, &error, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "error: bad\nhint: fix it\n");
    }
}
