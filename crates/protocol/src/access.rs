//! The access type / action catalogue of docs/protocol.md §6 and the one table that maps every
//! dispatch route (docs/http.md §4.6) to its type, action, required request fields and the way its
//! response chunks are treated.
//!
//! The daemon serves all dispatch routes through this table: adding a route is adding a row, never a
//! handler. This module holds data only; it does no I/O and knows nothing about HTTP servers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What kind of plugin feature an invocation addresses (`data.type` of a request line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessType {
    Tool,
    Model,
    Endpoint,
    AgentStrategy,
    Oauth,
    DynamicParameter,
    Datasource,
    Trigger,
}

impl AccessType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Model => "model",
            Self::Endpoint => "endpoint",
            Self::AgentStrategy => "agent_strategy",
            Self::Oauth => "oauth",
            Self::DynamicParameter => "dynamic_parameter",
            Self::Datasource => "datasource",
            Self::Trigger => "trigger",
        }
    }
}

impl std::fmt::Display for AccessType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every `(type, action)` pair the daemon may send to a plugin (docs/protocol.md §6).
pub const ACCESS_ACTIONS: &[(AccessType, &str)] = &[
    (AccessType::Tool, "invoke_tool"),
    (AccessType::Tool, "validate_tool_credentials"),
    (AccessType::Tool, "get_tool_runtime_parameters"),
    (AccessType::Model, "invoke_llm"),
    (AccessType::Model, "get_llm_num_tokens"),
    (AccessType::Model, "invoke_text_embedding"),
    (AccessType::Model, "invoke_multimodal_embedding"),
    (AccessType::Model, "get_text_embedding_num_tokens"),
    (AccessType::Model, "invoke_rerank"),
    (AccessType::Model, "invoke_multimodal_rerank"),
    (AccessType::Model, "invoke_tts"),
    (AccessType::Model, "get_tts_model_voices"),
    (AccessType::Model, "invoke_speech2text"),
    (AccessType::Model, "invoke_moderation"),
    (AccessType::Model, "validate_provider_credentials"),
    (AccessType::Model, "validate_model_credentials"),
    (AccessType::Model, "get_ai_model_schemas"),
    (AccessType::Model, "start_polling"),
    (AccessType::Model, "check_polling"),
    (AccessType::Endpoint, "invoke_endpoint"),
    (AccessType::AgentStrategy, "invoke_agent_strategy"),
    (AccessType::Oauth, "get_authorization_url"),
    (AccessType::Oauth, "get_credentials"),
    (AccessType::Oauth, "refresh_credentials"),
    (AccessType::DynamicParameter, "fetch_parameter_options"),
    (AccessType::Datasource, "validate_datasource_credentials"),
    (AccessType::Datasource, "invoke_website_datasource_get_crawl"),
    (AccessType::Datasource, "invoke_online_document_datasource_get_pages"),
    (AccessType::Datasource, "invoke_online_document_datasource_get_page_content"),
    (AccessType::Datasource, "invoke_online_drive_browse_files"),
    (AccessType::Datasource, "invoke_online_drive_download_file"),
    (AccessType::Trigger, "invoke_trigger_event"),
    (AccessType::Trigger, "validate_trigger_credentials"),
    (AccessType::Trigger, "dispatch_trigger_event"),
    (AccessType::Trigger, "subscribe_trigger"),
    (AccessType::Trigger, "unsubscribe_trigger"),
    (AccessType::Trigger, "refresh_trigger"),
];

/// Model types the `model_type` validator accepts (docs/http.md §4.6).
pub const MODEL_TYPES: &[&str] =
    &["llm", "text-embedding", "rerank", "speech2text", "moderation", "tts", "text2img", "multimodal-embedding", "multimodal-rerank"];

/// Tool/agent chunk `type` values the daemon accepts (docs/http.md §6.3).
pub const TOOL_MESSAGE_TYPES: &[&str] =
    &["text", "file", "blob", "blob_chunk", "json", "link", "image", "image_link", "binary_link", "variable", "log", "retriever_resources"];

/// How `data.model_type` is checked for a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelTypeRule {
    /// The route has no `model_type`.
    None,
    /// Must be one of [`MODEL_TYPES`].
    Valid,
    /// Must equal this value.
    Exactly(&'static str),
    /// Any non-empty string.
    NonEmpty,
}

/// What the daemon does with each plugin stream item of a route before it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkHandling {
    /// Forward the item as it is (map-typed results).
    PassThrough,
    /// A ToolInvokeMessage: `type` must be a known kind; `blob_chunk`s are forwarded.
    ToolMessage,
    /// An AgentInvokeMessage: like [`ChunkHandling::ToolMessage`] but `blob_chunk`s are merged into one `blob`.
    AgentMessage,
}

/// How the route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Server-sent events, one envelope per chunk (docs/http.md §3).
    EventStream,
    /// One JSON envelope carrying the single result (model polling routes).
    SingleJson,
}

/// One dispatch route: `POST /plugin/{tenant}/dispatch{path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchRoute {
    pub path: &'static str,
    pub access_type: AccessType,
    pub action: &'static str,
    /// `data` fields that must be present, non-null and (for strings) non-empty.
    pub required: &'static [&'static str],
    pub model_type: ModelTypeRule,
    pub chunks: ChunkHandling,
    pub response: ResponseMode,
}

const fn route(
    path: &'static str,
    access_type: AccessType,
    action: &'static str,
    required: &'static [&'static str],
    model_type: ModelTypeRule,
    chunks: ChunkHandling,
) -> DispatchRoute {
    DispatchRoute { path, access_type, action, required, model_type, chunks, response: ResponseMode::EventStream }
}

use AccessType as T;
use ChunkHandling as C;
use ModelTypeRule as M;

/// Every dispatch route of docs/http.md §4.6.
pub const DISPATCH_ROUTES: &[DispatchRoute] = &[
    route("/tool/invoke", T::Tool, "invoke_tool", &["provider", "tool"], M::None, C::ToolMessage),
    route("/tool/validate_credentials", T::Tool, "validate_tool_credentials", &["provider"], M::None, C::PassThrough),
    route("/tool/get_runtime_parameters", T::Tool, "get_tool_runtime_parameters", &["provider", "tool"], M::None, C::PassThrough),
    route(
        "/agent_strategy/invoke",
        T::AgentStrategy,
        "invoke_agent_strategy",
        &["agent_strategy_provider", "agent_strategy"],
        M::None,
        C::AgentMessage,
    ),
    route("/llm/invoke", T::Model, "invoke_llm", &["provider", "model", "model_type"], M::Exactly("llm"), C::PassThrough),
    route("/llm/num_tokens", T::Model, "get_llm_num_tokens", &["provider", "model", "model_type"], M::Exactly("llm"), C::PassThrough),
    route(
        "/text_embedding/invoke",
        T::Model,
        "invoke_text_embedding",
        &["provider", "model", "model_type", "texts", "input_type"],
        M::Exactly("text-embedding"),
        C::PassThrough,
    ),
    route(
        "/multimodal_embedding/invoke",
        T::Model,
        "invoke_multimodal_embedding",
        &["provider", "model", "model_type", "documents", "input_type"],
        M::NonEmpty,
        C::PassThrough,
    ),
    route(
        "/text_embedding/num_tokens",
        T::Model,
        "get_text_embedding_num_tokens",
        &["provider", "model", "model_type", "texts"],
        M::Exactly("text-embedding"),
        C::PassThrough,
    ),
    route(
        "/rerank/invoke",
        T::Model,
        "invoke_rerank",
        &["provider", "model", "model_type", "query", "docs"],
        M::Exactly("rerank"),
        C::PassThrough,
    ),
    route(
        "/multimodal_rerank/invoke",
        T::Model,
        "invoke_multimodal_rerank",
        &["provider", "model", "model_type", "query", "docs"],
        M::NonEmpty,
        C::PassThrough,
    ),
    route(
        "/tts/invoke",
        T::Model,
        "invoke_tts",
        &["provider", "model", "model_type", "content_text", "voice", "tenant_id"],
        M::Exactly("tts"),
        C::PassThrough,
    ),
    route("/tts/model/voices", T::Model, "get_tts_model_voices", &["provider", "model", "model_type"], M::Exactly("tts"), C::PassThrough),
    route(
        "/speech2text/invoke",
        T::Model,
        "invoke_speech2text",
        &["provider", "model", "model_type", "file"],
        M::Exactly("speech2text"),
        C::PassThrough,
    ),
    route(
        "/moderation/invoke",
        T::Model,
        "invoke_moderation",
        &["provider", "model", "model_type", "text"],
        M::Exactly("moderation"),
        C::PassThrough,
    ),
    route("/model/validate_provider_credentials", T::Model, "validate_provider_credentials", &["provider"], M::None, C::PassThrough),
    route(
        "/model/validate_model_credentials",
        T::Model,
        "validate_model_credentials",
        &["provider", "model", "model_type"],
        M::Valid,
        C::PassThrough,
    ),
    route("/model/schema", T::Model, "get_ai_model_schemas", &["provider", "model", "model_type"], M::Valid, C::PassThrough),
    DispatchRoute {
        response: ResponseMode::SingleJson,
        ..route("/model/polling/start", T::Model, "start_polling", &["provider", "model", "model_type"], M::Exactly("llm"), C::PassThrough)
    },
    DispatchRoute {
        response: ResponseMode::SingleJson,
        ..route(
            "/model/polling/check",
            T::Model,
            "check_polling",
            &["provider", "model", "model_type", "plugin_state"],
            M::Exactly("llm"),
            C::PassThrough,
        )
    },
    route("/oauth/get_authorization_url", T::Oauth, "get_authorization_url", &["provider", "redirect_uri"], M::None, C::PassThrough),
    route(
        "/oauth/get_credentials",
        T::Oauth,
        "get_credentials",
        &["provider", "redirect_uri", "raw_http_request"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/oauth/refresh_credentials",
        T::Oauth,
        "refresh_credentials",
        &["provider", "redirect_uri", "credentials"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/dynamic_select/fetch_parameter_options",
        T::DynamicParameter,
        "fetch_parameter_options",
        &["credentials", "provider", "provider_action", "parameter"],
        M::None,
        C::PassThrough,
    ),
    route("/datasource/validate_credentials", T::Datasource, "validate_datasource_credentials", &["provider"], M::None, C::PassThrough),
    route(
        "/datasource/get_website_crawl",
        T::Datasource,
        "invoke_website_datasource_get_crawl",
        &["provider", "datasource", "datasource_parameters"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/datasource/get_online_document_pages",
        T::Datasource,
        "invoke_online_document_datasource_get_pages",
        &["provider", "datasource", "datasource_parameters"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/datasource/get_online_document_page_content",
        T::Datasource,
        "invoke_online_document_datasource_get_page_content",
        &["provider", "datasource", "page"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/datasource/online_drive_browse_files",
        T::Datasource,
        "invoke_online_drive_browse_files",
        &["provider", "datasource", "request"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/datasource/online_drive_download_file",
        T::Datasource,
        "invoke_online_drive_download_file",
        &["provider", "datasource", "request"],
        M::None,
        C::PassThrough,
    ),
    route(
        "/trigger/invoke_event",
        T::Trigger,
        "invoke_trigger_event",
        &["provider", "event", "raw_http_request", "subscription"],
        M::None,
        C::PassThrough,
    ),
    route("/trigger/validate_credentials", T::Trigger, "validate_trigger_credentials", &["provider"], M::None, C::PassThrough),
    route(
        "/trigger/dispatch_event",
        T::Trigger,
        "dispatch_trigger_event",
        &["provider", "subscription", "raw_http_request"],
        M::None,
        C::PassThrough,
    ),
    route("/trigger/subscribe", T::Trigger, "subscribe_trigger", &["provider", "endpoint"], M::None, C::PassThrough),
    route("/trigger/unsubscribe", T::Trigger, "unsubscribe_trigger", &["provider", "subscription"], M::None, C::PassThrough),
    route("/trigger/refresh", T::Trigger, "refresh_trigger", &["provider", "subscription"], M::None, C::PassThrough),
];

/// The route serving `path` (the part after `/dispatch`, with a leading `/`).
pub fn find_dispatch_route(path: &str) -> Option<&'static DispatchRoute> {
    let normalized = path.trim_end_matches('/');
    DISPATCH_ROUTES.iter().find(|route| route.path == normalized)
}

/// Keys the SDK's request models require even though their value may be `null`; the Go daemon always
/// serialises them, so a request must carry them (docs/protocol.md §8.4).
fn nullable_required_keys(action: &str) -> &'static [&'static str] {
    match action {
        "invoke_llm" | "start_polling" => &["stop", "tools"],
        "get_llm_num_tokens" => &["tools"],
        "invoke_rerank" | "invoke_multimodal_rerank" => &["score_threshold", "top_n"],
        "get_tts_model_voices" => &["language"],
        "dispatch_trigger_event" => &["credentials", "credential_type"],
        _ => &[],
    }
}

/// Object-valued keys the SDK requires; a missing one is sent as `{}`.
fn object_keys(access_type: AccessType, action: &str) -> &'static [&'static str] {
    match (access_type, action) {
        (AccessType::Tool, "invoke_tool") => &["credentials", "tool_parameters"],
        (AccessType::Tool, _) => &["credentials"],
        (AccessType::AgentStrategy, _) => &["agent_strategy_params"],
        (AccessType::Model, "invoke_llm" | "start_polling") => &["credentials", "model_parameters"],
        (AccessType::Model, _) => &["credentials"],
        _ => &[],
    }
}

/// One field of a request's `data` as validation and completion see it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Missing,
    Null,
    Str(std::borrow::Cow<'a, str>),
    Object {
        empty: bool,
    },
    /// A number, a boolean or an array.
    Other,
}

/// A request's `data` (a `Value` map, or the raw fields of [`crate::invoke::RawPayload`]) as route
/// validation and completion read and change it.
pub trait RouteFields {
    /// The value of `key`.
    fn field(&self, key: &str) -> FieldValue<'_>;
    fn remove_field(&mut self, key: &str);
    /// Adds `key` as `null` unless it is present.
    fn null_if_missing(&mut self, key: &'static str);
    /// Sets `key` to `{}` when it is missing or `null`.
    fn empty_object_if_null(&mut self, key: &'static str);
}

impl RouteFields for Map<String, Value> {
    fn field(&self, key: &str) -> FieldValue<'_> {
        match self.get(key) {
            None => FieldValue::Missing,
            Some(Value::Null) => FieldValue::Null,
            Some(Value::String(text)) => FieldValue::Str(std::borrow::Cow::Borrowed(text)),
            Some(Value::Object(object)) => FieldValue::Object { empty: object.is_empty() },
            Some(_) => FieldValue::Other,
        }
    }

    fn remove_field(&mut self, key: &str) {
        self.remove(key);
    }

    fn null_if_missing(&mut self, key: &'static str) {
        self.entry(key.to_string()).or_insert(Value::Null);
    }

    fn empty_object_if_null(&mut self, key: &'static str) {
        let entry = self.entry(key.to_string()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
    }
}

impl DispatchRoute {
    /// Completes the request `data` the way the Go daemon's typed structs serialise it: SDK-required
    /// nullable keys present (as `null`), required maps present (as `{}`), an empty `credential_type`
    /// omitted.
    pub fn complete_payload<P: RouteFields + ?Sized>(&self, data: &mut P) {
        if matches!(data.field("credential_type"), FieldValue::Str(text) if text.is_empty()) {
            data.remove_field("credential_type");
        }
        for key in nullable_required_keys(self.action) {
            data.null_if_missing(key);
        }
        for key in object_keys(self.access_type, self.action) {
            data.empty_object_if_null(key);
        }
    }

    /// Checks the request `data` against the route's rules; the error lists every failing field, one
    /// per line, like the Go validator.
    pub fn validate<P: RouteFields + ?Sized>(&self, data: &P) -> Result<(), String> {
        let mut problems = Vec::new();
        for field in self.required {
            let ok = match data.field(field) {
                FieldValue::Missing | FieldValue::Null => false,
                FieldValue::Str(text) => !text.is_empty(),
                FieldValue::Object { .. } | FieldValue::Other => true,
            };
            if !ok {
                problems.push(format!("Key: 'data.{field}' Error:Field validation for '{field}' failed on the 'required' tag"));
            }
        }
        if let FieldValue::Str(model_type) = data.field("model_type") {
            let ok = match self.model_type {
                ModelTypeRule::None | ModelTypeRule::NonEmpty => true,
                ModelTypeRule::Valid => MODEL_TYPES.contains(&model_type.as_ref()),
                ModelTypeRule::Exactly(expected) => model_type == expected,
            };
            if !ok && !model_type.is_empty() {
                problems.push("Key: 'data.model_type' Error:Field validation for 'model_type' failed on the 'model_type' tag".to_string());
            }
        }
        if self.action == "check_polling" {
            if let FieldValue::Object { empty: true } = data.field("plugin_state") {
                problems.push("Key: 'data.plugin_state' Error:Field validation for 'plugin_state' failed on the 'min' tag".to_string());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_route_action_is_in_the_catalogue_and_paths_are_unique() {
        for (i, route) in DISPATCH_ROUTES.iter().enumerate() {
            assert!(ACCESS_ACTIONS.contains(&(route.access_type, route.action)), "{route:?}");
            assert!(DISPATCH_ROUTES[i + 1..].iter().all(|other| other.path != route.path), "duplicate {}", route.path);
        }
        assert_eq!(DISPATCH_ROUTES.len(), 36);
    }

    #[test]
    fn completes_payloads_like_the_go_structs() {
        let llm = find_dispatch_route("/llm/invoke").unwrap();
        let mut data = json!({"provider": "p", "model": "m", "model_type": "llm", "credentials": null}).as_object().unwrap().clone();
        llm.complete_payload(&mut data);
        assert_eq!(
            Value::Object(data),
            json!({"provider": "p", "model": "m", "model_type": "llm", "credentials": {}, "stop": null, "tools": null, "model_parameters": {}})
        );
        let tool = find_dispatch_route("/tool/invoke").unwrap();
        let mut data = json!({"provider": "p", "tool": "t", "credential_type": "", "tool_parameters": {"a": 1}})
            .as_object()
            .unwrap()
            .clone();
        tool.complete_payload(&mut data);
        assert_eq!(Value::Object(data), json!({"provider": "p", "tool": "t", "tool_parameters": {"a": 1}, "credentials": {}}));
        let dispatch_event = find_dispatch_route("/trigger/dispatch_event").unwrap();
        let mut data = Map::new();
        dispatch_event.complete_payload(&mut data);
        assert_eq!(Value::Object(data), json!({"credentials": null, "credential_type": null}));
    }

    #[test]
    fn finds_routes_and_validates_their_data() {
        let tool = find_dispatch_route("/tool/invoke").unwrap();
        assert_eq!((tool.access_type, tool.action), (AccessType::Tool, "invoke_tool"));
        assert!(tool.validate(json!({"provider": "p", "tool": "t"}).as_object().unwrap()).is_ok());
        let err = tool.validate(json!({"provider": ""}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.lines().count(), 2);
        let llm = find_dispatch_route("/llm/invoke/").unwrap();
        assert!(llm.validate(json!({"provider": "p", "model": "m", "model_type": "rerank"}).as_object().unwrap()).is_err());
        assert!(llm.validate(json!({"provider": "p", "model": "m", "model_type": "llm"}).as_object().unwrap()).is_ok());
        let schema = find_dispatch_route("/model/schema").unwrap();
        assert!(schema.validate(json!({"provider": "p", "model": "m", "model_type": "nope"}).as_object().unwrap()).is_err());
        assert!(find_dispatch_route("/tool/nope").is_none());
        assert_eq!(AccessType::AgentStrategy.as_str(), "agent_strategy");
        assert_eq!(serde_json::to_string(&AccessType::DynamicParameter).unwrap(), "\"dynamic_parameter\"");
    }
}
