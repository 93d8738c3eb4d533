//! Building blocks shared by every declaration: i18n strings, provider config forms, parameter
//! options, OAuth schemas, the "path or inline" list items of provider files, and Go-compatible
//! timestamps. Pure data; no file access.

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, TimeZone, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string in the four languages Dify knows. Other languages in the source are dropped; `null`
/// decodes as empty (as Go leaves a struct untouched on `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, from = "NullableI18n")]
pub struct I18nObject {
    #[serde(rename = "en_US", deserialize_with = "string_or_null")]
    pub en_us: String,
    #[serde(rename = "ja_JP", skip_serializing_if = "String::is_empty", deserialize_with = "string_or_null")]
    pub ja_jp: String,
    #[serde(rename = "zh_Hans", skip_serializing_if = "String::is_empty", deserialize_with = "string_or_null")]
    pub zh_hans: String,
    #[serde(rename = "pt_BR", skip_serializing_if = "String::is_empty", deserialize_with = "string_or_null")]
    pub pt_br: String,
}

/// Wire form of [`I18nObject`] that tolerates `null`.
#[derive(Deserialize)]
#[serde(transparent)]
struct NullableI18n(Option<I18nFields>);

#[derive(Deserialize, Default)]
#[serde(default)]
struct I18nFields {
    #[serde(rename = "en_US", deserialize_with = "string_or_null")]
    en_us: String,
    #[serde(rename = "ja_JP", deserialize_with = "string_or_null")]
    ja_jp: String,
    #[serde(rename = "zh_Hans", deserialize_with = "string_or_null")]
    zh_hans: String,
    #[serde(rename = "pt_BR", deserialize_with = "string_or_null")]
    pt_br: String,
}

impl From<NullableI18n> for I18nObject {
    fn from(value: NullableI18n) -> Self {
        let fields = value.0.unwrap_or_default();
        Self { en_us: fields.en_us, ja_jp: fields.ja_jp, zh_hans: fields.zh_hans, pt_br: fields.pt_br }
    }
}

impl I18nObject {
    /// The same text in every language.
    pub fn all(text: &str) -> Self {
        Self { en_us: text.into(), ja_jp: text.into(), zh_hans: text.into(), pt_br: text.into() }
    }

    /// The text for a language code (`en_US`, `ja_JP`, `zh_Hans`, `pt_BR`), if set.
    pub fn get(&self, language: &str) -> Option<&str> {
        let text = match language {
            "en_US" => &self.en_us,
            "ja_JP" => &self.ja_jp,
            "zh_Hans" => &self.zh_hans,
            "pt_BR" => &self.pt_br,
            _ => return None,
        };
        (!text.is_empty()).then_some(text.as_str())
    }

    /// Every non-empty value with its language code.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [("en_US", &self.en_us), ("ja_JP", &self.ja_jp), ("zh_Hans", &self.zh_hans), ("pt_BR", &self.pt_br)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.as_str()))
    }
}

/// Go decodes a YAML/JSON null into a string field as "" — do the same.
pub(crate) fn string_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<ScalarString>::deserialize(deserializer)?.map(|s| s.0).unwrap_or_default())
}

/// A string that YAML authors sometimes write as a bare number or boolean (`version: 3.12`,
/// `value: 1`). Go's yaml.v3 accepts scalars of any kind into a string field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScalarString(pub(crate) String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ScalarString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<ScalarString, E> {
                Ok(ScalarString(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        // `deserialize_str` makes YAML hand over the scalar's source text (`3.10` stays "3.10",
        // like Go's yaml.v3); the numeric visits cover self-describing sources.
        deserializer.deserialize_str(Visitor)
    }
}

pub(crate) fn scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    string_or_null(deserializer)
}

pub(crate) fn opt_scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<ScalarString>::deserialize(deserializer)?.map(|s| s.0))
}

/// A list that may be written as `null`; Go treats both as empty.
pub(crate) fn vec_or_null<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list of strings whose items may be bare scalars.
pub(crate) fn string_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<ScalarString>>::deserialize(deserializer)?.unwrap_or_default().into_iter().map(|s| s.0).collect())
}

/// Serializes an empty list as `null`, like a nil Go slice.
pub(crate) fn null_if_empty<S: Serializer, T: Serialize>(value: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_empty() {
        serializer.serialize_none()
    } else {
        value.serialize(serializer)
    }
}

/// One item of a provider file's list (`tools:`, `strategies:`, `endpoints:`, …): either the
/// path of another YAML file in the package, or the declaration written inline.
///
/// Decoded with a hand-written visitor rather than `#[serde(untagged)]`: untagged enums buffer
/// the input, which loses YAML scalar text (`1.0` would become `1`).
#[derive(Debug, Clone)]
pub(crate) enum FileOrInline<T> {
    File(String),
    Inline(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FileOrInline<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = FileOrInline<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a file path or an inline declaration")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FileOrInline::File(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(FileOrInline::File(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(FileOrInline::Inline)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// Splits a list of "path or inline" items into (inline declarations, referenced files).
pub(crate) fn split_file_or_inline<T>(items: Option<Vec<FileOrInline<T>>>) -> (Vec<T>, Vec<String>) {
    let mut inline = Vec::new();
    let mut files = Vec::new();
    for item in items.unwrap_or_default() {
        match item {
            FileOrInline::File(path) => files.push(path),
            FileOrInline::Inline(declaration) => inline.push(declaration),
        }
    }
    (inline, files)
}

/// An option of a `select` provider config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigOption {
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
    pub label: I18nObject,
}

/// A form field of credentials, settings, OAuth client config or subscription schema
/// (`ProviderConfig` upstream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    #[serde(deserialize_with = "scalar_string")]
    pub name: String,
    /// secret-input, text-input, select, boolean, model-selector, app-selector, array[tools], any.
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub config_type: String,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub scope: Option<String>,
    pub required: bool,
    pub default: serde_json::Value,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub options: Vec<ConfigOption>,
    pub multiple: bool,
    pub label: I18nObject,
    pub help: Option<I18nObject>,
    #[serde(deserialize_with = "opt_scalar_string")]
    pub url: Option<String>,
    pub placeholder: Option<I18nObject>,
}

/// Credentials written either as a list of configs or as a mapping `name → config`.
#[derive(Debug, Clone)]
pub(crate) struct ConfigListOrMap(Vec<ProviderConfig>);

impl<'de> Deserialize<'de> for ConfigListOrMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ConfigListOrMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of configs or a mapping of name to config")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ConfigListOrMap(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(ConfigListOrMap(Vec::new()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<ProviderConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(ConfigListOrMap)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut configs = Vec::new();
                while let Some(name) = map.next_key::<ScalarString>()? {
                    let mut config: ProviderConfig = map.next_value()?;
                    config.name = name.0;
                    configs.push(config);
                }
                Ok(ConfigListOrMap(configs))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ConfigListOrMap {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_configs(self) -> Result<Vec<ProviderConfig>, String> {
        Ok(self.0)
    }
}

/// Resolves `credentials_schema`, falling back to the legacy `credentials_for_provider` key when
/// the former is absent or empty.
pub(crate) fn resolve_credentials(schema: Option<ConfigListOrMap>, legacy: Option<ConfigListOrMap>) -> Result<Vec<ProviderConfig>, String> {
    let chosen = match schema {
        Some(schema) if !schema.is_empty() => Some(schema),
        _ => legacy,
    };
    match chosen {
        Some(chosen) => chosen.into_configs(),
        None => Ok(Vec::new()),
    }
}

/// OAuth forms: what the admin sets (`client_schema`) and what the flow yields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuthSchema {
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub client_schema: Vec<ProviderConfig>,
    #[serde(deserialize_with = "vec_or_null", serialize_with = "null_if_empty")]
    pub credentials_schema: Vec<ProviderConfig>,
}

/// An option of a `select` parameter of a tool, strategy or datasource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParameterOption {
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
    pub label: I18nObject,
    #[serde(deserialize_with = "scalar_string")]
    pub icon: String,
}

/// `auto_generate: {type: prompt_instruction}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParameterAutoGenerate {
    #[serde(rename = "type", deserialize_with = "scalar_string")]
    pub generate_type: String,
}

/// `template: {enabled}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParameterTemplate {
    pub enabled: bool,
}

/// Go's zero `time.Time`, used when `created_at` is missing.
pub fn zero_time() -> DateTime<FixedOffset> {
    FixedOffset::east_opt(0)
        .and_then(|utc| utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single())
        .expect("year 1 is representable")
}

/// Formats like Go's `time.RFC3339Nano`: fractional seconds without trailing zeros, `Z` for UTC.
pub fn format_go_time(time: &DateTime<FixedOffset>) -> String {
    let base = time.to_rfc3339_opts(SecondsFormat::Secs, true);
    let nanos = time.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return base;
    }
    let fraction = format!("{nanos:09}");
    let fraction = fraction.trim_end_matches('0');
    // Insert the fraction after the seconds (position 19 in "YYYY-MM-DDTHH:MM:SS...").
    match base.get(..19) {
        Some(head) => format!("{head}.{fraction}{}", &base[19..]),
        None => base,
    }
}

/// Parses the timestamp forms Go accepts for `created_at` (RFC 3339 with or without fraction,
/// or a bare date).
pub fn parse_go_time(value: &str) -> Result<DateTime<FixedOffset>, String> {
    let trimmed = value.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(time);
    }
    // yaml.v3 also accepts a space instead of 'T' and a plain date.
    if let Ok(time) = DateTime::parse_from_rfc3339(&trimmed.replacen(' ', "T", 1)) {
        return Ok(time);
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        let utc = FixedOffset::east_opt(0).expect("zero offset");
        if let Some(time) = date.and_hms_opt(0, 0, 0).and_then(|dt| utc.from_local_datetime(&dt).single()) {
            return Ok(time);
        }
    }
    Err(format!("cannot parse {value:?} as an RFC 3339 timestamp"))
}

pub(crate) mod go_time {
    use super::*;

    pub fn serialize<S: Serializer>(time: &DateTime<FixedOffset>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<FixedOffset>, D::Error> {
        match Option::<ScalarString>::deserialize(deserializer)? {
            None => Ok(zero_time()),
            Some(s) if s.0.is_empty() => Ok(zero_time()),
            Some(s) => parse_go_time(&s.0).map_err(serde::de::Error::custom),
        }
    }
}
