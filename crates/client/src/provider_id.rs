//! Tool provider names as Dify spells them: `author/plugin/provider`, or a bare `name` that means
//! `langgenius/name/name`.
//!
//! Owns parsing and the split into the plugin id (`X-Plugin-ID`) and the provider name. It must not
//! look anything up on the daemon.

use std::fmt;

use crate::error::ClientError;

/// A parsed `author/plugin/provider`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolProviderId {
    pub organization: String,
    pub plugin_name: String,
    pub provider_name: String,
}

fn is_segment(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl ToolProviderId {
    /// Parses `author/plugin/provider` or a bare `name` (read as `langgenius/name/name`).
    pub fn parse(value: &str) -> Result<Self, ClientError> {
        let parts: Vec<&str> = value.split('/').collect();
        match parts.as_slice() {
            [org, plugin, provider] if [org, plugin, provider].iter().all(|p| is_segment(p)) => {
                Ok(ToolProviderId { organization: org.to_string(), plugin_name: plugin.to_string(), provider_name: provider.to_string() })
            }
            [name] if is_segment(name) => Ok(ToolProviderId {
                organization: "langgenius".to_string(),
                plugin_name: name.to_string(),
                provider_name: name.to_string(),
            }),
            _ => Err(ClientError::Validation(format!(
                "invalid tool provider `{value}`: expected `author/plugin/provider` (lowercase letters, digits, `_`, `-`)"
            ))),
        }
    }

    /// `author/plugin`, sent as `X-Plugin-ID`.
    pub fn plugin_id(&self) -> String {
        format!("{}/{}", self.organization, self.plugin_name)
    }
}

impl fmt::Display for ToolProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.organization, self.plugin_name, self.provider_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_bare_names() {
        let id = ToolProviderId::parse("demo/echo_plugin/demo").unwrap();
        assert_eq!(id.plugin_id(), "demo/echo_plugin");
        assert_eq!(id.provider_name, "demo");
        let bare = ToolProviderId::parse("google").unwrap();
        assert_eq!(bare.to_string(), "langgenius/google/google");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "a/b", "A/b/c", "a/b/c/d", "a//c", "a b"] {
            assert!(ToolProviderId::parse(bad).is_err(), "{bad}");
        }
    }
}
