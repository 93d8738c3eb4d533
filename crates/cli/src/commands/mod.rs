//! One module per command group. Each command is a typed options struct plus a plain `run`
//! function that returns a printable result ([`crate::output::Render`]) or a
//! [`crate::error::CliError`]. Nothing here parses argv or prints.

pub mod bundle;
pub mod plugin;
pub mod signature;
pub mod source;
pub mod version;
