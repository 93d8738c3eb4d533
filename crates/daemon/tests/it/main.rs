//! The daemon's integration tests, one module per area, built as one test binary (one link instead of
//! one per file). The support modules come first: `common` starts the real daemon binary
//! (`common::start_daemon` is the one launcher every test uses), the others fake what a test needs
//! around it (runtimes and Dify, a debugging plugin, a serverless connector).
//!
//! Each test still runs in its own process under `cargo nextest`, with its own temporary working
//! directory, its own database and ports the daemon picks itself.

#[macro_use]
mod common;
mod debug_support;
mod runtime_support;
mod serverless_support;
mod storage_support;

mod admin_api;
mod answers;
mod cluster;
mod cluster_routes;
mod cluster_sentinel;
mod cluster_serverless;
mod config_env;
mod debug_remote;
mod dispatch_cache;
mod dispatch_model;
mod dispatch_routes;
mod dispatch_tool;
mod doctor;
mod endpoint_api;
mod endpoint_proxy;
mod idle_stop;
mod management_api;
mod object_storage;
mod offline_install;
mod openapi_doc;
mod otlp_export;
mod plugin_logs;
mod readme_quickstart;
mod runtime_fork;
mod runtime_local;
mod sandbox_isolation;
mod serverless_bridge;
mod serverless_connector_sri;
mod serverless_runtime;
mod shared_environments;
mod slim_invoker;
mod state_resilience;
mod status_page;
mod store_kv;
mod store_upstream;
mod trace_ids;
mod v2_invoke;
