//! The `dify` command-line tool for plugin authors.
//!
//! Architecture invariant: command logic lives in `commands::*::run` functions that take typed
//! options and return printable values; only [`cli`] knows about argv and only [`output`] prints.
//! The package format itself (zip, checksum, signatures, validation) belongs to `dify-package`;
//! this crate never re-implements it.

pub mod cli;
pub mod commands;
pub mod error;
pub mod output;
pub mod progress;
pub mod slim;
pub mod templates;

pub use cli::run_from_args;
pub use error::{CliError, CliResult, ErrorCode};
pub use output::{OutputFormat, Printer, Render};
