//! The OpenAPI 3.1 document of every route the daemon serves, built from [`ROUTES`] (one row per route
//! the handlers register) and the dispatch table (`dify_protocol::access::DISPATCH_ROUTES`), served at
//! `GET /openapi.json` and kept in `docs/openapi.json`. A unit test reads the `.route(...)` calls of
//! every file of this module and fails when the table and the router differ, or when the file is out
//! of date (`DIFY_REGENERATE_DOCS=1 cargo test -p dify-daemon --lib openapi` rewrites it).

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dify_protocol::access::DISPATCH_ROUTES;
use serde_json::{json, Map, Value};

use super::AppState;

/// How a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The JSON envelope `{code, message, data}`; `data` is the named type.
    Envelope(&'static str),
    /// `text/event-stream` of `data: {envelope}` lines.
    EventStream,
    /// A bare JSON object (health).
    Json(&'static str),
    /// Plain text (metrics, the OpenAPI document itself is JSON but untyped).
    Text(&'static str),
    /// Whatever the plugin answers (endpoint proxy), or raw bytes (assets).
    Raw,
}

/// One route: method (`any` = every method the endpoint proxy accepts), full path in OpenAPI syntax
/// (`{*rest}` wildcards of the router are written `{rest}`), whether `X-Api-Key` is required, a
/// summary, the request body's type name (`multipart:` for form uploads) and the answer.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub api_key: bool,
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub answer: Answer,
}

const fn tenant(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    answer: Answer,
) -> RouteDoc {
    RouteDoc { method, path, api_key: true, summary, request, answer }
}

const fn open(method: &'static str, path: &'static str, summary: &'static str, request: Option<&'static str>, answer: Answer) -> RouteDoc {
    RouteDoc { method, path, api_key: false, summary, request, answer }
}

use Answer::{Envelope, EventStream, Raw, Text};

/// Every route except the dispatch routes (those come from `DISPATCH_ROUTES`).
pub const ROUTES: &[RouteDoc] = &[
    tenant(
        "post",
        "/plugin/{tenant_id}/management/install/upload/package",
        "Upload a .difypkg",
        Some("multipart:dify_pkg"),
        Envelope("PluginDecodeResponse"),
    ),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/install/upload/bundle",
        "Upload a .difybndl",
        Some("multipart:dify_bundle"),
        Envelope("PluginBundleDependency[]"),
    ),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/install/identifiers",
        "Install uploaded packages (starts a task)",
        Some("InstallPluginFromIdentifiersRequest"),
        Envelope("PluginInstallTaskStartResponse"),
    ),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/install/upgrade",
        "Upgrade an installation (starts a task)",
        Some("UpgradePluginRequest"),
        Envelope("PluginInstallTaskStartResponse"),
    ),
    tenant("get", "/plugin/{tenant_id}/management/install/tasks", "List install tasks", None, Envelope("PluginInstallTask[]")),
    tenant("post", "/plugin/{tenant_id}/management/install/tasks/delete_all", "Delete every install task", None, Envelope("boolean")),
    tenant("get", "/plugin/{tenant_id}/management/install/tasks/{task_id}", "One install task", None, Envelope("PluginInstallTask")),
    tenant("post", "/plugin/{tenant_id}/management/install/tasks/{task_id}/delete", "Delete an install task", None, Envelope("boolean")),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/install/tasks/{task_id}/delete/{identifier}",
        "Delete one plugin of an install task",
        None,
        Envelope("boolean"),
    ),
    tenant(
        "get",
        "/plugin/{tenant_id}/management/decode/from_identifier",
        "Decode an uploaded package",
        None,
        Envelope("PluginDecodeResponse"),
    ),
    tenant("get", "/plugin/{tenant_id}/management/fetch/manifest", "Manifest of an uploaded package", None, Envelope("PluginDeclaration")),
    tenant(
        "get",
        "/plugin/{tenant_id}/management/fetch/identifier",
        "Installation of a unique identifier",
        None,
        Envelope("PluginInstallation"),
    ),
    tenant("get", "/plugin/{tenant_id}/management/fetch/readme", "Readme of an uploaded package", None, Envelope("PluginReadmeResponse")),
    tenant("post", "/plugin/{tenant_id}/management/uninstall", "Uninstall", Some("UninstallPluginRequest"), Envelope("boolean")),
    tenant("get", "/plugin/{tenant_id}/management/list", "Installed plugins", None, Envelope("PluginListResponse")),
    tenant("get", "/plugin/{tenant_id}/management/installation/ids", "Installation ids", None, Envelope("string[]")),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/installation/fetch/batch",
        "Installations by plugin id",
        Some("BatchFetchPluginInstallationsRequest"),
        Envelope("PluginInstallation[]"),
    ),
    tenant(
        "post",
        "/plugin/{tenant_id}/management/installation/missing",
        "Missing dependencies",
        Some("FetchMissingPluginInstallationsRequest"),
        Envelope("MissingPluginDependency[]"),
    ),
    tenant("get", "/plugin/{tenant_id}/management/{category}/list", "Providers of a category", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/management/models/bindings", "Model provider bindings", None, Envelope("PluginModelBinding[]")),
    tenant("get", "/plugin/{tenant_id}/management/models", "Model providers", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/management/tools", "Tool providers", None, Envelope("PluginToolProviderEntity[]")),
    tenant("get", "/plugin/{tenant_id}/management/tool", "One tool provider", None, Envelope("PluginToolProviderEntity")),
    tenant("post", "/plugin/{tenant_id}/management/tools/check_existence", "Do these tools exist", Some("object"), Envelope("boolean[]")),
    tenant("get", "/plugin/{tenant_id}/management/agent_strategies", "Agent strategy providers", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/management/agent_strategy", "One agent strategy provider", None, Envelope("object")),
    tenant("get", "/plugin/{tenant_id}/management/datasources", "Datasource providers", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/management/datasource", "One datasource provider", None, Envelope("object")),
    tenant("get", "/plugin/{tenant_id}/management/triggers", "Trigger providers", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/management/trigger", "One trigger provider", None, Envelope("object")),
    tenant(
        "get",
        "/plugin/{tenant_id}/management/logs",
        "Recent stderr, log messages and process notes of an installed plugin",
        None,
        Envelope("PluginLogsResponse"),
    ),
    tenant("get", "/plugin/{tenant_id}/asset/{asset_id}", "A stored asset", None, Raw),
    tenant("get", "/plugin/{tenant_id}/extract-asset/", "A file of an uploaded package", None, Raw),
    tenant(
        "post",
        "/plugin/{tenant_id}/debugging/key",
        "The tenant's remote debugging key (when remote installing is enabled)",
        None,
        Envelope("object"),
    ),
    tenant("post", "/plugin/{tenant_id}/endpoint/setup", "Create an endpoint", Some("object"), Envelope("boolean")),
    tenant("post", "/plugin/{tenant_id}/endpoint/remove", "Remove an endpoint", Some("object"), Envelope("boolean")),
    tenant("post", "/plugin/{tenant_id}/endpoint/update", "Update an endpoint", Some("object"), Envelope("boolean")),
    tenant("get", "/plugin/{tenant_id}/endpoint/list", "The tenant's endpoints", None, Envelope("object[]")),
    tenant("get", "/plugin/{tenant_id}/endpoint/list/plugin", "A plugin's endpoints", None, Envelope("object[]")),
    tenant("post", "/plugin/{tenant_id}/endpoint/enable", "Enable an endpoint", Some("object"), Envelope("boolean")),
    tenant("post", "/plugin/{tenant_id}/endpoint/disable", "Disable an endpoint", Some("object"), Envelope("boolean")),
    open("get", "/health/check", "Health and build information", None, Answer::Json("object")),
    open("get", "/metrics", "Prometheus metrics (when enabled)", None, Text("text/plain")),
    open("get", "/metrics/", "Prometheus metrics (when enabled)", None, Text("text/plain")),
    open("post", "/backwards-invocation/transaction", "Backwards invocations of serverless plugins", Some("object"), EventStream),
    open("any", "/e/{hook_id}", "A plugin endpoint (when endpoints are enabled)", None, Raw),
    open("any", "/e/{hook_id}/", "A plugin endpoint (when endpoints are enabled)", None, Raw),
    open("any", "/e/{hook_id}/{path}", "A plugin endpoint (when endpoints are enabled)", None, Raw),
    open("get", "/openapi.json", "This document", None, Answer::Json("object")),
    open(
        "get",
        "/status",
        "The operator's status page, HTML (when enabled; the server or admin key as `key` query parameter or header)",
        None,
        Text("text/html"),
    ),
    tenant(
        "get",
        "/v2/invoke/extract",
        "The manifest and verification of a stored package, by `X-Plugin-Unique-Identifier`",
        None,
        Envelope("object"),
    ),
    open(
        "post",
        "/admin/plugin/serverless/reinstall",
        "Launch a serverless plugin anew and replace its runtime (when ADMIN_API_ENABLED; `X-Admin-Api-Key`)",
        Some("object"),
        EventStream,
    ),
    open(
        "post",
        "/admin/plugin/serverless/switch-endpoint",
        "Point a serverless plugin at another function URL (when ADMIN_API_ENABLED; `X-Admin-Api-Key`)",
        Some("object"),
        Envelope("boolean"),
    ),
    open("get", "/status.json", "What the status page shows (when enabled; the server or admin key)", None, Envelope("object")),
];

/// Methods `any` stands for (the endpoint proxy's filter).
const ANY_METHODS: &[&str] = &["get", "head", "post", "put", "delete", "options", "patch"];

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

async fn serve() -> Response {
    Json(document()).into_response()
}

fn schema_ref(name: &str) -> Value {
    match name.strip_suffix("[]") {
        Some(item) => json!({"type": "array", "items": schema_ref(item)}),
        None if matches!(name, "boolean" | "string" | "object") => json!({"type": name}),
        None => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn schema_names(out: &mut Vec<&'static str>, name: &'static str) {
    let name = name.trim_end_matches("[]");
    if !matches!(name, "boolean" | "string" | "object") && !out.contains(&name) {
        out.push(name);
    }
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn operation(route: &RouteDoc, method: &str, schemas: &mut Vec<&'static str>) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(route.summary));
    op.insert("operationId".into(), json!(format!("{method}{}", route.path.replace(['/', '{', '}', '-', '.'], "_"))));
    let parameters = path_parameters(route.path);
    if !parameters.is_empty() {
        op.insert("parameters".into(), json!(parameters));
    }
    if let Some(request) = route.request {
        let body = match request.strip_prefix("multipart:") {
            Some(field) => json!({"required": true, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": [field],
                "properties": {field: {"type": "string", "contentMediaType": "application/octet-stream"},
                               "verify_signature": {"type": "string", "enum": ["true", "false"]}}}}}}),
            None => {
                schema_names(schemas, request);
                json!({"required": true, "content": {"application/json": {"schema": schema_ref(request)}}})
            }
        };
        op.insert("requestBody".into(), body);
    }
    let ok = match route.answer {
        Envelope(data) => {
            schema_names(schemas, data);
            json!({"description": "The envelope; `code` 0 with `data`, or an error code with the error object in `message` (also on HTTP 200)",
                   "content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/Envelope"},
                        {"type": "object", "properties": {"data": schema_ref(data)}}]}}}})
        }
        EventStream => {
            json!({"description": "`data: {envelope}` lines, one per item", "content": {"text/event-stream": {"schema": {"type": "string"}}}})
        }
        Answer::Json(data) => json!({"description": "A JSON object", "content": {"application/json": {"schema": schema_ref(data)}}}),
        Text(media) => json!({"description": "Text", "content": {media: {"schema": {"type": "string"}}}}),
        Raw => json!({"description": "The bytes as stored or as the plugin answered"}),
    };
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    if route.api_key {
        responses.insert("401".into(), json!({"description": "Missing or wrong X-Api-Key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}));
        op.insert("security".into(), json!([{"ApiKey": []}]));
    }
    responses.insert("404".into(), json!({"description": "Unknown route or plugin"}));
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// Every route as one list: [`ROUTES`] and a `post` per dispatch route (built once).
pub fn all_routes() -> &'static [RouteDoc] {
    static ALL: std::sync::OnceLock<Vec<RouteDoc>> = std::sync::OnceLock::new();
    ALL.get_or_init(build_all_routes)
}

fn build_all_routes() -> Vec<RouteDoc> {
    let mut all: Vec<RouteDoc> = ROUTES.to_vec();
    for route in DISPATCH_ROUTES {
        let path: &'static str = Box::leak(format!("/plugin/{{tenant_id}}/dispatch{}", route.path).into_boxed_str());
        let summary: &'static str = Box::leak(format!("Invoke: {} {}", route.access_type.as_str(), route.action).into_boxed_str());
        all.push(tenant("post", path, summary, Some("object"), EventStream));
    }
    // `/v2/invoke/dispatch/...`: the same routes keyed by `X-Plugin-Unique-Identifier` (no polling).
    for route in DISPATCH_ROUTES.iter().filter(|route| super::invoke_v2::v2_route(route.path).is_some()) {
        let path: &'static str = Box::leak(format!("/v2/invoke/dispatch{}", route.path).into_boxed_str());
        let summary: &'static str =
            Box::leak(format!("Invoke by unique identifier: {} {}", route.access_type.as_str(), route.action).into_boxed_str());
        all.push(tenant("post", path, summary, Some("object"), EventStream));
    }
    all
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas: Vec<&'static str> = Vec::new();
    for route in all_routes() {
        let route = *route;
        let methods: Vec<&str> = if route.method == "any" { ANY_METHODS.to_vec() } else { vec![route.method] };
        let item = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        for method in methods {
            item[method] = operation(&route, method, &mut schemas);
        }
    }
    let mut components = Map::new();
    components.insert(
        "Envelope".into(),
        json!({"type": "object", "required": ["code", "message", "data"], "properties": {
            "code": {"type": "integer", "description": "0 on success; the error type's code otherwise (-400, -404, -500, ...)"},
            "message": {"type": "string", "description": "`success`, or the error object {message, error_type, args} as JSON text"},
            "data": {}}}),
    );
    schemas.sort();
    for name in schemas {
        components.insert(
            name.to_string(),
            json!({"type": "object", "description": format!("`{name}` of the `dify_protocol` crate (fields as serialised by serde)")}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Dify plugin daemon", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Management, dispatch, endpoint and system routes of dify-plugin-daemon."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Files whose routes are nested under `/plugin/{tenant_id}`.
    const TENANT_FILES: &[&str] = &["management.rs", "endpoint.rs", "dispatch.rs", "logs.rs"];

    /// `(method, full path)` of every `.route("…", method(…))` call in `src/http`.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let pattern = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*(get|post|on)\("#).expect("regex");
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("src/http") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if name == "openapi.rs" || !name.ends_with(".rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("read source");
            for capture in pattern.captures_iter(&source) {
                let route = capture[1].replace("{*", "{");
                let full = if TENANT_FILES.contains(&name.as_str()) {
                    format!("/plugin/{{tenant_id}}{route}")
                } else if name == "invoke_v2.rs" {
                    format!("/v2/invoke{route}")
                } else {
                    route
                };
                let method = if &capture[2] == "on" { "any".to_string() } else { capture[2].to_string() };
                found.insert((method, full));
            }
        }
        found.insert(("get".into(), "/openapi.json".into()));
        found
    }

    #[test]
    fn the_route_table_matches_the_router() {
        let source = routes_in_source();
        let mut table: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
        // The dispatch handler serves the dispatch table behind one wildcard route.
        table.insert(("post".into(), "/plugin/{tenant_id}/dispatch/{route}".into()));
        table.insert(("post".into(), "/v2/invoke/dispatch/{route}".into()));
        let missing: Vec<_> = source.difference(&table).collect();
        let stale: Vec<_> = table.difference(&source).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "routes served but not documented: {missing:?}; documented but not served: {stale:?} (edit ROUTES in http/openapi.rs)"
        );
        let v2 = DISPATCH_ROUTES.iter().filter(|route| super::super::invoke_v2::v2_route(route.path).is_some()).count();
        assert_eq!(all_routes().len(), ROUTES.len() + DISPATCH_ROUTES.len() + v2);
    }

    #[test]
    fn docs_openapi_json_is_up_to_date() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = format!("{}\n", serde_json::to_string_pretty(&document()).expect("json"));
        if std::env::var_os("DIFY_REGENERATE_DOCS").is_some() {
            std::fs::write(&file, &generated).expect("write docs/openapi.json");
        }
        let stored = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            stored == generated,
            "docs/openapi.json is out of date: run `DIFY_REGENERATE_DOCS=1 cargo test -p dify-daemon --lib openapi`"
        );
    }

    #[test]
    fn every_operation_has_its_path_parameters_and_a_security_rule() {
        let document = document();
        let paths = document["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/plugin/{tenant_id}/dispatch/tool/invoke"));
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("item") {
                let declared = op["parameters"].as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(declared, path.matches('{').count(), "{method} {path}");
                let keyed = path.starts_with("/plugin/") || path.starts_with("/v2/invoke/");
                assert_eq!(op.get("security").is_some(), keyed, "{method} {path}");
            }
        }
    }
}
