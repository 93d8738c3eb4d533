//! A small hand-written Prometheus registry: labelled counters and duration summaries, rendered in
//! the Prometheus text exposition format for `GET /metrics`. It must not block: every update is a
//! short mutex section.

use std::collections::BTreeMap;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    values: BTreeMap<String, f64>,
}

/// The daemon's metrics.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    fn add(&self, name: &'static str, kind: &'static str, help: &'static str, labels: Labels, delta: f64) {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name).or_insert_with(|| Family { help, kind, values: BTreeMap::new() });
        *family.values.entry(render_labels(&labels)).or_insert(0.0) += delta;
    }

    /// Counts one HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels: Labels = vec![("method", method.to_string()), ("route", route.to_string()), ("status", status.to_string())];
        self.add("http_requests_total", "counter", "HTTP requests served.", labels.clone(), 1.0);
        self.add("http_request_duration_seconds_sum", "counter", "Total time spent serving HTTP requests.", labels, seconds);
    }

    /// Counts one finished plugin install (`status` = success or failed).
    pub fn observe_install(&self, plugin_id: &str, status: &str, seconds: f64) {
        self.add(
            "plugin_installations_total",
            "counter",
            "Plugin installations by outcome.",
            vec![("plugin_id", plugin_id.to_string()), ("status", status.to_string())],
            1.0,
        );
        self.add(
            "plugin_installation_duration_seconds_sum",
            "counter",
            "Total time spent installing plugins.",
            vec![("plugin_id", plugin_id.to_string())],
            seconds,
        );
    }

    /// Counts one package upload (`status` = success or failed).
    pub fn observe_upload(&self, status: &str) {
        self.add("plugin_uploads_total", "counter", "Package uploads by outcome.", vec![("status", status.to_string())], 1.0);
    }

    /// Renders every family plus the given gauges in the text exposition format.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        for (name, help, value) in gauges {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        }
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for (name, family) in families.iter() {
            out.push_str(&format!("# HELP {name} {}\n# TYPE {name} {}\n", family.help, family.kind));
            for (labels, value) in &family.values {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.observe_request("GET", "/health/check", 200, 0.5);
        m.observe_request("GET", "/health/check", 200, 0.25);
        let text = m.render(&[("active_requests", "Requests in flight.", 1.0)]);
        assert!(text.contains("# TYPE http_requests_total counter"));
        assert!(text.contains("http_requests_total{method=\"GET\",route=\"/health/check\",status=\"200\"} 2"));
        assert!(text.contains("active_requests 1"));
    }
}
