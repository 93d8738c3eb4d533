//! `GET /plugin/{tenant_id}/management/logs`: the newest lines of one installed plugin's log ring
//! (stderr, `log` events, process notes), tenant-scoped, behind the API key.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::bind::{invalid, Query};
use super::{respond, AppState};
use crate::service::logs;

/// Lines returned when the request names no `limit`.
const DEFAULT_LIMIT: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new().route("/management/logs", get(plugin_logs))
}

/// Query: `plugin_id` (`author/name` or a unique identifier, required), `after` (a `seq`: only newer
/// lines), `limit` (newest lines returned, 1..=10000, default 200).
async fn plugin_logs(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let plugin_id = q.get("plugin_id");
    if plugin_id.is_empty() {
        return invalid("PluginLogsRequest", "PluginID", "required").into_response();
    }
    let after = u64::try_from(q.int("after")).unwrap_or(0);
    let limit = match q.int("limit") {
        n if n <= 0 => DEFAULT_LIMIT,
        n => usize::try_from(n).unwrap_or(logs::MAX_LOG_READ),
    };
    respond(logs::plugin_logs(&state, &tenant_id, plugin_id, after, limit).await)
}
