//! The body of an invocation request, `{user_id, conversation_id, message_id, app_id, endpoint_id,
//! context, data}` (docs/http.md §4.6), read in one pass with the route fields (`data`) kept as
//! canonical compact JSON ([`RawPayload`]) instead of a `Value` tree: they go into the plugin's
//! request line as they are, without a tree being built and serialised again.
//!
//! Owns: that reading, the [`Payload`] of an invocation (a tree or raw fields) and the field access
//! route validation and completion use on it ([`crate::access::RouteFields`]). [`InvokeBody::parse`]
//! answers only when its result is exactly what reading the body into a `Value` gives (same
//! parser, same nesting limit, same number handling); an object that repeats a key inside a field,
//! a body that is not an object or has no object `data` answer `None`, and the caller reads the tree.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::access::{FieldValue, RouteFields};
use crate::compact::Node;

/// The route fields of one invocation, flattened into its request line's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Tree(Map<String, Value>),
    Raw(RawPayload),
}

impl From<Map<String, Value>> for Payload {
    fn from(map: Map<String, Value>) -> Self {
        Payload::Tree(map)
    }
}

/// An object's fields, each as its key and its value's canonical compact text (the bytes serde_json
/// writes for the value's `Value`); keys are unique, a repeated key kept its last value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawPayload {
    /// Every key's text, one after the other.
    keys: String,
    /// Every value's canonical compact text, one after the other.
    values: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
}

impl RawPayload {
    /// The fields, in the order their keys first appeared.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|entry| (&self.keys[entry.key.clone()], &self.values[entry.value.clone()]))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|entry| &self.keys[entry.key.clone()] == key)
    }

    /// The canonical compact text of `key`'s value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.position(key).map(|i| &self.values[self.entries[i].value.clone()])
    }

    /// Sets `key` to the value whose canonical compact text is `value`.
    fn set(&mut self, key: &str, value: &[u8]) {
        let start = self.values.len();
        self.values.extend_from_slice(value);
        let value = start..self.values.len();
        match self.position(key) {
            Some(i) => self.entries[i].value = value,
            None => {
                let start = self.keys.len();
                self.keys.push_str(key);
                self.entries.push(Entry { key: start..self.keys.len(), value });
            }
        }
    }
}

/// What the canonical compact text `text` of a value is, for validation.
fn classify(text: &[u8]) -> FieldValue<'_> {
    match text.first() {
        Some(b'n') => FieldValue::Null,
        Some(b'"') => {
            let inner = &text[1..text.len().saturating_sub(1)];
            if !inner.contains(&b'\\') {
                // Canonical text of a string without escapes: the string between quotes.
                return match std::str::from_utf8(inner) {
                    Ok(text) => FieldValue::Str(Cow::Borrowed(text)),
                    Err(_) => FieldValue::Other,
                };
            }
            match serde_json::from_slice::<String>(text) {
                Ok(text) => FieldValue::Str(Cow::Owned(text)),
                Err(_) => FieldValue::Other,
            }
        }
        Some(b'{') => FieldValue::Object { empty: text == b"{}" },
        _ => FieldValue::Other,
    }
}

impl RouteFields for RawPayload {
    fn field(&self, key: &str) -> FieldValue<'_> {
        match self.get(key) {
            Some(text) => classify(text),
            None => FieldValue::Missing,
        }
    }

    fn remove_field(&mut self, key: &str) {
        if let Some(i) = self.position(key) {
            self.entries.remove(i);
        }
    }

    fn null_if_missing(&mut self, key: &'static str) {
        if self.position(key).is_none() {
            self.set(key, b"null");
        }
    }

    fn empty_object_if_null(&mut self, key: &'static str) {
        if matches!(self.field(key), FieldValue::Missing | FieldValue::Null) {
            self.set(key, b"{}");
        }
    }
}

impl RouteFields for Payload {
    fn field(&self, key: &str) -> FieldValue<'_> {
        match self {
            Payload::Tree(map) => map.field(key),
            Payload::Raw(raw) => raw.field(key),
        }
    }

    fn remove_field(&mut self, key: &str) {
        match self {
            Payload::Tree(map) => map.remove_field(key),
            Payload::Raw(raw) => raw.remove_field(key),
        }
    }

    fn null_if_missing(&mut self, key: &'static str) {
        match self {
            Payload::Tree(map) => map.null_if_missing(key),
            Payload::Raw(raw) => raw.null_if_missing(key),
        }
    }

    fn empty_object_if_null(&mut self, key: &'static str) {
        match self {
            Payload::Tree(map) => map.empty_object_if_null(key),
            Payload::Raw(raw) => raw.empty_object_if_null(key),
        }
    }
}

/// An invocation request body: the caller's texts (`Some` only for a string), its `context` (absent
/// when `null`) and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeBody {
    pub user_id: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub context: Option<Value>,
    pub data: Payload,
}

impl InvokeBody {
    /// Reads `body` in one pass, `data` as raw fields; `None` when only the tree gives the right
    /// answer (see the module documentation).
    pub fn parse(body: &[u8]) -> Option<InvokeBody> {
        let mut read = Read::default();
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let seed = BodySeed { read: &mut read };
        seed.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        let data = read.data?;
        Some(InvokeBody {
            user_id: read.user_id,
            conversation_id: read.conversation_id,
            message_id: read.message_id,
            app_id: read.app_id,
            endpoint_id: read.endpoint_id,
            context: read.context.filter(|c| !c.is_null()),
            data: Payload::Raw(data),
        })
    }

    /// The same from a body already read into a tree (any JSON; `None` without an object `data`).
    pub fn from_tree(body: Value) -> Option<InvokeBody> {
        let Value::Object(mut request) = body else { return None };
        let Some(Value::Object(data)) = request.remove("data") else { return None };
        let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(InvokeBody {
            user_id: text("user_id"),
            conversation_id: text("conversation_id"),
            message_id: text("message_id"),
            app_id: text("app_id"),
            endpoint_id: text("endpoint_id"),
            context: request.get("context").filter(|c| !c.is_null()).cloned(),
            data: Payload::Tree(data),
        })
    }
}

#[derive(Default)]
struct Read {
    user_id: Option<String>,
    conversation_id: Option<String>,
    message_id: Option<String>,
    app_id: Option<String>,
    endpoint_id: Option<String>,
    context: Option<Value>,
    data: Option<RawPayload>,
}

struct BodySeed<'a> {
    read: &'a mut Read,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // `deserialize_any` as a `Value` is read, so the nesting limit counts the same levels.
        deserializer.deserialize_any(self)
    }
}

/// A top-level key of the body.
enum TopKey {
    UserId,
    ConversationId,
    MessageId,
    AppId,
    EndpointId,
    Context,
    Data,
    Other,
}

struct TopKeySeed;

impl<'de> DeserializeSeed<'de> for TopKeySeed {
    type Value = TopKey;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<TopKey, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TopKeySeed {
    type Value = TopKey;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<TopKey, E> {
        Ok(match key {
            "user_id" => TopKey::UserId,
            "conversation_id" => TopKey::ConversationId,
            "message_id" => TopKey::MessageId,
            "app_id" => TopKey::AppId,
            "endpoint_id" => TopKey::EndpointId,
            "context" => TopKey::Context,
            "data" => TopKey::Data,
            _ => TopKey::Other,
        })
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an invocation request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let read = self.read;
        // A repeated key keeps its last value, as in a tree.
        while let Some(key) = map.next_key_seed(TopKeySeed)? {
            let text = |value: Value| match value {
                Value::String(text) => Some(text),
                _ => None,
            };
            match key {
                TopKey::UserId => read.user_id = text(map.next_value()?),
                TopKey::ConversationId => read.conversation_id = text(map.next_value()?),
                TopKey::MessageId => read.message_id = text(map.next_value()?),
                TopKey::AppId => read.app_id = text(map.next_value()?),
                TopKey::EndpointId => read.endpoint_id = text(map.next_value()?),
                TopKey::Context => read.context = Some(map.next_value()?),
                TopKey::Data => {
                    let mut data = RawPayload::default();
                    map.next_value_seed(DataSeed { data: &mut data })?;
                    read.data = Some(data);
                }
                TopKey::Other => {
                    // Read as a tree would read it (numbers converted, nesting counted), then dropped.
                    let _: Value = map.next_value()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads an object `data` into a [`RawPayload`]; any other value is an error (the tree then answers).
struct DataSeed<'a> {
    data: &'a mut RawPayload,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let data = self.data;
        let mut repeated = false;
        loop {
            let key_start = data.keys.len();
            if map.next_key_seed(DataKey { keys: &mut data.keys })?.is_none() {
                return Ok(());
            }
            let key = key_start..data.keys.len();
            let start = data.values.len();
            // An object repeating a key inside the value fails here (only the tree gives its bytes).
            map.next_value_seed(Node::new(&mut data.values, &mut repeated, None))?;
            let value = start..data.values.len();
            // A repeated field keeps its last value (and its first position), as in a tree.
            match data.entries.iter().position(|e| data.keys[e.key.clone()] == data.keys[key.clone()]) {
                Some(i) => {
                    data.keys.truncate(key_start);
                    data.entries[i].value = value;
                }
                None => data.entries.push(Entry { key, value }),
            }
        }
    }
}

/// Appends a `data` key to the key text.
struct DataKey<'a> {
    keys: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for DataKey<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for DataKey<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.keys.push_str(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::find_dispatch_route;
    use crate::json_text::Json;
    use crate::message::{InvocationContext, PluginInStream};
    use proptest::prelude::*;

    /// The path this module replaces: the body read into a tree.
    fn through_tree(body: &[u8]) -> Option<InvokeBody> {
        InvokeBody::from_tree(serde_json::from_slice(body).unwrap_or(Value::Null))
    }

    /// Validation, completion and the request line of a body: what the daemon derives from it.
    fn derived(mut body: InvokeBody, path: &str) -> (Result<(), String>, Vec<u8>, InvokeBody) {
        let route = find_dispatch_route(path).unwrap();
        let valid = route.validate(&body.data);
        route.complete_payload(&mut body.data);
        let invocation = InvocationContext {
            conversation_id: body.conversation_id.clone(),
            message_id: body.message_id.clone(),
            app_id: body.app_id.clone(),
            endpoint_id: body.endpoint_id.clone(),
            context: body.context.clone(),
        };
        let user = body.user_id.clone().unwrap_or_default();
        let line = PluginInStream::payload_request_line("s-1", &invocation, &user, route.access_type.as_str(), route.action, &body.data);
        (valid, line, body)
    }

    fn assert_same(body: &[u8]) -> bool {
        let Some(raw) = InvokeBody::parse(body) else { return false };
        let tree = through_tree(body).unwrap_or_else(|| panic!("the tree has no data: {}", String::from_utf8_lossy(body)));
        for path in [
            "/tool/invoke",
            "/llm/invoke",
            "/model/schema",
            "/agent_strategy/invoke",
            "/oauth/get_authorization_url",
            "/model/polling/check",
            "/model/polling/start",
            "/trigger/dispatch_event",
            "/rerank/invoke",
        ] {
            assert!(find_dispatch_route(path).is_some(), "{path}");
            let (raw_valid, raw_line, _) = derived(raw.clone(), path);
            let (tree_valid, tree_line, _) = derived(tree.clone(), path);
            assert_eq!(raw_valid, tree_valid, "{path}: {}", String::from_utf8_lossy(body));
            assert_eq!(
                String::from_utf8(raw_line).unwrap(),
                String::from_utf8(tree_line).unwrap(),
                "{path}: {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!((&raw.user_id, &raw.conversation_id, &raw.message_id), (&tree.user_id, &tree.conversation_id, &tree.message_id));
        assert_eq!((&raw.app_id, &raw.endpoint_id, &raw.context), (&tree.app_id, &tree.endpoint_id, &tree.context));
        true
    }

    #[test]
    fn a_usual_body_is_read_raw_with_the_tree_answers() {
        let body = br#"{"user_id": "u-1", "conversation_id": null, "app_id": null, "message_id": null,
            "data": {"provider": "p", "tool": "t", "credentials": {}, "credential_type": "api-key",
                     "tool_parameters": {"mode": "echo", "text": "h\u00e9llo \/ 1.0", "n": 1.0, "e": 1e2}}}"#;
        assert!(assert_same(body));
        let parsed = InvokeBody::parse(body).unwrap();
        assert_eq!(parsed.user_id.as_deref(), Some("u-1"));
        let Payload::Raw(raw) = &parsed.data else { panic!("not raw") };
        assert_eq!(raw.get("tool_parameters"), Some(r#"{"mode":"echo","text":"héllo / 1.0","n":1.0,"e":100.0}"#.as_bytes()));
        // Repeated keys: the last value wins, at the top and among the fields.
        let body = br#"{"user_id": 1, "data": {"provider": "a", "tool": "t", "provider": "b"}, "user_id": "u", "context": {"k": 1}}"#;
        assert!(assert_same(body));
        let parsed = InvokeBody::parse(body).unwrap();
        assert_eq!((parsed.user_id.as_deref(), parsed.context), (Some("u"), Some(serde_json::json!({"k": 1}))));
        // Only the tree answers these.
        for body in [
            &br#"{"data": {"x": {"a": 1, "a": 2}}}"#[..],
            br#"{"data": [1]}"#,
            br#"{"user_id": "u"}"#,
            br#"[{"data": {}}]"#,
            br#"{"data": {}} x"#,
            br#"{"data": {}, "other": 1e400}"#,
            br#"{"data": {"x": 1e400}}"#,
            b"",
        ] {
            assert!(InvokeBody::parse(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
        assert!(through_tree(br#"{"data": {"x": {"a": 1, "a": 2}}}"#).is_some());
    }

    #[test]
    fn the_nesting_limit_counts_from_the_body() {
        // A tree refuses 128 levels counted from the body's own object; so must the raw reading.
        for depth in [125, 126, 127, 128] {
            let body = format!(r#"{{"data": {{"x": {}1{}}}}}"#, "[".repeat(depth), "]".repeat(depth));
            let tree = through_tree(body.as_bytes()).is_some();
            assert_eq!(InvokeBody::parse(body.as_bytes()).is_some(), tree, "depth {depth}");
            if tree {
                assert!(assert_same(body.as_bytes()));
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            prop_oneof![
                Just("null"),
                Just("true"),
                Just("false"),
                Just("1.0"),
                Just("-0"),
                Just("1E+2"),
                Just("0.1e-6"),
                Just("18446744073709551615"),
                Just("-12")
            ]
            .prop_map(|n| Json::Raw(n.into())),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Json::Raw(format!("{f:e}"))),
            any::<String>().prop_map(Json::Str),
            "[a-z/\"\\\\ é\u{1F600}\n\t]{0,8}".prop_map(Json::Str),
            prop::sample::select(&["", "llm", "rerank", "api-key", "x"][..]).prop_map(|s| Json::Str(s.into())),
            Just(Json::Object(Vec::new())),
        ];
        let key = prop_oneof![
            prop::sample::select(
                &[
                    "provider",
                    "tool",
                    "model",
                    "model_type",
                    "credentials",
                    "credential_type",
                    "plugin_state",
                    "tools",
                    "stop",
                    "user_id",
                    "type",
                    "action"
                ][..]
            )
            .prop_map(str::to_string),
            "[a-zé/\"]{0,5}",
        ];
        leaf.prop_recursive(3, 32, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::vec((key.clone(), inner), 0..6).prop_map(Json::Object),
            ]
        })
    }

    fn arb_body() -> impl Strategy<Value = Json> {
        let top_key =
            prop::sample::select(&["user_id", "conversation_id", "message_id", "app_id", "endpoint_id", "context", "data", "other"][..]);
        let data = arb_json().prop_map(|json| match json {
            Json::Object(entries) => Json::Object(entries),
            other => Json::Object(vec![("provider".into(), other)]),
        });
        (prop::collection::vec((top_key, arb_json()), 0..5), data, any::<u8>()).prop_map(|(top, data, at)| {
            let mut entries: Vec<(String, Json)> = top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let at = at as usize % (entries.len() + 1);
            entries.insert(at, ("data".into(), data));
            Json::Object(entries)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whenever the raw reading answers, everything derived from it is what the tree gives.
        #[test]
        fn raw_bodies_give_the_tree_answers(body in arb_body(), spaced in any::<bool>(), ascii in any::<bool>()) {
            assert_same(body.render(spaced, ascii).as_bytes());
        }
    }
}
