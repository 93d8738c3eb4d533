//! `dify version`: print the CLI version.
//!
//! Upstream prints a build-time string; ours is the crate version unless `DIFY_CLI_VERSION` was
//! set at build time. Must not do anything else.

use serde::Serialize;

use crate::output::{Render, TextOutput};

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: String,
}

impl Render for VersionInfo {
    fn text(&self) -> TextOutput {
        TextOutput::Stdout(self.version.clone())
    }
}

pub fn run() -> VersionInfo {
    let version = option_env!("DIFY_CLI_VERSION").unwrap_or(env!("CARGO_PKG_VERSION"));
    VersionInfo { version: version.to_string() }
}
