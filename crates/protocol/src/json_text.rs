//! JSON texts written the ways a plugin or a caller may write the same value: with or without a
//! space after `,` and `:`, with `/` and every non-ASCII character escaped or not, and objects that
//! repeat a key. The property tests of the raw byte paths (here and in the daemon) render such texts
//! and check that the raw path answers what parse-and-serialise answers.
//!
//! Test support only: built for this crate's tests, and for other crates' tests through the
//! `test-support` feature.

/// A JSON text to write; objects keep their entries' order and may repeat a key.
#[derive(Debug, Clone)]
pub enum Json {
    /// Written as given: `null`, `true`, `false` or a number in any valid spelling.
    Raw(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The text. `spaced`: `, ` and `: ` between items; `ascii`: `/` written `\/` and every
    /// character past `~` as `\u` escapes (surrogate pairs beyond the basic plane).
    pub fn render(&self, spaced: bool, ascii: bool) -> String {
        let mut out = String::new();
        self.write(spaced, ascii, &mut out);
        out
    }

    fn write(&self, spaced: bool, ascii: bool, out: &mut String) {
        let (comma, colon) = if spaced { (", ", ": ") } else { (",", ":") };
        match self {
            Json::Raw(text) => out.push_str(text),
            Json::Str(s) => write_str(s, ascii, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    item.write(spaced, ascii, out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    write_str(key, ascii, out);
                    out.push_str(colon);
                    item.write(spaced, ascii, out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if ascii => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_spelling_the_readers_must_accept() {
        let json = Json::Object(vec![
            ("a/é".into(), Json::Array(vec![Json::Raw("1E+2".into()), Json::Str("x\n😀".into())])),
            ("a/é".into(), Json::Raw("null".into())),
        ]);
        assert_eq!(json.render(false, false), "{\"a/é\":[1E+2,\"x\\u000a😀\"],\"a/é\":null}");
        assert_eq!(json.render(true, true), "{\"a\\/\\u00e9\": [1E+2, \"x\\u000a\\ud83d\\ude00\"], \"a\\/\\u00e9\": null}");
        let value: serde_json::Value = serde_json::from_str(&json.render(true, true)).unwrap();
        assert_eq!(value, serde_json::json!({"a/é": null}));
    }
}
