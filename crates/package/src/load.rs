//! Resolves a plugin declaration from a package's files: `manifest.yaml`, then every provider
//! file it lists and the tool/strategy/endpoint/datasource/event files those reference, model
//! files found by glob and `_position.yaml` lists (docs/packaging.md §1.3).
//! Must not: check signatures or apply validation rules beyond what decoding needs.

use std::collections::BTreeMap;

use dify_protocol::manifest::{
    AgentStrategyDeclaration, AgentStrategyProviderDeclaration, DatasourceDeclaration, DatasourceProviderDeclaration, EndpointDeclaration,
    EndpointProviderDeclaration, EventDeclaration, ModelDeclaration, ModelProviderDeclaration, PluginDeclaration, ToolDeclaration,
    ToolProviderDeclaration, TriggerProviderDeclaration,
};
use serde::de::DeserializeOwned;

use crate::archive::ArchiveEntry;
use crate::error::PackageError;
use crate::glob::go_path_match_checked;

pub(crate) const MANIFEST_PATH: &str = "manifest.yaml";

/// Read access to a package's files for the loader.
pub(crate) struct FileView<'a> {
    pub entries: &'a [ArchiveEntry],
    pub index: &'a BTreeMap<String, usize>,
}

impl FileView<'_> {
    fn get(&self, path: &str) -> Option<&[u8]> {
        let cleaned = clean_path(path);
        self.index.get(&cleaned).map(|&i| self.entries[i].data.as_slice())
    }

    fn read(&self, path: &str, referenced_by: &str) -> Result<&[u8], PackageError> {
        self.get(path)
            .ok_or_else(|| PackageError::MissingReferencedFile { path: path.to_owned(), referenced_by: referenced_by.to_owned() })
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, referenced_by: &str) -> Result<T, PackageError> {
        decode_yaml(path, self.read(path, referenced_by)?)
    }
}

/// Removes `.` segments, empty segments and resolves `..` within the path.
pub(crate) fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

pub(crate) fn decode_yaml<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, PackageError> {
    serde_yaml_ng::from_slice(bytes).map_err(|e| PackageError::InvalidYaml { path: path.to_owned(), message: e.to_string() })
}

/// Loads and resolves the declaration. `verified` is left false; the caller sets it.
pub(crate) fn load_declaration(files: &FileView<'_>) -> Result<PluginDeclaration, PackageError> {
    let manifest = files.get(MANIFEST_PATH).ok_or(PackageError::MissingManifest)?;
    let mut declaration: PluginDeclaration = decode_yaml(MANIFEST_PATH, manifest)?;
    // `verified` is always recomputed from the signature. Provider objects written inline in
    // manifest.yaml are kept, as upstream does; files listed under `plugins` replace them.
    declaration.verified = false;

    for path in declaration.plugins.tools.clone() {
        let mut provider: ToolProviderDeclaration = files.decode(&path, MANIFEST_PATH)?;
        for tool_file in std::mem::take(&mut provider.tool_files) {
            let tool: ToolDeclaration = files.decode(&tool_file, &path)?;
            provider.tools.push(tool);
        }
        declaration.tool = Some(provider);
    }

    for path in declaration.plugins.endpoints.clone() {
        let mut provider: EndpointProviderDeclaration = files.decode(&path, MANIFEST_PATH)?;
        for endpoint_file in std::mem::take(&mut provider.endpoint_files) {
            let endpoint: EndpointDeclaration = files.decode(&endpoint_file, &path)?;
            provider.endpoints.push(endpoint);
        }
        declaration.endpoint = Some(provider);
    }

    for path in declaration.plugins.models.clone() {
        let provider = load_model_provider(files, &path)?;
        declaration.model = Some(provider);
    }

    for path in declaration.plugins.agent_strategies.clone() {
        let mut provider: AgentStrategyProviderDeclaration = files.decode(&path, MANIFEST_PATH)?;
        for strategy_file in std::mem::take(&mut provider.strategy_files) {
            let strategy: AgentStrategyDeclaration = files.decode(&strategy_file, &path)?;
            provider.strategies.push(strategy);
        }
        declaration.agent_strategy = Some(provider);
    }

    for path in declaration.plugins.datasources.clone() {
        let mut provider: DatasourceProviderDeclaration = files.decode(&path, MANIFEST_PATH)?;
        for datasource_file in std::mem::take(&mut provider.datasource_files) {
            let datasource: DatasourceDeclaration = files.decode(&datasource_file, &path)?;
            provider.datasources.push(datasource);
        }
        declaration.datasource = Some(provider);
    }

    for path in declaration.plugins.triggers.clone() {
        let mut provider: TriggerProviderDeclaration = files.decode(&path, MANIFEST_PATH)?;
        for event_file in std::mem::take(&mut provider.event_files) {
            let event: EventDeclaration = files.decode(&event_file, &path)?;
            provider.events.push(event);
        }
        declaration.trigger = Some(provider);
    }

    declaration.fill_in_default_values();
    Ok(declaration)
}

fn load_model_provider(files: &FileView<'_>, path: &str) -> Result<ModelProviderDeclaration, PackageError> {
    let mut provider: ModelProviderDeclaration = files.decode(path, MANIFEST_PATH)?;
    for model in provider.models.iter_mut() {
        model.fill_in_defaults();
    }
    if !provider.position_files.is_empty() {
        let mut position = provider.position.take().unwrap_or_default();
        for (model_type, position_file) in &provider.position_files {
            let names: Vec<String> = files.decode(position_file, path)?;
            position.set(model_type, names);
        }
        provider.position = Some(position);
    }
    // Every file matching any glob is a model (matching two globs means two copies, as
    // upstream), except position files.
    let patterns = std::mem::take(&mut provider.model_files);
    if !patterns.is_empty() {
        for entry in files.entries {
            if entry.name.ends_with("_position.yaml") {
                continue;
            }
            for pattern in &patterns {
                let matched = go_path_match_checked(pattern, &entry.name).ok_or_else(|| PackageError::InvalidYaml {
                    path: path.to_owned(),
                    message: format!("syntax error in model pattern {pattern:?}"),
                })?;
                if matched {
                    let mut model: ModelDeclaration = decode_yaml(&entry.name, &entry.data)?;
                    model.fill_in_defaults();
                    provider.models.push(model);
                }
            }
        }
        provider.model_files = patterns;
    }
    Ok(provider)
}
