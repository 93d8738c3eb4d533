//! The Dify plugin daemon as a library: the binary in `main.rs` only parses configuration and calls
//! [`server::run`]. Data flows http → service → session → runtime → plugin process (see ARCHITECTURE.md).

pub mod backwards;
pub mod config;
pub mod coord;
pub mod doctor;
pub mod http;
pub mod runtime;
pub mod server;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod trace;

#[cfg(test)]
mod tidy;
