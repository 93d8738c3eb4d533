//! The daemon's one shutdown handle: a cancellation signal plus a tracker of the background tasks
//! that must finish before the process stops (housekeeping, the debug server, install jobs, the
//! tasks of running sessions).
//!
//! Owns only the signal and the task set. It sits in the lowest layer so every other module can hold
//! it; it must not know what the tasks do. `server::run` cancels it on SIGTERM/SIGINT and then waits,
//! bounded, for the tracked tasks.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; every clone shares the same signal and task set.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Signals every holder to stop. Tasks spawned afterwards still run (and are still waited for).
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once [`cancel`](Self::cancel) has been called.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// A token that is cancelled with this handle (for code that already speaks tokens).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns `task` on the tokio runtime and tracks it: [`wait`](Self::wait) waits for it.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// How many tracked tasks are still running.
    pub fn running_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Waits up to `limit` for every tracked task (including ones spawned while waiting) to finish;
    /// returns whether they all did.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.tasks.close();
        let finished = tokio::time::timeout(limit, self.tasks.wait()).await.is_ok();
        // Closing is only needed for `wait` to resolve; later spawns are still tracked.
        self.tasks.reopen();
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_tracked_tasks_and_reports_stragglers() {
        let shutdown = Shutdown::new();
        let signal = shutdown.clone();
        shutdown.spawn(async move {
            signal.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        assert_eq!(shutdown.running_tasks(), 1);
        assert!(!shutdown.wait(Duration::from_millis(50)).await, "the task waits for the signal");
        shutdown.cancel();
        assert!(shutdown.is_cancelled());
        assert!(shutdown.wait(Duration::from_secs(5)).await);
        assert_eq!(shutdown.running_tasks(), 0);

        shutdown.spawn(std::future::pending::<()>());
        assert!(!shutdown.wait(Duration::from_millis(20)).await, "a task that never ends is reported");
    }
}
