//! Handlers of `/plugin/{tenant_id}/management/...`, `/asset/{id}`, `/extract-asset/` and
//! `/debugging/key` (docs/http.md §4.2, §4.4, §4.5). Each binds, calls one service, renders.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dify_protocol::DaemonError;
use serde_json::Value;

use super::bind::{invalid, json_body, required_str, required_str_list, valid_identifiers, BindError, Query};
use super::{fail, fail_with_status, ok, respond, AppState};
use crate::service::{debugging, install, packages, plugins, tasks};
use crate::store::ProviderKind;

pub fn routes(state: &AppState) -> Router<AppState> {
    let uploads = Router::new()
        .route("/management/install/upload/package", post(upload_package))
        .route("/management/install/upload/bundle", post(upload_bundle))
        .layer(DefaultBodyLimit::disable());
    let mut router = Router::new()
        .merge(uploads)
        .route("/management/install/identifiers", post(install_identifiers))
        .route("/management/install/upgrade", post(upgrade))
        .route("/management/install/tasks", get(list_tasks))
        .route("/management/install/tasks/delete_all", post(delete_all_tasks))
        .route("/management/install/tasks/{task_id}", get(get_task))
        .route("/management/install/tasks/{task_id}/delete", post(delete_task))
        .route("/management/install/tasks/{task_id}/delete/{*identifier}", post(delete_task_item))
        .route("/management/decode/from_identifier", get(decode_from_identifier))
        .route("/management/fetch/manifest", get(fetch_manifest))
        .route("/management/fetch/identifier", get(fetch_identifier))
        .route("/management/fetch/readme", get(fetch_readme))
        .route("/management/uninstall", post(uninstall))
        .route("/management/list", get(list_plugins))
        .route("/management/installation/ids", get(installation_ids))
        .route("/management/installation/fetch/batch", post(fetch_batch))
        .route("/management/installation/missing", post(missing))
        .route("/management/{category}/list", get(list_by_category))
        .route("/management/models/bindings", get(model_bindings))
        .route("/management/models", get(list_models))
        .route("/management/tools", get(list_tools))
        .route("/management/tool", get(get_tool))
        .route("/management/tools/check_existence", post(tools_check_existence))
        .route("/management/agent_strategies", get(list_agent_strategies))
        .route("/management/agent_strategy", get(get_agent_strategy))
        .route("/management/datasources", get(list_datasources))
        .route("/management/datasource", get(get_datasource))
        .route("/management/triggers", get(list_triggers))
        .route("/management/trigger", get(get_trigger))
        .route("/asset/{asset_id}", get(asset))
        .route("/extract-asset/", get(extract_asset));
    if state.settings.plugin_remote_installing_enabled {
        router = router.route("/debugging/key", post(debugging_key));
    }
    router
}

// ------------------------------------------------------------------ uploads

/// What a multipart upload carried.
struct Upload {
    /// The file field, received into a temporary file (bounded by the limit while it arrives).
    file: Option<packages::SpooledUpload>,
    verify_signature: bool,
}

/// Why an upload could not be received.
enum UploadError {
    /// Not a readable multipart form (answered as upstream does, "no such file").
    Form,
    /// The temporary file could not be written.
    Disk(String),
}

fn upload_failed(error: UploadError) -> Response {
    match error {
        UploadError::Form => fail(DaemonError::bad_request("http: no such file")),
        UploadError::Disk(e) => fail(DaemonError::internal(format!("cannot receive the upload: {e}"))),
    }
}

/// Reads the multipart form: the file field (written to a temporary file as it arrives; past `max`
/// bytes the rest is only counted and discarded so the client can finish sending) and
/// `verify_signature`.
async fn read_upload(request: Request, state: &AppState, file_field: &str, max: u64) -> Result<Upload, UploadError> {
    let form = |_: axum::extract::multipart::MultipartError| UploadError::Form;
    let disk = |e: std::io::Error| UploadError::Disk(e.to_string());
    let mut multipart = Multipart::from_request(request, state).await.map_err(|_| UploadError::Form)?;
    let mut upload = Upload { file: None, verify_signature: false };
    while let Some(mut field) = multipart.next_field().await.map_err(form)? {
        let name = field.name().unwrap_or("").to_string();
        if name == file_field {
            let mut spool = packages::SpooledUpload::create(state, max).await.map_err(disk)?;
            while let Some(chunk) = field.chunk().await.map_err(form)? {
                spool.write(&chunk).await.map_err(disk)?;
            }
            spool.finish().await.map_err(disk)?;
            upload.file = Some(spool);
        } else if name == "verify_signature" {
            let text = field.text().await.map_err(form)?;
            upload.verify_signature = text == "true";
        } else {
            while field.chunk().await.map_err(form)?.is_some() {}
        }
    }
    Ok(upload)
}

async fn upload_package(State(state): State<AppState>, request: Request) -> Response {
    let max = state.settings.max_plugin_package_size;
    let upload = match read_upload(request, &state, "dify_pkg", max).await {
        Ok(u) => u,
        Err(e) => return upload_failed(e),
    };
    let Some(file) = upload.file else {
        return fail(DaemonError::bad_request("http: no such file"));
    };
    if file.too_large() {
        return fail(DaemonError::bad_request(packages::FILE_TOO_LARGE_MESSAGE));
    }
    respond(packages::upload_package(&state, &file, upload.verify_signature).await)
}

async fn upload_bundle(State(state): State<AppState>, request: Request) -> Response {
    let max = state.settings.max_bundle_package_size;
    let upload = match read_upload(request, &state, "dify_bundle", max).await {
        Ok(u) => u,
        Err(e) => return upload_failed(e),
    };
    let Some(file) = upload.file else {
        return fail(DaemonError::bad_request("http: no such file"));
    };
    if file.too_large() {
        return fail(DaemonError::bad_request(packages::FILE_TOO_LARGE_MESSAGE));
    }
    let bytes = match tokio::fs::read(file.path()).await {
        Ok(bytes) => bytes,
        Err(e) => return fail(DaemonError::internal(format!("cannot read the received bundle: {e}"))),
    };
    respond(packages::upload_bundle(&state, &bytes, upload.verify_signature).await)
}

// ------------------------------------------------------------------ install

async fn install_identifiers(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "InstallPluginFromIdentifiersRequest";
    let body = json_body(&body);
    let ids =
        match required_str_list(&body, "plugin_unique_identifiers", S, "PluginUniqueIdentifiers", install::MAX_IDENTIFIERS_PER_INSTALL) {
            Ok(ids) if ids.is_empty() => return invalid(S, "PluginUniqueIdentifiers", "min").into_response(),
            Ok(ids) => ids,
            Err(r) => return r.into_response(),
        };
    if let Err(r) = valid_identifiers(&ids, S, "PluginUniqueIdentifiers") {
        return r.into_response();
    }
    let source = match required_str(&body, "source", S, "Source") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let metas: Vec<Value> = body.get("metas").and_then(Value::as_array).cloned().unwrap_or_default();
    respond(install::install_from_identifiers(&state, &tenant_id, &ids, &source, metas).await)
}

async fn upgrade(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "UpgradePluginRequest";
    let body = json_body(&body);
    let original = match required_str(&body, "original_plugin_unique_identifier", S, "OriginalPluginUniqueIdentifier") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let new = match required_str(&body, "new_plugin_unique_identifier", S, "NewPluginUniqueIdentifier") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = valid_identifiers(std::slice::from_ref(&original), S, "OriginalPluginUniqueIdentifier") {
        return r.into_response();
    }
    if let Err(r) = valid_identifiers(std::slice::from_ref(&new), S, "NewPluginUniqueIdentifier") {
        return r.into_response();
    }
    let source = match required_str(&body, "source", S, "Source") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let meta = body.get("meta").cloned().unwrap_or(Value::Null);
    respond(install::upgrade(&state, &tenant_id, &original, &new, &source, meta).await)
}

async fn uninstall(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    let body = json_body(&body);
    let id = match required_str(&body, "plugin_installation_id", "UninstallPluginRequest", "PluginInstallationID") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    respond(install::uninstall(&state, &tenant_id, &id).await)
}

// ------------------------------------------------------------------ tasks

async fn list_tasks(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let (page, page_size) = match q.page("ListInstallTasksRequest", 256) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    respond(tasks::list(&state, &tenant_id, page, page_size).await)
}

async fn get_task(State(state): State<AppState>, Path((tenant_id, task_id)): Path<(String, String)>) -> Response {
    respond(tasks::get(&state, &tenant_id, &task_id).await)
}

async fn delete_task(State(state): State<AppState>, Path((tenant_id, task_id)): Path<(String, String)>) -> Response {
    respond(tasks::delete(&state, &tenant_id, &task_id).await)
}

async fn delete_all_tasks(State(state): State<AppState>, Path(tenant_id): Path<String>) -> Response {
    respond(tasks::delete_all(&state, &tenant_id).await)
}

async fn delete_task_item(
    State(state): State<AppState>,
    Path((tenant_id, task_id, identifier)): Path<(String, String, String)>,
) -> Response {
    respond(tasks::delete_item(&state, &tenant_id, &task_id, &identifier).await)
}

// ------------------------------------------------------------------ packages

fn identifier_param(q: &Query, struct_name: &str) -> Result<String, BindError> {
    let id = q.required(struct_name, "plugin_unique_identifier", "PluginUniqueIdentifier")?;
    if !dify_protocol::identifier::is_valid_identifier(&id) {
        return Err(invalid(struct_name, "PluginUniqueIdentifier", "plugin_unique_identifier"));
    }
    Ok(id)
}

async fn decode_from_identifier(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let mut q = Query::parse(q.as_deref());
    if q.get("plugin_unique_identifier").is_empty() {
        // Older callers send a JSON body on this GET.
        if let Some(id) = json_body(&body).get("plugin_unique_identifier").and_then(Value::as_str) {
            q = Query::parse(Some(&format!("plugin_unique_identifier={}", encode_component(id))));
        }
    }
    let id = match identifier_param(&q, "DecodePluginFromIdentifierRequest") {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    respond(packages::decode_from_identifier(&state, &id).await)
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn fetch_manifest(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let id = match identifier_param(&q, "FetchPluginManifestRequest") {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    respond(packages::fetch_manifest(&state, &id).await)
}

async fn fetch_identifier(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let id = match identifier_param(&q, "FetchPluginIdentifierRequest") {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    respond(packages::fetch_identifier(&state, &id).await)
}

async fn fetch_readme(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let id = match identifier_param(&q, "FetchPluginReadmeRequest") {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let language = q.get("language").to_string();
    respond(packages::fetch_readme(&state, &id, Some(language.as_str())).await)
}

fn octet_stream(bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}

async fn asset(State(state): State<AppState>, Path((_tenant_id, asset_id)): Path<(String, String)>) -> Response {
    if !packages::is_plausible_asset_id(&asset_id) {
        return fail_with_status(StatusCode::BAD_REQUEST, DaemonError::bad_request("invalid asset id"));
    }
    match packages::asset(&state, &asset_id).await {
        Ok(bytes) => octet_stream(bytes.unwrap_or_default()),
        Err(e) => fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn extract_asset(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    const S: &str = "ExtractPluginAssetRequest";
    let q = Query::parse(q.as_deref());
    let id = match identifier_param(&q, S) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let file_path = match q.required(S, "file_path", "FilePath") {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match packages::extract_asset(&state, &id, &file_path).await {
        Ok(bytes) => octet_stream(bytes),
        Err(e) => fail_with_status(StatusCode::INTERNAL_SERVER_ERROR, DaemonError::internal(e.message)),
    }
}

// ------------------------------------------------------------------ plugin lists

async fn list_plugins(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let (page, page_size) = match q.page("ListPluginsRequest", 256) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    respond(plugins::list(&state, &tenant_id, page, page_size).await)
}

async fn list_by_category(
    State(state): State<AppState>,
    Path((tenant_id, category)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    const S: &str = "ListPluginsByCategoryRequest";
    let q = Query::parse(q.as_deref());
    if !plugins::CATEGORIES.contains(&category.as_str()) {
        return invalid(S, "Category", "oneof").into_response();
    }
    let (page, page_size) = match q.page(S, 256) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let query = q.get("query").to_string();
    if query.chars().count() > 256 {
        return invalid(S, "Query", "max").into_response();
    }
    let tags = q.all("tags");
    if tags.len() > 128 {
        return invalid(S, "Tags", "max").into_response();
    }
    for (i, tag) in tags.iter().enumerate() {
        if !dify_protocol::manifest::PLUGIN_TAGS.contains(&tag.as_str()) {
            return invalid(S, &format!("Tags[{i}]"), "plugin_tag").into_response();
        }
    }
    let language = q.get("language");
    if !language.is_empty() && !["en_US", "zh_Hans", "ja_JP", "pt_BR"].contains(&language) {
        return invalid(S, "Language", "oneof").into_response();
    }
    let filter = plugins::CategoryFilter { category: &category, query: Some(query.as_str()), tags: &tags };
    respond(plugins::list_by_category(&state, &tenant_id, filter, page, page_size).await)
}

async fn installation_ids(State(state): State<AppState>, Path(tenant_id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let category = match q.required("ListInstallationIdsRequest", "category", "Category") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    respond(plugins::installation_ids(&state, &tenant_id, &category).await)
}

async fn fetch_batch(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    let body = json_body(&body);
    let ids = match required_str_list(&body, "plugin_ids", "BatchFetchPluginInstallationByIDsRequest", "PluginIDs", 256) {
        Ok(ids) => ids,
        Err(r) => return r.into_response(),
    };
    respond(plugins::fetch_batch(&state, &tenant_id, &ids).await)
}

async fn missing(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "FetchMissingPluginInstallationsRequest";
    let body = json_body(&body);
    let ids = match required_str_list(&body, "plugin_unique_identifiers", S, "PluginUniqueIdentifiers", 256) {
        Ok(ids) => ids,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = valid_identifiers(&ids, S, "PluginUniqueIdentifiers") {
        return r.into_response();
    }
    respond(plugins::missing(&state, &tenant_id, &ids).await)
}

async fn model_bindings(State(state): State<AppState>, Path(tenant_id): Path<String>) -> Response {
    respond(plugins::model_bindings(&state, &tenant_id).await)
}

async fn list_providers(state: AppState, kind: ProviderKind, tenant_id: String, q: Option<String>) -> Response {
    let q = Query::parse(q.as_deref());
    let (page, page_size) = match q.page("ListProvidersRequest", 256) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    respond(plugins::list_providers(&state, kind, &tenant_id, page, page_size).await)
}

async fn get_provider(state: AppState, kind: ProviderKind, tenant_id: String, q: Option<String>) -> Response {
    const S: &str = "GetProviderRequest";
    let q = Query::parse(q.as_deref());
    let plugin_id = match q.required(S, "plugin_id", "PluginID") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let provider = match q.required(S, "provider", "Provider") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    respond(plugins::get_provider(&state, kind, &tenant_id, &plugin_id, &provider).await)
}

async fn list_models(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    list_providers(s, ProviderKind::Model, t, q).await
}
async fn list_tools(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    list_providers(s, ProviderKind::Tool, t, q).await
}
async fn list_agent_strategies(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    list_providers(s, ProviderKind::AgentStrategy, t, q).await
}
async fn list_datasources(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    list_providers(s, ProviderKind::Datasource, t, q).await
}
async fn list_triggers(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    list_providers(s, ProviderKind::Trigger, t, q).await
}
async fn get_tool(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    get_provider(s, ProviderKind::Tool, t, q).await
}
async fn get_agent_strategy(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    get_provider(s, ProviderKind::AgentStrategy, t, q).await
}
async fn get_datasource(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    get_provider(s, ProviderKind::Datasource, t, q).await
}
async fn get_trigger(State(s): State<AppState>, Path(t): Path<String>, RawQuery(q): RawQuery) -> Response {
    get_provider(s, ProviderKind::Trigger, t, q).await
}

async fn tools_check_existence(State(state): State<AppState>, Path(tenant_id): Path<String>, body: Bytes) -> Response {
    const S: &str = "CheckToolExistenceRequest";
    let body = json_body(&body);
    let Some(items) = body.get("provider_ids").and_then(Value::as_array) else {
        return invalid(S, "ProviderIDs", "required").into_response();
    };
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let plugin_id = item.get("plugin_id").and_then(Value::as_str).unwrap_or("");
        let provider = item.get("provider_name").and_then(Value::as_str).unwrap_or("");
        if plugin_id.is_empty() {
            return invalid(S, &format!("ProviderIDs[{i}].PluginID"), "required").into_response();
        }
        if provider.is_empty() {
            return invalid(S, &format!("ProviderIDs[{i}].ProviderName"), "required").into_response();
        }
        ids.push((plugin_id.to_string(), provider.to_string()));
    }
    respond(plugins::tools_exist(&state, &tenant_id, &ids).await)
}

async fn debugging_key(State(state): State<AppState>, Path(tenant_id): Path<String>) -> Response {
    match debugging::key(&state, &tenant_id).await {
        Ok(v) => ok(v),
        Err(e) => fail(e),
    }
}
