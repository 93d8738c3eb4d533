//! The `dify-plugin-client` command: flag declarations, settings, dispatch to [`commands`], printing.
//!
//! Owns the command tree and the process-level wiring (runtime, stdout/stderr, exit status). The
//! work of each command lives in `commands`; formats in `output`; exit codes in `error`.

pub mod commands;
pub mod error;
pub mod logs;
pub mod output;
pub mod settings;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::Value;

use commands::{InstallFrom, NoProgress, Progress, WaitOptions};
use error::CliError;
use output::{print, print_error, OutputFormat, Render};
use settings::{SettingFlags, Settings};

use crate::config::ClientConfig;
use crate::transport::PluginDaemonClient;
use crate::wire::{PluginInstallTask, ToolInvokeMessage};

#[derive(Debug, Parser)]
#[command(name = "dify-plugin-client", version, about = "Manage and invoke plugins on a Dify plugin daemon")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the command name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Daemon base URL [env: DIFY_PLUGIN_DAEMON_URL] [default: http://localhost:5002]
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// API key sent as X-Api-Key [env: DIFY_PLUGIN_DAEMON_KEY]
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// Request timeout in seconds [env: DIFY_PLUGIN_DAEMON_TIMEOUT] [default: 600]
    #[arg(long, global = true)]
    pub timeout: Option<String>,
    /// JSON config file with keys url, key, timeout, tenant [default: ~/.dify]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Tenant (workspace) id [env: DIFY_PLUGIN_TENANT_ID]
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List installed plugins
    List {
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 256)]
        page_size: u32,
    },
    /// Upload a .difypkg and print its unique identifier
    UploadPkg {
        #[arg(long)]
        file: PathBuf,
        /// Ask the daemon to verify the package signature
        #[arg(long)]
        verify_signature: bool,
    },
    /// Install packages (uploading them first with --file) and wait for the task
    Install {
        #[arg(long, required_unless_present = "identifier", conflicts_with = "identifier")]
        file: Vec<PathBuf>,
        #[arg(long)]
        identifier: Vec<String>,
        /// marketplace, github, package or remote
        #[arg(long, default_value = "package")]
        source: String,
        #[arg(long)]
        verify_signature: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Invoke a tool and print its messages as they stream
    Invoke {
        #[arg(long)]
        user: String,
        /// author/plugin/provider
        #[arg(long)]
        provider: String,
        #[arg(long)]
        tool: String,
        /// Tool parameters as a JSON object
        #[arg(long, default_value = "{}")]
        params: String,
        /// Provider credentials as a JSON object
        #[arg(long, default_value = "{}")]
        credentials: String,
        /// api-key, oauth2 or unauthorized
        #[arg(long, default_value = "api-key")]
        credential_type: String,
    },
    /// List install tasks
    Tasks {
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 256)]
        page_size: u32,
    },
    /// Show one install task
    Task { task_id: String },
    /// Uninstall by installation id or plugin id (author/name)
    Uninstall { target: String },
    /// Upgrade an installed plugin to another uploaded version
    Upgrade {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "package")]
        source: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Print a plugin's manifest
    Manifest { identifier: String },
    /// Print a plugin's readme (empty when it has none)
    Readme {
        identifier: String,
        #[arg(long, default_value = "en_US")]
        language: String,
    },
    /// Show which identifiers are not installed (or installed in another version)
    Missing {
        #[arg(required = true)]
        identifiers: Vec<String>,
    },
    /// List tool providers and their tools
    Tools {
        /// Only this provider (author/plugin/provider)
        #[arg(long)]
        provider: Option<String>,
    },
    /// Invoke a plugin version by unique identifier (/v2/invoke) and print each streamed item
    InvokeV2 {
        /// author/name:version@checksum
        #[arg(long)]
        identifier: String,
        /// The dispatch route, e.g. /tool/invoke, /llm/invoke, /text_embedding/invoke
        #[arg(long)]
        route: String,
        /// The route's data as a JSON object
        #[arg(long, default_value = "{}")]
        data: String,
        #[arg(long, default_value = "")]
        user: String,
    },
    /// Print the manifest decoded from a version's stored package (/v2/invoke/extract)
    Extract { identifier: String },
    /// The admin API for serverless plugins (the daemon needs ADMIN_API_ENABLED=true)
    Admin {
        /// Sent as X-Admin-Api-Key
        #[arg(long, env = "DIFY_PLUGIN_ADMIN_API_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print an installed plugin's recent stderr, log messages and process notes
    Logs {
        /// author/name (or a unique identifier)
        plugin: String,
        /// How many of the newest lines to print
        #[arg(long, default_value_t = 200)]
        tail: u32,
        /// Keep printing new lines (polls every second) until interrupted
        #[arg(short, long)]
        follow: bool,
    },
}

/// The admin API's commands (serverless plugins).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Launch a serverless plugin version at the connector again and print the reinstall events
    Reinstall {
        /// author/name:version@checksum
        #[arg(long)]
        identifier: String,
    },
    /// Point a serverless plugin version at another function
    SwitchEndpoint {
        /// author/name:version@checksum
        #[arg(long)]
        identifier: String,
        #[arg(long)]
        function_name: String,
        #[arg(long)]
        function_url: String,
    },
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Return after starting the task instead of waiting for it
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds
    #[arg(long, default_value_t = 900)]
    pub wait_timeout: u64,
}

impl WaitArgs {
    fn options(&self) -> WaitOptions {
        WaitOptions { wait: !self.no_wait, poll_interval: Duration::from_millis(500), timeout: Duration::from_secs(self.wait_timeout) }
    }
}

/// Runs the command line `args` (including the program name) and returns the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let status = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return status;
        }
    };
    let format = cli.global.output;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            print_error(format, &CliError::new(error::ErrorCode::Io, format!("cannot start: {err}")), &mut std::io::stderr());
            return 1;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => 0,
        Err(error) => {
            print_error(format, &error, &mut std::io::stderr());
            error.exit_status()
        }
    }
}

fn resolve_settings(global: &GlobalArgs) -> Result<Settings, CliError> {
    let flags = SettingFlags {
        url: global.url.clone(),
        key: global.key.clone(),
        timeout: global.timeout.clone(),
        tenant: global.tenant.clone(),
        config: global.config.clone(),
    };
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    settings::resolve(&flags, &|name| std::env::var(name).ok(), home.as_deref())
}

fn emit(format: OutputFormat, result: &dyn Render) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    print(format, result, &mut stdout)
        .and_then(|_| stdout.flush())
        .map_err(|err| CliError::new(error::ErrorCode::Io, format!("cannot write output: {err}")))
}

async fn execute(cli: Cli) -> Result<(), CliError> {
    let format = cli.global.output;
    let settings = resolve_settings(&cli.global)?;
    let config = ClientConfig::new(&settings.url, &settings.key).with_timeout(settings.timeout);
    let client = PluginDaemonClient::new(config)?;
    // Commands without a tenant.
    match cli.command {
        Command::Admin { admin_key, command } => {
            let admin_key = admin_key.filter(|k| !k.is_empty()).ok_or_else(|| {
                CliError::new(error::ErrorCode::Usage, "the admin API key is required (--admin-key or DIFY_PLUGIN_ADMIN_API_KEY)")
            })?;
            admin(&client, format, &admin_key, command).await
        }
        Command::Extract { identifier } => {
            let value = client.extract_v2(&identifier).await?;
            let text = output::to_yaml(&value);
            emit(format, &output::Plain { value, text, names: vec![identifier] })
        }
        command => run_for_tenant(&client, format, &settings, command).await,
    }
}

async fn run_for_tenant(client: &PluginDaemonClient, format: OutputFormat, settings: &Settings, command: Command) -> Result<(), CliError> {
    let client = client.clone();
    let tenant = settings.require_tenant()?.to_string();
    let mut progress = progress_for(format);
    match command {
        Command::List { page, page_size } => emit(format, &commands::list(&client, &tenant, page, page_size).await?),
        Command::UploadPkg { file, verify_signature } => {
            emit(format, &commands::upload_pkg(&client, &tenant, &file, verify_signature).await?)
        }
        Command::Install { file, identifier, source, verify_signature, wait } => {
            let from = if file.is_empty() { InstallFrom::Identifiers(identifier) } else { InstallFrom::Files(file) };
            let outcome = commands::install(&client, &tenant, from, &source, verify_signature, &wait.options(), progress.as_mut()).await?;
            emit(format, &outcome)
        }
        Command::Invoke { user, provider, tool, params, credentials, credential_type } => {
            let mut invocation = crate::ToolInvocation::new(&user, &provider, &tool);
            invocation.tool_parameters = commands::parse_json_object(&params, "--params")?;
            invocation.credentials = commands::parse_json_object(&credentials, "--credentials")?;
            invocation.credential_type = credential_type;
            let mut printer = StreamPrinter::new(format);
            let result = commands::invoke(&client, &tenant, invocation, &mut |m| printer.message(m)).await;
            printer.finish();
            result.map(|_| ())
        }
        Command::Tasks { page, page_size } => emit(format, &commands::tasks(&client, &tenant, page, page_size).await?),
        Command::Task { task_id } => emit(format, &commands::task(&client, &tenant, &task_id).await?),
        Command::Uninstall { target } => emit(format, &commands::uninstall(&client, &tenant, &target).await?),
        Command::Upgrade { from, to, source, wait } => {
            let outcome = commands::upgrade(&client, &tenant, &from, &to, &source, &wait.options(), progress.as_mut()).await?;
            emit(format, &outcome)
        }
        Command::Manifest { identifier } => emit(format, &commands::manifest(&client, &tenant, &identifier).await?),
        Command::Readme { identifier, language } => emit(format, &commands::readme(&client, &tenant, &identifier, &language).await?),
        Command::Missing { identifiers } => emit(format, &commands::missing(&client, &tenant, &identifiers).await?),
        Command::Tools { provider } => emit(format, &commands::tools(&client, &tenant, provider.as_deref()).await?),
        Command::InvokeV2 { identifier, route, data, user } => {
            let data = commands::parse_json_object(&data, "--data")?;
            let caller = crate::DirectCaller::new(&tenant, &user);
            let mut items = client.invoke_v2(&identifier, &route, &caller, data).await?;
            while let Some(item) = items.next().await {
                print_item(format, &item?)?;
            }
            Ok(())
        }
        Command::Admin { .. } | Command::Extract { .. } => unreachable!("handled without a tenant"),
        Command::Logs { plugin, tail, follow } => {
            let first = logs::logs(&client, &tenant, &plugin, tail).await?;
            let mut after = first.0.last_seq;
            emit(format, &first)?;
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let next = client.fetch_plugin_logs(&tenant, &plugin, after, None).await?;
                after = next.last_seq;
                if !next.entries.is_empty() {
                    emit(format, &logs::PluginLogs(next))?;
                }
            }
        }
    }
}

/// One streamed item: a JSON line (text, json), a YAML document (yaml).
fn print_item(format: OutputFormat, item: &Value) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written = match format {
        OutputFormat::Yaml => write!(out, "---\n{}", output::to_yaml(item)),
        _ => writeln!(out, "{item}"),
    };
    written
        .and_then(|_| out.flush())
        .map_err(|err| CliError::new(error::ErrorCode::Io, format!("cannot write output: {err}")))
}

async fn admin(client: &PluginDaemonClient, format: OutputFormat, admin_key: &str, command: AdminCommand) -> Result<(), CliError> {
    match command {
        AdminCommand::Reinstall { identifier } => {
            let mut events = client.admin_reinstall_serverless(admin_key, &identifier).await?;
            let mut last = None;
            while let Some(event) = events.next().await {
                let event = event?;
                match format {
                    OutputFormat::Json | OutputFormat::Yaml => print_item(format, &serde_json::to_value(&event).unwrap_or(Value::Null))?,
                    _ => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{}: {}", event.event, event.data)
                            .and_then(|_| out.flush())
                            .map_err(|err| CliError::new(error::ErrorCode::Io, format!("cannot write output: {err}")))?;
                    }
                }
                last = Some(event);
            }
            match last {
                Some(event) if event.event == "done" => Ok(()),
                Some(event) if event.event == "error" => Err(CliError::new(error::ErrorCode::Daemon, event.data)),
                _ => Err(CliError::new(error::ErrorCode::Daemon, "the reinstall ended without a result")),
            }
        }
        AdminCommand::SwitchEndpoint { identifier, function_name, function_url } => {
            let switched = client.admin_switch_serverless_endpoint(admin_key, &identifier, &function_name, &function_url).await?;
            let text = format!("{identifier} now runs on {function_name} ({function_url})");
            emit(format, &output::Plain { value: Value::Bool(switched), text, names: vec![identifier] })
        }
    }
}

/// A spinner on stderr, only for humans at a terminal.
struct SpinnerProgress {
    bar: indicatif::ProgressBar,
}

impl Progress for SpinnerProgress {
    fn update(&mut self, task: &PluginInstallTask) {
        let current = task
            .plugins
            .iter()
            .find(|p| !p.status.is_finished())
            .map(|p| {
                format!(" {} {}{}", p.plugin_id, p.status, if p.message.is_empty() { String::new() } else { format!(": {}", p.message) })
            })
            .unwrap_or_default();
        self.bar.set_message(format!("installing [{}/{}]{current}", task.completed_plugins, task.total_plugins));
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn progress_for(format: OutputFormat) -> Box<dyn Progress> {
    if format.is_structured() || !std::io::stderr().is_terminal() {
        return Box::new(NoProgress);
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    Box::new(SpinnerProgress { bar })
}

/// Prints streamed tool messages as they arrive.
struct StreamPrinter {
    format: OutputFormat,
    /// Text was written without a final newline.
    open_line: bool,
}

impl StreamPrinter {
    fn new(format: OutputFormat) -> Self {
        StreamPrinter { format, open_line: false }
    }

    fn message(&mut self, message: &ToolInvokeMessage) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        let value = serde_json::to_value(message).unwrap_or(Value::Null);
        match self.format {
            OutputFormat::Json => writeln!(out, "{value}")?,
            OutputFormat::Yaml => write!(out, "---\n{}", output::to_yaml(&value))?,
            OutputFormat::Text | OutputFormat::Wide | OutputFormat::Name => match message.text() {
                Some(text) if message.message_type == "text" => {
                    write!(out, "{text}")?;
                    self.open_line = !text.ends_with('\n');
                }
                _ if self.format == OutputFormat::Name => {}
                Some(text) => {
                    self.close_line(&mut out)?;
                    writeln!(out, "[{}] {text}", message.message_type)?;
                }
                None if message.message_type == "blob" => {
                    self.close_line(&mut out)?;
                    let size = message
                        .message
                        .get("blob")
                        .and_then(Value::as_str)
                        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
                        .map_or(0, |bytes| bytes.len());
                    let mime = message
                        .meta
                        .as_ref()
                        .and_then(|meta| meta.get("mime_type"))
                        .and_then(Value::as_str)
                        .unwrap_or("application/octet-stream");
                    writeln!(out, "[blob] {size} bytes ({mime})")?;
                }
                None => {
                    self.close_line(&mut out)?;
                    let shown = if message.message_type == "json" {
                        message.message.get("json_object").cloned().unwrap_or_else(|| message.message.clone())
                    } else {
                        message.message.clone()
                    };
                    writeln!(out, "[{}] {shown}", message.message_type)?;
                }
            },
        }
        out.flush()
    }

    fn close_line(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.open_line {
            writeln!(out)?;
            self.open_line = false;
        }
        Ok(())
    }

    fn finish(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = self.close_line(&mut out);
        let _ = out.flush();
    }
}
