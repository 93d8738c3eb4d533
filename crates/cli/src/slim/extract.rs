//! `slim extract`: a plugin's schema, from a daemon (`GET /v2/invoke/extract`, remote mode), from the
//! plugin directory under `local.folder` (fetched from the marketplace when missing) or from `-path`
//! (a directory or a `.difypkg`), printed as `{"tenant_id":<nil uuid>,"data":…}`. Without `-action`,
//! `data` is the schema with display-only keys and empty values removed; with `-action`, it is a
//! ready-to-edit `data` object for that action (the first tool, model or strategy, parameters at
//! their defaults).

use std::path::Path;

use serde_json::{json, Map, Value};

use super::config::{ExtractConfigInput, SlimConfig};
use super::output::go_html_escape;
use super::{local, remote, ErrorCode, Flags, SlimError, NIL_TENANT};

/// Keys dropped from the extracted schema (display text, icons, signature details).
const CLEANUP_KEYS: &[&str] = &[
    "background",
    "created_at",
    "description",
    "help",
    "human_description",
    "icon",
    "icon_dark",
    "icon_large",
    "icon_large_dark",
    "icon_small",
    "icon_small_dark",
    "label",
    "llm_description",
    "placeholder",
    "privacy",
    "repo",
    "tags",
    "verified",
    "verification",
];

const EXTRACT_USAGE: &str = "Usage:
  slim extract -id <plugin_unique_identifier> [-config <path>] [-output json]
  slim extract -id <plugin_unique_identifier> -action <action> [-config <path>] [-output json]
  slim extract -path <plugin-dir-or-difypkg> [-config <path>] [-output json]
  slim extract -path <plugin-dir-or-difypkg> -action <action> [-config <path>] [-output json]
";

/// `slim extract …` (arguments after `extract`).
pub async fn run_command(args: &[String]) -> Result<(), SlimError> {
    let flags = Flags::parse(args, &["id", "action", "path", "output", "config"])?;
    if flags.help {
        eprint!("{EXTRACT_USAGE}");
        return Ok(());
    }
    if !flags.positional.is_empty() {
        return Err(SlimError::new(ErrorCode::InvalidInput, "unexpected positional arguments"));
    }
    let (id, action, path) = (flags.get("id"), flags.get("action"), flags.get("path"));
    let mut output = flags.get("output");
    if output.is_empty() {
        output = "json".into();
    }
    let config_file = flags.get("config");
    let config = SlimConfig::for_extract(ExtractConfigInput { config_file: &config_file, has_local_path: !path.is_empty() })?;
    if output != "json" {
        return Err(SlimError::new(ErrorCode::InvalidInput, format!("unsupported output format: {output}")));
    }
    let result = match &config {
        SlimConfig::Remote(remote_config) => {
            if !path.is_empty() {
                return Err(SlimError::new(ErrorCode::InvalidInput, "-path is not supported in remote mode"));
            }
            if id.is_empty() {
                return Err(SlimError::new(ErrorCode::InvalidInput, "-id is required in remote mode"));
            }
            remote::extract(remote_config, &id).await?
        }
        SlimConfig::Local(local_config) => extract_local(&id, &path, local_config).await?,
    };
    let data = if action.is_empty() { cleaned(result) } else { action_args(&result["manifest"], &action)? };
    let line = serde_json::to_string(&json!({"tenant_id": NIL_TENANT, "data": sorted(data)}))
        .map_err(|e| SlimError::new(ErrorCode::InvalidInput, format!("failed to encode extract result: {e}")))?;
    println!("{}", go_html_escape(&line));
    Ok(())
}

async fn extract_local(id: &str, path: &str, local_config: &super::LocalConfig) -> Result<Value, SlimError> {
    if !id.is_empty() && !path.is_empty() {
        return Err(SlimError::new(ErrorCode::InvalidInput, "only one of -id or -path may be provided"));
    }
    if id.is_empty() && path.is_empty() {
        return Err(SlimError::new(ErrorCode::InvalidInput, "one of -id or -path is required"));
    }
    if !path.is_empty() {
        return extract_path(Path::new(path), "");
    }
    if local_config.folder.is_empty() {
        return Err(SlimError::new(ErrorCode::ConfigInvalid, "local.folder is required when extract uses -id"));
    }
    let working_path = local_config.working_path(id);
    if let Ok(result) = extract_path(&working_path, id) {
        return Ok(result);
    }
    let package = local::download_and_extract(local_config, id, &working_path).await?;
    Ok(result_of(&package, id))
}

fn extract_path(path: &Path, id: &str) -> Result<Value, SlimError> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SlimError::new(ErrorCode::PluginNotFound, format!("plugin path not found: {}", path.display()))
        } else {
            SlimError::new(ErrorCode::InvalidInput, format!("stat plugin path: {e}"))
        }
    })?;
    let package = if metadata.is_dir() {
        local::read_plugin_dir(path)
            .map_err(|e| SlimError::new(ErrorCode::PluginPackageInvalid, format!("decode plugin directory: {e}")))?
    } else {
        let bytes = std::fs::read(path).map_err(|e| SlimError::new(ErrorCode::InvalidInput, format!("read plugin package: {e}")))?;
        dify_package::Package::from_bytes(bytes, &dify_package::DecodeLimits::default())
            .map_err(|e| SlimError::new(ErrorCode::PluginPackageInvalid, format!("decode plugin package: {e}")))?
    };
    Ok(result_of(&package, id))
}

fn result_of(package: &dify_package::Package, id: &str) -> Value {
    let unique_identifier =
        if id.is_empty() { package.unique_identifier().map(|uid| uid.as_str().to_string()).unwrap_or_default() } else { id.to_string() };
    let mut result = Map::new();
    if !unique_identifier.is_empty() {
        result.insert("unique_identifier".into(), Value::String(unique_identifier));
    }
    result.insert("manifest".into(), package.declaration().to_json_value());
    if let Some(verification) = package.verification() {
        if let Ok(value) = serde_json::to_value(verification) {
            result.insert("verification".into(), value);
        }
    }
    Value::Object(result)
}

/// The schema without display-only keys and without empty values, recursively.
pub fn cleaned(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(key, _)| !CLEANUP_KEYS.contains(&key.as_str()))
                .map(|(key, child)| (key, cleaned(child)))
                .filter(|(_, child)| !is_empty(child))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(cleaned).filter(|item| !is_empty(item)).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(object) => object.is_empty(),
        _ => false,
    }
}

/// Object keys sorted at every level (upstream encodes maps, whose keys Go sorts).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A parameter's default: its own, else its first option's value, else an empty value of its type.
fn default_value(parameter: &Value) -> Value {
    if let Some(explicit) = parameter.get("default").filter(|d| !d.is_null()) {
        return explicit.clone();
    }
    if let Some(first) = parameter.get("options").and_then(Value::as_array).and_then(|o| o.first()) {
        return first.get("value").cloned().unwrap_or(Value::Null);
    }
    match parameter.get("type").and_then(Value::as_str).unwrap_or("") {
        "number" => json!(0),
        "boolean" => json!(false),
        "array" | "files" | "checkbox" => json!([]),
        "object" => json!({}),
        _ => json!(""),
    }
}

fn parameters(list: Option<&Value>) -> Value {
    let mut out = Map::new();
    for parameter in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = parameter.get("name").and_then(Value::as_str) {
            out.insert(name.to_string(), default_value(parameter));
        }
    }
    Value::Object(out)
}

fn invalid(message: &str) -> SlimError {
    SlimError::new(ErrorCode::InvalidInput, message)
}

/// The `data` of an invocation of `action`, built from the manifest.
pub fn action_args(manifest: &Value, action: &str) -> Result<Value, SlimError> {
    let tool_provider = manifest.get("tool").filter(|t| !t.is_null());
    let first_tool = || -> Result<&Value, SlimError> {
        let provider = tool_provider.ok_or_else(|| invalid("plugin has no tool provider"))?;
        provider
            .get("tools")
            .and_then(Value::as_array)
            .and_then(|t| t.first())
            .ok_or_else(|| invalid("tool provider has no tools"))
    };
    let provider_name = || tool_provider.map(|p| text(p, "/identity/name").to_string()).unwrap_or_default();
    match action {
        "invoke_tool" => {
            let tool = first_tool()?;
            Ok(json!({"provider": provider_name(), "tool": text(tool, "/identity/name"),
                      "tool_parameters": parameters(tool.get("parameters")), "credentials": {}}))
        }
        "validate_tool_credentials" => {
            tool_provider.ok_or_else(|| invalid("plugin has no tool provider"))?;
            Ok(json!({"provider": provider_name(), "credentials": {}}))
        }
        "get_tool_runtime_parameters" => {
            let tool = first_tool()?;
            Ok(json!({"provider": provider_name(), "tool": text(tool, "/identity/name"), "credentials": {}}))
        }
        "get_ai_model_schemas"
        | "invoke_llm"
        | "get_llm_num_tokens"
        | "invoke_text_embedding"
        | "invoke_multimodal_embedding"
        | "get_text_embedding_num_tokens"
        | "invoke_rerank"
        | "invoke_multimodal_rerank"
        | "invoke_tts"
        | "get_tts_model_voices"
        | "invoke_speech2text"
        | "invoke_moderation"
        | "validate_provider_credentials"
        | "validate_model_credentials" => model_args(manifest, action),
        "invoke_agent_strategy" => {
            let provider = manifest.get("agent_strategy").filter(|a| !a.is_null());
            let strategy = provider
                .and_then(|p| p.get("strategies"))
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .ok_or_else(|| invalid("plugin has no agent strategy"))?;
            Ok(json!({"agent_strategy_provider": provider.map(|p| text(p, "/identity/name")).unwrap_or(""),
                      "agent_strategy": text(strategy, "/identity/name"),
                      "agent_strategy_params": parameters(strategy.get("parameters"))}))
        }
        other => Err(SlimError::new(ErrorCode::UnknownAction, other)),
    }
}

fn model_type_for(action: &str) -> &'static str {
    match action {
        "invoke_text_embedding" | "get_text_embedding_num_tokens" => "text-embedding",
        "invoke_multimodal_embedding" => "multimodal-embedding",
        "invoke_rerank" => "rerank",
        "invoke_multimodal_rerank" => "multimodal-rerank",
        "invoke_tts" | "get_tts_model_voices" => "tts",
        "invoke_speech2text" => "speech2text",
        "invoke_moderation" => "moderation",
        _ => "llm",
    }
}

fn model_args(manifest: &Value, action: &str) -> Result<Value, SlimError> {
    let provider = manifest.get("model").filter(|m| !m.is_null()).ok_or_else(|| invalid("plugin has no model provider"))?;
    let wanted = model_type_for(action);
    let models = provider.get("models").and_then(Value::as_array).cloned().unwrap_or_default();
    let model = models
        .iter()
        .find(|m| text(m, "/model_type") == wanted)
        .or_else(|| models.first())
        .ok_or_else(|| invalid(&format!("model provider has no {wanted} models")))?;
    let mut args = Map::new();
    args.insert("provider".into(), json!(text(provider, "/provider")));
    args.insert("credentials".into(), json!({}));
    if action != "validate_provider_credentials" {
        args.insert("model".into(), json!(text(model, "/model")));
        args.insert("model_type".into(), json!(text(model, "/model_type")));
    }
    let hello = json!([{"role": "user", "content": "hello"}]);
    match action {
        "invoke_llm" => {
            args.insert("model_parameters".into(), json!({}));
            args.insert("prompt_messages".into(), hello);
            args.insert("tools".into(), json!([]));
            args.insert("stop".into(), json!([]));
            args.insert("stream".into(), json!(false));
        }
        "get_llm_num_tokens" => {
            args.insert("prompt_messages".into(), hello);
            args.insert("tools".into(), json!([]));
        }
        "invoke_text_embedding" | "get_text_embedding_num_tokens" => {
            args.insert("texts".into(), json!(["hello"]));
            if action == "invoke_text_embedding" {
                args.insert("input_type".into(), json!("query"));
            }
        }
        "invoke_multimodal_embedding" => {
            args.insert("documents".into(), json!([{"type": "text", "text": "hello"}]));
            args.insert("input_type".into(), json!("query"));
        }
        "invoke_rerank" => {
            args.insert("query".into(), json!("hello"));
            args.insert("docs".into(), json!(["hello"]));
        }
        "invoke_multimodal_rerank" => {
            args.insert("query".into(), json!({"type": "text", "text": "hello"}));
            args.insert("docs".into(), json!([{"type": "text", "text": "hello"}]));
        }
        "invoke_tts" => {
            args.insert("content_text".into(), json!("hello"));
            args.insert("voice".into(), json!("alloy"));
            args.insert("tenant_id".into(), json!(NIL_TENANT));
        }
        "invoke_speech2text" => {
            args.insert("file".into(), json!(""));
        }
        "invoke_moderation" => {
            args.insert("text".into(), json!("hello"));
        }
        _ => {}
    }
    Ok(Value::Object(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_drops_display_keys_and_empty_values() {
        let value = json!({"manifest": {"label": {"en_US": "x"}, "name": "n", "tags": [], "plugins": {"tools": []},
                                        "meta": {"version": "0.0.1", "arch": ["amd64"], "minimum": ""}, "n": 0, "b": false}});
        assert_eq!(cleaned(value), json!({"manifest": {"name": "n", "meta": {"version": "0.0.1", "arch": ["amd64"]}, "n": 0, "b": false}}));
        assert_eq!(serde_json::to_string(&sorted(json!({"b": 1, "a": {"d": 1, "c": 2}}))).unwrap(), r#"{"a":{"c":2,"d":1},"b":1}"#);
    }

    #[test]
    fn tool_action_args_use_defaults() {
        let manifest = json!({"tool": {"identity": {"name": "prov"}, "tools": [{"identity": {"name": "t1"},
            "parameters": [{"name": "a", "type": "string"}, {"name": "b", "type": "number", "default": 3},
                           {"name": "c", "type": "select", "options": [{"value": "x"}]}, {"name": "d", "type": "boolean"}]}]}});
        assert_eq!(
            action_args(&manifest, "invoke_tool").unwrap(),
            json!({"provider": "prov", "tool": "t1", "tool_parameters": {"a": "", "b": 3, "c": "x", "d": false}, "credentials": {}})
        );
        assert_eq!(action_args(&manifest, "invoke_llm").unwrap_err().message, "plugin has no model provider");
        assert_eq!(action_args(&manifest, "nope").unwrap_err().code, ErrorCode::UnknownAction);
    }
}
