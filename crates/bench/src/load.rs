//! Closed-loop load: `concurrency` workers invoke back to back until `total` invocations finished,
//! each latency recorded. Runs on the bench's single runtime thread.
//!
//! Owns: scheduling and timing of invocations. Must not: know which side it drives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::invoke::{Invoker, Outcome};
use crate::stats::Samples;

/// Runs `total` invocations with `concurrency` in flight; fails on the first failed invocation or
/// when the whole batch exceeds `limit`.
pub async fn closed_loop(invoker: &Invoker, parameters: &Value, concurrency: usize, total: usize, limit: Duration) -> Result<Samples> {
    let next = Arc::new(AtomicUsize::new(0));
    let parameters = Arc::new(parameters.clone());
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(total).max(1) {
        let invoker = invoker.clone();
        let next = next.clone();
        let parameters = parameters.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let begin = Instant::now();
                let outcome = invoker.invoke(&parameters).await?;
                if outcome.items == 0 {
                    bail!("invocation returned no messages");
                }
                latencies.push(begin.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let collect = async {
        while let Some(joined) = workers.join_next().await {
            latencies.extend(joined??);
        }
        Ok::<_, anyhow::Error>(())
    };
    match tokio::time::timeout(limit, collect).await {
        Ok(result) => result?,
        Err(_) => bail!("{total} invocations at concurrency {concurrency} did not finish within {limit:?}"),
    }
    Ok(Samples::new(latencies, started.elapsed()))
}

/// One invocation timed, with its outcome.
pub async fn timed_once(invoker: &Invoker, parameters: &Value, limit: Duration) -> Result<(Duration, Outcome)> {
    let begin = Instant::now();
    match tokio::time::timeout(limit, invoker.invoke(parameters)).await {
        Ok(outcome) => Ok((begin.elapsed(), outcome?)),
        Err(_) => bail!("invocation did not finish within {limit:?}"),
    }
}
