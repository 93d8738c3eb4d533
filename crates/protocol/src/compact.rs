//! Canonical compact JSON written straight from a plugin's raw JSON text.
//!
//! Owns: [`canonical_compact`], which produces exactly the bytes that parsing the text into a
//! `serde_json::Value` and serialising that value again would produce (compact separators, serde_json's
//! escaping and number formatting, key order as written), without building the `Value` tree: the
//! parser's events are written to the output as they arrive.
//!
//! The one case where the two differ in structure, an object with a repeated key (the tree keeps the
//! first position and the last value), is detected and answered through the tree, so the result is
//! the tree's bytes in every case.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The bytes `serde_json::to_vec(&serde_json::from_slice::<Value>(raw)?)` gives, computed by streaming.
pub fn canonical_compact(raw: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(raw.len());
    match write_streaming(raw, &mut out) {
        Ok(()) => Ok(out),
        Err(Streaming::RepeatedKey) => serde_json::to_vec(&serde_json::from_slice::<Value>(raw)?),
        Err(Streaming::Json(error)) => Err(error),
    }
}

enum Streaming {
    /// An object repeats a key (or two keys share a hash): only the tree gives the right bytes.
    RepeatedKey,
    Json(serde_json::Error),
}

fn write_streaming(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Streaming> {
    let mut repeated = false;
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let written = Node { out, prefix: None, repeated: &mut repeated }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match written {
        Ok(()) => Ok(()),
        Err(_) if repeated => Err(Streaming::RepeatedKey),
        Err(error) => Err(Streaming::Json(error)),
    }
}

/// Writes one JSON value, preceded by `prefix` (the `,` between items) when set.
struct Node<'a> {
    out: &'a mut Vec<u8>,
    prefix: Option<u8>,
    repeated: &'a mut bool,
}

impl Node<'_> {
    fn start(&mut self) {
        if let Some(prefix) = self.prefix {
            self.out.push(prefix);
        }
    }

    fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(mut self, value: &T) -> Result<(), E> {
        self.start();
        serde_json::to_writer(&mut *self.out, value).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.scalar(&value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.scalar(&value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.scalar(&value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // The tree turns a non-finite float into null; serialising an f64 does the same.
        self.scalar(&value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.scalar(value)
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.start();
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.start();
        self.out.push(b'[');
        let mut prefix = None;
        while let Some(()) = seq.next_element_seed(Node { out: &mut *self.out, prefix, repeated: &mut *self.repeated })? {
            prefix = Some(b',');
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.start();
        self.out.push(b'{');
        let mut seen: Vec<u64> = Vec::new();
        let mut prefix = None;
        while let Some(hash) = map.next_key_seed(Key { out: &mut *self.out, prefix })? {
            if seen.contains(&hash) {
                *self.repeated = true;
                return Err(de::Error::custom("repeated object key"));
            }
            seen.push(hash);
            self.out.push(b':');
            map.next_value_seed(Node { out: &mut *self.out, prefix: None, repeated: &mut *self.repeated })?;
            prefix = Some(b',');
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes one object key (with its leading `,`) and answers its hash, for spotting repeated keys.
struct Key<'a> {
    out: &'a mut Vec<u8>,
    prefix: Option<u8>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = u64;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<u64, E> {
        if let Some(prefix) = self.prefix {
            self.out.push(prefix);
        }
        serde_json::to_writer(&mut *self.out, key).map_err(E::custom)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        Ok(hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Map;

    /// The path this module replaces: parse into a tree, serialise the tree.
    fn through_tree(raw: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&serde_json::from_slice::<Value>(raw)?)
    }

    /// How a plugin might have written a value.
    #[derive(Debug, Clone, Copy)]
    struct Style {
        /// Python's default `", "` and `": "` separators.
        spaced: bool,
        /// Python's default `ensure_ascii`: everything beyond ASCII as `\uXXXX` (surrogate pairs).
        ascii: bool,
        /// `\/` for `/` and `\u00XX` for the short escapes.
        long_escapes: bool,
        /// Floats in exponent form (`1.5e3`).
        exponent: bool,
    }

    fn render(value: &Value, style: Style, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_f64(), n.is_f64()) {
                (Some(f), true) if style.exponent => out.push_str(&format!("{f:e}")),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => render_str(s, style, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if style.spaced { ", " } else { "," });
                    }
                    render(item, style, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if style.spaced { ", " } else { "," });
                    }
                    render_str(key, style, out);
                    out.push_str(if style.spaced { ": " } else { ":" });
                    render(item, style, out);
                }
                out.push('}');
            }
        }
    }

    fn render_str(s: &str, style: Style, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if style.long_escapes => out.push_str("\\/"),
                '\n' if !style.long_escapes => out.push_str("\\n"),
                '\t' if !style.long_escapes => out.push_str("\\t"),
                c if (c as u32) < 0x20 || (style.ascii && (c as u32) > 0x7e) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            (-1000i32..1000, 0u32..4).prop_map(|(n, p)| Value::from(n as f64 / 10f64.powi(p as i32))),
            any::<String>().prop_map(Value::String),
            "[a-z/\"\\\\ é\u{1F600}\n\t\\x00-\\x1f]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-zé/\"]{0,6}", inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn arb_style() -> impl Strategy<Value = Style> {
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(spaced, ascii, long_escapes, exponent)| Style {
            spaced,
            ascii,
            long_escapes,
            exponent,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn streaming_gives_the_tree_bytes(value in arb_value(), style in arb_style(), pretty in any::<bool>()) {
            let mut raw = String::new();
            render(&value, style, &mut raw);
            prop_assert_eq!(canonical_compact(raw.as_bytes()).unwrap(), through_tree(raw.as_bytes()).unwrap(), "{}", raw);
            if pretty {
                let raw = serde_json::to_vec_pretty(&value).unwrap();
                prop_assert_eq!(canonical_compact(&raw).unwrap(), through_tree(&raw).unwrap());
            }
        }

        #[test]
        fn arbitrary_text_agrees_with_the_tree(raw in "[\\[\\]{}\",:0-9.eE+\\- a-z\\\\]{0,24}") {
            match (canonical_compact(raw.as_bytes()), through_tree(raw.as_bytes())) {
                (Ok(streamed), Ok(tree)) => prop_assert_eq!(streamed, tree),
                (Err(_), Err(_)) => {}
                (streamed, tree) => prop_assert!(false, "{raw:?}: {streamed:?} vs {tree:?}"),
            }
        }
    }

    #[test]
    fn number_spellings_and_escapes_are_normalised_like_the_tree() {
        for raw in [
            r#"{"a": 1.0, "b": 1e0, "c": 1E+2, "d": -0, "e": -0.0, "f": 0.1e-6, "g": 18446744073709551615, "h": -9223372036854775808}"#,
            r#"["\u00e9\ud83d\ude00", "\/path\/x", "\b\f\r\u0001\u001f\u007f"]"#,
            " \n{ \"type\" : \"text\" , \"message\" : { \"text\" : \"hi\" } , \"meta\" : null }\r\n ",
            "12345678901234567890123",
            "1e400",
            r#"{"x": 1, "y": 2, "x": 3}"#,
            r#"[{"k": [], "k": {}}, {"a": {"b": 1, "b": 2}}]"#,
        ] {
            match (canonical_compact(raw.as_bytes()), through_tree(raw.as_bytes())) {
                (Ok(streamed), Ok(tree)) => assert_eq!(String::from_utf8(streamed).unwrap(), String::from_utf8(tree).unwrap(), "{raw}"),
                (Err(_), Err(_)) => {}
                (streamed, tree) => panic!("{raw}: {streamed:?} vs {tree:?}"),
            }
        }
        assert_eq!(canonical_compact(br#"{"x": 1, "y": 2, "x": 3}"#).unwrap(), br#"{"x":3,"y":2}"#);
        assert_eq!(
            canonical_compact(br#"{"a": 1.0, "b": 1e0, "c": "\u00e9\/"}"#).unwrap(),
            "{\"a\":1.0,\"b\":1.0,\"c\":\"é/\"}".as_bytes()
        );
        assert!(canonical_compact(b"{\"a\": 1} x").is_err());
        assert!(canonical_compact(b"").is_err());
    }
}
