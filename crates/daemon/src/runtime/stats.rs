//! Invocations and failed invocations per plugin over the last hour, in one-minute buckets, for the
//! status page's chart. One table per process (sessions record into it when they end).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Minutes kept.
pub const WINDOW_MINUTES: usize = 60;

#[derive(Debug, Default, Clone)]
struct Series {
    /// `(minute since the epoch, invocations, errors)`, oldest first.
    buckets: Vec<(u64, u64, u64)>,
}

fn table() -> &'static Mutex<HashMap<String, Series>> {
    static TABLE: OnceLock<Mutex<HashMap<String, Series>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn minute_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0)
}

/// Records one finished invocation of `plugin_id` (`author/name`).
pub fn record(plugin_id: &str, failed: bool) {
    record_at(plugin_id, failed, minute_now());
}

fn record_at(plugin_id: &str, failed: bool, minute: u64) {
    let mut table = table().lock().unwrap_or_else(|p| p.into_inner());
    if !table.contains_key(plugin_id) {
        table.insert(plugin_id.to_string(), Series::default());
    }
    let Some(series) = table.get_mut(plugin_id) else { return };
    match series.buckets.last_mut() {
        Some(last) if last.0 == minute => {
            last.1 += 1;
            last.2 += u64::from(failed);
        }
        _ => series.buckets.push((minute, 1, u64::from(failed))),
    }
    let oldest = minute.saturating_sub(WINDOW_MINUTES as u64 - 1);
    if series.buckets.first().is_some_and(|b| b.0 < oldest) {
        series.buckets.retain(|b| b.0 >= oldest);
    }
}

/// Per plugin: [`WINDOW_MINUTES`] `(invocations, errors)` pairs, oldest minute first, ending now.
pub fn last_hour() -> Vec<(String, Vec<(u64, u64)>)> {
    last_hour_at(minute_now())
}

fn last_hour_at(now: u64) -> Vec<(String, Vec<(u64, u64)>)> {
    let table = table().lock().unwrap_or_else(|p| p.into_inner());
    let first = now.saturating_sub(WINDOW_MINUTES as u64 - 1);
    let mut out: Vec<(String, Vec<(u64, u64)>)> = table
        .iter()
        .filter(|(_, s)| s.buckets.iter().any(|b| b.0 >= first))
        .map(|(plugin, series)| {
            let mut minutes = vec![(0, 0); WINDOW_MINUTES];
            for (minute, calls, errors) in &series.buckets {
                if (first..=now).contains(minute) {
                    minutes[(minute - first) as usize] = (*calls, *errors);
                }
            }
            (plugin.clone(), minutes)
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_per_minute_for_the_last_hour() {
        let now = 1_000_000;
        record_at("stats-test/a", false, now - 70);
        record_at("stats-test/a", false, now - 1);
        record_at("stats-test/a", true, now - 1);
        record_at("stats-test/a", false, now);
        let all = last_hour_at(now);
        let (_, minutes) = all.iter().find(|(p, _)| p == "stats-test/a").expect("series");
        assert_eq!(minutes.len(), WINDOW_MINUTES);
        assert_eq!(minutes[WINDOW_MINUTES - 2], (2, 1));
        assert_eq!(minutes[WINDOW_MINUTES - 1], (1, 0));
        assert_eq!(minutes.iter().map(|m| m.0).sum::<u64>(), 3, "the call 70 minutes ago is outside the window");
    }
}
