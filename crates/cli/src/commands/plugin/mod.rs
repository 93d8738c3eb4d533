//! `dify plugin …` commands for plugin authors.
//!
//! `plugin run` (start a packaged plugin locally and talk to it over stdio/TCP) will live in a
//! `run` module here and reuse the daemon's local runtime; it is deliberately not part of this
//! crate yet.

pub mod checksum;
pub mod init;
pub mod module;
pub mod package;
pub mod permission;
pub mod readme;
