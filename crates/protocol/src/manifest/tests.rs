//! Decoding and JSON-shape tests for the declaration types.

use super::*;
use serde_json::json;

const FULL_EXAMPLE: &str = r#"version: 0.0.1
type: plugin
author: acme
name: my_tool
label:
  en_US: my_tool
  ja_JP: my_tool
  zh_Hans: my_tool
  pt_BR: my_tool
  fr_FR: dropped
description:
  en_US: Demo
icon: icon.svg
icon_dark: icon-dark.svg
resource:
  memory: 268435456
  permission:
    tool:
      enabled: true
    model:
      enabled: true
      llm: true
      text_embedding: false
    storage:
      enabled: true
      size: 1048576
plugins:
  tools:
    - provider/my_tool.yaml
meta:
  version: 0.0.1
  arch:
    - amd64
    - arm64
  runner:
    language: python
    version: 3.10
    entrypoint: main
  minimum_dify_version: null
created_at: 2026-01-01T10:00:00.123456789Z
privacy: PRIVACY.md
repo: https://github.com/acme/my_tool
verified: true
"#;

fn parse(yaml: &str) -> PluginDeclaration {
    serde_yaml_ng::from_str(yaml).expect("manifest parses")
}

#[test]
fn full_manifest_json_shape() {
    let declaration = parse(FULL_EXAMPLE);
    assert_eq!(declaration.meta.runner.version, "3.10", "YAML scalar text is kept");
    assert_eq!(declaration.category(), PluginCategory::Tool);
    let value = declaration.to_json_value();
    let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "version",
            "type",
            "author",
            "name",
            "label",
            "description",
            "icon",
            "icon_dark",
            "resource",
            "plugins",
            "meta",
            "tags",
            "created_at",
            "privacy",
            "repo",
            "verified"
        ]
    );
    assert_eq!(value["label"], json!({"en_US": "my_tool", "ja_JP": "my_tool", "zh_Hans": "my_tool", "pt_BR": "my_tool"}));
    assert_eq!(value["description"], json!({"en_US": "Demo"}));
    assert_eq!(
        value["plugins"],
        json!({"tools": ["provider/my_tool.yaml"], "models": null, "endpoints": null, "agent_strategies": null, "datasources": null, "triggers": null})
    );
    assert_eq!(value["tags"], json!([]));
    assert_eq!(value["meta"]["minimum_dify_version"], serde_json::Value::Null);
    assert_eq!(value["created_at"], "2026-01-01T10:00:00.123456789Z");
    assert_eq!(
        value["resource"]["permission"],
        json!({
            "tool": {"enabled": true},
            "model": {"enabled": true, "llm": true, "text_embedding": false, "rerank": false, "tts": false, "speech2text": false, "moderation": false},
            "storage": {"enabled": true, "size": 1048576}
        })
    );
    let permissions = declaration.permissions();
    assert!(permissions.allows_llm() && !permissions.allows_text_embedding() && permissions.allows_storage());
    assert!(!permissions.allows_endpoint());
    assert_eq!(declaration.validate_strict(), Ok(()));
}

#[test]
fn json_round_trip_is_stable() {
    let declaration = parse(FULL_EXAMPLE);
    let json = serde_json::to_vec(&declaration.to_json_value()).unwrap();
    let back = PluginDeclaration::from_json(&json).unwrap();
    assert_eq!(back, declaration);
}

#[test]
fn json_with_null_tags_and_lists() {
    let json = br#"{"version":"0.0.1","type":"plugin","author":"a","name":"b","label":{"en_US":"x"},
        "description":{"en_US":"y"},"icon":"i","resource":{"memory":1},"plugins":{"tools":null},
        "meta":{"version":"0.0.1","arch":null,"runner":{"language":"python","version":"3.12","entrypoint":"main"}},
        "tags":null,"created_at":"2025-01-08T15:22:00+08:00","verified":false}"#;
    let declaration = PluginDeclaration::from_json(json).unwrap();
    assert!(declaration.tags.is_empty());
    assert_eq!(declaration.to_json_value()["created_at"], "2025-01-08T15:22:00+08:00");
}

#[test]
fn go_time_formatting() {
    assert_eq!(format_go_time(&zero_time()), "0001-01-01T00:00:00Z");
    let time = parse_go_time("2025-01-08T15:22:00.000000000Z").unwrap();
    assert_eq!(format_go_time(&time), "2025-01-08T15:22:00Z");
    let time = parse_go_time("2025-01-08T15:22:00.120Z").unwrap();
    assert_eq!(format_go_time(&time), "2025-01-08T15:22:00.12Z");
    let time = parse_go_time("2025-01-08").unwrap();
    assert_eq!(format_go_time(&time), "2025-01-08T00:00:00Z");
    assert!(parse_go_time("yesterday").is_err());
    // Missing created_at is Go's zero time, which strict validation rejects.
    let declaration = parse("name: x\n");
    assert_eq!(declaration.created_at, zero_time());
}

#[test]
fn category_order() {
    let mut declaration = PluginDeclaration::default();
    assert_eq!(declaration.category(), PluginCategory::Extension);
    declaration.plugins.triggers = vec!["t.yaml".into()];
    assert_eq!(declaration.category(), PluginCategory::Trigger);
    declaration.plugins.agent_strategies = vec!["a.yaml".into()];
    assert_eq!(declaration.category(), PluginCategory::AgentStrategy);
    declaration.plugins.datasources = vec!["d.yaml".into()];
    assert_eq!(declaration.category(), PluginCategory::Datasource);
    declaration.model = Some(ModelProviderDeclaration::default());
    assert_eq!(declaration.category(), PluginCategory::Model);
    declaration.plugins.tools = vec!["x.yaml".into()];
    assert_eq!(declaration.category(), PluginCategory::Tool);
    assert_eq!(serde_json::to_value(PluginCategory::AgentStrategy).unwrap(), "agent-strategy");
}

#[test]
fn daemon_validation_rules() {
    let mut declaration = parse(FULL_EXAMPLE);
    let problems = declaration.validate_for_daemon().unwrap_err();
    assert_eq!(problems.len(), 1, "nothing resolved yet: {problems:?}");
    assert_eq!(problems[0].field, "plugins");

    declaration.tool = Some(ToolProviderDeclaration::default());
    declaration.endpoint = Some(EndpointProviderDeclaration::default());
    assert_eq!(declaration.validate_for_daemon(), Ok(()), "tool + endpoint is the one legal pair");

    declaration.model = Some(ModelProviderDeclaration::default());
    let fields: Vec<String> = declaration.validate_for_daemon().unwrap_err().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["model"]);

    let mut declaration = parse(FULL_EXAMPLE);
    declaration.agent_strategy = Some(AgentStrategyProviderDeclaration::default());
    declaration.trigger = Some(TriggerProviderDeclaration::default());
    declaration.author = "Acme".into();
    declaration.name = String::new();
    let fields: Vec<String> = declaration.validate_for_daemon().unwrap_err().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["author", "name", "agent_strategy", "trigger"]);
}

#[test]
fn fill_in_default_values() {
    let mut declaration = parse(&FULL_EXAMPLE.replace("verified: true\n", "tags: [search]\n"));
    declaration.tool = Some(ToolProviderDeclaration::default());
    declaration.trigger = Some(TriggerProviderDeclaration::default());
    declaration.model = Some(ModelProviderDeclaration::default());
    let json = declaration.to_json_value();
    assert_eq!(json["tool"]["identity"]["description"]["en_US"], "Demo");
    assert_eq!(json["tool"]["identity"]["tags"], json!(["search"]));
    assert_eq!(json["trigger"]["identity"]["tags"], json!(["search"]));
    assert_eq!(json["model"]["description"]["en_US"], "Demo");
    // Empty provider arrays are arrays, not null.
    assert_eq!(json["tool"]["credentials_schema"], json!([]));
    assert_eq!(json["tool"]["tools"], json!([]));
    assert_eq!(json["tool"]["oauth_schema"], serde_json::Value::Null);
    assert_eq!(json["trigger"]["subscription_schema"], json!([]));
    assert_eq!(json["trigger"]["events"], json!([]));
    assert_eq!(json["model"]["models"], json!([]));
    // The stored declaration itself is untouched by serialization.
    assert!(declaration.tool.as_ref().unwrap().identity.tags.is_empty());
}

#[test]
fn tool_provider_credentials_forms() {
    let as_list: ToolProviderDeclaration = serde_yaml_ng::from_str(
        "identity: {author: a, name: p, icon: i.svg, label: {en_US: P}}\ncredentials_schema:\n  - name: key\n    type: secret-input\n    label: {en_US: Key}\ntools: [tools/a.yaml, tools/b.yaml]\n",
    )
    .unwrap();
    assert_eq!(as_list.credentials_schema[0].name, "key");
    assert_eq!(as_list.tool_files, ["tools/a.yaml", "tools/b.yaml"]);
    assert!(as_list.tools.is_empty());

    let as_map: ToolProviderDeclaration = serde_yaml_ng::from_str(
        "identity: {author: a, name: p, icon: i.svg, label: {en_US: P}}\ncredentials_schema:\n  b_key:\n    type: text-input\n    label: {en_US: B}\n  a_key:\n    type: secret-input\n    label: {en_US: A}\n",
    )
    .unwrap();
    let names: Vec<&str> = as_map.credentials_schema.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["b_key", "a_key"], "mapping order is kept");

    let legacy: ToolProviderDeclaration = serde_yaml_ng::from_str(
        "identity: {author: a, name: p, icon: i.svg, label: {en_US: P}}\ncredentials_schema: []\ncredentials_for_provider:\n  token:\n    type: secret-input\n    label: {en_US: T}\n",
    )
    .unwrap();
    assert_eq!(legacy.credentials_schema[0].name, "token");

    let json = serde_json::to_value(&legacy).unwrap();
    assert_eq!(json["credentials_schema"][0]["scope"], serde_json::Value::Null);
    assert_eq!(json["credentials_schema"][0]["options"], serde_json::Value::Null);
    assert!(json.get("tool_files").is_none());
}

#[test]
fn model_provider_forms() {
    let by_source: ModelProviderDeclaration = serde_yaml_ng::from_str(
        "provider: openai\nlabel: {en_US: OpenAI}\nsupported_model_types: [llm]\nconfigurate_methods: [predefined-model]\nmodels:\n  llm:\n    predefined: ['models/llm/*.yaml']\n    position: models/llm/_position.yaml\n  tts:\n    predefined: ['models/tts/*.yaml']\n  unknown:\n    predefined: ['x/*']\n",
    )
    .unwrap();
    assert_eq!(by_source.model_files, ["models/llm/*.yaml", "models/tts/*.yaml"]);
    assert_eq!(by_source.position_files.get("llm").map(String::as_str), Some("models/llm/_position.yaml"));
    assert!(by_source.position.is_some());

    let inline: ModelProviderDeclaration = serde_yaml_ng::from_str(
        "provider: p\nlabel: {en_US: P}\nprovider_credential_schema:\n  credential_form_schemas:\n    - variable: api_key\n      type: select\n      default: 0.5\n      label: {en_US: Key}\n      options:\n        - {value: a, label: {en_US: A}}\nmodels:\n  - model: m1\n    model_type: llm\n    parameter_rules:\n      - name: temperature\n        use_template: temperature\n",
    )
    .unwrap();
    assert_eq!(inline.models[0].fetch_from, "predefined-model");
    assert_eq!(inline.models[0].label.en_us, "m1");
    assert!(inline.position.is_none());
    let json = serde_json::to_value(&inline).unwrap();
    assert_eq!(
        json["provider_credential_schema"],
        json!({"credential_form_schemas": [{
            "variable": "api_key", "label": {"en_US": "Key"}, "type": "select", "required": false, "default": "0.5",
            "options": [{"label": {"en_US": "A"}, "value": "a", "show_on": []}],
            "help": null, "url": null, "placeholder": null, "max_length": 0, "show_on": []
        }]})
    );
    assert_eq!(json["model_credential_schema"], serde_json::Value::Null);
    assert_eq!(
        json["models"][0]["parameter_rules"][0],
        json!({"name": "temperature", "use_template": "temperature", "label": {"en_US": "temperature"}, "type": "float",
               "help": null, "required": false, "default": 0, "min": 0, "max": 1, "precision": 2, "options": []})
    );
    assert!(json.get("position").is_none());
}

#[test]
fn endpoint_and_trigger_files() {
    let endpoints: EndpointProviderDeclaration = serde_yaml_ng::from_str(
        "settings:\n  - name: key\n    type: secret-input\n    label: {en_US: K}\nendpoints:\n  - endpoints/a.yaml\n  - {path: /x, method: POST, hidden: true}\n",
    )
    .unwrap();
    assert_eq!(endpoints.endpoint_files, ["endpoints/a.yaml"]);
    assert_eq!(endpoints.endpoints[0], EndpointDeclaration { path: "/x".into(), method: "POST".into(), hidden: true, extra: None });

    let trigger: TriggerProviderDeclaration = serde_yaml_ng::from_str(
        "identity: {author: a, name: t, icon: i.svg, label: {en_US: T}}\nsubscription_schema:\n  secret:\n    type: secret-input\n    label: {en_US: S}\nsubscription_constructor:\n  credentials_schema:\n    token:\n      type: secret-input\n      label: {en_US: T}\nevents: [events/e.yaml]\n",
    )
    .unwrap();
    assert_eq!(trigger.subscription_schema[0].name, "secret");
    assert_eq!(trigger.subscription_constructor.as_ref().unwrap().credentials_schema[0].name, "token");
    assert_eq!(trigger.event_files, ["events/e.yaml"]);
    let json = serde_json::to_value(&trigger).unwrap();
    assert_eq!(json["subscription_constructor"]["parameters"], json!([]));
    assert!(json["subscription_constructor"].get("oauth_schema").is_none());
}

#[test]
fn strict_rules_are_specific() {
    let mut declaration = parse(FULL_EXAMPLE);
    declaration.label = I18nObject::default();
    declaration.meta.arch.clear();
    declaration.resource.memory = 0;
    declaration.meta.runner.entrypoint = "x".repeat(257);
    declaration.plugins.tools = vec!["p".repeat(129)];
    declaration.meta.minimum_dify_version = Some("latest".into());
    let fields: Vec<String> = declaration.validate_strict().unwrap_err().into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        ["label.en_US", "resource.memory", "plugins.tools[0]", "meta.arch", "meta.runner.entrypoint", "meta.minimum_dify_version"]
    );
}

#[test]
fn extra_is_kept_verbatim() {
    let provider: ToolProviderDeclaration = serde_yaml_ng::from_str(
        "identity: {author: a, name: p, icon: i.svg, label: {en_US: P}}\nextra:\n  python:\n    source: provider/p.py\ntools:\n  - identity: {author: a, name: t, label: {en_US: T}}\n    description: {human: {en_US: h}, llm: l}\n    extra: {python: {source: tools/t.py}}\n",
    )
    .unwrap();
    let json = serde_json::to_value(&provider).unwrap();
    assert_eq!(json["extra"], json!({"python": {"source": "provider/p.py"}}));
    assert_eq!(json["tools"][0]["extra"]["python"]["source"], "tools/t.py");
    let back: ToolProviderDeclaration = serde_json::from_value(json).unwrap();
    assert_eq!(back, provider);
    let without: ToolProviderDeclaration = serde_yaml_ng::from_str("identity: {author: a, name: p}\n").unwrap();
    assert!(serde_json::to_value(&without).unwrap().get("extra").is_none());
}

#[test]
fn parameter_rule_templates() {
    let rules: Vec<ModelParameterRule> = serde_yaml_ng::from_str(
        "- name: max_tokens\n  use_template: max_tokens\n  max: 4096\n  label: {en_US: Max}\n- name: format\n  use_template: response_format\n- name: custom\n  type: boolean\n",
    )
    .unwrap();
    assert_eq!(rules[0].parameter_type.as_deref(), Some("int"));
    assert_eq!(rules[0].max, Some(4096.into()), "explicit values win");
    assert_eq!(rules[0].min, Some(1.into()));
    assert_eq!(rules[0].label.as_ref().unwrap().en_us, "Max");
    assert_eq!(rules[1].options, ["JSON", "XML"]);
    assert_eq!(rules[2].label.as_ref().unwrap().en_us, "custom");
    assert!(rules[2].options.is_empty());
    let unknown = serde_yaml_ng::from_str::<Vec<ModelParameterRule>>("- name: x\n  use_template: nope\n");
    assert!(unknown.unwrap_err().to_string().contains("use_template nope not found"));
}

/// Declarations as the official Python SDK sends them to a debugging daemon (recorded in the
/// protocol demo): explicit nulls everywhere and keys the daemon does not know.
#[test]
fn sdk_sent_declarations_decode() {
    let manifest = PluginDeclaration::from_json(include_bytes!("testdata/sdk_manifest_declaration.json")).unwrap();
    assert_eq!(manifest.plugin_id(), "demo/demo_echo");
    assert_eq!(manifest.icon_dark, "");
    assert_eq!(manifest.repo, None);
    assert!(manifest.permissions().allows_tool());
    assert!(!manifest.permissions().allows_model());

    let providers: Vec<ToolProviderDeclaration> = serde_json::from_slice(include_bytes!("testdata/sdk_tool_declaration.json")).unwrap();
    let provider = &providers[0];
    assert_eq!(provider.identity.name, "demo");
    let names: Vec<&str> = provider.tools.iter().map(|t| t.identity.name.as_str()).collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(provider.tools.iter().all(|t| t.output_schema.is_none()));
    assert_eq!(provider.tools[0].extra.as_ref().unwrap()["python"]["source"], "tools/echo.py");
    assert!(provider.tools[0].parameters[0].options.is_empty());
}

#[test]
fn null_i18n_objects_decode_as_empty() {
    let parameter: AgentStrategyParameter =
        serde_json::from_str(r#"{"name": "model", "label": {"en_US": "Model"}, "help": null, "type": "model-selector"}"#).unwrap();
    assert_eq!(parameter.help, I18nObject::default());
    let optional: ProviderConfig =
        serde_json::from_str(r#"{"name": "k", "type": "text-input", "label": {"en_US": "K"}, "help": null}"#).unwrap();
    assert_eq!(optional.help, None, "optional i18n fields stay None on null");
}
