//! `dify plugin checksum <dir|pkg>`: the package checksum of a plugin directory (after
//! `.difyignore`) or of a `.difypkg` file, as the daemon computes it.
//!
//! Upstream logs errors but exits 0; here a failure exits 1 so scripts can tell.

use std::path::Path;

use serde::Serialize;

use crate::commands::source::open_plugin;
use crate::error::CliResult;
use crate::output::{LogLine, Render, TextOutput};

#[derive(Debug, Clone, Serialize)]
pub struct ChecksumResult {
    pub checksum: String,
    /// `author/name:version@checksum` when the manifest fits the identifier format.
    pub plugin_unique_identifier: Option<String>,
}

impl Render for ChecksumResult {
    fn text(&self) -> TextOutput {
        TextOutput::Log(vec![LogLine::info("plugin checksum").field("checksum", &self.checksum)])
    }
}

pub fn run(plugin_path: &Path) -> CliResult<ChecksumResult> {
    let package = open_plugin(plugin_path)?;
    Ok(ChecksumResult { checksum: package.checksum(), plugin_unique_identifier: package.unique_identifier().ok().map(|id| id.to_string()) })
}
