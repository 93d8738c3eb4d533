//! The Dify plugin daemon as a library: the binary in `main.rs` only parses configuration and calls
//! [`server::run`]. Data flows http → service → session → runtime → plugin process (see ARCHITECTURE.md).

pub mod config;
pub mod doctor;
pub mod http;
pub mod service;
pub mod store;
pub mod runtime;
pub mod session;
pub mod backwards;
pub mod server;
pub mod shutdown;
pub mod trace;

#[cfg(test)]
mod tidy;
