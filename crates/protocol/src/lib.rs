//! Wire types spoken between Dify, the daemon, the CLI, the clients and plugin processes.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about tokio, HTTP or databases.

pub mod access;
pub mod api;
pub mod compact;
pub mod envelope;
pub mod identifier;
pub mod invoke;
#[cfg(any(test, feature = "test-support"))]
pub mod json_text;
pub mod manifest;
pub mod message;
pub mod observe;
mod plain;

pub use envelope::{DaemonError, Envelope, ErrorType};
pub use identifier::{IdentifierError, PluginUniqueIdentifier};
pub use manifest::PluginDeclaration;
