//! `dify plugin readme list <dir|pkg>`: which README languages a plugin ships (`README.md` is
//! `en_US`, `readme/README_<lang>.md` the others).

use std::path::Path;

use serde::Serialize;

use crate::commands::source::{open_plugin, package_error};
use crate::error::CliResult;
use crate::output::{Render, TextOutput};

#[derive(Debug, Clone, Serialize)]
pub struct ReadmeEntry {
    pub language_code: String,
    pub language: String,
    pub available: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadmeList {
    pub readmes: Vec<ReadmeEntry>,
}

impl Render for ReadmeList {
    fn text(&self) -> TextOutput {
        let rows: Vec<[String; 3]> = std::iter::once(["language-code".into(), "language".into(), "available".into()])
            .chain(std::iter::once(["-------------".into(), "--------".into(), "---------".into()]))
            .chain(self.readmes.iter().map(|r| [r.language_code.clone(), r.language.clone(), "✅".into()]))
            .collect();
        let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0) + 3;
        let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0) + 3;
        let mut s = String::new();
        for r in rows {
            s.push_str(&format!("{:<w0$}{:<w1$}{}\n", r[0], r[1], r[2]));
        }
        TextOutput::Stdout(s)
    }
}

/// A human name for a readme language code.
pub fn language_name(code: &str) -> String {
    match code {
        "en_US" => "English",
        "zh_Hans" => "Simplified Chinese",
        "zh_Hant" => "Traditional Chinese",
        "ja_JP" => "Japanese",
        "pt_BR" => "Portuguese (Brazil)",
        "ko_KR" => "Korean",
        "de_DE" => "German",
        "fr_FR" => "French",
        "es_ES" => "Spanish",
        "it_IT" => "Italian",
        "ru_RU" => "Russian",
        other => other,
    }
    .to_string()
}

pub fn list(plugin_path: &Path) -> CliResult<ReadmeList> {
    let package = open_plugin(plugin_path)?;
    let readmes = package.readmes().map_err(|e| package_error("failed to get available README files", &e))?;
    Ok(ReadmeList {
        readmes: readmes
            .keys()
            .map(|code| ReadmeEntry { language_code: code.clone(), language: language_name(code), available: true })
            .collect(),
    })
}
