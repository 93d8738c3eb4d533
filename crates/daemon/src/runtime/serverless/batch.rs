//! Request-size batching for serverless functions (docs/protocol.md §3.3): a text-embedding request
//! (`invoke_text_embedding`, `get_text_embedding_num_tokens`) whose body exceeds
//! `MAX_SERVERLESS_REQUEST_BYTES` is split by its `texts` into requests that each fit, and the batch
//! results are merged back into one answer.
//!
//! Owns the split arithmetic, the merge rules and their error texts. Must not: do I/O (the bridge runs
//! the batches), or batch any other action.

use serde_json::{Map, Value};

use dify_protocol::message::PluginSessionError;

/// Actions whose requests are split by `texts`.
pub const BATCHED_ACTIONS: &[&str] = &["invoke_text_embedding", "get_text_embedding_num_tokens"];

pub fn is_batched_action(action: &str) -> bool {
    BATCHED_ACTIONS.contains(&action)
}

/// `ServerlessPayloadTooLarge: action=… payload_bytes=… max_request_bytes=…[ item_index=…]`.
pub fn payload_too_large(action: &str, payload_bytes: usize, max_request_bytes: usize, item_index: Option<usize>) -> PluginSessionError {
    let mut message =
        format!("ServerlessPayloadTooLarge: action={action} payload_bytes={payload_bytes} max_request_bytes={max_request_bytes}");
    if let Some(index) = item_index {
        message.push_str(&format!(" item_index={index}"));
    }
    PluginSessionError::new("ServerlessPayloadTooLarge", message)
}

/// One request of a split: its exact body and how many texts it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub items: usize,
}

fn with_texts(request: &Value, texts: &[Value]) -> Value {
    let mut copy = request.clone();
    if let Some(data) = copy.get_mut("data").and_then(Value::as_object_mut) {
        data.insert("texts".into(), Value::Array(texts.to_vec()));
    }
    copy
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX)
}

/// Splits `request` (the in-stream request message) into bodies of at most `max` bytes, keeping the
/// order of `texts`. A request without a `texts` list, whose fixed part alone is too large, or with a
/// single text that cannot fit, fails with `ServerlessPayloadTooLarge`.
pub fn split_request(request: &Value, action: &str, max: usize) -> Result<Vec<Batch>, PluginSessionError> {
    let full_size = encoded_len(request);
    let Some(texts) = request["data"]["texts"].as_array().filter(|texts| !texts.is_empty()) else {
        return Err(payload_too_large(action, full_size, max, None));
    };
    let base = encoded_len(&with_texts(request, &[]));
    if base > max {
        return Err(payload_too_large(action, base, max, None));
    }
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = base;
    let close = |start: usize, end: usize, batches: &mut Vec<Batch>| -> Result<(), PluginSessionError> {
        let body = serde_json::to_vec(&with_texts(request, &texts[start..end])).unwrap_or_default();
        if body.len() > max {
            return Err(payload_too_large(action, body.len(), max, Some(start)));
        }
        batches.push(Batch { body, items: end - start });
        Ok(())
    };
    for (index, text) in texts.iter().enumerate() {
        let length = encoded_len(text);
        let separator = usize::from(index > start);
        let candidate = size.saturating_add(length).saturating_add(separator);
        if candidate <= max {
            size = candidate;
            continue;
        }
        if index == start {
            return Err(payload_too_large(action, candidate, max, Some(index)));
        }
        close(start, index, &mut batches)?;
        start = index;
        size = base.saturating_add(length);
        if size > max {
            return Err(payload_too_large(action, size, max, Some(index)));
        }
    }
    close(start, texts.len(), &mut batches)?;
    Ok(batches)
}

/// What one batch returned: its stream items (exactly one is expected).
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub index: usize,
    pub expected_items: usize,
    pub responses: Vec<Value>,
}

fn mismatch(action: &str, batch: &BatchResult, actual_items: usize, reason: &str) -> PluginSessionError {
    PluginSessionError::new(
        "ServerlessBatchResultMismatch",
        format!(
            "ServerlessBatchResultMismatch: action={action} batch_index={} expected_items={} actual_items={actual_items} response_count={} reason={reason}",
            batch.index,
            batch.expected_items,
            batch.responses.len()
        ),
    )
}

/// Merges the batch results into the one answer the plugin would have given for the whole request.
pub fn merge_results(action: &str, results: Vec<BatchResult>) -> Result<Value, PluginSessionError> {
    let mut merged: Option<Map<String, Value>> = None;
    let mut list: Vec<Value> = Vec::new();
    let list_key = if action == "get_text_embedding_num_tokens" { "num_tokens" } else { "embeddings" };
    let mut tokens: i64 = 0;
    let mut total_tokens: i64 = 0;
    let mut latency: f64 = 0.0;
    let mut total_price: Option<Value> = None;
    for batch in &results {
        if batch.responses.len() != 1 {
            return Err(mismatch(action, batch, 0, "expected exactly one response"));
        }
        let Some(response) = batch.responses[0].as_object() else {
            return Err(mismatch(action, batch, 0, "response is not an object"));
        };
        let items = response.get(list_key).and_then(Value::as_array).cloned().unwrap_or_default();
        if items.len() != batch.expected_items {
            return Err(mismatch(action, batch, items.len(), &format!("{list_key} count does not match the batch")));
        }
        list.extend(items);
        if list_key == "embeddings" {
            let usage = response.get("usage").cloned().unwrap_or(Value::Null);
            if let Some(first) = &merged {
                if first.get("model") != response.get("model") {
                    return Err(mismatch(action, batch, batch.expected_items, "model differs between batches"));
                }
                for field in ["unit_price", "price_unit", "currency"] {
                    if decimal_text(&first["usage"][field]) != decimal_text(&usage[field]) {
                        return Err(mismatch(action, batch, batch.expected_items, &format!("usage.{field} differs between batches")));
                    }
                }
            }
            tokens += usage["tokens"].as_i64().unwrap_or(0);
            total_tokens += usage["total_tokens"].as_i64().unwrap_or(0);
            latency += usage["latency"].as_f64().unwrap_or(0.0);
            total_price = Some(match total_price {
                None => usage["total_price"].clone(),
                Some(sum) => add_decimals(&sum, &usage["total_price"])
                    .ok_or_else(|| mismatch(action, batch, batch.expected_items, "usage.total_price is not a decimal"))?,
            });
        }
        if merged.is_none() {
            merged = Some(response.clone());
        }
    }
    let mut merged = merged.unwrap_or_default();
    merged.insert(list_key.into(), Value::Array(list));
    if list_key == "embeddings" {
        if let Some(usage) = merged.get_mut("usage").and_then(Value::as_object_mut) {
            usage.insert("tokens".into(), Value::from(tokens));
            usage.insert("total_tokens".into(), Value::from(total_tokens));
            usage.insert("latency".into(), Value::from(latency));
            usage.insert("total_price".into(), total_price.unwrap_or(Value::Null));
        }
    }
    Ok(Value::Object(merged))
}

fn decimal_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A decimal as `mantissa × 10^-scale`.
fn parse_decimal(text: &str) -> Option<(i128, u32)> {
    let text = text.trim();
    let (number, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut scale = fraction.len() as i64 - i64::from(exponent);
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    if negative {
        mantissa = -mantissa;
    }
    Some((mantissa, u32::try_from(scale).ok()?))
}

fn format_decimal(mantissa: i128, scale: u32) -> String {
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    let (whole, fraction) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        ("0".to_string(), format!("{}{digits}", "0".repeat(scale - digits.len())))
    };
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative && (whole != "0" || !fraction.is_empty()) { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// Exact decimal sum of two prices given as strings or numbers; the result is a string when `a` was.
fn add_decimals(a: &Value, b: &Value) -> Option<Value> {
    let (ma, sa) = parse_decimal(&decimal_text(a)?)?;
    let (mb, sb) = parse_decimal(&decimal_text(b)?)?;
    let scale = sa.max(sb);
    let lift = |m: i128, s: u32| m.checked_mul(10i128.checked_pow(scale - s)?);
    let sum = lift(ma, sa)?.checked_add(lift(mb, sb)?)?;
    let text = format_decimal(sum, scale);
    Some(match a {
        Value::String(_) => Value::String(text),
        _ => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(texts: &[&str]) -> Value {
        json!({"session_id": "s", "conversation_id": null, "message_id": null, "app_id": null, "endpoint_id": null, "context": null,
               "event": "request", "data": {"action": "invoke_text_embedding", "credentials": {}, "model": "m", "texts": texts, "type": "model", "user_id": "u"}})
    }

    #[test]
    fn splits_in_order_and_every_batch_fits() {
        let texts: Vec<String> = (0..10).map(|i| format!("text number {i} {}", "x".repeat(i * 7))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let whole = request(&refs);
        let max = encoded_len(&with_texts(&whole, &[])) + 120;
        let batches = split_request(&whole, "invoke_text_embedding", max).unwrap();
        assert!(batches.len() > 2, "{}", batches.len());
        let mut seen = Vec::new();
        for batch in &batches {
            assert!(batch.body.len() <= max);
            let body: Value = serde_json::from_slice(&batch.body).unwrap();
            let part = body["data"]["texts"].as_array().unwrap();
            assert_eq!(part.len(), batch.items);
            seen.extend(part.iter().map(|t| t.as_str().unwrap().to_string()));
            assert_eq!(body["session_id"], "s");
        }
        assert_eq!(seen, texts);
        // A greedy split: each batch but the last could not take the next text.
        let mut offset = 0;
        for window in batches.windows(2) {
            offset += window[0].items;
            assert!(window[0].body.len() + 1 + encoded_len(&json!(seen[offset])) > max);
        }
    }

    #[test]
    fn a_text_that_cannot_fit_is_named() {
        let whole = request(&["short", &"y".repeat(500), "short"]);
        let max = encoded_len(&with_texts(&whole, &[])) + 100;
        let error = split_request(&whole, "invoke_text_embedding", max).unwrap_err();
        assert_eq!(error.error_type, "ServerlessPayloadTooLarge");
        assert!(error.message.ends_with(&format!("max_request_bytes={max} item_index=1")), "{}", error.message);
        let error = split_request(&whole, "invoke_text_embedding", 50).unwrap_err();
        assert!(!error.message.contains("item_index"), "{}", error.message);
    }

    #[test]
    fn merges_embeddings_and_usage() {
        let result = |index, embeddings: Value, tokens, price: &str| BatchResult {
            index,
            expected_items: embeddings.as_array().unwrap().len(),
            responses: vec![
                json!({"model": "m", "embeddings": embeddings, "usage": {"tokens": tokens, "total_tokens": tokens, "unit_price": "0.0001", "price_unit": "0.001", "total_price": price, "currency": "USD", "latency": 0.5}}),
            ],
        };
        let merged = merge_results(
            "invoke_text_embedding",
            vec![result(0, json!([[1.0], [2.0]]), 4, "0.0000004"), result(1, json!([[3.0]]), 2, "1.5E-7")],
        )
        .unwrap();
        assert_eq!(merged["embeddings"], json!([[1.0], [2.0], [3.0]]));
        assert_eq!(merged["usage"]["tokens"], 6);
        assert_eq!(merged["usage"]["total_tokens"], 6);
        assert_eq!(merged["usage"]["latency"], 1.0);
        assert_eq!(merged["usage"]["total_price"], "0.00000055");
        assert_eq!(merged["model"], "m");

        let short = BatchResult { index: 1, expected_items: 2, responses: vec![json!({"model": "m", "embeddings": [[1.0]], "usage": {}})] };
        let error = merge_results("invoke_text_embedding", vec![short]).unwrap_err();
        assert_eq!(
            error.message,
            "ServerlessBatchResultMismatch: action=invoke_text_embedding batch_index=1 expected_items=2 actual_items=1 response_count=1 reason=embeddings count does not match the batch"
        );
        let other_model = |model: &str| BatchResult {
            index: 0,
            expected_items: 1,
            responses: vec![json!({"model": model, "embeddings": [[1.0]], "usage": {}})],
        };
        assert!(merge_results("invoke_text_embedding", vec![other_model("a"), other_model("b")]).is_err());
    }

    #[test]
    fn merges_token_counts() {
        let result = |index, counts: Value| BatchResult {
            index,
            expected_items: counts.as_array().unwrap().len(),
            responses: vec![json!({"num_tokens": counts})],
        };
        let merged = merge_results("get_text_embedding_num_tokens", vec![result(0, json!([1, 2])), result(1, json!([3]))]).unwrap();
        assert_eq!(merged, json!({"num_tokens": [1, 2, 3]}));
        let none = BatchResult { index: 0, expected_items: 1, responses: vec![] };
        assert!(merge_results("get_text_embedding_num_tokens", vec![none]).unwrap_err().message.contains("response_count=0"));
    }

    #[test]
    fn decimals_add_exactly() {
        assert_eq!(add_decimals(&json!("0.1"), &json!("0.2")), Some(json!("0.3")));
        assert_eq!(add_decimals(&json!("1E-7"), &json!("2e-7")), Some(json!("0.0000003")));
        assert_eq!(add_decimals(&json!(0.5), &json!("0.25")), Some(json!(0.75)));
        assert_eq!(add_decimals(&json!("-1.5"), &json!("0.5")), Some(json!("-1")));
        assert_eq!(add_decimals(&json!("abc"), &json!("1")), None);
    }
}
