//! Casting and checking tool parameters against the tool's declared parameters before an
//! invocation is sent, so a bad value is a clear local error instead of a plugin failure.
//!
//! Owns the per-type rules (string, number, boolean, select with its options, secret-input,
//! file/files, and pass-through for the selector/object types). It reads declarations as JSON so it
//! works on any declaration type that serialises to the manifest shape. It must not send requests.

use serde_json::{Map, Number, Value};

use crate::error::ClientError;

/// The parts of one declared tool parameter that decide how a value is cast.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterRule {
    pub name: String,
    /// The declared `type` (`string`, `number`, `boolean`, `select`, `secret-input`, `file`, `files`, ...).
    pub kind: String,
    pub required: bool,
    pub default: Option<Value>,
    /// Allowed values of a `select`.
    pub options: Vec<String>,
}

impl ParameterRule {
    /// Reads a rule from a declared parameter object (`{name, type, required, default, options}`).
    pub fn from_declaration(parameter: &Value) -> Option<ParameterRule> {
        let name = parameter.get("name")?.as_str()?.to_string();
        let kind = parameter.get("type").and_then(Value::as_str).unwrap_or("string").to_string();
        let required = parameter.get("required").and_then(Value::as_bool).unwrap_or(false);
        let default = parameter.get("default").filter(|v| !v.is_null()).cloned();
        let options = parameter
            .get("options")
            .and_then(Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(|option| match option.get("value")? {
                        Value::String(text) => Some(text.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ParameterRule { name, kind, required, default, options })
    }
}

/// Casts `given` by `rules`. Missing parameters take their default; a missing required parameter
/// without default is an error. Parameters not declared are passed through unchanged. Every
/// problem is reported at once.
pub fn cast_tool_parameters(rules: &[ParameterRule], given: &Map<String, Value>) -> Result<Map<String, Value>, ClientError> {
    let mut problems = Vec::new();
    let mut cast = Map::new();
    for rule in rules {
        let value = match given.get(&rule.name) {
            Some(value) if !is_empty(value) => value.clone(),
            _ => match &rule.default {
                Some(default) => default.clone(),
                None if rule.required => {
                    problems.push(format!("parameter `{}` is required", rule.name));
                    continue;
                }
                None => continue,
            },
        };
        match cast_value(rule, value) {
            Ok(value) => {
                cast.insert(rule.name.clone(), value);
            }
            Err(problem) => problems.push(format!("parameter `{}`: {problem}", rule.name)),
        }
    }
    for (name, value) in given {
        if !rules.iter().any(|rule| &rule.name == name) {
            cast.insert(name.clone(), value.clone());
        }
    }
    if problems.is_empty() {
        Ok(cast)
    } else {
        Err(ClientError::Validation(problems.join("; ")))
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn cast_value(rule: &ParameterRule, value: Value) -> Result<Value, String> {
    match rule.kind.as_str() {
        "string" | "secret-input" => as_string(value),
        "select" => {
            let text = as_string(value)?;
            let chosen = text.as_str().unwrap_or_default();
            if !rule.options.is_empty() && !rule.options.iter().any(|option| option == chosen) {
                return Err(format!("`{chosen}` is not one of the options [{}]", rule.options.join(", ")));
            }
            Ok(text)
        }
        "number" => as_number(value),
        "boolean" => as_boolean(value),
        "file" => match value {
            Value::Array(mut files) if files.len() == 1 => Ok(files.remove(0)),
            Value::Array(files) => Err(format!("expects exactly one file, got {}", files.len())),
            Value::Object(_) | Value::String(_) => Ok(value),
            other => Err(format!("expects a file object, got {}", type_name(&other))),
        },
        "files" | "system-files" => match value {
            Value::Array(_) => Ok(value),
            Value::Object(_) | Value::String(_) => Ok(Value::Array(vec![value])),
            other => Err(format!("expects a list of files, got {}", type_name(&other))),
        },
        "array" => match value {
            Value::Array(_) => Ok(value),
            Value::String(text) => match serde_json::from_str::<Value>(&text) {
                Ok(list @ Value::Array(_)) => Ok(list),
                _ => Ok(Value::Array(vec![Value::String(text)])),
            },
            other => Ok(Value::Array(vec![other])),
        },
        "object" => match value {
            Value::Object(_) => Ok(value),
            Value::String(text) => match serde_json::from_str::<Value>(&text) {
                Ok(object @ Value::Object(_)) => Ok(object),
                _ => Err("expects a JSON object".to_string()),
            },
            other => Err(format!("expects a JSON object, got {}", type_name(&other))),
        },
        // Selectors, `any`, `dynamic-select` and future types are the plugin's business.
        _ => Ok(value),
    }
}

fn as_string(value: Value) -> Result<Value, String> {
    match value {
        Value::String(_) => Ok(value),
        Value::Number(number) => Ok(Value::String(number.to_string())),
        Value::Bool(flag) => Ok(Value::String(flag.to_string())),
        Value::Null => Ok(Value::String(String::new())),
        other => Err(format!("expects a string, got {}", type_name(&other))),
    }
}

fn as_number(value: Value) -> Result<Value, String> {
    match value {
        Value::Number(_) => Ok(value),
        Value::String(text) => {
            let trimmed = text.trim();
            let parsed = if trimmed.contains(['.', 'e', 'E']) {
                trimmed.parse::<f64>().ok().and_then(Number::from_f64)
            } else {
                trimmed.parse::<i64>().ok().map(Number::from)
            };
            parsed.map(Value::Number).ok_or_else(|| format!("`{text}` is not a number"))
        }
        other => Err(format!("expects a number, got {}", type_name(&other))),
    }
}

fn as_boolean(value: Value) -> Result<Value, String> {
    match value {
        Value::Bool(_) => Ok(value),
        Value::String(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("`{text}` is not a boolean (true/false, yes/no, 1/0)")),
        },
        Value::Number(number) => match number.as_f64() {
            Some(0.0) => Ok(Value::Bool(false)),
            Some(1.0) => Ok(Value::Bool(true)),
            _ => Err(format!("`{number}` is not a boolean (0 or 1)")),
        },
        other => Err(format!("expects a boolean, got {}", type_name(&other))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Vec<ParameterRule> {
        let declared = json!([
            {"name": "text", "type": "string", "required": true},
            {"name": "count", "type": "number", "required": false, "default": 3},
            {"name": "loud", "type": "boolean"},
            {"name": "mode", "type": "select", "options": [{"value": "fast", "label": {"en_US": "Fast"}}, {"value": "slow", "label": {"en_US": "Slow"}}]},
            {"name": "token", "type": "secret-input"},
            {"name": "doc", "type": "file"},
            {"name": "docs", "type": "files"}
        ]);
        declared.as_array().unwrap().iter().filter_map(ParameterRule::from_declaration).collect()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn casts_each_type() {
        let cast = cast_tool_parameters(
            &rules(),
            &object(json!({"text": 42, "loud": "yes", "mode": "slow", "token": true, "doc": [{"url": "u"}], "docs": {"url": "v"}, "extra": [1]})),
        )
        .unwrap();
        assert_eq!(cast["text"], "42");
        assert_eq!(cast["count"], 3);
        assert_eq!(cast["loud"], true);
        assert_eq!(cast["mode"], "slow");
        assert_eq!(cast["token"], "true");
        assert_eq!(cast["doc"], json!({"url": "u"}));
        assert_eq!(cast["docs"], json!([{"url": "v"}]));
        assert_eq!(cast["extra"], json!([1]));
    }

    #[test]
    fn numbers_from_strings() {
        let cast = cast_tool_parameters(&rules(), &object(json!({"text": "t", "count": "2.5"}))).unwrap();
        assert_eq!(cast["count"], 2.5);
        let cast = cast_tool_parameters(&rules(), &object(json!({"text": "t", "count": "7"}))).unwrap();
        assert_eq!(cast["count"], 7);
    }

    #[test]
    fn reports_every_problem() {
        let error = cast_tool_parameters(&rules(), &object(json!({"count": "many", "loud": "perhaps", "mode": "medium", "doc": [{}, {}]})))
            .unwrap_err();
        let text = error.to_string();
        for expected in [
            "`text` is required",
            "`many` is not a number",
            "`perhaps` is not a boolean",
            "`medium` is not one of the options [fast, slow]",
            "exactly one file",
        ] {
            assert!(text.contains(expected), "{text} lacks {expected}");
        }
    }

    #[test]
    fn string_rejects_objects() {
        let error = cast_tool_parameters(&rules(), &object(json!({"text": {"a": 1}}))).unwrap_err();
        assert!(error.to_string().contains("expects a string, got an object"));
    }
}
