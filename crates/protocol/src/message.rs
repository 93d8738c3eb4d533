//! The plugin message model spoken over a plugin's stdio pipe, a debug TCP socket or a serverless
//! HTTP body (docs/protocol.md §0).
//!
//! Daemon → plugin: [`PluginInStream`] lines (`event` = `request` or `backwards_response`).
//! Plugin → daemon: [`PluginEvent`] lines (`heartbeat`, `log`, `error`, `session` with an inner
//! [`SessionMessage`] of type `stream`, `invoke`, `error` or `end`).
//!
//! This module only turns values into lines and lines into values. It does no I/O, keeps no
//! session state and never decides what a message means for an invocation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::compact::RawChunk;
use crate::invoke::Payload;

/// The `event` of a daemon → plugin line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InStreamEvent {
    /// A new invocation; `data` is the flattened request.
    Request,
    /// An answer to a backwards invocation the plugin made.
    BackwardsResponse,
}

/// One daemon → plugin line (docs/protocol.md §0.1). Field order is the Go daemon's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInStream {
    pub session_id: String,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub context: Option<Value>,
    pub event: InStreamEvent,
    pub data: Value,
}

/// Optional pass-through values of an invocation, copied onto every line of its session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationContext {
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub context: Option<Value>,
}

impl PluginInStream {
    /// A `request` line: `data` = `{user_id, type, action, ...payload}` with keys sorted
    /// alphabetically, as the Go daemon builds it from a map.
    pub fn request(
        session_id: &str,
        invocation: &InvocationContext,
        user_id: &str,
        access_type: &str,
        access_action: &str,
        payload: &Map<String, Value>,
    ) -> Self {
        let mut fields: Vec<(String, Value)> = payload
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "user_id" | "type" | "action"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        fields.push(("user_id".into(), Value::String(user_id.into())));
        fields.push(("type".into(), Value::String(access_type.into())));
        fields.push(("action".into(), Value::String(access_action.into())));
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let data: Map<String, Value> = fields.into_iter().collect();
        Self::with_event(session_id, invocation, InStreamEvent::Request, Value::Object(data))
    }

    /// The line of [`Self::request`] (`request(…).to_line()`), written straight from borrowed
    /// values: the payload is neither copied nor turned into a new tree.
    pub fn request_line(
        session_id: &str,
        invocation: &InvocationContext,
        user_id: &str,
        access_type: &str,
        access_action: &str,
        payload: &Map<String, Value>,
    ) -> Vec<u8> {
        let mut fields: Vec<(&str, RequestField<'_>)> = payload
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "user_id" | "type" | "action"))
            .map(|(key, value)| (key.as_str(), RequestField::Value(value)))
            .collect();
        fields.push(("user_id", RequestField::Text(user_id)));
        fields.push(("type", RequestField::Text(access_type)));
        fields.push(("action", RequestField::Text(access_action)));
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let line = RequestLine {
            session_id,
            conversation_id: &invocation.conversation_id,
            message_id: &invocation.message_id,
            app_id: &invocation.app_id,
            endpoint_id: &invocation.endpoint_id,
            context: &invocation.context,
            event: InStreamEvent::Request,
            data: SortedFields(&fields),
        };
        // Serialising strings and JSON values cannot fail.
        let mut out = Vec::with_capacity(256);
        let _ = serde_json::to_writer(&mut out, &line);
        out.push(b'\n');
        out
    }

    /// The line of [`Self::request`] for a [`Payload`]; raw fields are copied into it as they are.
    pub fn payload_request_line(
        session_id: &str,
        invocation: &InvocationContext,
        user_id: &str,
        access_type: &str,
        access_action: &str,
        payload: &Payload,
    ) -> Vec<u8> {
        let raw = match payload {
            Payload::Tree(map) => return Self::request_line(session_id, invocation, user_id, access_type, access_action, map),
            Payload::Raw(raw) => raw,
        };
        let mut fields: Vec<(&str, RawField<'_>)> = raw
            .iter()
            .filter(|(key, _)| !matches!(*key, "user_id" | "type" | "action"))
            .map(|(key, value)| (key, RawField::Json(value)))
            .collect();
        fields.push(("user_id", RawField::Text(user_id)));
        fields.push(("type", RawField::Text(access_type)));
        fields.push(("action", RawField::Text(access_action)));
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let values: usize = fields.iter().map(|(key, value)| key.len() + value.len() + 4).sum();
        let mut out = Vec::with_capacity(values + session_id.len() + 160);
        // The layout of `RequestLine` as serde_json writes it; strings and values cannot fail to write.
        let text = |out: &mut Vec<u8>, text: &str| {
            let _ = serde_json::to_writer(&mut *out, text);
        };
        let optional = |out: &mut Vec<u8>, value: &Option<String>| match value {
            Some(value) => text(out, value),
            None => out.extend_from_slice(b"null"),
        };
        out.extend_from_slice(b"{\"session_id\":");
        text(&mut out, session_id);
        out.extend_from_slice(b",\"conversation_id\":");
        optional(&mut out, &invocation.conversation_id);
        out.extend_from_slice(b",\"message_id\":");
        optional(&mut out, &invocation.message_id);
        out.extend_from_slice(b",\"app_id\":");
        optional(&mut out, &invocation.app_id);
        out.extend_from_slice(b",\"endpoint_id\":");
        optional(&mut out, &invocation.endpoint_id);
        out.extend_from_slice(b",\"context\":");
        let _ = serde_json::to_writer(&mut out, &invocation.context);
        out.extend_from_slice(b",\"event\":\"request\",\"data\":{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            text(&mut out, key);
            out.push(b':');
            match value {
                RawField::Json(json) => out.extend_from_slice(json),
                RawField::Text(value) => text(&mut out, value),
            }
        }
        out.extend_from_slice(b"}}\n");
        out
    }

    /// A `backwards_response` line answering `backwards_request_id`.
    pub fn backwards_response(session_id: &str, invocation: &InvocationContext, reply: &BackwardsReply) -> Self {
        let data = serde_json::to_value(reply).unwrap_or(Value::Null);
        Self::with_event(session_id, invocation, InStreamEvent::BackwardsResponse, data)
    }

    fn with_event(session_id: &str, invocation: &InvocationContext, event: InStreamEvent, data: Value) -> Self {
        Self {
            session_id: session_id.into(),
            conversation_id: invocation.conversation_id.clone(),
            message_id: invocation.message_id.clone(),
            app_id: invocation.app_id.clone(),
            endpoint_id: invocation.endpoint_id.clone(),
            context: invocation.context.clone(),
            event,
            data,
        }
    }

    /// Compact JSON followed by a single `\n`, ready to be written to the plugin.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising plain strings and JSON values cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// [`PluginInStream`] with borrowed fields, for [`PluginInStream::request_line`].
#[derive(Serialize)]
struct RequestLine<'a> {
    session_id: &'a str,
    conversation_id: &'a Option<String>,
    message_id: &'a Option<String>,
    app_id: &'a Option<String>,
    endpoint_id: &'a Option<String>,
    context: &'a Option<Value>,
    event: InStreamEvent,
    data: SortedFields<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RequestField<'a> {
    Value(&'a Value),
    Text(&'a str),
}

/// A `data` entry of a line written from raw fields.
enum RawField<'a> {
    /// Canonical compact JSON.
    Json(&'a [u8]),
    Text(&'a str),
}

impl RawField<'_> {
    fn len(&self) -> usize {
        match self {
            RawField::Json(json) => json.len(),
            RawField::Text(text) => text.len() + 2,
        }
    }
}

/// Already sorted `data` entries, written as one object.
struct SortedFields<'a>(&'a [(&'a str, RequestField<'a>)]);

impl Serialize for SortedFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

/// The `event` of one backwards answer item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackwardsReplyEvent {
    Response,
    Error,
    End,
}

/// `data` of a `backwards_response` line (docs/protocol.md §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackwardsReply {
    pub backwards_request_id: String,
    pub event: BackwardsReplyEvent,
    pub message: String,
    pub data: Value,
}

impl BackwardsReply {
    /// One item of a streamed answer (`message` = `stream`).
    pub fn stream(request_id: &str, item: Value) -> Self {
        Self { backwards_request_id: request_id.into(), event: BackwardsReplyEvent::Response, message: "stream".into(), data: item }
    }
    /// The single item of a struct answer (`message` = `struct`).
    pub fn structure(request_id: &str, item: Value) -> Self {
        Self { backwards_request_id: request_id.into(), event: BackwardsReplyEvent::Response, message: "struct".into(), data: item }
    }
    /// A failure; the SDK raises an exception carrying `message`.
    pub fn error(request_id: &str, message: impl Into<String>) -> Self {
        Self { backwards_request_id: request_id.into(), event: BackwardsReplyEvent::Error, message: message.into(), data: Value::Null }
    }
    /// The terminator every backwards request gets exactly once.
    pub fn end(request_id: &str) -> Self {
        Self { backwards_request_id: request_id.into(), event: BackwardsReplyEvent::End, message: String::new(), data: Value::Null }
    }
}

/// A backwards invocation request carried by a session `invoke` message (docs/protocol.md §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackwardsRequest {
    #[serde(rename = "type")]
    pub invoke_type: String,
    pub backwards_request_id: String,
    pub request: Map<String, Value>,
}

/// The `error` payload of a session (`{error_type, message, args}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSessionError {
    #[serde(default)]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub args: Value,
}

impl PluginSessionError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error_type: error_type.into(), message: message.into(), args: Value::Object(Map::new()) }
    }

    /// The inner message of a `PluginInvokeError` (docs/http.md §2.4): a JSON object with keys sorted
    /// alphabetically (`args`, `error_type`, `message`), nested keys sorted too.
    pub fn to_sorted_json(&self) -> String {
        let mut object = Map::new();
        object.insert("args".into(), sort_keys(&self.args));
        object.insert("error_type".into(), Value::String(self.error_type.clone()));
        object.insert("message".into(), Value::String(self.message.clone()));
        serde_json::to_string(&Value::Object(object)).unwrap_or_default()
    }
}

/// A copy of `value` whose object keys are in alphabetical order at every level (the Go daemon
/// re-encodes maps, which sorts them).
pub fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sort_keys(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// The inner message of a `session` event.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMessage {
    /// One response item, as its canonical compact text.
    Stream(RawChunk),
    /// A backwards invocation; `Err` holds why the request was malformed.
    Invoke(Result<BackwardsRequest, String>),
    /// The plugin failed the invocation; an `End` follows.
    Error(PluginSessionError),
    /// The last message of the session.
    End(Value),
    /// A type this daemon does not know.
    Unknown(String),
}

/// A `log` event's payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginLog {
    pub level: String,
    pub message: String,
    pub timestamp: f64,
}

/// One plugin → daemon line (docs/protocol.md §0.2).
#[derive(Debug, Clone, PartialEq)]
pub enum PluginEvent {
    Heartbeat,
    Log(PluginLog),
    /// An out-of-band problem reported by the plugin's reader; the raw `data` as text.
    Error(String),
    Session {
        session_id: String,
        message: SessionMessage,
    },
    /// An `event` value this daemon does not know.
    Unknown(String),
}

/// Why a plugin line could not be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LineError {
    #[error("plugin line is not JSON: {0}")]
    NotJson(String),
    #[error("plugin session line without a session_id")]
    MissingSessionId,
    #[error("plugin session line without data")]
    MissingSessionData,
}

/// Parses one line from a plugin. Blank lines and JSON lines without an `event` field (the manifest
/// dump the SDK prints first, registration lines after a TCP handshake) give `Ok(None)`.
pub fn parse_plugin_line(line: &[u8]) -> Result<Option<PluginEvent>, LineError> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if let Some(event) = plain_line::session_line(trimmed) {
        return Ok(Some(event));
    }
    if let Some(event) = single_pass::session_line(trimmed) {
        return Ok(Some(event));
    }
    let value: Value = serde_json::from_slice(trimmed).map_err(|e| LineError::NotJson(e.to_string()))?;
    let Value::Object(mut object) = value else { return Ok(None) };
    let Some(event) = object.get("event").and_then(Value::as_str).map(str::to_owned) else { return Ok(None) };
    let data = object.remove("data").unwrap_or(Value::Null);
    let parsed = match event.as_str() {
        "heartbeat" => PluginEvent::Heartbeat,
        "log" => PluginEvent::Log(PluginLog {
            level: data.get("level").and_then(Value::as_str).unwrap_or("INFO").to_owned(),
            message: data.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            timestamp: data.get("timestamp").and_then(Value::as_f64).unwrap_or_default(),
        }),
        "error" => PluginEvent::Error(match &data {
            Value::Object(map) => match map.get("error") {
                Some(Value::String(text)) => text.clone(),
                _ => data.to_string(),
            },
            other => other.to_string(),
        }),
        "session" => {
            let session_id = match object.get("session_id") {
                Some(Value::String(id)) if !id.is_empty() => id.clone(),
                _ => return Err(LineError::MissingSessionId),
            };
            let Value::Object(mut inner) = data else { return Err(LineError::MissingSessionData) };
            let kind = inner.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
            let Some(payload) = inner.remove("data") else { return Err(LineError::MissingSessionData) };
            let message = match kind.as_str() {
                "stream" => SessionMessage::Stream(RawChunk::from_value(&payload)),
                "end" => SessionMessage::End(payload),
                "error" => SessionMessage::Error(
                    serde_json::from_value(payload.clone()).unwrap_or_else(|_| PluginSessionError::new("unknown", payload.to_string())),
                ),
                "invoke" => SessionMessage::Invoke(serde_json::from_value::<BackwardsRequest>(payload).map_err(|e| e.to_string())),
                other => SessionMessage::Unknown(other.to_owned()),
            };
            PluginEvent::Session { session_id, message }
        }
        other => PluginEvent::Unknown(other.to_owned()),
    };
    Ok(Some(parsed))
}

/// The common plugin lines, `session` lines of type `stream` and `end`, when the whole line is plain
/// text (`plain::Plain`: no backslash, no control character): read with the plain reader, which finds
/// strings with `memchr`. Whatever it is unsure of, including a key repeated anywhere, answers `None`
/// and goes to [`single_pass`], so a line it answers gives the event [`single_pass`] gives.
mod plain_line {
    use super::{PluginEvent, SessionMessage};
    use crate::compact::RawChunk;
    use crate::plain::Plain;

    pub(super) fn session_line(line: &[u8]) -> Option<PluginEvent> {
        let mut reader = Plain::new(line)?;
        let (mut event, mut session_id, mut kind) = (None, None, None);
        let (mut item, mut fields) = (Vec::new(), None);
        let mut skipped = Vec::new();
        reader.object(|reader, key| {
            match key {
                b"\"event\"" => event = Some(reader.string()?),
                b"\"session_id\"" => session_id = Some(reader.string()?),
                b"\"data\"" => {
                    reader.object(|reader, key| {
                        match key {
                            b"\"type\"" => kind = Some(reader.string()?),
                            b"\"data\"" => {
                                // Room for the envelope the daemon puts around the item, and for
                                // its closing bytes (the item is never longer than the line).
                                item.clear();
                                item.reserve(RawChunk::HEADROOM + line.len() + 8);
                                item.resize(RawChunk::HEADROOM, b' ');
                                reader.value(&mut item, 3, Some(&mut fields))?;
                            }
                            _ => {
                                skipped.clear();
                                reader.value(&mut skipped, 3, None)?;
                            }
                        }
                        Some(())
                    })?;
                }
                _ => {
                    skipped.clear();
                    reader.value(&mut skipped, 2, None)?;
                }
            }
            Some(())
        })?;
        // The item, once read, follows the room left before it.
        if !reader.at_end() || event? != b"\"session\"" || item.is_empty() {
            return None;
        }
        let session_id = match session_id? {
            id if id.len() > 2 => std::str::from_utf8(&id[1..id.len() - 1]).ok()?.to_owned(),
            _ => return None,
        };
        let message = match kind? {
            b"\"stream\"" => SessionMessage::Stream(RawChunk::from_parts(item, RawChunk::HEADROOM, fields)),
            b"\"end\"" => SessionMessage::End(serde_json::from_slice(&item[RawChunk::HEADROOM..]).ok()?),
            _ => return None,
        };
        Some(PluginEvent::Session { session_id, message })
    }
}

/// The common plugin lines, `session` lines of type `stream` and `end`, read in one pass without a
/// tree: the item is written as canonical compact text while it is parsed (`compact::Node`), every
/// value still going through serde_json's `deserialize_any`, so the nesting limit counts from the
/// start of the line exactly as when the whole line is parsed into a `Value`. Anything else (other
/// events and types, a repeated key, a malformed line) answers `None` and the caller parses the line
/// into a tree, which then decides, with the same errors as before.
mod single_pass {
    use std::fmt;
    use std::ops::Range;

    use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

    use super::{PluginEvent, SessionMessage};
    use crate::compact::{Node, RawChunk, TopFields};

    pub(super) fn session_line(line: &[u8]) -> Option<PluginEvent> {
        let mut scratch = Vec::new();
        let mut item = Vec::with_capacity(line.len());
        let mut read = Read { scratch: &mut scratch, item: &mut item, fields: None, repeated: false, line: Line::default() };
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        LineSeed { read: &mut read }.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        let Read { line: parsed, fields, repeated, .. } = read;
        if repeated || parsed.repeated || !parsed.data_object {
            return None;
        }
        let text = |range: &Option<Range<usize>>| range.clone().map(|r| &scratch[r]);
        if text(&parsed.event)? != b"\"session\"" || !parsed.item {
            return None;
        }
        let session_id = match text(&parsed.session_id)? {
            id if id.len() > 2 && id[0] == b'"' => serde_json::from_slice::<String>(id).ok()?,
            _ => return None,
        };
        let message = match text(&parsed.kind)? {
            b"\"stream\"" => SessionMessage::Stream(RawChunk::from_parts(item, 0, fields)),
            b"\"end\"" => SessionMessage::End(serde_json::from_slice(&item).ok()?),
            _ => return None,
        };
        Some(PluginEvent::Session { session_id, message })
    }

    /// What the pass found; text ranges point into `Read::scratch`.
    #[derive(Default)]
    struct Line {
        event: Option<Range<usize>>,
        session_id: Option<Range<usize>>,
        kind: Option<Range<usize>>,
        /// `data` is an object.
        data_object: bool,
        /// `data.data` was written to `Read::item`.
        item: bool,
        /// A key this pass cares about appears twice (the tree keeps the last value).
        repeated: bool,
    }

    struct Read<'a> {
        scratch: &'a mut Vec<u8>,
        item: &'a mut Vec<u8>,
        fields: Option<TopFields>,
        /// The item repeats a key somewhere.
        repeated: bool,
        line: Line,
    }

    impl Read<'_> {
        /// Writes the next value to `scratch` and answers where.
        fn capture<'de, A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<Range<usize>, A::Error> {
            let begin = self.scratch.len();
            let mut repeated = false;
            map.next_value_seed(Node::new(self.scratch, &mut repeated, None))?;
            // A repeated key in a value only the tree reads (an unknown field) does not matter.
            Ok(begin..self.scratch.len())
        }

        fn skip<'de, A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error> {
            let range = self.capture(map)?;
            self.scratch.truncate(range.start);
            Ok(())
        }
    }

    fn set(slot: &mut Option<Range<usize>>, range: Range<usize>, repeated: &mut bool) {
        if slot.replace(range).is_some() {
            *repeated = true;
        }
    }

    #[derive(Clone, Copy)]
    enum Name {
        Event,
        SessionId,
        Kind,
        Data,
        Other,
    }

    /// An object key, only told apart from the few names the pass reads.
    struct KeyName;

    impl<'de> DeserializeSeed<'de> for KeyName {
        type Value = Name;

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Name, D::Error> {
            deserializer.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyName {
        type Value = Name;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an object key")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<Name, E> {
            Ok(match key {
                "event" => Name::Event,
                "session_id" => Name::SessionId,
                "type" => Name::Kind,
                "data" => Name::Data,
                _ => Name::Other,
            })
        }
    }

    /// The line's top-level object.
    struct LineSeed<'r, 'a> {
        read: &'r mut Read<'a>,
    }

    impl<'de> DeserializeSeed<'de> for LineSeed<'_, '_> {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for LineSeed<'_, '_> {
        type Value = ();

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a plugin line object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let read = self.read;
            let mut data_seen = false;
            while let Some(name) = map.next_key_seed(KeyName)? {
                match name {
                    Name::Event => {
                        let range = read.capture(&mut map)?;
                        set(&mut read.line.event, range, &mut read.line.repeated);
                    }
                    Name::SessionId => {
                        let range = read.capture(&mut map)?;
                        set(&mut read.line.session_id, range, &mut read.line.repeated);
                    }
                    Name::Data => {
                        if std::mem::replace(&mut data_seen, true) {
                            read.line.repeated = true;
                        }
                        map.next_value_seed(DataSeed { read: &mut *read })?;
                    }
                    Name::Kind | Name::Other => read.skip(&mut map)?,
                }
            }
            Ok(())
        }
    }

    /// The line's `data`: an object with `type` and the item in `data`.
    struct DataSeed<'r, 'a> {
        read: &'r mut Read<'a>,
    }

    impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for DataSeed<'_, '_> {
        type Value = ();

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a session message object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let read = self.read;
            read.line.data_object = true;
            while let Some(name) = map.next_key_seed(KeyName)? {
                match name {
                    Name::Kind => {
                        let range = read.capture(&mut map)?;
                        set(&mut read.line.kind, range, &mut read.line.repeated);
                    }
                    Name::Data => {
                        if std::mem::replace(&mut read.line.item, true) {
                            read.line.repeated = true;
                        }
                        read.item.clear();
                        map.next_value_seed(Node::new(read.item, &mut read.repeated, Some(&mut read.fields)))?;
                    }
                    Name::Event | Name::SessionId | Name::Other => read.skip(&mut map)?,
                }
            }
            Ok(())
        }
    }
}

/// Best-effort extraction of the `session_id` from the beginning of a line that is too long to be
/// parsed (used to fail only the session an oversized line belongs to).
pub fn peek_session_id(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&prefix[..prefix.len().min(4096)]);
    let start = text.find("\"session_id\"")? + "\"session_id\"".len();
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned()).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod plain_lines {
        use super::super::{plain_line, single_pass};
        use crate::json_text::Json;
        use proptest::prelude::*;

        /// Values a plugin writes, mostly plain (strings without escapes, short integers), sometimes
        /// not (fractions, `-0`, long integers, strings that need escapes).
        fn arb_json() -> impl Strategy<Value = Json> {
            let leaf = prop_oneof![
                4 => "[a-zA-Z0-9+/= é\u{1F600}]{0,24}".prop_map(Json::Str),
                2 => (-100_000i64..100_000).prop_map(|n| Json::Raw(n.to_string())),
                1 => prop::sample::select(&["null", "true", "false", "0", "-0", "1.5", "1e3", "123456789012345678", "1234567890123456789"][..])
                    .prop_map(|n| Json::Raw(n.into())),
                1 => "[a-z\"\\\\\n\t\\x01]{0,6}".prop_map(Json::Str),
            ];
            let key = prop_oneof![
                prop::sample::select(&["type", "message", "meta", "data", "event", "session_id", "k"][..]).prop_map(str::to_string),
                "[a-z]{1,3}",
            ];
            leaf.prop_recursive(4, 40, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                    prop::collection::vec((key.clone(), inner), 0..5).prop_map(Json::Object),
                ]
            })
        }

        /// A session line around an item: the usual keys in some order, sometimes another event or
        /// type, an extra or a repeated key, or an id that is not a string.
        fn arb_line() -> impl Strategy<Value = Json> {
            let event = prop_oneof![6 => Just(Json::Str("session".into())), 1 => Just(Json::Str("log".into())), 1 => arb_json()];
            let kind = prop_oneof![3 => Just(Json::Str("stream".into())), 2 => Just(Json::Str("end".into())), 1 => arb_json()];
            let id = prop_oneof![6 => "[a-f0-9-]{0,12}".prop_map(Json::Str), 1 => arb_json()];
            let extra = prop::collection::vec(("[a-z_]{1,10}", arb_json()), 0..2);
            (event, kind, id, arb_json(), extra, any::<u16>()).prop_map(|(event, kind, id, item, extra, order)| {
                let mut data = vec![("type".to_string(), kind), ("data".to_string(), item)];
                if order % 2 == 0 {
                    data.reverse();
                }
                let mut line = vec![("event".to_string(), event), ("session_id".to_string(), id), ("data".to_string(), Json::Object(data))];
                line.extend(extra);
                let n = line.len();
                line.rotate_left(usize::from(order) % n);
                Json::Object(line)
            })
        }

        /// Text the plain reader leaves to serde_json even in a valid line.
        fn unsure(text: &str) -> bool {
            text.contains('\\')
                || text.bytes().any(|b| b < 0x20)
                || [".5", "e3", "-0", "1234567890123456789"].iter().any(|u| text.contains(u))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Whenever the plain reader answers, it answers what the single pass answers; and it
            /// answers for every line the single pass reads that holds nothing it is unsure of and
            /// repeats no key.
            #[test]
            fn the_plain_reader_agrees_with_the_single_pass(line in arb_line(), spaced in any::<bool>()) {
                let text = line.render(spaced, false);
                let plain = plain_line::session_line(text.as_bytes());
                let single = single_pass::session_line(text.as_bytes());
                if plain.is_some() {
                    prop_assert_eq!(&plain, &single, "{}", text);
                }
                // Without escapes, a tree that dropped a repeated key has fewer quotes than the text.
                let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
                let repeats_a_key = text.matches('"').count() != serde_json::to_string(&tree).unwrap().matches('"').count();
                if single.is_some() && !unsure(&text) && !repeats_a_key {
                    prop_assert!(plain.is_some(), "the plain reader gave up on {}", text);
                }
            }
        }

        #[test]
        fn a_blob_chunk_line_is_read_plainly() {
            let blob = "QUJD".repeat(2731);
            let line = format!(
                r#"{{"event":"session","session_id":"s-1","data":{{"type":"stream","data":{{"type":"blob_chunk","message":{{"id":"x","sequence":3,"total_length":100,"blob":"{blob}","end":false}},"meta":{{"mime_type":"application/octet-stream"}}}}}}}}"#
            );
            let plain = plain_line::session_line(line.as_bytes());
            assert!(plain.is_some());
            assert_eq!(plain, single_pass::session_line(line.as_bytes()));
        }
    }

    #[test]
    fn request_line_matches_the_go_daemon_layout() {
        let payload = json!({"tool": "echo", "provider": "demo", "credentials": {}, "tool_parameters": {"text": "hi"}});
        let line =
            PluginInStream::request("s-1", &InvocationContext::default(), "user-1", "tool", "invoke_tool", payload.as_object().unwrap())
                .to_line();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"session_id\":\"s-1\",\"conversation_id\":null,\"message_id\":null,\"app_id\":null,\"endpoint_id\":null,\"context\":null,\"event\":\"request\",\"data\":{\"action\":\"invoke_tool\",\"credentials\":{},\"provider\":\"demo\",\"tool\":\"echo\",\"tool_parameters\":{\"text\":\"hi\"},\"type\":\"tool\",\"user_id\":\"user-1\"}}\n"
        );
    }

    #[test]
    fn request_lines_written_from_borrowed_values_are_the_same_bytes() {
        let invocation = InvocationContext {
            conversation_id: Some("c".into()),
            message_id: None,
            app_id: Some("a\"pp".into()),
            endpoint_id: None,
            context: Some(json!({"z": 1, "a": [true, null]})),
        };
        for payload in [
            json!({}),
            json!({"tool": "echo", "provider": "demo", "credentials": {}, "tool_parameters": {"text": "hi é\u{1F600}"}}),
            json!({"user_id": "spoofed", "type": "x", "action": "y", "b": 1.5, "a": [1, {"k": "v"}], "user": "u"}),
        ] {
            let payload = payload.as_object().unwrap();
            assert_eq!(
                PluginInStream::request_line("s-1", &invocation, "user-1", "tool", "invoke_tool", payload),
                PluginInStream::request("s-1", &invocation, "user-1", "tool", "invoke_tool", payload).to_line()
            );
        }
    }

    #[test]
    fn backwards_response_lines() {
        let line = PluginInStream::backwards_response("s", &InvocationContext::default(), &BackwardsReply::end("abc"));
        let text = String::from_utf8(line.to_line()).unwrap();
        assert!(text.ends_with("\"event\":\"backwards_response\",\"data\":{\"backwards_request_id\":\"abc\",\"event\":\"end\",\"message\":\"\",\"data\":null}}\n"), "{text}");
        let reply = BackwardsReply::structure("abc", json!({"data": "ok"}));
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"backwards_request_id":"abc","event":"response","message":"struct","data":{"data":"ok"}}"#
        );
    }

    #[test]
    fn parses_every_plugin_event() {
        assert_eq!(parse_plugin_line(b"").unwrap(), None);
        assert_eq!(parse_plugin_line(b"   \r").unwrap(), None);
        assert_eq!(parse_plugin_line(br#"{"version":"0.0.1","type":"plugin"}"#).unwrap(), None);
        assert_eq!(parse_plugin_line(br#"{"event":"heartbeat","session_id":null,"data":{}}"#).unwrap(), Some(PluginEvent::Heartbeat));
        let log = parse_plugin_line(br#"{"event": "log", "data": {"level": "INFO", "message": "hi", "timestamp": 1.5}}"#).unwrap();
        assert_eq!(log, Some(PluginEvent::Log(PluginLog { level: "INFO".into(), message: "hi".into(), timestamp: 1.5 })));
        let err = parse_plugin_line(br#"{"event":"error","session_id":null,"data":{"error":"bad"}}"#).unwrap();
        assert_eq!(err, Some(PluginEvent::Error("bad".into())));
        let stream = parse_plugin_line(br#"{"event":"session","session_id":"s","data":{"type":"stream","data":{"result":true}}}"#).unwrap();
        assert_eq!(
            stream,
            Some(PluginEvent::Session {
                session_id: "s".into(),
                message: SessionMessage::Stream(RawChunk::from_value(&json!({"result": true})))
            })
        );
        let invoke = parse_plugin_line(br#"{"event":"session","session_id":"s","data":{"type":"invoke","data":{"type":"storage","backwards_request_id":"b1","request":{"opt":"get","key":"k"}}}}"#).unwrap();
        match invoke {
            Some(PluginEvent::Session { message: SessionMessage::Invoke(Ok(req)), .. }) => {
                assert_eq!(req.invoke_type, "storage");
                assert_eq!(req.backwards_request_id, "b1");
                assert_eq!(req.request["opt"], "get");
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad_invoke =
            parse_plugin_line(br#"{"event":"session","session_id":"s","data":{"type":"invoke","data":{"type":"storage"}}}"#).unwrap();
        assert!(matches!(bad_invoke, Some(PluginEvent::Session { message: SessionMessage::Invoke(Err(_)), .. })));
        let error = parse_plugin_line(br#"{"event":"session","session_id":"s","data":{"type":"error","data":{"error_type":"ValueError","message":"boom","args":{"z":1,"a":2}}}}"#).unwrap();
        match error {
            Some(PluginEvent::Session { message: SessionMessage::Error(e), .. }) => {
                assert_eq!(e.to_sorted_json(), r#"{"args":{"a":2,"z":1},"error_type":"ValueError","message":"boom"}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse_plugin_line(br#"{"event":"session","session_id":"s","data":{"type":"end"}}"#), Err(LineError::MissingSessionData));
        assert_eq!(parse_plugin_line(br#"{"event":"session","data":{"type":"end","data":{}}}"#), Err(LineError::MissingSessionId));
        assert!(matches!(parse_plugin_line(b"not json"), Err(LineError::NotJson(_))));
    }

    /// What the line gives when parsed into a tree the old way (the reference for the single pass).
    fn through_tree(line: &str) -> Option<(String, Value)> {
        let value: Value = serde_json::from_str(line).ok()?;
        Some((value["session_id"].as_str()?.to_owned(), value["data"]["data"].clone()))
    }

    #[test]
    fn stream_lines_are_read_in_one_pass_like_the_tree() {
        for line in [
            r#"{"event": "session", "session_id": "s", "data": {"type": "stream", "data": {"type": "text", "message": {"text": "caf\u00e9 \/"}, "meta": null}}}"#,
            r#"{"data": {"data": [1, 2.0, -0, 1e2], "type": "stream", "extra": {"x": [1]}}, "session_id": "s\u002d1", "event": "session", "more": null}"#,
            r#"{"event":"session","session_id":"s","data":{"type":"stream","data":{"a":1,"a":2,"b":{"c":1,"c":2}}}}"#,
            r#"{"event":"session","session_id":"s","data":{"type":"stream","data":"x"},"data":{"type":"stream","data":"y"}}"#,
            r#"{"event":"session","session_id":"s","data":{"type":"stream","data":"x","type":"end"}}"#,
            r#"{"event":"session","session_id":"s","data":{"type":"stream","data":null}}"#,
        ] {
            let (session_id, item) = through_tree(line).unwrap();
            match parse_plugin_line(line.as_bytes()).unwrap() {
                Some(PluginEvent::Session { session_id: id, message: SessionMessage::Stream(chunk) }) => {
                    assert_eq!(id, session_id, "{line}");
                    assert_eq!(chunk.as_bytes(), serde_json::to_vec(&item).unwrap(), "{line}");
                    assert_eq!(chunk, RawChunk::from_value(&item), "{line}");
                }
                Some(PluginEvent::Session { message: SessionMessage::End(end), .. }) => assert_eq!(end, item, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_nesting_limit_counts_from_the_line() {
        // serde_json refuses more than 128 nested arrays/objects; the line and its `data` take two.
        for depth in 120..132 {
            let item = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            for line in [
                format!(r#"{{"event":"session","session_id":"s","data":{{"type":"stream","data":{item}}}}}"#),
                format!(r#"{{"event":"session","session_id":"s","other":{item},"data":{{"type":"stream","data":1}}}}"#),
                format!(r#"{{"event":"session","session_id":"s","data":{{"type":"stream","x":{item},"data":1}}}}"#),
            ] {
                let tree = serde_json::from_str::<Value>(&line).map(|_| ()).map_err(|e| e.to_string());
                let read = parse_plugin_line(line.as_bytes()).map(|_| ()).map_err(|e| match e {
                    LineError::NotJson(message) => message,
                    other => other.to_string(),
                });
                assert_eq!(read, tree, "depth {depth}");
            }
        }
    }

    #[test]
    fn peeks_session_ids_of_truncated_lines() {
        assert_eq!(
            peek_session_id(br#"{"event":"session","session_id":"abc-1","data":{"type":"stream","data":{"te"#),
            Some("abc-1".into())
        );
        assert_eq!(peek_session_id(br#"{"event": "session", "session_id" : "x", "#), Some("x".into()));
        assert_eq!(peek_session_id(br#"{"event":"heartbeat"}"#), None);
    }
}
