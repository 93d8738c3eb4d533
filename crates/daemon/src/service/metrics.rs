//! A small hand-written Prometheus registry: labelled counters and duration summaries, rendered in
//! the Prometheus text exposition format for `GET /metrics`. It must not block: every update is a
//! short mutex section. HTTP requests, counted on every request, are kept apart by their raw labels
//! (no text is built per request) and rendered with the other families.

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
    /// Requests and their total seconds per `(method, route, status)`; few distinct keys.
    requests: Mutex<Vec<RequestCounter>>,
}

struct RequestCounter {
    method: String,
    route: &'static str,
    status: u16,
    count: f64,
    seconds: f64,
}

const REQUESTS_TOTAL: (&str, &str) = ("http_requests_total", "HTTP requests served.");
const REQUEST_SECONDS: (&str, &str) = ("http_request_duration_seconds_sum", "Total time spent serving HTTP requests.");

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
    pub fn observe_request(&self, method: &str, route: &'static str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.iter_mut().find(|c| c.status == status && c.route == route && c.method == method) {
            Some(counter) => {
                counter.count += 1.0;
                counter.seconds += seconds;
            }
            None => requests.push(RequestCounter { method: method.to_string(), route, status, count: 1.0, seconds: 0.0 + seconds }),
        }
    }

    /// The two request families as [`Self::add`] would have built them.
    fn request_families(&self) -> BTreeMap<&'static str, Family> {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut families = BTreeMap::new();
        if requests.is_empty() {
            return families;
        }
        for ((name, help), value_of) in [(REQUESTS_TOTAL, 0), (REQUEST_SECONDS, 1)] {
            let family = families.entry(name).or_insert_with(|| Family { help, kind: "counter", values: BTreeMap::new() });
            for counter in requests.iter() {
                let labels: Labels =
                    vec![("method", counter.method.clone()), ("route", counter.route.to_string()), ("status", counter.status.to_string())];
                let value = if value_of == 0 { counter.count } else { counter.seconds };
                *family.values.entry(render_labels(&labels)).or_insert(0.0) += value;
            }
        }
        families
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
        let mut requests = self.request_families();
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&'static str> = families.keys().chain(requests.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let merged;
            let family = match (families.get(name), requests.remove(name)) {
                (Some(family), None) => family,
                (None, Some(requests)) => {
                    merged = requests;
                    &merged
                }
                (Some(family), Some(requests)) => {
                    let mut values = family.values.clone();
                    for (labels, value) in requests.values {
                        *values.entry(labels).or_insert(0.0) += value;
                    }
                    merged = Family { help: family.help, kind: family.kind, values };
                    &merged
                }
                (None, None) => continue,
            };
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

    #[test]
    fn request_counters_render_as_labelled_families() {
        // The same observations through the generic families: the text must be identical.
        let fast = Metrics::default();
        let generic = Metrics::default();
        let observations = [
            ("POST", "dispatch", 200, 0.125),
            ("GET", "health", 200, 0.5),
            ("POST", "dispatch", 200, 0.25),
            ("GET", "management", 404, 1.0),
        ];
        for (method, route, status, seconds) in observations {
            fast.observe_request(method, route, status, seconds);
            fast.observe_upload("success");
            let labels: Labels = vec![("method", method.to_string()), ("route", route.to_string()), ("status", status.to_string())];
            generic.add(REQUESTS_TOTAL.0, "counter", REQUESTS_TOTAL.1, labels.clone(), 1.0);
            generic.add(REQUEST_SECONDS.0, "counter", REQUEST_SECONDS.1, labels, seconds);
            generic.observe_upload("success");
        }
        assert_eq!(fast.render(&[("g", "a gauge", 2.0)]), generic.render(&[("g", "a gauge", 2.0)]));
        assert!(fast.render(&[]).contains("http_requests_total{method=\"POST\",route=\"dispatch\",status=\"200\"} 2\n"));
    }
}
