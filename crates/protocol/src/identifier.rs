//! The plugin unique identifier `author/name:version@checksum`.
//!
//! Owns parsing, validation (the daemon's regex, docs/http.md §A.1) and the accessors every other
//! part uses to split an identifier. It must not compute checksums (that is `dify-package`'s job)
//! nor know where identifiers are stored.

use std::fmt;
use std::str::FromStr;

use once_cell::sync::Lazy;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The daemon's identifier regex. `\w` is spelled out as ASCII because Go's `\w` is ASCII-only
/// while Rust's is Unicode-aware.
static IDENTIFIER_REGEX: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^(?:([a-z0-9_-]{1,64})/)?([a-z0-9_-]{1,255}):([0-9]{1,4})(\.[0-9]{1,4}){1,3}(-[0-9A-Za-z_]{1,16})?@[a-f0-9]{32,64}$")
        .expect("identifier regex is valid")
});

/// Why a string is not a plugin unique identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("plugin unique identifier is empty")]
    Empty,
    #[error("plugin_unique_identifier is not valid: {0}")]
    InvalidFormat(String),
}

/// A validated `author/name:version@checksum` (the author part is optional in the format).
///
/// Stored as the original string plus the byte offsets of its separators, so the accessors are
/// free and `Display` reproduces the input exactly.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginUniqueIdentifier {
    raw: String,
    /// Index of the `:` separating `plugin_id` and version.
    colon: usize,
    /// Index of the `@` separating version and checksum.
    at: usize,
    /// Index of the `/` separating author and name, if there is an author.
    slash: Option<usize>,
}

impl PluginUniqueIdentifier {
    /// Parses and validates an identifier string.
    pub fn parse(value: &str) -> Result<Self, IdentifierError> {
        if value.is_empty() {
            return Err(IdentifierError::Empty);
        }
        if !IDENTIFIER_REGEX.is_match(value) {
            return Err(IdentifierError::InvalidFormat(value.to_owned()));
        }
        // The regex guarantees exactly one ':' and one '@', and at most one '/' before ':'.
        let colon = value.find(':').ok_or_else(|| IdentifierError::InvalidFormat(value.to_owned()))?;
        let at = value.rfind('@').ok_or_else(|| IdentifierError::InvalidFormat(value.to_owned()))?;
        let slash = value[..colon].find('/');
        Ok(Self { raw: value.to_owned(), colon, at, slash })
    }

    /// Builds `author/name:version@checksum` (or `name:version@checksum` when `author` is empty)
    /// and validates the result.
    pub fn from_parts(author: &str, name: &str, version: &str, checksum: &str) -> Result<Self, IdentifierError> {
        let raw = if author.is_empty() { format!("{name}:{version}@{checksum}") } else { format!("{author}/{name}:{version}@{checksum}") };
        Self::parse(&raw)
    }

    /// The whole identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The author, or `""` when the identifier has no author part.
    pub fn author(&self) -> &str {
        match self.slash {
            Some(slash) => &self.raw[..slash],
            None => "",
        }
    }

    /// The plugin name (between the optional `author/` and `:`).
    pub fn name(&self) -> &str {
        match self.slash {
            Some(slash) => &self.raw[slash + 1..self.colon],
            None => &self.raw[..self.colon],
        }
    }

    /// `author/name` — everything before `:`.
    pub fn plugin_id(&self) -> &str {
        &self.raw[..self.colon]
    }

    /// The version, between `:` and `@`.
    pub fn version(&self) -> &str {
        &self.raw[self.colon + 1..self.at]
    }

    /// The package checksum, after `@`.
    pub fn checksum(&self) -> &str {
        &self.raw[self.at + 1..]
    }

    /// `author/name:version` (the identity without the checksum).
    pub fn identity(&self) -> &str {
        &self.raw[..self.at]
    }

    /// True when the author is a UUID: such identifiers belong to remote-debugging runtimes.
    pub fn is_remote(&self) -> bool {
        let author = self.author();
        !author.is_empty() && uuid::Uuid::parse_str(author).is_ok()
    }
}

/// True when `value` is a syntactically valid plugin unique identifier.
pub fn is_valid_identifier(value: &str) -> bool {
    IDENTIFIER_REGEX.is_match(value)
}

impl fmt::Display for PluginUniqueIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for PluginUniqueIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginUniqueIdentifier({:?})", self.raw)
    }
}

impl FromStr for PluginUniqueIdentifier {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PluginUniqueIdentifier {
    type Error = IdentifierError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl TryFrom<&str> for PluginUniqueIdentifier {
    type Error = IdentifierError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl AsRef<str> for PluginUniqueIdentifier {
    fn as_ref(&self) -> &str {
        &self.raw
    }
}

impl From<PluginUniqueIdentifier> for String {
    fn from(value: PluginUniqueIdentifier) -> Self {
        value.raw
    }
}

impl Serialize for PluginUniqueIdentifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for PluginUniqueIdentifier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "langgenius/agent:0.0.14@26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e";

    #[test]
    fn splits_a_full_identifier() {
        let id = PluginUniqueIdentifier::parse(AGENT).unwrap();
        assert_eq!(id.author(), "langgenius");
        assert_eq!(id.name(), "agent");
        assert_eq!(id.plugin_id(), "langgenius/agent");
        assert_eq!(id.version(), "0.0.14");
        assert_eq!(id.identity(), "langgenius/agent:0.0.14");
        assert_eq!(id.checksum(), "26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e");
        assert!(!id.is_remote());
        assert_eq!(id.to_string(), AGENT);
    }

    #[test]
    fn author_is_optional() {
        let id: PluginUniqueIdentifier = "agent:1.2@0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(id.author(), "");
        assert_eq!(id.name(), "agent");
        assert_eq!(id.plugin_id(), "agent");
        assert_eq!(id.version(), "1.2");
        assert!(!id.is_remote());
    }

    #[test]
    fn version_forms() {
        let ok = [
            "a/b:1.2@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3.4@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3-beta_1@0123456789abcdef0123456789abcdef",
            "a/b:9999.0.1@0123456789abcdef0123456789abcdef",
        ];
        for value in ok {
            assert!(PluginUniqueIdentifier::parse(value).is_ok(), "{value}");
        }
        let bad = [
            "a/b:1@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3.4.5@0123456789abcdef0123456789abcdef",
            "a/b:12345.0.0@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3-@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3-abcdefghijklmnopq@0123456789abcdef0123456789abcdef",
            "a/b:1.2.3-é@0123456789abcdef0123456789abcdef",
            "a/b:v1.2.3@0123456789abcdef0123456789abcdef",
        ];
        for value in bad {
            assert!(PluginUniqueIdentifier::parse(value).is_err(), "{value}");
        }
    }

    #[test]
    fn rejects_malformed_identifiers() {
        let bad = [
            "",
            "langgenius/agent:0.0.14",
            "langgenius/agent@26958a0e80a10655ce73812bdb7c35a66ce7b16f5ac346d298bda17ff85efd1e",
            "Langgenius/agent:0.0.14@0123456789abcdef0123456789abcdef",
            "langgenius/Agent:0.0.14@0123456789abcdef0123456789abcdef",
            "langgenius/agent:0.0.14@0123456789ABCDEF0123456789abcdef",
            "langgenius/agent:0.0.14@0123456789abcdef",
            "a/b/c:0.0.14@0123456789abcdef0123456789abcdef",
            " langgenius/agent:0.0.14@0123456789abcdef0123456789abcdef",
            "langgenius/agent:0.0.14@0123456789abcdef0123456789abcdef\n",
            "langgenius/agent:0.0.14@0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
            "/agent:0.0.14@0123456789abcdef0123456789abcdef",
        ];
        for value in bad {
            assert!(PluginUniqueIdentifier::parse(value).is_err(), "{value:?}");
        }
        assert_eq!(PluginUniqueIdentifier::parse(""), Err(IdentifierError::Empty));
    }

    #[test]
    fn length_limits() {
        let author = "a".repeat(64);
        let name = "n".repeat(255);
        let checksum = "f".repeat(64);
        assert!(PluginUniqueIdentifier::from_parts(&author, &name, "1.0.0", &checksum).is_ok());
        assert!(PluginUniqueIdentifier::from_parts(&"a".repeat(65), "n", "1.0.0", &checksum).is_err());
        assert!(PluginUniqueIdentifier::from_parts("a", &"n".repeat(256), "1.0.0", &checksum).is_err());
    }

    #[test]
    fn uuid_author_is_remote() {
        let id = PluginUniqueIdentifier::parse("2e6c2d0c-95c5-4a4a-9a8a-8f2f1d3c9b10/tool:0.0.1@0123456789abcdef0123456789abcdef").unwrap();
        assert!(id.is_remote());
        assert_eq!(id.author(), "2e6c2d0c-95c5-4a4a-9a8a-8f2f1d3c9b10");
    }

    #[test]
    fn serde_is_a_plain_string() {
        let id = PluginUniqueIdentifier::parse(AGENT).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{AGENT}\""));
        let back: PluginUniqueIdentifier = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<PluginUniqueIdentifier>("\"nope\"").is_err());
    }

    #[test]
    fn from_parts_without_author() {
        let id = PluginUniqueIdentifier::from_parts("", "x", "0.0.1", &"a".repeat(32)).unwrap();
        assert_eq!(id.as_str(), format!("x:0.0.1@{}", "a".repeat(32)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        #[test]
        fn valid_parts_round_trip(
            author in "[a-z0-9_-]{0,64}",
            name in "[a-z0-9_-]{1,255}",
            version in "[0-9]{1,4}(\\.[0-9]{1,4}){1,3}(-[A-Za-z0-9_]{1,16})?",
            checksum in "[a-f0-9]{32,64}",
        ) {
            let id = PluginUniqueIdentifier::from_parts(&author, &name, &version, &checksum).unwrap();
            proptest::prop_assert_eq!(id.author(), author.as_str());
            proptest::prop_assert_eq!(id.name(), name.as_str());
            proptest::prop_assert_eq!(id.version(), version.as_str());
            proptest::prop_assert_eq!(id.checksum(), checksum.as_str());
            let reparsed: PluginUniqueIdentifier = id.to_string().parse().unwrap();
            proptest::prop_assert_eq!(reparsed, id);
        }

        #[test]
        fn arbitrary_strings_never_panic(value in "\\PC{0,120}") {
            if let Ok(id) = PluginUniqueIdentifier::parse(&value) {
                proptest::prop_assert_eq!(id.to_string(), value);
                let _ = (id.author(), id.name(), id.plugin_id(), id.version(), id.checksum(), id.is_remote());
            }
        }
    }
}
