//! Latency samples and their percentiles (a sorted vector; the bench's sample counts are small).
//!
//! Owns: percentile and rate arithmetic. Must not: time anything itself.

use std::time::Duration;

/// Latencies of one measured batch plus its wall-clock duration.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Samples {
    pub fn new(mut latencies: Vec<Duration>, wall: Duration) -> Self {
        latencies.sort_unstable();
        Self { latencies, wall }
    }

    pub fn latencies(&self) -> &[Duration] {
        &self.latencies
    }

    /// The `q`-quantile (0..=1) by nearest rank, in milliseconds; `None` without samples.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[rank - 1].as_secs_f64() * 1000.0)
    }

    /// Completed operations per second of wall-clock time.
    pub fn per_second(&self) -> Option<f64> {
        let secs = self.wall.as_secs_f64();
        (secs > 0.0 && !self.latencies.is_empty()).then(|| self.latencies.len() as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = Samples::new((1..=100).rev().map(Duration::from_millis).collect(), Duration::from_secs(2));
        assert_eq!(samples.percentile_ms(0.5), Some(50.0));
        assert_eq!(samples.percentile_ms(0.99), Some(99.0));
        assert_eq!(samples.percentile_ms(1.0), Some(100.0));
        assert_eq!(samples.per_second(), Some(50.0));
        assert_eq!(Samples::default().percentile_ms(0.5), None);
    }
}
