//! The wire shapes the client sends and receives, re-exported from [`dify_protocol::api`] where the
//! daemon renders the same types. Nothing is defined here; the module keeps `dify_client::wire::*`
//! paths working for callers.

pub use dify_protocol::api::*;
pub use dify_protocol::observe::*;
