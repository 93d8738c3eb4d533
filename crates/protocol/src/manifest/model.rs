//! Model provider and model declarations. A provider file lists its models either inline (a
//! sequence) or as a mapping of model type → `{predefined: [glob…], position: file}`; the globs
//! and position files are kept in `#[serde(skip)]` fields for the package decoder to resolve.
//! Pricing and model properties are kept as JSON values: the daemon passes them through to Dify
//! without interpreting them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{null_if_empty, scalar_string, string_vec, I18nObject};

/// Model type keys allowed in the `models:` mapping of a provider file, in upstream order.
pub const MODEL_SOURCE_TYPES: [&str; 6] = ["llm", "text_embedding", "tts", "speech2text", "moderation", "rerank"];

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelDeclaration {
    #[serde(deserialize_with = "scalar_string")]
    pub model: String,
    pub label: I18nObject,
    /// llm, text-embedding, rerank, speech2text, moderation, tts, text2img,
    /// multimodal-embedding, multimodal-rerank.
    #[serde(deserialize_with = "scalar_string")]
    pub model_type: String,
    #[serde(deserialize_with = "string_vec", serialize_with = "null_if_empty")]
    pub features: Vec<String>,
    /// predefined-model (default) or customizable-model.
    #[serde(deserialize_with = "scalar_string")]
    pub fetch_from: String,
    pub model_properties: serde_json::Value,
    pub deprecated: bool,
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub parameter_rules: Vec<ModelParameterRule>,
    pub pricing: Option<serde_json::Value>,
}

impl Default for ModelDeclaration {
    fn default() -> Self {
        Self {
            model: String::new(),
            label: I18nObject::default(),
            model_type: String::new(),
            features: Vec::new(),
            fetch_from: String::new(),
            model_properties: serde_json::Value::Null,
            deprecated: false,
            parameter_rules: Vec::new(),
            pricing: None,
        }
    }
}

impl ModelDeclaration {
    /// Upstream defaults applied after decoding: `fetch_from` defaults to `predefined-model`, the
    /// label defaults to the model name.
    pub fn fill_in_defaults(&mut self) {
        if self.fetch_from.is_empty() {
            self.fetch_from = "predefined-model".to_owned();
        }
        if self.label.en_us.is_empty() {
            self.label.en_us = self.model.clone();
        }
    }
}

/// Parameter names that `use_template` may refer to.
pub const PARAMETER_RULE_TEMPLATES: [&str; 8] =
    ["temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty", "max_tokens", "response_format", "json_schema"];

/// One tunable parameter of a model (`parameter_rules` item). `use_template` fills the type,
/// default, range, precision and options of the well-known parameters, as upstream does at decode
/// time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawParameterRule")]
pub struct ModelParameterRule {
    pub name: String,
    pub use_template: Option<String>,
    pub label: Option<I18nObject>,
    /// float, int, string, boolean or text.
    #[serde(rename = "type")]
    pub parameter_type: Option<String>,
    pub help: Option<I18nObject>,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub min: Option<serde_json::Number>,
    pub max: Option<serde_json::Number>,
    pub precision: Option<i64>,
    pub options: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawParameterRule {
    #[serde(deserialize_with = "scalar_string")]
    name: String,
    #[serde(deserialize_with = "super::common::opt_scalar_string")]
    use_template: Option<String>,
    label: Option<I18nObject>,
    #[serde(rename = "type", deserialize_with = "super::common::opt_scalar_string")]
    parameter_type: Option<String>,
    help: Option<I18nObject>,
    required: bool,
    default: Option<serde_json::Value>,
    min: Option<serde_json::Number>,
    max: Option<serde_json::Number>,
    precision: Option<i64>,
    #[serde(deserialize_with = "string_vec_opt")]
    options: Option<Vec<String>>,
}

fn string_vec_opt<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<Vec<super::common::ScalarString>>::deserialize(deserializer)?.map(|v| v.into_iter().map(|s| s.0).collect()))
}

/// Template values: (type, default, min, max, precision, options).
type TemplateValues = (&'static str, Option<serde_json::Value>, Option<i64>, Option<i64>, Option<i64>, &'static [&'static str]);

fn parameter_template(name: &str) -> Option<TemplateValues> {
    use serde_json::json;
    Some(match name {
        "temperature" | "presence_penalty" | "frequency_penalty" => ("float", Some(json!(0)), Some(0), Some(1), Some(2), &[]),
        "top_p" => ("float", Some(json!(1)), Some(0), Some(1), Some(2), &[]),
        "top_k" => ("int", Some(json!(50)), Some(1), Some(100), Some(0), &[]),
        "max_tokens" => ("int", Some(json!(64)), Some(1), Some(2048), Some(0), &[]),
        "response_format" => ("string", None, None, None, None, &["JSON", "XML"]),
        "json_schema" => ("string", None, None, None, None, &[]),
        _ => return None,
    })
}

impl TryFrom<RawParameterRule> for ModelParameterRule {
    type Error = String;

    fn try_from(raw: RawParameterRule) -> Result<Self, Self::Error> {
        let mut rule = ModelParameterRule {
            label: match raw.label {
                Some(label) if !label.en_us.is_empty() => Some(label),
                _ => Some(I18nObject { en_us: raw.name.clone(), ..I18nObject::default() }),
            },
            name: raw.name,
            use_template: raw.use_template,
            parameter_type: raw.parameter_type,
            help: raw.help,
            required: raw.required,
            default: raw.default.filter(|v| !v.is_null()),
            min: raw.min,
            max: raw.max,
            precision: raw.precision,
            options: Vec::new(),
        };
        let mut options = raw.options;
        if let Some(template_name) = rule.use_template.as_deref().filter(|t| !t.is_empty()) {
            let (kind, default, min, max, precision, template_options) =
                parameter_template(template_name).ok_or_else(|| format!("use_template {template_name} not found"))?;
            rule.parameter_type.get_or_insert_with(|| kind.to_owned());
            if rule.default.is_none() {
                rule.default = default;
            }
            if rule.min.is_none() {
                rule.min = min.map(serde_json::Number::from);
            }
            if rule.max.is_none() {
                rule.max = max.map(serde_json::Number::from);
            }
            if rule.precision.is_none() {
                rule.precision = precision;
            }
            if options.is_none() && !template_options.is_empty() {
                options = Some(template_options.iter().map(|o| o.to_string()).collect());
            }
        }
        rule.options = options.unwrap_or_default();
        Ok(rule)
    }
}

/// `show_on: [{variable, value}]`: show a form field only when another field has a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormShowOn {
    #[serde(deserialize_with = "scalar_string")]
    pub variable: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
}

/// An option of a `select`/`radio` credential field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FormOption {
    pub label: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub show_on: Vec<FormShowOn>,
}

/// A credential form field of a model provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CredentialFormSchema {
    #[serde(deserialize_with = "scalar_string")]
    pub variable: String,
    pub label: I18nObject,
    /// text-input, secret-input, select, radio or switch.
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub field_type: String,
    pub required: bool,
    #[serde(deserialize_with = "super::common::opt_scalar_string")]
    pub default: Option<String>,
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub options: Vec<FormOption>,
    pub help: Option<I18nObject>,
    #[serde(deserialize_with = "super::common::opt_scalar_string")]
    pub url: Option<String>,
    pub placeholder: Option<I18nObject>,
    pub max_length: i64,
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub show_on: Vec<FormShowOn>,
}

/// `provider_credential_schema`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderCredentialSchema {
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub credential_form_schemas: Vec<CredentialFormSchema>,
}

/// `model_credential_schema.model`: how the model name field is presented.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldModelSchema {
    pub label: I18nObject,
    pub placeholder: Option<I18nObject>,
}

/// `model_credential_schema` (customizable models).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCredentialSchema {
    pub model: FieldModelSchema,
    #[serde(deserialize_with = "super::common::vec_or_null")]
    pub credential_form_schemas: Vec<CredentialFormSchema>,
}

/// `help: {title, url}` of a model provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelProviderHelp {
    pub title: I18nObject,
    pub url: I18nObject,
}

/// Model order per type, read from `_position.yaml` files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelPosition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_embedding: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech2text: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Vec<String>>,
}

impl ModelPosition {
    /// Sets the list for a model source type key (`llm`, `text_embedding`, …); unknown keys are
    /// ignored.
    pub fn set(&mut self, model_type: &str, names: Vec<String>) {
        let slot = match model_type {
            "llm" => &mut self.llm,
            "text_embedding" => &mut self.text_embedding,
            "rerank" => &mut self.rerank,
            "tts" => &mut self.tts,
            "speech2text" => &mut self.speech2text,
            "moderation" => &mut self.moderation,
            _ => return,
        };
        *slot = Some(names);
    }
}

/// A model provider file (`plugins.models` entry) with its models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModelProvider")]
pub struct ModelProviderDeclaration {
    pub provider: String,
    pub label: I18nObject,
    pub description: Option<I18nObject>,
    pub icon_small: Option<I18nObject>,
    pub icon_large: Option<I18nObject>,
    pub icon_small_dark: Option<I18nObject>,
    pub icon_large_dark: Option<I18nObject>,
    pub background: Option<String>,
    pub help: Option<ModelProviderHelp>,
    #[serde(serialize_with = "null_if_empty")]
    pub supported_model_types: Vec<String>,
    #[serde(serialize_with = "null_if_empty")]
    pub configurate_methods: Vec<String>,
    pub provider_credential_schema: Option<ProviderCredentialSchema>,
    pub model_credential_schema: Option<ModelCredentialSchema>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<ModelPosition>,
    pub models: Vec<ModelDeclaration>,
    /// Runner-specific data (e.g. `extra.python.source`), kept verbatim; the daemon does not
    /// interpret it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
    /// Globs from `models.<type>.predefined`, in file order.
    #[serde(skip)]
    pub model_files: Vec<String>,
    /// `models.<type>.position` file per model type key.
    #[serde(skip)]
    pub position_files: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawModelProvider {
    #[serde(deserialize_with = "scalar_string")]
    provider: String,
    label: I18nObject,
    description: Option<I18nObject>,
    icon_small: Option<I18nObject>,
    icon_large: Option<I18nObject>,
    icon_small_dark: Option<I18nObject>,
    icon_large_dark: Option<I18nObject>,
    background: Option<String>,
    help: Option<ModelProviderHelp>,
    #[serde(deserialize_with = "string_vec")]
    supported_model_types: Vec<String>,
    #[serde(deserialize_with = "string_vec")]
    configurate_methods: Vec<String>,
    provider_credential_schema: Option<ProviderCredentialSchema>,
    model_credential_schema: Option<ModelCredentialSchema>,
    position: Option<ModelPosition>,
    models: Option<ModelsField>,
    extra: Option<serde_json::Value>,
}

/// `models.<type>` in a provider file: glob list and optional position file.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelSource {
    #[serde(deserialize_with = "string_vec")]
    predefined: Vec<String>,
    #[serde(deserialize_with = "super::common::opt_scalar_string")]
    position: Option<String>,
}

/// The `models:` key: inline models (sequence) or sources by model type (mapping, file order).
enum ModelsField {
    Inline(Vec<ModelDeclaration>),
    BySource(Vec<(String, Option<ModelSource>)>),
}

impl<'de> Deserialize<'de> for ModelsField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ModelsField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of models or a mapping of model type to sources")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ModelsField::Inline(Vec::new()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<ModelDeclaration>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(ModelsField::Inline)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut sources = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if MODEL_SOURCE_TYPES.contains(&key.as_str()) {
                        // A non-mapping value is ignored, as upstream.
                        let value: serde_json::Value = map.next_value()?;
                        let source = match value {
                            serde_json::Value::Object(_) => serde_json::from_value::<ModelSource>(value).ok(),
                            _ => None,
                        };
                        sources.push((key, source));
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(ModelsField::BySource(sources))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl TryFrom<RawModelProvider> for ModelProviderDeclaration {
    type Error = String;

    fn try_from(raw: RawModelProvider) -> Result<Self, Self::Error> {
        let mut models = Vec::new();
        let mut model_files = Vec::new();
        let mut position_files = BTreeMap::new();
        let mut listed_by_source = false;
        match raw.models {
            Some(ModelsField::Inline(items)) => {
                for mut model in items {
                    model.fill_in_defaults();
                    models.push(model);
                }
            }
            Some(ModelsField::BySource(sources)) => {
                listed_by_source = true;
                for (key, source) in sources {
                    let Some(source) = source else { continue };
                    if let Some(position) = source.position {
                        position_files.insert(key, position);
                    }
                    model_files.extend(source.predefined);
                }
            }
            None => {}
        }
        Ok(Self {
            provider: raw.provider,
            label: raw.label,
            description: raw.description,
            icon_small: raw.icon_small,
            icon_large: raw.icon_large,
            icon_small_dark: raw.icon_small_dark,
            icon_large_dark: raw.icon_large_dark,
            background: raw.background,
            help: raw.help,
            supported_model_types: raw.supported_model_types,
            configurate_methods: raw.configurate_methods,
            provider_credential_schema: raw.provider_credential_schema,
            model_credential_schema: raw.model_credential_schema,
            // Upstream creates the position object whenever models are listed by type, even
            // without position files.
            position: if listed_by_source { Some(raw.position.unwrap_or_default()) } else { raw.position },
            models,
            extra: raw.extra,
            model_files,
            position_files,
        })
    }
}
