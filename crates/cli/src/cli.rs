//! Command-line declaration (clap) and dispatch.
//!
//! Each subcommand declares its flags here and hands typed options to a `commands::…::run`
//! function; this module then prints the result through [`Printer`] and turns errors into exit
//! statuses (via [`CliError::exit_status`]). It must not contain command logic.
//!
//! `--output/-o text|json|yaml` selects the output format on every leaf command. Upstream uses
//! `-o` for the output *file* of `plugin package` and `bundle package` (`-o/--output_path`); those
//! two keep that meaning so existing scripts work, and take the format only as the long
//! `--output` flag.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{bundle, plugin, signature, version};
use crate::error::{CliError, CliResult};
use crate::output::{OutputFormat, Printer, Render};

#[derive(Debug, Parser)]
#[command(name = "dify", about = "Dify is a cli tool to help you develop your Dify projects.", disable_version_flag = true)]
pub struct Cli {
    /// config file (default is $HOME/.dify.yaml); accepted for compatibility, currently unused
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// `-o/--output` on ordinary commands.
#[derive(Debug, Clone, Args)]
pub struct FormatArg {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `--output` only, for commands whose `-o` is upstream's output-file flag.
#[derive(Debug, Clone, Args)]
pub struct LongFormatArg {
    /// Output format (long flag only: `-o` is the output file here)
    #[arg(long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the version of dify cli
    Version(FormatArg),
    /// Plugin related commands
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Bundle related commands
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Signature related commands
    #[command(subcommand)]
    Signature(SignatureCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Initialize a new plugin (interactive on a terminal unless --quick)
    Init(InitArgs),
    /// Package a plugin directory into a .difypkg
    Package(PackageArgs),
    /// Calculate the checksum of a plugin directory or .difypkg file
    Checksum {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List, add or remove the permissions a plugin requests
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Plugin modules (tools, endpoints, models, agent strategies)
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Readme files
    #[command(subcommand)]
    Readme(ReadmeCommand),
    /// Run a plugin package (or plugin directory) locally and talk to it in line-JSON over stdio or TCP
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A .difypkg file or a plugin directory
    pub plugin_path: PathBuf,
    /// stdio: one client on this process's stdin/stdout; tcp: a server for any number of clients
    #[arg(short = 'm', long = "mode", value_enum, default_value = "stdio")]
    pub mode: plugin::run::RunMode,
    /// Response format: text ([type] map[...]) or json (one object per line)
    #[arg(short = 'r', long = "response-format", value_enum, default_value = "text")]
    pub response_format: plugin::run::ResponseFormat,
    /// Show the plugin's log lines and stderr as `log` lines on stdout (build output goes to stderr)
    #[arg(short = 'l', long = "enable-logs")]
    pub enable_logs: bool,
    /// TCP mode: address to listen on
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// TCP mode: port to listen on (0 picks a free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seconds unfinished invocations may still run after the input ends
    #[arg(long = "drain-timeout", default_value_t = 60)]
    pub drain_timeout: u64,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Author name (1-64 characters, lowercase letters, numbers, dashes and underscores only)
    #[arg(long, default_value = "")]
    pub author: String,
    /// Plugin name (1-128 characters, lowercase letters, numbers, dashes and underscores only)
    #[arg(long, default_value = "")]
    pub name: String,
    /// Plugin description (cannot be empty)
    #[arg(long, default_value = "")]
    pub description: String,
    /// Plugin repository URL (optional)
    #[arg(long)]
    pub repo: Option<String>,
    /// Plugin category: tool, llm, text-embedding, rerank, tts, speech2text, moderation, extension,
    /// agent-strategy, datasource, trigger
    #[arg(long, default_value = "tool")]
    pub category: String,
    /// Programming language: python
    #[arg(long, default_value = "python")]
    pub language: String,
    /// Minimum Dify version required
    #[arg(long = "min-dify-version")]
    pub min_dify_version: Option<String>,
    /// Skip interactive mode and create plugin directly
    #[arg(long)]
    pub quick: bool,
    /// Extra README language (zh_Hans, ja_JP, pt_BR); repeatable
    #[arg(long = "readme-language")]
    pub readme_languages: Vec<String>,
    /// Directory in which the plugin directory is created (default: current directory)
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub permissions: plugin::init::PermissionFlags,
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    pub plugin_path: PathBuf,
    /// output path
    #[arg(short = 'o', long = "output_path")]
    pub output_path: Option<PathBuf>,
    /// Maximum uncompressed size in MB
    #[arg(long = "max-size", default_value_t = 50, allow_negative_numbers = true)]
    pub max_size: i64,
    #[command(flatten)]
    pub format: LongFormatArg,
}

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Show the permissions requested in manifest.yaml
    List {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Request more permissions (rewrites manifest.yaml)
    Add {
        plugin_path: PathBuf,
        #[command(flatten)]
        permissions: plugin::init::PermissionFlags,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Drop permissions (rewrites manifest.yaml)
    Remove {
        plugin_path: PathBuf,
        #[command(flatten)]
        permissions: plugin::init::PermissionFlags,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// List modules
    List {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Append a module
    #[command(subcommand)]
    Append(ModuleAppendCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModuleAppendCommand {
    /// Append tools
    Tools {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Append endpoints
    Endpoints {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReadmeCommand {
    /// List available README languages
    List {
        plugin_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum SignatureCommand {
    /// Generate a key pair
    Generate {
        /// filename of the key pair
        #[arg(short = 'f', long = "filename", default_value = "dify_plugin_signing_key")]
        filename: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Sign a difypkg file with the specified private key
    Sign {
        difypkg_path: PathBuf,
        /// private key file
        #[arg(short = 'p', long = "private_key", required = true)]
        private_key: PathBuf,
        /// authorized category: langgenius, partner or community
        #[arg(short = 'c', long = "authorized_category", default_value = "langgenius")]
        authorized_category: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Verify a difypkg file (official key unless -p is given)
    Verify {
        difypkg_path: PathBuf,
        /// public key file
        #[arg(short = 'p', long = "public_key")]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Create a bundle (interactive on a terminal; flags for scripts)
    Init(BundleInitArgs),
    /// Append a dependency
    #[command(subcommand)]
    Append(BundleAppendCommand),
    /// Remove a dependency from the specified bundle
    Remove {
        bundle_path: PathBuf,
        /// index of the dependency
        #[arg(short = 'i', long = "index", required = true)]
        index: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Regenerate the profile (name, author, description) of the specified bundle
    Regenerate(BundleRegenerateArgs),
    /// Bump the version of the specified bundle
    Bump {
        bundle_path: PathBuf,
        /// target version
        #[arg(short = 't', long = "target_version", required = true)]
        target_version: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Package the specified bundle
    Package {
        bundle_path: PathBuf,
        /// output path
        #[arg(short = 'o', long = "output_path")]
        output_path: Option<PathBuf>,
        #[command(flatten)]
        format: LongFormatArg,
    },
    /// List all dependencies in the specified bundle
    Analyze {
        bundle_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Args)]
pub struct BundleProfileFlags {
    /// Bundle name
    #[arg(long)]
    pub name: Option<String>,
    /// Author
    #[arg(long)]
    pub author: Option<String>,
    /// Description
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct BundleInitArgs {
    #[command(flatten)]
    pub profile: BundleProfileFlags,
    /// Directory in which the bundle directory is created (default: current directory)
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Debug, Args)]
pub struct BundleRegenerateArgs {
    pub bundle_path: PathBuf,
    #[command(flatten)]
    pub profile: BundleProfileFlags,
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Debug, Subcommand)]
pub enum BundleAppendCommand {
    /// Append a github dependency to the specified bundle
    Github {
        bundle_path: PathBuf,
        /// github repo pattern
        #[arg(short = 'r', long = "repo_pattern", required = true)]
        repo_pattern: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Append a marketplace dependency to the specified bundle
    Marketplace {
        bundle_path: PathBuf,
        /// marketplace pattern
        #[arg(short = 'm', long = "marketplace_pattern", required = true)]
        marketplace_pattern: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Append a local package dependency to the specified bundle
    Package {
        bundle_path: PathBuf,
        /// path to the package
        #[arg(short = 'p', long = "package_path", required = true)]
        package_path: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
}

/// Parse `args` (including the program name), run the command, print, and return the exit
/// status.
pub fn run_from_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(e, &args),
    };
    if let Command::Plugin(PluginCommand::Run(args)) = cli.command {
        return plugin::run::run(plugin::run::RunOptions {
            plugin_path: args.plugin_path,
            mode: args.mode,
            response_format: args.response_format,
            enable_logs: args.enable_logs,
            host: args.host,
            port: args.port,
            drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        });
    }
    let format = cli.command.format();
    let printer = Printer::new(format);
    match dispatch(cli.command) {
        Ok(result) => {
            printer.print(result.as_ref());
            0
        }
        Err(e) => {
            printer.print_error(&e);
            e.exit_status()
        }
    }
}

fn report_parse_error(e: clap::Error, args: &[OsString]) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            }
        }
        _ => {
            let format = requested_format(args);
            if format.is_structured() {
                let message = e.kind().as_str().map(str::to_string).unwrap_or_else(|| "invalid command line".to_string());
                let detail = e.to_string();
                let first = detail.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
                let err = CliError::usage(if first.is_empty() { message } else { first }, "run the command with --help to see its flags");
                Printer::new(format).print_error(&err);
            } else {
                let _ = e.print();
            }
            2
        }
    }
}

/// Best-effort look at argv for `--output json|yaml` (or `-o json|yaml`) when parsing failed.
fn requested_format(args: &[OsString]) -> OutputFormat {
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    for (i, w) in words.iter().enumerate() {
        let value = if w == "--output" || w == "-o" { words.get(i + 1).map(String::as_str) } else { w.strip_prefix("--output=") };
        match value {
            Some("json") => return OutputFormat::Json,
            Some("yaml") => return OutputFormat::Yaml,
            _ => {}
        }
    }
    OutputFormat::Text
}

impl Command {
    fn format(&self) -> OutputFormat {
        match self {
            Command::Version(f) => f.output,
            Command::Plugin(p) => match p {
                PluginCommand::Init(a) => a.format.output,
                PluginCommand::Package(a) => a.format.output,
                PluginCommand::Checksum { format, .. } => format.output,
                PluginCommand::Permission(
                    PermissionCommand::List { format, .. }
                    | PermissionCommand::Add { format, .. }
                    | PermissionCommand::Remove { format, .. },
                ) => format.output,
                PluginCommand::Module(ModuleCommand::List { format, .. })
                | PluginCommand::Module(ModuleCommand::Append(
                    ModuleAppendCommand::Tools { format, .. } | ModuleAppendCommand::Endpoints { format, .. },
                )) => format.output,
                PluginCommand::Readme(ReadmeCommand::List { format, .. }) => format.output,
                PluginCommand::Run(_) => OutputFormat::Text,
            },
            Command::Signature(
                SignatureCommand::Generate { format, .. } | SignatureCommand::Sign { format, .. } | SignatureCommand::Verify { format, .. },
            ) => format.output,
            Command::Bundle(b) => match b {
                BundleCommand::Init(a) => a.format.output,
                BundleCommand::Regenerate(a) => a.format.output,
                BundleCommand::Package { format, .. } => format.output,
                BundleCommand::Append(
                    BundleAppendCommand::Github { format, .. }
                    | BundleAppendCommand::Marketplace { format, .. }
                    | BundleAppendCommand::Package { format, .. },
                )
                | BundleCommand::Remove { format, .. }
                | BundleCommand::Bump { format, .. }
                | BundleCommand::Analyze { format, .. } => format.output,
            },
        }
    }
}

type Output = Box<dyn ErasedRender>;

/// Object-safe wrapper so `dispatch` can return any command's result.
pub trait ErasedRender: erased::Sealed {
    fn text_output(&self) -> crate::output::TextOutput;
    fn to_json_value(&self) -> serde_json::Value;
}

mod erased {
    pub trait Sealed {}
    impl<T: crate::output::Render> Sealed for T {}
}

impl<T: Render> ErasedRender for T {
    fn text_output(&self) -> crate::output::TextOutput {
        self.text()
    }
    fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl serde::Serialize for dyn ErasedRender {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(s)
    }
}

impl Render for dyn ErasedRender {
    fn text(&self) -> crate::output::TextOutput {
        self.text_output()
    }
}

fn boxed<T: Render + 'static>(r: CliResult<T>) -> CliResult<Output> {
    r.map(|v| Box::new(v) as Output)
}

fn cwd() -> CliResult<PathBuf> {
    std::env::current_dir().map_err(|e| {
        CliError::generic(format!("failed to get current working directory: {e}"), "run the command from an existing directory")
    })
}

fn stdin_is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn dispatch(command: Command) -> CliResult<Output> {
    match command {
        Command::Version(_) => boxed(Ok(version::run())),
        Command::Plugin(p) => dispatch_plugin(p),
        Command::Signature(s) => dispatch_signature(s),
        Command::Bundle(b) => dispatch_bundle(b),
    }
}

fn dispatch_plugin(command: PluginCommand) -> CliResult<Output> {
    match command {
        PluginCommand::Init(a) => {
            let category = plugin::init::Category::parse(&a.category)?;
            let mut opts = plugin::init::InitOptions {
                name: a.name,
                author: a.author,
                description: a.description,
                repo: a.repo,
                category,
                language: a.language,
                min_dify_version: a.min_dify_version,
                permissions: a.permissions,
                readme_languages: a.readme_languages,
                parent_dir: match a.dir {
                    Some(d) => d,
                    None => cwd()?,
                },
                created_at: None,
            };
            if !a.quick && !a.format.output.is_structured() && stdin_is_interactive() {
                let stdin = std::io::stdin();
                opts = plugin::init::Prompter::new(stdin.lock(), std::io::stderr()).complete(opts)?;
            }
            boxed(plugin::init::run(&opts))
        }
        PluginCommand::Package(a) => boxed(plugin::package::run(&plugin::package::PackageOptions {
            plugin_path: a.plugin_path,
            output_path: a.output_path,
            max_size_mb: a.max_size,
            format: a.format.output,
        })),
        PluginCommand::Checksum { plugin_path, .. } => boxed(plugin::checksum::run(&plugin_path)),
        PluginCommand::Permission(p) => match p {
            PermissionCommand::List { plugin_path, .. } => boxed(plugin::permission::list(&plugin_path)),
            PermissionCommand::Add { plugin_path, permissions, .. } => boxed(plugin::permission::add(&plugin_path, &permissions)),
            PermissionCommand::Remove { plugin_path, permissions, .. } => boxed(plugin::permission::remove(&plugin_path, &permissions)),
        },
        PluginCommand::Module(m) => match m {
            ModuleCommand::List { plugin_path, .. } => boxed(plugin::module::list(&plugin_path)),
            ModuleCommand::Append(ModuleAppendCommand::Tools { plugin_path, .. }) => {
                boxed(plugin::module::append(&plugin_path, plugin::module::ModuleKind::Tools))
            }
            ModuleCommand::Append(ModuleAppendCommand::Endpoints { plugin_path, .. }) => {
                boxed(plugin::module::append(&plugin_path, plugin::module::ModuleKind::Endpoints))
            }
        },
        PluginCommand::Readme(ReadmeCommand::List { plugin_path, .. }) => boxed(plugin::readme::list(&plugin_path)),
        PluginCommand::Run(_) => Err(CliError::generic("plugin run is not a printable command", "run it through the dify binary")),
    }
}

fn dispatch_signature(command: SignatureCommand) -> CliResult<Output> {
    match command {
        SignatureCommand::Generate { filename, format } => {
            boxed(signature::generate(&signature::GenerateOptions { filename: PathBuf::from(filename), format: format.output }))
        }
        SignatureCommand::Sign { difypkg_path, private_key, authorized_category, .. } => boxed(signature::sign(&signature::SignOptions {
            package_path: difypkg_path,
            private_key_path: private_key,
            authorized_category,
        })),
        SignatureCommand::Verify { difypkg_path, public_key, .. } => {
            boxed(signature::verify(&signature::VerifyOptions { package_path: difypkg_path, public_key_path: public_key }))
        }
    }
}

fn profile_from_flags(flags: BundleProfileFlags) -> bundle::ProfileInput {
    bundle::ProfileInput { name: flags.name, author: flags.author, description: flags.description }
}

fn dispatch_bundle(command: BundleCommand) -> CliResult<Output> {
    match command {
        BundleCommand::Init(a) => {
            let interactive = !a.format.output.is_structured() && stdin_is_interactive();
            let mut profile = profile_from_flags(a.profile);
            if interactive {
                let stdin = std::io::stdin();
                profile = bundle::ask_profile(stdin.lock(), std::io::stderr(), profile)?;
            }
            let parent = match a.dir {
                Some(d) => d,
                None => cwd()?,
            };
            boxed(bundle::init(&parent, &profile.resolve()?))
        }
        BundleCommand::Regenerate(a) => {
            let interactive = !a.format.output.is_structured() && stdin_is_interactive();
            let mut profile = profile_from_flags(a.profile);
            if interactive {
                let stdin = std::io::stdin();
                profile = bundle::ask_profile(stdin.lock(), std::io::stderr(), profile)?;
            }
            boxed(bundle::regenerate(&a.bundle_path, &profile.resolve()?))
        }
        BundleCommand::Append(BundleAppendCommand::Github { bundle_path, repo_pattern, .. }) => {
            boxed(bundle::append_github(&bundle_path, &repo_pattern))
        }
        BundleCommand::Append(BundleAppendCommand::Marketplace { bundle_path, marketplace_pattern, .. }) => {
            boxed(bundle::append_marketplace(&bundle_path, &marketplace_pattern))
        }
        BundleCommand::Append(BundleAppendCommand::Package { bundle_path, package_path, .. }) => {
            boxed(bundle::append_package(&bundle_path, &package_path))
        }
        BundleCommand::Remove { bundle_path, index, .. } => {
            let index: usize = index.trim().parse().map_err(|_| {
                CliError::usage(format!("invalid index {index:?}"), "pass the 0-based position shown by `dify bundle analyze`")
            })?;
            boxed(bundle::remove(&bundle_path, index))
        }
        BundleCommand::Bump { bundle_path, target_version, .. } => boxed(bundle::bump(&bundle_path, &target_version)),
        BundleCommand::Package { bundle_path, output_path, .. } => boxed(bundle::package(&bundle_path, output_path.as_deref())),
        BundleCommand::Analyze { bundle_path, .. } => boxed(bundle::analyze(&bundle_path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn package_keeps_upstream_short_o_for_the_output_file() {
        let cli = Cli::try_parse_from(["dify", "plugin", "package", "dir", "-o", "x.difypkg", "--output", "json"]).unwrap();
        match cli.command {
            Command::Plugin(PluginCommand::Package(a)) => {
                assert_eq!(a.output_path, Some(PathBuf::from("x.difypkg")));
                assert_eq!(a.format.output, OutputFormat::Json);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn short_o_is_the_format_elsewhere() {
        let cli = Cli::try_parse_from(["dify", "plugin", "checksum", "x", "-o", "yaml"]).unwrap();
        assert_eq!(cli.command.format(), OutputFormat::Yaml);
    }

    #[test]
    fn requested_format_is_found_in_broken_argv() {
        let args: Vec<OsString> = ["dify", "plugin", "nope", "--output=json"].iter().map(OsString::from).collect();
        assert_eq!(requested_format(&args), OutputFormat::Json);
    }
}
