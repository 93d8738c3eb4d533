//! The line messages `dify plugin run` writes: `{"invoke_id", "type", "response"}` and how they are
//! rendered (`-r json`: one JSON object per line; `-r text`: `[<type>] map[k:v …]`, keys sorted as
//! Go prints a map).
//!
//! Owns: the message kinds and both renderings. Must not: do I/O or know about plugins.

use dify_protocol::message::sort_keys;
use serde_json::{json, Map, Value};

/// `type` of an output line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    PluginReady,
    PluginResponse,
    PluginInvokeEnd,
    Error,
    /// A plugin log line or a line of its stderr (only with `-l`).
    Log,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Info => "info",
            MessageKind::PluginReady => "plugin_ready",
            MessageKind::PluginResponse => "plugin_response",
            MessageKind::PluginInvokeEnd => "plugin_invoke_end",
            MessageKind::Error => "error",
            MessageKind::Log => "log",
        }
    }
}

/// `-r/--response-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResponseFormat {
    Text,
    Json,
}

/// One output line.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMessage {
    pub invoke_id: String,
    pub kind: MessageKind,
    pub response: Map<String, Value>,
}

impl RunMessage {
    pub fn new(invoke_id: impl Into<String>, kind: MessageKind, response: Map<String, Value>) -> Self {
        Self { invoke_id: invoke_id.into(), kind, response }
    }

    /// A message whose response is `{"info": text}`.
    pub fn info(kind: MessageKind, invoke_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(invoke_id, kind, single("info", Value::String(text.into())))
    }

    /// An `error` message: `{"error": text}`.
    pub fn error(invoke_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(invoke_id, MessageKind::Error, single("error", Value::String(text.into())))
    }

    /// One plugin response item; items that are not objects are wrapped as `{"data": item}`.
    pub fn plugin_response(invoke_id: impl Into<String>, item: Value) -> Self {
        let response = match item {
            Value::Object(map) => map,
            other => single("data", other),
        };
        Self::new(invoke_id, MessageKind::PluginResponse, response)
    }

    /// The line, without its trailing newline, in `format`.
    pub fn render(&self, format: ResponseFormat) -> String {
        let response = sort_keys(&Value::Object(self.response.clone()));
        match format {
            ResponseFormat::Json => json!({"invoke_id": self.invoke_id, "type": self.kind.as_str(), "response": response}).to_string(),
            ResponseFormat::Text => format!("[{}] {}", self.kind.as_str(), go_dump(&response)),
        }
    }
}

fn single(key: &str, value: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.to_string(), value);
    map
}

/// A value as Go's `%v` prints decoded JSON: `map[a:1 b:x]`, `[1 2]`, `<nil>`.
fn go_dump(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_dump).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            format!("map[{}]", map.iter().map(|(k, v)| format!("{k}:{}", go_dump(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_sorted_response_keys() {
        let item = json!({"type": "text", "message": {"text": "hi"}, "meta": null});
        let line = RunMessage::plugin_response("1", item).render(ResponseFormat::Json);
        assert_eq!(line, r#"{"invoke_id":"1","type":"plugin_response","response":{"message":{"text":"hi"},"meta":null,"type":"text"}}"#);
        let ready = RunMessage::info(MessageKind::PluginReady, "", "plugin loaded").render(ResponseFormat::Json);
        assert_eq!(ready, r#"{"invoke_id":"","type":"plugin_ready","response":{"info":"plugin loaded"}}"#);
    }

    #[test]
    fn text_lines_look_like_go_maps() {
        let item = json!({"type": "json", "message": {"json_object": {"b": [1, 2], "a": true}}, "meta": null});
        assert_eq!(
            RunMessage::plugin_response("1", item).render(ResponseFormat::Text),
            "[plugin_response] map[message:map[json_object:map[a:true b:[1 2]]] meta:<nil> type:json]"
        );
        assert_eq!(RunMessage::error("", "bad").render(ResponseFormat::Text), "[error] map[error:bad]");
        assert_eq!(RunMessage::plugin_response("2", json!(5)).response["data"], json!(5));
    }
}
