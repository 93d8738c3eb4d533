//! `dify plugin …` commands for plugin authors.
//!
//! `plugin run` (start a package or plugin directory locally and talk to it over stdio/TCP) lives
//! in [`run`] and reuses the daemon's local runtime.

pub mod checksum;
pub mod init;
pub mod module;
pub mod package;
pub mod permission;
pub mod readme;
pub mod run;
