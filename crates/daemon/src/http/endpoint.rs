//! Handlers of `/plugin/{tenant_id}/endpoint/...` (docs/http.md §4.3): bind, call the endpoint
//! service, render.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{Map, Value};

use super::bind::{json_body, required_str, BindError, Query};
use super::{respond, AppState};
use crate::service::endpoints;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/endpoint/setup", post(setup))
        .route("/endpoint/remove", post(remove))
        .route("/endpoint/update", post(update))
        .route("/endpoint/list", get(list))
        .route("/endpoint/list/plugin", get(list_of_plugin))
        .route("/endpoint/enable", post(enable))
        .route("/endpoint/disable", post(disable))
}

fn settings_of(body: &Value) -> Map<String, Value> {
    body.get("settings").and_then(Value::as_object).cloned().unwrap_or_default()
}

async fn setup(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "SetupEndpointRequest";
    let body = json_body(&body);
    let bound = (|| -> Result<_, BindError> {
        let uid = required_str(&body, "plugin_unique_identifier", S, "PluginUniqueIdentifier")?;
        if !dify_protocol::identifier::is_valid_identifier(&uid) {
            return Err(super::bind::invalid(S, "PluginUniqueIdentifier", "plugin_unique_identifier"));
        }
        let user_id = required_str(&body, "user_id", S, "UserID")?;
        let name = required_str(&body, "name", S, "Name")?;
        Ok((uid, user_id, name))
    })();
    let (uid, user_id, name) = match bound {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    respond(endpoints::setup(&state, &tenant_id, &uid, &user_id, &name, settings_of(&body)).await)
}

async fn update(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "UpdateEndpointRequest";
    let body = json_body(&body);
    let bound = (|| -> Result<_, BindError> {
        Ok((
            required_str(&body, "endpoint_id", S, "EndpointID")?,
            required_str(&body, "user_id", S, "UserID")?,
            required_str(&body, "name", S, "Name")?,
        ))
    })();
    let (endpoint_id, user_id, name) = match bound {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    respond(endpoints::update(&state, &tenant_id, &endpoint_id, &user_id, &name, settings_of(&body)).await)
}

fn endpoint_id(body: &Bytes, struct_name: &str) -> Result<String, BindError> {
    required_str(&json_body(body), "endpoint_id", struct_name, "EndpointID")
}

async fn remove(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    match endpoint_id(&body, "RemoveEndpointRequest") {
        Ok(id) => respond(endpoints::remove(&state, &tenant_id, &id).await),
        Err(e) => e.into_response(),
    }
}

async fn enable(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    match endpoint_id(&body, "EnableEndpointRequest") {
        Ok(id) => respond(endpoints::set_enabled(&state, &tenant_id, &id, true).await),
        Err(e) => e.into_response(),
    }
}

async fn disable(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    match endpoint_id(&body, "DisableEndpointRequest") {
        Ok(id) => respond(endpoints::set_enabled(&state, &tenant_id, &id, false).await),
        Err(e) => e.into_response(),
    }
}

async fn list(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    match q.page("ListEndpointsRequest", 100) {
        Ok((page, page_size)) => respond(endpoints::list(&state, &tenant_id, None, page, page_size).await),
        Err(e) => e.into_response(),
    }
}

async fn list_of_plugin(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    const S: &str = "ListPluginEndpointsRequest";
    let q = Query::parse(q.as_deref());
    let bound = q.required(S, "plugin_id", "PluginID").and_then(|p| q.page(S, 100).map(|pg| (p, pg)));
    match bound {
        Ok((plugin_id, (page, page_size))) => respond(endpoints::list(&state, &tenant_id, Some(&plugin_id), page, page_size).await),
        Err(e) => e.into_response(),
    }
}
