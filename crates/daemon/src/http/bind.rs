//! Request binding the way upstream binds: query strings and JSON bodies are decoded leniently
//! (decode errors leave fields empty), then validated; a validation failure is HTTP 400 with a
//! `PluginDaemonBadRequestError` whose message mimics the Go validator's text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dify_protocol::DaemonError;
use serde_json::Value;

use super::fail_with_status;

/// A request that failed validation; renders as HTTP 400 + `PluginDaemonBadRequestError`.
#[derive(Debug)]
pub struct BindError(DaemonError);

impl BindError {
    /// A failure with its own (already worded) message.
    pub fn new(error: DaemonError) -> BindError {
        BindError(error)
    }
}

impl IntoResponse for BindError {
    fn into_response(self) -> Response {
        fail_with_status(StatusCode::BAD_REQUEST, self.0)
    }
}

/// A validation failure, worded as the Go validator words it.
pub fn invalid(struct_name: &str, field: &str, tag: &str) -> BindError {
    BindError(DaemonError::bad_request(format!(
        "Key: '{struct_name}.{field}' Error:Field validation for '{field}' failed on the '{tag}' tag"
    )))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed query string (repeatable keys kept in order).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(pair), String::new()),
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `key` (empty string when absent).
    pub fn get(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// An integer value; unparsable or absent values are 0 (as upstream's lenient decoding).
    pub fn int(&self, key: &str) -> i64 {
        self.get(key).trim().parse().unwrap_or(0)
    }

    /// `page` (required, ≥ 1) and `page_size` (required, 1..=max).
    pub fn page(&self, struct_name: &str, max: i64) -> Result<(i64, i64), BindError> {
        let page = self.int("page");
        let page_size = self.int("page_size");
        if page == 0 {
            return Err(invalid(struct_name, "Page", "required"));
        }
        if page < 1 {
            return Err(invalid(struct_name, "Page", "min"));
        }
        if page_size == 0 {
            return Err(invalid(struct_name, "PageSize", "required"));
        }
        if page_size < 1 {
            return Err(invalid(struct_name, "PageSize", "min"));
        }
        if page_size > max {
            return Err(invalid(struct_name, "PageSize", "max"));
        }
        Ok((page, page_size))
    }

    /// A required non-empty string.
    pub fn required(&self, struct_name: &str, key: &str, go_field: &str) -> Result<String, BindError> {
        let v = self.get(key);
        if v.is_empty() {
            return Err(invalid(struct_name, go_field, "required"));
        }
        Ok(v.to_string())
    }
}

/// A JSON body decoded leniently: invalid JSON is an empty object.
pub fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// A required non-empty string field of a JSON body.
pub fn required_str(body: &Value, key: &str, struct_name: &str, go_field: &str) -> Result<String, BindError> {
    match body.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(invalid(struct_name, go_field, "required")),
    }
}

/// A required (non-null) array of strings; `max` bounds its length.
pub fn required_str_list(body: &Value, key: &str, struct_name: &str, go_field: &str, max: usize) -> Result<Vec<String>, BindError> {
    let Some(items) = body.get(key).and_then(Value::as_array) else {
        return Err(invalid(struct_name, go_field, "required"));
    };
    if items.len() > max {
        return Err(invalid(struct_name, go_field, "max"));
    }
    items
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid(struct_name, go_field, "dive")))
        .collect()
}

/// Checks every identifier of a list against the identifier rules (validator tag
/// `plugin_unique_identifier`).
pub fn valid_identifiers(ids: &[String], struct_name: &str, go_field: &str) -> Result<(), BindError> {
    for (i, id) in ids.iter().enumerate() {
        if !dify_protocol::identifier::is_valid_identifier(id) {
            return Err(invalid(struct_name, &format!("{go_field}[{i}]"), "plugin_unique_identifier"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("a=1&tags=x&tags=y%20z&id=langgenius%2Fopenai%3A0.0.1%40ab&e=&f"));
        assert_eq!(q.get("a"), "1");
        assert_eq!(q.all("tags"), vec!["x", "y z"]);
        assert_eq!(q.get("id"), "langgenius/openai:0.0.1@ab");
        assert_eq!(q.get("missing"), "");
        assert_eq!(q.int("a"), 1);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
