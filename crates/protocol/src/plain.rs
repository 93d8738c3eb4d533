//! A fast reader for plain JSON text: valid UTF-8 with no backslash and no byte below 0x20 anywhere,
//! which is what plugins write for nearly every line (compact or `", "`-spaced JSON whose strings
//! need no escape, such as base64 blob pieces).
//!
//! Owns: [`Plain`], which checks a whole line for those properties in one vectorisable pass, then
//! reads it with strings found by `memchr` instead of serde_json's word-at-a-time escape scan,
//! writing the canonical compact text as it goes (the bytes serde_json would write for the parsed
//! `Value`). In such text a string's canonical form is its raw form, and so is a plain integer's.
//!
//! Must not: decide anything it is unsure of. Every construct whose canonical form could differ
//! from its raw form (fractions, exponents, `-0`, integers of 19 digits or more), an object that
//! repeats a key, deep nesting and anything malformed answer `None`, and the caller reads the text
//! with serde_json, which then decides, with its own errors.

use std::ops::Range;

use crate::compact::TopFields;

/// Deepest nesting read here; deeper text goes to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;
/// Most keys of one object read here (repeated keys are looked for among them).
const MAX_KEYS: usize = 32;

/// A cursor over plain JSON text.
pub(crate) struct Plain<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Plain<'a> {
    /// A reader for `text`, or `None` when the text is not plain.
    pub(crate) fn new(text: &'a [u8]) -> Option<Self> {
        // ASCII text is valid UTF-8; `is_ascii` is much cheaper than full validation.
        if !free_of_escapes_and_controls(text) || !(text.is_ascii() || std::str::from_utf8(text).is_ok()) {
            return None;
        }
        Some(Self { text, at: 0 })
    }

    /// True when only spaces are left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.spaces();
        self.at == self.text.len()
    }

    fn spaces(&mut self) {
        while self.text.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.spaces();
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    /// The next value if it is a string: its text with the quotes (also its canonical text).
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at - 1;
        // No backslash anywhere: the next quote closes the string.
        let end = self.at + memchr::memchr(b'"', &self.text[self.at..])?;
        self.at = end + 1;
        Some(&self.text[start..self.at])
    }

    /// Reads an object, calling `each` with every key's text (quotes included) when the reader
    /// stands at that key's value; `each` must read the value. `None` for anything but an object,
    /// or an object that repeats a key or has more than [`MAX_KEYS`] keys.
    pub(crate) fn object(&mut self, mut each: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<usize> {
        if !self.eat(b'{') {
            return None;
        }
        let mut keys: [&[u8]; MAX_KEYS] = [&[]; MAX_KEYS];
        let mut count = 0;
        if self.eat(b'}') {
            return Some(0);
        }
        loop {
            let key = self.string()?;
            if count == MAX_KEYS || keys[..count].contains(&key) {
                return None;
            }
            keys[count] = key;
            count += 1;
            if !self.eat(b':') {
                return None;
            }
            each(self, key)?;
            if self.eat(b'}') {
                return Some(count);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// Writes the next value's canonical compact text to `out`. With `fields`, an object's
    /// top-level `type`, `message` and `meta` positions in `out` are recorded there.
    pub(crate) fn value(&mut self, out: &mut Vec<u8>, depth: usize, fields: Option<&mut Option<TopFields>>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => out.extend_from_slice(self.string()?),
            b'{' => {
                let mut top = fields.map(|slot| slot.insert(TopFields::default()));
                out.push(b'{');
                let mut first = true;
                let keys = self.object(|reader, key| {
                    if !std::mem::replace(&mut first, false) {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    out.push(b':');
                    let begin = out.len();
                    reader.value(out, depth + 1, None)?;
                    if let Some(top) = top.as_deref_mut() {
                        let slot = match key {
                            b"\"type\"" => &mut top.kind,
                            b"\"message\"" => &mut top.message,
                            b"\"meta\"" => &mut top.meta,
                            _ => return Some(()),
                        };
                        *slot = Some(begin..out.len());
                    }
                    Some(())
                })?;
                out.push(b'}');
                if let Some(top) = top {
                    top.keys = keys;
                }
            }
            b'[' => {
                self.at += 1;
                out.push(b'[');
                if !self.eat(b']') {
                    loop {
                        self.value(out, depth + 1, None)?;
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                        out.push(b',');
                    }
                }
                out.push(b']');
            }
            b't' => out.extend_from_slice(self.literal(b"true")?),
            b'f' => out.extend_from_slice(self.literal(b"false")?),
            b'n' => out.extend_from_slice(self.literal(b"null")?),
            _ => {
                let digits = self.integer()?;
                out.extend_from_slice(&self.text[digits]);
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Option<&'static [u8]> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            word
        })
    }

    /// An integer whose canonical text is its raw text: `0`, or up to 18 digits without a leading
    /// zero, maybe negative (never `-0`), not followed by a fraction or an exponent.
    fn integer(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        let negative = self.text.get(self.at) == Some(&b'-');
        let digits = start + usize::from(negative);
        let end = digits + self.text[digits..].iter().take_while(|b| b.is_ascii_digit()).count();
        let written = &self.text[digits..end];
        let plain = match written {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            _ => written.len() <= 18,
        };
        if !plain || matches!(self.text.get(end), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = end;
        Some(start..end)
    }
}

/// True when `text` holds no backslash and no byte below 0x20, checked 32 bytes at a time without
/// early exits inside a block so the compiler can vectorise it.
fn free_of_escapes_and_controls(text: &[u8]) -> bool {
    let bad = |b: u8| (b < 0x20) | (b == b'\\');
    let mut blocks = text.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(0u8, |found, &b| found | u8::from(bad(b))) != 0 {
            return false;
        }
    }
    !blocks.remainder().iter().any(|&b| bad(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(text: &str) -> Option<String> {
        let mut reader = Plain::new(text.as_bytes())?;
        let mut out = Vec::new();
        reader.value(&mut out, 0, None)?;
        reader.at_end().then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn plain_text_is_compacted_and_everything_else_is_left_to_serde_json() {
        assert_eq!(
            compact(r#"{"a": [1, -2, 0, true, null], "b" : {"c":"d é"}, "e": []}"#).unwrap(),
            r#"{"a":[1,-2,0,true,null],"b":{"c":"d é"},"e":[]}"#
        );
        assert_eq!(compact(r#"  "x/y"  "#).unwrap(), r#""x/y""#);
        for unsure in [
            r#"{"a": 1.5}"#,
            r#"{"a": 1e3}"#,
            r#"[-0]"#,
            r#"[01]"#,
            r#"[1234567890123456789]"#,
            r#"{"a": "\n"}"#,
            "{\"a\": \"\t\"}",
            "{\"a\":\n1}",
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1,}"#,
            r#"[1 2]"#,
            r#"{"a" 1}"#,
            r#"[tru]"#,
            r#"{"a": "x}"#,
            r#"[-]"#,
        ] {
            assert_eq!(compact(unsure), None, "{unsure}");
        }
        assert!(Plain::new(b"\"\xff\"").is_none());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(compact(&deep), None);
        let wide = format!("{{{}}}", (0..=MAX_KEYS).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(","));
        assert_eq!(compact(&wide), None);
    }

    #[test]
    fn the_block_check_sees_every_position() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            let clean = vec![b'a'; len];
            assert!(free_of_escapes_and_controls(&clean));
            for at in 0..len {
                for bad in [b'\\', 0x00, 0x1f, b'\n'] {
                    let mut text = clean.clone();
                    text[at] = bad;
                    assert!(!free_of_escapes_and_controls(&text), "{len} {at} {bad}");
                }
            }
        }
    }
}
