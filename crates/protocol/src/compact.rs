//! Canonical compact JSON written straight from a plugin's raw JSON text.
//!
//! Owns: [`canonical_compact`], which produces exactly the bytes that parsing the text into a
//! `serde_json::Value` and serialising that value again would produce (compact separators, serde_json's
//! escaping and number formatting, key order as written), without building the `Value` tree: the
//! parser's events are written to the output as they arrive. Also [`RawChunk`], one response item of
//! a session kept as that canonical text (with the positions of its top-level `type`, `message` and
//! `meta` values), so the daemon forwards a plugin's item without a tree and without escaping its
//! strings again.
//!
//! The one case where the two differ in structure, an object with a repeated key (the tree keeps the
//! first position and the last value), is detected and answered through the tree, so the result is
//! the tree's bytes in every case.

use std::fmt;
use std::ops::Range;

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
    /// An object repeats a key: only the tree gives the right bytes.
    RepeatedKey,
    Json(serde_json::Error),
}

fn write_streaming(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Streaming> {
    let mut repeated = false;
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let written = Node::new(out, &mut repeated, None).deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match written {
        Ok(()) => Ok(()),
        Err(_) if repeated => Err(Streaming::RepeatedKey),
        Err(error) => Err(Streaming::Json(error)),
    }
}

/// Where the top-level `type`, `message` and `meta` values of an object sit in its compact text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopFields {
    /// Number of keys of the object.
    pub keys: usize,
    pub kind: Option<Range<usize>>,
    pub message: Option<Range<usize>>,
    pub meta: Option<Range<usize>>,
}

impl TopFields {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Range<usize>>> {
        match key {
            "type" => Some(&mut self.kind),
            "message" => Some(&mut self.message),
            "meta" => Some(&mut self.meta),
            _ => None,
        }
    }
}

/// Writes one JSON value, preceded by `prefix` (the `,` between items) when set. With `fields`, the
/// value must be an object whose top-level `type`/`message`/`meta` positions are recorded there.
pub(crate) struct Node<'a> {
    out: &'a mut Vec<u8>,
    prefix: Option<u8>,
    repeated: &'a mut bool,
    fields: Option<&'a mut Option<TopFields>>,
}

impl<'a> Node<'a> {
    /// A node writing into `out`; `repeated` is set when an object repeats a key (the result is then
    /// an error and only the tree gives the right bytes); `fields` records an object's top-level fields.
    pub(crate) fn new(out: &'a mut Vec<u8>, repeated: &'a mut bool, fields: Option<&'a mut Option<TopFields>>) -> Self {
        Node { out, prefix: None, repeated, fields }
    }

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

/// A string the parser could borrow from the input had no escape sequence there, so it holds no
/// `"`, `\` or control character (the parser refuses raw control characters in strings): serde_json
/// writes it between quotes unchanged.
fn write_plain_str(out: &mut Vec<u8>, value: &str) {
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
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

    fn visit_borrowed_str<E: de::Error>(mut self, value: &'de str) -> Result<(), E> {
        self.start();
        write_plain_str(self.out, value);
        Ok(())
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
        while let Some(()) = seq.next_element_seed(Node { out: &mut *self.out, prefix, repeated: &mut *self.repeated, fields: None })? {
            prefix = Some(b',');
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.start();
        self.out.push(b'{');
        let mut top = self.fields.take().map(|slot| slot.insert(TopFields::default()));
        let mut seen = Seen::default();
        let mut prefix = None;
        while let Some((key, name)) = map.next_key_seed(Key { out: &mut *self.out, prefix, top: top.is_some() })? {
            if seen.insert(&self.out[..], key) {
                *self.repeated = true;
                return Err(de::Error::custom("repeated object key"));
            }
            self.out.push(b':');
            let begin = self.out.len();
            map.next_value_seed(Node { out: &mut *self.out, prefix: None, repeated: &mut *self.repeated, fields: None })?;
            if let Some(top) = top.as_deref_mut() {
                top.keys += 1;
                if let Some(name) = name {
                    *name.select(top) = Some(begin..self.out.len());
                }
            }
            prefix = Some(b',');
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Which recorded field a key names.
#[derive(Clone, Copy)]
enum FieldName {
    Kind,
    Message,
    Meta,
}

impl FieldName {
    fn select(self, top: &mut TopFields) -> &mut Option<Range<usize>> {
        match self {
            FieldName::Kind => &mut top.kind,
            FieldName::Message => &mut top.message,
            FieldName::Meta => &mut top.meta,
        }
    }
}

/// The keys of one object so far, as positions of their compact text in the output (equal keys
/// have equal compact text); the first few inline (objects in chunks are small).
#[derive(Default)]
struct Seen {
    inline: [(usize, usize); 8],
    len: usize,
    spilled: Vec<(usize, usize)>,
}

impl Seen {
    /// Adds the key written at `key` in `out`; true when the object already had it.
    fn insert(&mut self, out: &[u8], key: Range<usize>) -> bool {
        let text = &out[key.clone()];
        let same = |&(start, end): &(usize, usize)| &out[start..end] == text;
        if self.inline[..self.len.min(8)].iter().any(same) || self.spilled.iter().any(same) {
            return true;
        }
        if self.len < 8 {
            self.inline[self.len] = (key.start, key.end);
        } else {
            self.spilled.push((key.start, key.end));
        }
        self.len += 1;
        false
    }
}

/// Writes one object key (with its leading `,`) and answers where its compact text sits in the
/// output, for spotting repeated keys, and, for a top-level object whose fields are recorded, which
/// field it names.
struct Key<'a> {
    out: &'a mut Vec<u8>,
    prefix: Option<u8>,
    top: bool,
}

impl Key<'_> {
    fn write(self, key: &str, plain: bool) -> Result<(Range<usize>, Option<FieldName>), serde_json::Error> {
        if let Some(prefix) = self.prefix {
            self.out.push(prefix);
        }
        let begin = self.out.len();
        if plain {
            write_plain_str(self.out, key);
        } else {
            serde_json::to_writer(&mut *self.out, key)?;
        }
        let name = match key {
            _ if !self.top => None,
            "type" => Some(FieldName::Kind),
            "message" => Some(FieldName::Message),
            "meta" => Some(FieldName::Meta),
            _ => None,
        };
        Ok((begin..self.out.len(), name))
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = (Range<usize>, Option<FieldName>);

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = (Range<usize>, Option<FieldName>);

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        self.write(key, true).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.write(key, false).map_err(E::custom)
    }
}

/// One response item of a session as canonical compact JSON: exactly the bytes serde_json writes
/// for the item's `Value`. Built from the plugin's line without a tree (`message::parse_plugin_line`)
/// or from a `Value`; spliced as is into the caller's envelope.
#[derive(Clone)]
pub struct RawChunk {
    /// The text from `head` on; the bytes before it are room for an envelope's opening (see
    /// [`RawChunk::wrap`]). Field ranges index this whole buffer.
    json: Vec<u8>,
    head: usize,
    /// Set when the item is an object.
    fields: Option<TopFields>,
}

/// Two chunks are equal when their texts are (the fields follow from the text).
impl PartialEq for RawChunk {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RawChunk {}

impl RawChunk {
    /// The item `value` (serialised once, recording its top-level fields).
    pub fn from_value(value: &Value) -> Self {
        let Value::Object(map) = value else {
            return Self { json: serde_json::to_vec(value).unwrap_or_default(), head: 0, fields: None };
        };
        let mut json = Vec::with_capacity(64);
        let mut fields = TopFields { keys: map.len(), ..TopFields::default() };
        json.push(b'{');
        for (i, (key, item)) in map.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            // Strings and values always serialise.
            let _ = serde_json::to_writer(&mut json, key);
            json.push(b':');
            let begin = json.len();
            let _ = serde_json::to_writer(&mut json, item);
            if let Some(slot) = fields.slot(key) {
                *slot = Some(begin..json.len());
            }
        }
        json.push(b'}');
        Self { json, head: 0, fields: Some(fields) }
    }

    /// An object with `entries` (key, canonical compact value) in this order; keys must differ.
    pub fn object(entries: &[(&str, &[u8])]) -> Self {
        let mut json = Vec::with_capacity(entries.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2);
        let mut fields = TopFields { keys: entries.len(), ..TopFields::default() };
        json.push(b'{');
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            let _ = serde_json::to_writer(&mut json, key);
            json.push(b':');
            let begin = json.len();
            json.extend_from_slice(value);
            if let Some(slot) = fields.slot(key) {
                *slot = Some(begin..json.len());
            }
        }
        json.push(b'}');
        Self { json, head: 0, fields: Some(fields) }
    }

    /// Compacts one item from its raw text (a whole document), like `from_value(&from_slice(raw)?)`.
    pub fn parse(raw: &[u8]) -> Result<Self, serde_json::Error> {
        let mut json = Vec::with_capacity(raw.len());
        let mut repeated = false;
        let mut fields = None;
        let mut deserializer = serde_json::Deserializer::from_slice(raw);
        let written = Node::new(&mut json, &mut repeated, Some(&mut fields))
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end());
        match written {
            Ok(()) => Ok(Self { json, head: 0, fields }),
            Err(_) if repeated => Ok(Self::from_value(&serde_json::from_slice::<Value>(raw)?)),
            Err(error) => Err(error),
        }
    }

    /// Assembled by the line reader from already compacted text that starts at `head` in `json`
    /// (field ranges index `json`).
    pub(crate) fn from_parts(json: Vec<u8>, head: usize, fields: Option<TopFields>) -> Self {
        Self { json, head, fields }
    }

    /// The canonical compact text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json[self.head..]
    }

    /// The canonical compact text, owned.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.json.drain(..self.head);
        self.json
    }

    /// `prefix`, the text and `suffix` in one buffer, written around the text where it lies when
    /// the chunk was read with room for `prefix` before it (the line reader leaves
    /// [`RawChunk::HEADROOM`] bytes): answers the buffer and where the result starts in it, without
    /// copying the text. A chunk without that room is answered back.
    pub fn wrap(mut self, prefix: &[u8], suffix: &[u8]) -> Result<(Vec<u8>, usize), Self> {
        let Some(start) = self.head.checked_sub(prefix.len()) else { return Err(self) };
        self.json[start..self.head].copy_from_slice(prefix);
        self.json.extend_from_slice(suffix);
        Ok((self.json, start))
    }

    /// Room the line reader leaves before a chunk's text for [`RawChunk::wrap`].
    pub const HEADROOM: usize = 64;

    /// The item as a tree (for callers that inspect it).
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(self.as_bytes()).unwrap_or(Value::Null)
    }

    /// Whether the item is a JSON object.
    pub fn is_object(&self) -> bool {
        self.fields.is_some()
    }

    /// Number of keys when the item is an object.
    pub fn keys(&self) -> Option<usize> {
        self.fields.as_ref().map(|f| f.keys)
    }

    /// The compact text of the object's top-level `type`, `message` or `meta` value.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let fields = self.fields.as_ref()?;
        let range = match name {
            "type" => fields.kind.as_ref(),
            "message" => fields.message.as_ref(),
            "meta" => fields.meta.as_ref(),
            _ => None,
        }?;
        Some(&self.json[range.clone()])
    }

    /// True when the item is exactly `{"type":…,"message":…,"meta":…}` (those three keys, in that order).
    pub fn is_type_message_meta(&self) -> bool {
        match &self.fields {
            Some(TopFields { keys: 3, kind: Some(k), message: Some(m), meta: Some(t) }) => k.start < m.start && m.start < t.start,
            _ => false,
        }
    }
}

impl fmt::Debug for RawChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawChunk({})", String::from_utf8_lossy(self.as_bytes()))
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
            // A chunk read from the text is the chunk of its tree: same text, same field positions.
            let tree: Value = serde_json::from_str(&raw).unwrap();
            prop_assert_eq!(RawChunk::parse(raw.as_bytes()).unwrap(), RawChunk::from_value(&tree), "{}", raw);
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
