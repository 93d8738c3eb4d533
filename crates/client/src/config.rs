//! Connection settings of a [`crate::PluginDaemonClient`]: base URL, API key, timeout and the
//! retry policy for idempotent requests.
//!
//! Owns defaults only. It must not read environment variables or files; the CLI resolves those
//! (see `cli::settings`) and library users pass explicit values.

use std::time::Duration;

/// Where the daemon listens when nothing else is configured (Dify's `PLUGIN_DAEMON_URL` default).
pub const DEFAULT_BASE_URL: &str = "http://localhost:5002";
/// Dify's `PLUGIN_DAEMON_TIMEOUT` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How idempotent GET requests are retried on connect errors and on HTTP 429/503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// The first back-off delay when the server gives no `Retry-After`; doubled on each retry.
    pub base_delay: Duration,
    /// Upper bound of any single wait, including a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

/// Everything a client needs to reach one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// e.g. `http://localhost:5002`; a trailing `/` is ignored.
    pub base_url: String,
    /// Sent as `X-Api-Key` on every request (the daemon's `SERVER_KEY`).
    pub api_key: String,
    /// Whole-request timeout, including reading a streamed response.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: String::new(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        ClientConfig { base_url: base_url.into(), api_key: api_key.into(), ..ClientConfig::default() }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}
