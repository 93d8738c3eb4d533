//! Expansion of Dify's built-in JSON-Schema references (`https://dify.ai/schemas/v1/<name>.json`)
//! inside tool `output_schema`s, as Dify does before showing a tool.
//!
//! Owns the small registry of known schemas and the walk that replaces `{"$ref": uri}` objects.
//! Unknown references stay as they are; a reference cycle is marked with `"$circular_ref": true`
//! instead of looping. It must not fetch anything over the network.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Deepest nesting the walk descends into; deeper parts are left untouched.
pub const MAX_SCHEMA_DEPTH: usize = 30;

const DIFY_SCHEMA_PREFIX: &str = "https://dify.ai/schemas/";

/// Known schemas by URI.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    schemas: HashMap<String, Value>,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl SchemaRegistry {
    /// The schemas Dify ships: currently the v1 file object.
    pub fn builtin() -> Self {
        let mut registry = SchemaRegistry { schemas: HashMap::new() };
        let text = |description: &str| json!({"type": "string", "description": description});
        registry.insert(
            "https://dify.ai/schemas/v1/file.json",
            json!({
                "type": "object",
                "title": "File Schema",
                "description": "A file produced or consumed by a tool",
                "properties": {
                    "name": text("file name"),
                    "size": {"type": "number", "description": "size in bytes"},
                    "extension": text("file extension"),
                    "type": text("file type"),
                    "mime_type": text("MIME type"),
                    "transfer_method": text("how the file is transferred"),
                    "url": text("where the file can be fetched"),
                    "related_id": text("id of the related record")
                },
                "required": ["name"]
            }),
        );
        registry
    }

    /// Adds or replaces a schema. Metadata keys (`$id`, `$schema`, `version`) are dropped, as they
    /// must not appear in the expanded output.
    pub fn insert(&mut self, uri: &str, mut schema: Value) {
        if let Value::Object(map) = &mut schema {
            for key in ["$id", "$schema", "version"] {
                map.remove(key);
            }
        }
        self.schemas.insert(uri.to_string(), schema);
    }

    fn get(&self, uri: &str) -> Option<&Value> {
        self.schemas.get(uri)
    }
}

fn is_dify_ref(uri: &str) -> bool {
    uri.strip_prefix(DIFY_SCHEMA_PREFIX).and_then(|rest| rest.split_once('/')).is_some_and(|(version, name)| {
        version.len() > 1
            && version.starts_with('v')
            && version[1..].bytes().all(|b| b.is_ascii_digit())
            && name.len() > ".json".len()
            && name.ends_with(".json")
    })
}

/// Replaces every Dify `$ref` in `schema` by the referenced schema, recursively.
pub fn resolve_schema_refs(schema: &mut Value, registry: &SchemaRegistry) {
    let mut path = Vec::new();
    walk(schema, registry, &mut path, 0);
}

fn walk(value: &mut Value, registry: &SchemaRegistry, path: &mut Vec<String>, depth: usize) {
    if depth >= MAX_SCHEMA_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let reference = match map.get("$ref") {
                Some(Value::String(uri)) if is_dify_ref(uri) => Some(uri.clone()),
                _ => None,
            };
            match reference {
                Some(uri) => expand(value, &uri, registry, path, depth),
                None => {
                    for child in map.values_mut() {
                        walk(child, registry, path, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                walk(child, registry, path, depth + 1);
            }
        }
        _ => {}
    }
}

fn expand(value: &mut Value, uri: &str, registry: &SchemaRegistry, path: &mut Vec<String>, depth: usize) {
    if path.iter().any(|seen| seen == uri) {
        if let Value::Object(map) = value {
            map.insert("$circular_ref".to_string(), Value::Bool(true));
        }
        return;
    }
    let Some(target) = registry.get(uri) else {
        return;
    };
    *value = target.clone();
    path.push(uri.to_string());
    walk(value, registry, path, depth + 1);
    path.pop();
}

/// Convenience for a declaration object: resolves `output_schema` of each tool in `tools`.
pub(crate) fn resolve_tool_output_schemas(declaration: &mut Map<String, Value>, registry: &SchemaRegistry) {
    if let Some(Value::Array(tools)) = declaration.get_mut("tools") {
        for tool in tools {
            if let Some(schema) = tool.get_mut("output_schema") {
                resolve_schema_refs(schema, registry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_nested_file_refs() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "report": {"$ref": "https://dify.ai/schemas/v1/file.json"},
                "list": {"type": "array", "items": {"$ref": "https://dify.ai/schemas/v1/file.json"}},
                "other": {"$ref": "#/definitions/local"}
            }
        });
        resolve_schema_refs(&mut schema, &SchemaRegistry::builtin());
        assert_eq!(schema["properties"]["report"]["type"], "object");
        assert_eq!(schema["properties"]["report"]["required"], json!(["name"]));
        assert_eq!(schema["properties"]["list"]["items"]["properties"]["url"]["type"], "string");
        assert_eq!(schema["properties"]["other"], json!({"$ref": "#/definitions/local"}));
        assert!(schema["properties"]["report"].get("$ref").is_none());
    }

    #[test]
    fn unknown_dify_ref_is_left_alone_and_cycles_are_marked() {
        let mut registry = SchemaRegistry::builtin();
        registry.insert(
            "https://dify.ai/schemas/v1/loop.json",
            json!({"$id": "x", "type": "object", "properties": {"next": {"$ref": "https://dify.ai/schemas/v1/loop.json"}}}),
        );
        let mut schema =
            json!({"a": {"$ref": "https://dify.ai/schemas/v9/missing.json"}, "b": {"$ref": "https://dify.ai/schemas/v1/loop.json"}});
        resolve_schema_refs(&mut schema, &registry);
        assert_eq!(schema["a"], json!({"$ref": "https://dify.ai/schemas/v9/missing.json"}));
        assert!(schema["b"].get("$id").is_none());
        assert_eq!(schema["b"]["properties"]["next"]["$circular_ref"], true);
    }

    #[test]
    fn recognises_only_dify_uris() {
        assert!(is_dify_ref("https://dify.ai/schemas/v1/file.json"));
        assert!(!is_dify_ref("https://dify.ai/schemas/file.json"));
        assert!(!is_dify_ref("https://example.com/schemas/v1/file.json"));
        assert!(!is_dify_ref("https://dify.ai/schemas/v1/.json"));
    }
}
