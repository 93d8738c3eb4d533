//! Rust client of the Dify plugin daemon's HTTP API, and the `dify-plugin-client` command built on it.
//!
//! The library mirrors Dify's Python client (`PluginInstaller`, `PluginToolManager`): the same
//! method names, the same routes, the same error types. Wire shapes come from `dify-protocol`
//! (re-exported as [`wire`]), the same types the daemon renders its answers with.
//!
//! Architecture invariant: outside the `cli` module nothing prints, reads the environment or
//! decides exit codes; `cli` owns settings resolution, printing and exit statuses.

pub mod blob_merge;
pub mod cli;
mod config;
mod direct;
mod error;
mod installer;
mod logs;
mod parameters;
mod provider_id;
pub mod schema_refs;
pub mod sse;
mod tools;
mod transport;
pub mod wire;

pub use config::{ClientConfig, RetryPolicy, DEFAULT_BASE_URL, DEFAULT_TIMEOUT};
pub use direct::{DirectCaller, ReinstallEvent};
pub use error::{ClientError, PluginInnerError};
pub use installer::INSTALLATION_SOURCES;
pub use parameters::{cast_tool_parameters, ParameterRule};
pub use provider_id::ToolProviderId;
pub use tools::ToolInvocation;
pub use transport::{ItemStream, PluginDaemonClient};
