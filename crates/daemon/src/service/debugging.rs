//! Remote-debugging keys: one key per tenant, stored in the database with an expiry that every
//! request pushes forward, so any node can resolve a key to its tenant. The debug TCP server that
//! accepts these keys is not part of this module.

use serde_json::{json, Value};

use super::ServiceResult;
use crate::server::AppState;

/// `POST debugging/key`: `{key}` (reused while alive).
pub async fn key(state: &AppState, tenant_id: &str) -> ServiceResult<Value> {
    let ttl = state.settings.debugging_key_ttl.min(i64::MAX as u64) as i64;
    let key = state.db.debugging_key(tenant_id, ttl).await?;
    Ok(json!({"key": key}))
}
