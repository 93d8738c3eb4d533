//! The work of each command: a plain async function taking typed options and a client, returning
//! a [`Render`] value. Testable without spawning the binary.
//!
//! Owns what each command asks the daemon and how results are shaped for printing. It must not
//! parse flags (`args` does) nor choose formats (`output` does).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::error::{CliError, ErrorCode};
use super::output::{table, Plain, Render};
use crate::error::ClientError;
use crate::transport::PluginDaemonClient;
use crate::wire::{
    PluginDecodeResponse, PluginEntity, PluginInstallTask, PluginInstallTaskStatus, PluginListResponse, PluginToolProviderEntity,
    ToolInvokeMessage,
};

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `list`: installed plugins.
pub struct PluginList(pub PluginListResponse);

impl Render for PluginList {
    fn to_value(&self) -> Value {
        to_value(&self.0)
    }
    fn to_text(&self, wide: bool) -> String {
        let plugins: &[PluginEntity] = &self.0.list;
        if wide {
            let rows: Vec<Vec<String>> = plugins
                .iter()
                .map(|p| {
                    vec![
                        p.plugin_id.clone(),
                        p.version.clone(),
                        p.installation_id.clone(),
                        p.source.clone(),
                        p.runtime_type.clone(),
                        p.plugin_unique_identifier.clone(),
                    ]
                })
                .collect();
            table(&["PLUGIN ID", "VERSION", "INSTALLATION ID", "SOURCE", "RUNTIME", "UNIQUE IDENTIFIER"], &rows)
        } else {
            let rows: Vec<Vec<String>> =
                plugins.iter().map(|p| vec![p.plugin_id.clone(), p.version.clone(), p.installation_id.clone()]).collect();
            let mut text = table(&["PLUGIN ID", "VERSION", "INSTALLATION ID"], &rows);
            if self.0.total > plugins.len() as i64 {
                text.push_str(&format!("({} of {} shown; use --page/--page-size)\n", plugins.len(), self.0.total));
            }
            text
        }
    }
    fn names(&self) -> Vec<String> {
        self.0.list.iter().map(|p| p.plugin_unique_identifier.clone()).collect()
    }
}

pub async fn list(client: &PluginDaemonClient, tenant: &str, page: u32, page_size: u32) -> Result<PluginList, CliError> {
    Ok(PluginList(client.list_plugins_with_total(tenant, page, page_size).await?))
}

/// `upload-pkg`: the decoded package.
pub struct Uploaded(pub PluginDecodeResponse);

impl Render for Uploaded {
    fn to_value(&self) -> Value {
        to_value(&self.0)
    }
    fn to_text(&self, wide: bool) -> String {
        let mut text = format!("uploaded {}\n", self.0.unique_identifier);
        if wide {
            let signed = match &self.0.verification {
                Some(v) => format!("signed ({})", v.authorized_category),
                None => "unsigned".to_string(),
            };
            text.push_str(&format!("  {} {} by {}, {signed}\n", self.0.manifest.name, self.0.manifest.version, self.0.manifest.author));
        }
        text
    }
    fn names(&self) -> Vec<String> {
        vec![self.0.unique_identifier.to_string()]
    }
}

fn read_package(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|err| CliError::new(ErrorCode::Io, format!("cannot read package {}: {err}", path.display())))
}

pub async fn upload_pkg(client: &PluginDaemonClient, tenant: &str, file: &Path, verify_signature: bool) -> Result<Uploaded, CliError> {
    let bytes = read_package(file)?;
    Ok(Uploaded(client.upload_pkg(tenant, bytes, verify_signature).await?))
}

/// `install`, `upgrade`, `task`: the state of an install task (or "already installed").
pub struct TaskOutcome {
    pub identifiers: Vec<String>,
    pub task: Option<PluginInstallTask>,
}

impl Render for TaskOutcome {
    fn to_value(&self) -> Value {
        match &self.task {
            Some(task) => to_value(task),
            None => json!({"all_installed": true, "plugin_unique_identifiers": self.identifiers}),
        }
    }
    fn to_text(&self, wide: bool) -> String {
        match &self.task {
            None => self.identifiers.iter().map(|id| format!("{id}: already installed\n")).collect(),
            Some(task) => {
                let mut text = format!("task {}: {} ({}/{} plugins)\n", task.id, task.status, task.completed_plugins, task.total_plugins);
                for plugin in &task.plugins {
                    let id = if wide { &plugin.plugin_unique_identifier } else { &plugin.plugin_id };
                    text.push_str(&format!("  {id}: {}", plugin.status));
                    if !plugin.message.is_empty() {
                        text.push_str(&format!(" - {}", plugin.message));
                    }
                    text.push('\n');
                }
                text
            }
        }
    }
    fn names(&self) -> Vec<String> {
        match &self.task {
            Some(task) => vec![task.id.clone()],
            None => self.identifiers.clone(),
        }
    }
}

/// Options of `install` and `upgrade` waiting.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    pub wait: bool,
    pub poll_interval: Duration,
    pub timeout: Duration,
}

/// How the install task is reported while waiting (a spinner on a TTY, nothing otherwise).
pub trait Progress {
    fn update(&mut self, task: &PluginInstallTask);
    fn finish(&mut self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&mut self, _task: &PluginInstallTask) {}
    fn finish(&mut self) {}
}

/// Fails with every plugin's message when the task failed.
fn check_task(task: PluginInstallTask, identifiers: Vec<String>) -> Result<TaskOutcome, CliError> {
    if task.status == PluginInstallTaskStatus::Failed {
        let mut error = CliError::new(ErrorCode::InstallFailed, format!("install task {} failed", task.id));
        error.details = task
            .plugins
            .iter()
            .map(|p| {
                format!(
                    "{}: {}{}",
                    p.plugin_unique_identifier,
                    p.status,
                    if p.message.is_empty() { String::new() } else { format!(" - {}", p.message) }
                )
            })
            .collect();
        error.hint = Some(format!("inspect it with `dify-plugin-client task {}`", task.id));
        return Err(error);
    }
    Ok(TaskOutcome { identifiers, task: Some(task) })
}

async fn follow_task(
    client: &PluginDaemonClient,
    tenant: &str,
    task_id: &str,
    identifiers: Vec<String>,
    wait: &WaitOptions,
    progress: &mut dyn Progress,
) -> Result<TaskOutcome, CliError> {
    if !wait.wait {
        let task = client.fetch_plugin_installation_task(tenant, task_id).await?;
        return Ok(TaskOutcome { identifiers, task: Some(task) });
    }
    let result = client
        .wait_for_installation_task(tenant, task_id, wait.poll_interval, wait.timeout, |task| progress.update(task))
        .await;
    progress.finish();
    check_task(result?, identifiers)
}

/// Where `install` takes its packages from.
#[derive(Debug, Clone)]
pub enum InstallFrom {
    Files(Vec<std::path::PathBuf>),
    Identifiers(Vec<String>),
}

#[allow(clippy::too_many_arguments)]
pub async fn install(
    client: &PluginDaemonClient,
    tenant: &str,
    from: InstallFrom,
    source: &str,
    verify_signature: bool,
    wait: &WaitOptions,
    progress: &mut dyn Progress,
) -> Result<TaskOutcome, CliError> {
    let identifiers = match from {
        InstallFrom::Identifiers(identifiers) => identifiers,
        InstallFrom::Files(files) => {
            let mut identifiers = Vec::new();
            for file in files {
                let bytes = read_package(&file)?;
                identifiers.push(client.upload_pkg(tenant, bytes, verify_signature).await?.unique_identifier.into());
            }
            identifiers
        }
    };
    let metas: Vec<Value> = identifiers.iter().map(|_| json!({})).collect();
    let started = client.install_from_identifiers(tenant, &identifiers, source, &metas).await?;
    if started.all_installed {
        return Ok(TaskOutcome { identifiers, task: None });
    }
    follow_task(client, tenant, &started.task_id, identifiers, wait, progress).await
}

pub async fn upgrade(
    client: &PluginDaemonClient,
    tenant: &str,
    original: &str,
    new: &str,
    source: &str,
    wait: &WaitOptions,
    progress: &mut dyn Progress,
) -> Result<TaskOutcome, CliError> {
    let started = client.upgrade_plugin(tenant, original, new, source, json!({})).await?;
    if started.all_installed {
        return Ok(TaskOutcome { identifiers: vec![new.to_string()], task: None });
    }
    follow_task(client, tenant, &started.task_id, vec![new.to_string()], wait, progress).await
}

pub async fn task(client: &PluginDaemonClient, tenant: &str, task_id: &str) -> Result<TaskOutcome, CliError> {
    let task = client.fetch_plugin_installation_task(tenant, task_id).await?;
    Ok(TaskOutcome { identifiers: Vec::new(), task: Some(task) })
}

/// `tasks`: install tasks, newest first.
pub struct TaskList(pub Vec<PluginInstallTask>);

impl Render for TaskList {
    fn to_value(&self) -> Value {
        to_value(&self.0)
    }
    fn to_text(&self, wide: bool) -> String {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|t| {
                let mut row = vec![t.id.clone(), t.status.to_string(), format!("{}/{}", t.completed_plugins, t.total_plugins)];
                if wide {
                    row.push(t.created_at.clone());
                    row.push(t.plugins.iter().map(|p| p.plugin_id.as_str()).collect::<Vec<_>>().join(","));
                }
                row
            })
            .collect();
        if wide {
            table(&["TASK ID", "STATUS", "DONE", "CREATED", "PLUGINS"], &rows)
        } else {
            table(&["TASK ID", "STATUS", "DONE"], &rows)
        }
    }
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|t| t.id.clone()).collect()
    }
}

pub async fn tasks(client: &PluginDaemonClient, tenant: &str, page: u32, page_size: u32) -> Result<TaskList, CliError> {
    Ok(TaskList(client.fetch_plugin_installation_tasks(tenant, page, page_size).await?))
}

/// `uninstall`: accepts an installation id, or a plugin id (`author/name`) looked up in `list`.
pub async fn uninstall(client: &PluginDaemonClient, tenant: &str, target: &str) -> Result<Plain, CliError> {
    let installation_id = if target.contains('/') {
        let plugins = client.list_plugins(tenant).await?;
        let found = plugins.iter().find(|p| p.plugin_id == target || p.plugin_unique_identifier == target);
        match found {
            Some(plugin) => plugin.installation_id.clone(),
            None => {
                return Err(CliError::new(ErrorCode::NotFound, format!("plugin {target} is not installed for this tenant"))
                    .with_hint("see `dify-plugin-client list`"))
            }
        }
    } else {
        target.to_string()
    };
    let done = client.uninstall(tenant, &installation_id).await?;
    Ok(Plain {
        value: json!({"uninstalled": done, "installation_id": installation_id}),
        text: format!("uninstalled {target}"),
        names: vec![installation_id],
    })
}

pub async fn manifest(client: &PluginDaemonClient, tenant: &str, identifier: &str) -> Result<Plain, CliError> {
    let declaration = client.fetch_plugin_manifest(tenant, identifier).await?;
    let value = to_value(&declaration);
    let text = super::output::to_yaml(&value);
    Ok(Plain { value, text, names: vec![identifier.to_string()] })
}

pub async fn readme(client: &PluginDaemonClient, tenant: &str, identifier: &str, language: &str) -> Result<Plain, CliError> {
    let content = client.fetch_plugin_readme(tenant, identifier, language).await?;
    Ok(Plain { value: json!({"content": content, "language": language}), text: content, names: vec![identifier.to_string()] })
}

pub async fn missing(client: &PluginDaemonClient, tenant: &str, identifiers: &[String]) -> Result<Plain, CliError> {
    let missing = client.fetch_missing_dependencies(tenant, identifiers).await?;
    let rows: Vec<Vec<String>> = missing
        .iter()
        .map(|m| {
            let current = if m.current_identifier.is_empty() { "(not installed)".to_string() } else { m.current_identifier.clone() };
            vec![m.plugin_unique_identifier.to_string(), current]
        })
        .collect();
    Ok(Plain {
        value: to_value(&missing),
        text: if rows.is_empty() { "nothing missing".to_string() } else { table(&["REQUESTED", "INSTALLED"], &rows) },
        names: missing.iter().map(|m| m.plugin_unique_identifier.to_string()).collect(),
    })
}

/// `tools`: tool providers and their tools.
pub struct ToolProviders(pub Vec<PluginToolProviderEntity>);

impl Render for ToolProviders {
    fn to_value(&self) -> Value {
        to_value(&self.0)
    }
    fn to_text(&self, wide: bool) -> String {
        let mut rows = Vec::new();
        for provider in &self.0 {
            for tool in &provider.declaration.tools {
                let mut row = vec![provider.declaration.identity.name.clone(), tool.identity.name.clone()];
                if wide {
                    let parameters: Vec<String> = tool
                        .parameters
                        .iter()
                        .map(|p| format!("{}:{}{}", p.name, p.parameter_type, if p.required { "" } else { "?" }))
                        .collect();
                    row.push(parameters.join(" "));
                }
                rows.push(row);
            }
        }
        if wide {
            table(&["PROVIDER", "TOOL", "PARAMETERS"], &rows)
        } else {
            table(&["PROVIDER", "TOOL"], &rows)
        }
    }
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.declaration.identity.name.clone()).collect()
    }
}

pub async fn tools(client: &PluginDaemonClient, tenant: &str, provider: Option<&str>) -> Result<ToolProviders, CliError> {
    Ok(ToolProviders(match provider {
        Some(provider) => vec![client.fetch_tool_provider(tenant, provider).await?],
        None => client.fetch_tool_providers(tenant).await?,
    }))
}

/// Parses a `--params`/`--credentials` JSON object.
pub fn parse_json_object(text: &str, flag: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::usage(format!("{flag} must be a JSON object"))),
        Err(err) => Err(CliError::usage(format!("{flag} is not valid JSON: {err}"))
            .with_hint(format!(r#"quote it for the shell, e.g. {flag} '{{"text": "hello"}}'"#))),
    }
}

/// `invoke`: streams messages to `sink` as they arrive; returns how many arrived.
pub async fn invoke(
    client: &PluginDaemonClient,
    tenant: &str,
    invocation: crate::ToolInvocation,
    sink: &mut dyn FnMut(&ToolInvokeMessage) -> std::io::Result<()>,
) -> Result<usize, CliError> {
    use futures::StreamExt;
    let mut stream = client.invoke_tool(tenant, invocation).await?;
    let mut count = 0;
    while let Some(item) = stream.next().await {
        let message = item.map_err(|err: ClientError| {
            let mut error = CliError::from(err);
            if count > 0 {
                error.details.push(format!("after {count} message(s)"));
            }
            error
        })?;
        sink(&message).map_err(|err| CliError::new(ErrorCode::Io, format!("cannot write output: {err}")))?;
        count += 1;
    }
    Ok(count)
}
