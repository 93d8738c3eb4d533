//! [`RuntimeType`]: how an installation's plugin runs, as stored in `plugin_installations.runtime_type`
//! (and `plugins.install_type`). The stored texts are upstream's and must not change.

/// Where an installed plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeType {
    /// A supervised child process on a daemon node (`local`).
    Local,
    /// A plugin run by hand that dialled into the debug server (`debug`, written by older versions).
    Debug,
    /// A function behind the serverless connector (`serverless`).
    Serverless,
    /// A debugging plugin connected over TCP (`remote`).
    Remote,
}

impl RuntimeType {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeType::Local => "local",
            RuntimeType::Debug => "debug",
            RuntimeType::Serverless => "serverless",
            RuntimeType::Remote => "remote",
        }
    }

    /// The runtime type a stored text names; `None` for anything else.
    pub fn parse(text: &str) -> Option<RuntimeType> {
        match text {
            "local" => Some(RuntimeType::Local),
            "debug" => Some(RuntimeType::Debug),
            "serverless" => Some(RuntimeType::Serverless),
            "remote" => Some(RuntimeType::Remote),
            _ => None,
        }
    }

    /// Whether the daemon can start this runtime itself from the stored package (after a restart).
    pub fn is_launchable(self) -> bool {
        matches!(self, RuntimeType::Local | RuntimeType::Serverless)
    }
}

impl std::fmt::Display for RuntimeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_texts_round_trip() {
        for kind in [RuntimeType::Local, RuntimeType::Debug, RuntimeType::Serverless, RuntimeType::Remote] {
            assert_eq!(RuntimeType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RuntimeType::Remote.as_str(), "remote");
        assert_eq!(RuntimeType::parse("Local"), None);
    }
}
