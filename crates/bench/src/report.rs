//! The results table: every figure measured through the daemon stands next to a baseline measured
//! in the same run, with their ratio and the target it is judged against.
//!
//! Owns: row model, ratio/target arithmetic, Markdown rendering. Must not: measure anything.

use std::fmt::Write as _;

/// How a row is judged.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// daemon / baseline must be at most this (latencies, durations).
    RatioAtMost(f64),
    /// daemon / baseline must be at least this (throughputs).
    RatioAtLeast(f64),
    /// The daemon's figure itself must be at least this.
    ValueAtLeast(f64),
    /// The daemon's figure itself must be at most this.
    ValueAtMost(f64),
    /// Reported for context only.
    None,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub measurement: String,
    pub unit: &'static str,
    pub daemon: Result<f64, String>,
    pub baseline: Result<f64, String>,
    pub baseline_is: String,
    pub target: Target,
}

impl Row {
    pub fn new(id: &str, measurement: impl Into<String>, unit: &'static str, baseline_is: impl Into<String>, target: Target) -> Self {
        Self {
            id: id.to_string(),
            measurement: measurement.into(),
            unit,
            daemon: Err("not measured".into()),
            baseline: Err("not measured".into()),
            baseline_is: baseline_is.into(),
            target,
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        match (&self.daemon, &self.baseline) {
            (Ok(d), Ok(b)) if *b != 0.0 && d.is_finite() && b.is_finite() => Some(d / b),
            _ => None,
        }
    }

    /// Whether the row is complete (both figures and a ratio).
    pub fn complete(&self) -> bool {
        self.ratio().is_some()
    }

    /// `Some(true/false)` when judged, `None` for context rows.
    pub fn met(&self) -> Option<bool> {
        let daemon = *self.daemon.as_ref().ok()?;
        let ratio = self.ratio()?;
        match self.target {
            Target::RatioAtMost(t) => Some(ratio <= t),
            Target::RatioAtLeast(t) => Some(ratio >= t),
            Target::ValueAtLeast(t) => Some(daemon >= t),
            Target::ValueAtMost(t) => Some(daemon <= t),
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::RatioAtMost(t) => format!("ratio ≤ {t}"),
            Target::RatioAtLeast(t) => format!("ratio ≥ {t}"),
            Target::ValueAtLeast(t) => format!("≥ {} {}", number(t), self.unit),
            Target::ValueAtMost(t) => format!("≤ {} {}", number(t), self.unit),
            Target::None => "—".into(),
        }
    }
}

/// A figure with sensible precision.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn figure(value: &Result<f64, String>, unit: &str) -> String {
    match value {
        Ok(v) => format!("{} {unit}", number(*v)),
        Err(_) => "FAILED".into(),
    }
}

/// Renders rows as a Markdown table followed by the reasons of failed rows.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| # | measurement | through daemon | baseline | baseline is | ratio | target | met |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let ratio = row.ratio().map(|r| format!("{r:.2}")).unwrap_or_else(|| "FAILED".into());
        let met = match (row.complete(), row.met()) {
            (false, _) => "FAILED",
            (true, Some(true)) => "yes",
            (true, Some(false)) => "no",
            (true, None) => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.measurement,
            figure(&row.daemon, row.unit),
            figure(&row.baseline, row.unit),
            row.baseline_is,
            ratio,
            row.target_text(),
            met
        );
    }
    let failures: Vec<&Row> = rows.iter().filter(|r| !r.complete()).collect();
    if !failures.is_empty() {
        out.push_str("\nFailed measurements:\n");
        for row in failures {
            let mut reasons = Vec::new();
            if let Err(e) = &row.daemon {
                reasons.push(format!("through daemon: {e}"));
            }
            if let Err(e) = &row.baseline {
                reasons.push(format!("baseline: {e}"));
            }
            if reasons.is_empty() {
                reasons.push("baseline is zero".into());
            }
            let _ = writeln!(out, "- {} {}: {}", row.id, row.measurement, reasons.join("; "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_targets() {
        let mut row = Row::new("1", "p50", "ms", "direct", Target::RatioAtMost(1.2));
        row.daemon = Ok(1.1);
        row.baseline = Ok(1.0);
        assert!((row.ratio().unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(row.met(), Some(true));
        let mut failed = Row::new("2", "p50", "ms", "direct", Target::RatioAtMost(1.2));
        failed.daemon = Err("boom".into());
        failed.baseline = Ok(1.0);
        assert!(!failed.complete());
        let table = render(&[row, failed]);
        assert!(table.contains("| 2 | p50 | FAILED |"), "{table}");
        assert!(table.contains("through daemon: boom"), "{table}");
    }
}
