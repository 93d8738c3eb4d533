//! The operator's status page: `GET /status` (server-rendered shell, a little JS that reads
//! `/status.json` and fills the tables) and `GET /status.json` (the picture of
//! `service::status`). Both need the server key or the admin key, as `X-Api-Key`,
//! `X-Admin-Api-Key` or a `key` query parameter (a browser opening the page); `STATUS_PAGE_ENABLED=false`
//! removes both routes.

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dify_protocol::DaemonError;

use super::bind::Query;
use super::{fail_with_status, respond, AppState};
use crate::service::status;

pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.settings.status_page_enabled {
        return Router::new();
    }
    Router::new()
        .route("/status", get(page))
        .route("/status.json", get(report))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
}

async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given: Vec<String> = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let from_query = Query::parse(request.uri().query()).get("key").to_string();
        vec![header("x-api-key"), header("x-admin-api-key"), from_query]
    };
    let admin = state.settings.admin_api_key.as_deref().filter(|_| state.settings.admin_api_enabled);
    let accepted = given.iter().any(|key| {
        !key.is_empty() && (key.as_bytes() == state.server_key.as_bytes() || admin.is_some_and(|a| a.as_bytes() == key.as_bytes()))
    });
    if !accepted {
        return fail_with_status(StatusCode::UNAUTHORIZED, DaemonError::unauthorized());
    }
    next.run(request).await
}

async fn report(State(state): State<AppState>) -> Response {
    respond(status::report(&state).await)
}

async fn page(RawQuery(_): RawQuery) -> Response {
    let mut response = PAGE.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dify-plugin-daemon status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.running,.success{color:#17702b}.crashed,.failed{color:#b00020;font-weight:bold}
.starting,.pending{color:#8a6d00}pre{margin:0;white-space:pre-wrap;font-size:12px}.kv td:first-child{width:14em;font-weight:bold}
</style></head><body>
<h1>dify-plugin-daemon status</h1>
<p id="updated">loading…</p>
<h2>Node</h2><table class="kv" id="node"></table>
<h2>Plugin sandbox</h2><table class="kv" id="sandbox"></table>
<h2>Invocations in the last hour (per minute; red: errors)</h2><div id="charts"></div>
<h2>Runtimes on this node</h2><table id="runtimes"><tr><th>Plugin</th><th>Type</th><th>State</th><th>Restarts</th><th>Last error</th><th>Recent log</th></tr></table>
<h2>Install tasks</h2><table id="tasks"><tr><th>Task</th><th>Tenant</th><th>Status</th><th>Plugin</th><th>Plugin status</th><th>Message</th></tr></table>
<h2>Installed plugins</h2><table id="installations"><tr><th>Tenant</th><th>Plugin</th><th>Unique identifier</th><th>Runtime</th><th>Source</th></tr></table>
<script>
const key = new URLSearchParams(location.search).get("key") || "";
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text == null ? "" : String(text); if (cls) td.className = cls; return td; }
function pre(row, text) { const td = row.insertCell(); const p = document.createElement("pre"); p.textContent = text || ""; td.appendChild(p); }
function clear(table) { while (table.rows.length > 1) table.deleteRow(1); }
async function refresh() {
  const answer = await fetch("status.json", {headers: {"X-Api-Key": key}}).then(r => r.json());
  if (answer.code !== 0) { document.getElementById("updated").textContent = "error: " + answer.message; return; }
  const s = answer.data;
  const node = document.getElementById("node"); node.innerHTML = "";
  for (const [k, v] of [["node id", s.node.id], ["version", s.node.version], ["platform", s.node.platform], ["database", s.database],
      ["storage", s.storage], ["redis", s.redis || "not configured"], ["requests in flight", s.requests_in_flight],
      ["invocations in flight", s.invocations_in_flight]]) { const r = node.insertRow(); cell(r, k); cell(r, v); }
  const sandbox = document.getElementById("sandbox"); sandbox.innerHTML = "";
  const layers = Object.entries(s.sandbox.layers);
  for (const [k, v] of [["level", s.sandbox.level], ["active layers", layers.filter(l => l[1]).map(l => l[0]).join(", ") || "none"],
      ["unavailable layers", layers.filter(l => !l[1]).map(l => l[0]).join(", ") || "none"], ["landlock ABI", s.sandbox.landlock_abi],
      ["memory cgroup", s.sandbox.memory_cgroup_version || "none"]]) { const r = sandbox.insertRow(); r.dataset.key = k; cell(r, k); cell(r, v); }
  const runtimes = document.getElementById("runtimes"); clear(runtimes);
  for (const rt of s.runtimes) {
    const r = runtimes.insertRow(); r.dataset.plugin = rt.identifier;
    cell(r, rt.identifier); cell(r, rt.runtime_type); cell(r, rt.status, rt.status); cell(r, rt.restarts, "restarts");
    pre(r, rt.last_error); pre(r, rt.logs.map(e => e.time.slice(11, 19) + " [" + e.source + "] " + e.message).join("\n"));
  }
  const tasks = document.getElementById("tasks"); clear(tasks);
  for (const t of s.tasks) for (const p of t.plugins) {
    const r = tasks.insertRow(); cell(r, t.id); cell(r, t.tenant_id); cell(r, t.status, t.status);
    cell(r, p.plugin_unique_identifier); cell(r, p.status, p.status); pre(r, p.message);
  }
  const installations = document.getElementById("installations"); clear(installations);
  for (const i of s.installations) { const r = installations.insertRow(); cell(r, i.tenant_id); cell(r, i.plugin_id); cell(r, i.plugin_unique_identifier); cell(r, i.runtime_type); cell(r, i.source); }
  const charts = document.getElementById("charts"); charts.innerHTML = "";
  if (!s.invocations_last_hour.length) charts.textContent = "no invocations in the last hour";
  for (const series of s.invocations_last_hour) {
    const max = Math.max(1, ...series.minutes.map(m => m[0]));
    const total = series.minutes.reduce((a, m) => a + m[0], 0), errors = series.minutes.reduce((a, m) => a + m[1], 0);
    let bars = "";
    series.minutes.forEach((m, i) => {
      const h = 40 * m[0] / max, e = 40 * m[1] / max;
      bars += `<rect x="${i * 6}" y="${40 - h}" width="5" height="${h}" fill="#4a7bd0"/><rect x="${i * 6}" y="${40 - e}" width="5" height="${e}" fill="#c62828"/>`;
    });
    const div = document.createElement("div"); div.className = "chart";
    div.innerHTML = `<svg width="360" height="42" style="border-bottom:1px solid #999">${bars}</svg> `;
    const label = document.createElement("span"); label.className = "chart-label";
    label.textContent = `${series.plugin_id}: ${total} invocations, ${errors} errors`;
    div.appendChild(label); charts.appendChild(div);
  }
  document.getElementById("updated").textContent = "updated " + new Date().toISOString();
}
refresh(); setInterval(refresh, 5000);
</script></body></html>
"##;
