//! The Redis [`Coordination`]: several nodes sharing one Redis, reached directly (`REDIS_HOST`,
//! `REDIS_PORT`) or as the master a set of Redis Sentinels names (`REDIS_USE_SENTINEL`,
//! `REDIS_SENTINELS`, `REDIS_SENTINEL_SERVICE_NAME`); either way with `REDIS_USERNAME`,
//! `REDIS_PASSWORD`, `REDIS_DB` and `REDIS_USE_SSL`.
//!
//! Key layout, every key under `REDIS_KEY_PREFIX` (`{p}`):
//! - `{p}:node:{id}` → the node's JSON [`NodeInfo`], `PX` = the node TTL; `{p}:nodes` is a sorted set
//!   of node ids scored by their last heartbeat (an index only: the node key's existence is the truth);
//! - `{p}:lock:{name}` → the holder's fencing token (`SET NX PX`), `{p}:fence:{name}` → the last
//!   token handed out (`INCR`); release and ownership checks are one Lua script each, so a lock is
//!   only ever deleted by the holder of its current token;
//! - any other key given to [`Coordination::set_with_ttl`] as `{p}:{key}`; channels as `{p}:{channel}`.
//!
//! Commands go through one [`ConnectionManager`] (multiplexed, reconnecting by itself) to the current
//! master; each subscription holds its own connection in a task that reconnects with backoff and
//! reports `Disconnected`/`Connected` so the subscriber can stop trusting what it caches meanwhile.
//!
//! With Sentinel, the master is whatever the sentinels answer to `SENTINEL get-master-addr-by-name`
//! (asked in the configured order, each exchange bounded by `REDIS_SENTINEL_SOCKET_TIMEOUT`) and
//! that answers `ROLE` with `master`. A command that fails in a way a failover explains (connection
//! lost or refused, timeout, `READONLY` from a demoted master, `MASTERDOWN`, `LOADING`) makes the
//! node ask the sentinels again (at most every [`MIN_LOOKUP_INTERVAL`]); when they name another
//! master the node connects to it, retries the command once there, and moves every subscription
//! to it (`Disconnected`, then `Connected`). Besides, each node listens on one sentinel's
//! `+switch-master` channel and looks the master up as soon as the sentinels switch it, since a
//! demoted master goes on accepting writes until the sentinels reconfigure it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, ConnectionAddr, ConnectionInfo, ErrorKind, RedisConnectionInfo, Script};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use super::{CoordError, CoordResult, Coordination, FencedLock, NodeInfo, SubscriptionEvent, COORD_TIMEOUT};
use crate::config::Settings;

/// How long start-up keeps trying to reach Redis (or a sentinel) before it gives up.
const CONNECT_BUDGET: Duration = Duration::from_secs(15);
/// Registry index entries older than this are pruned (their node keys expired long before).
const INDEX_RETENTION_MS: i64 = 60_000;
/// The sentinels are asked again at most this often while commands keep failing.
pub const MIN_LOOKUP_INTERVAL: Duration = Duration::from_millis(250);

const UNLOCK_SCRIPT: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const DELETE_IF_SCRIPT: &str = UNLOCK_SCRIPT;

/// Coordination over Redis.
pub struct RedisCoordination {
    inner: Arc<Inner>,
}

/// What commands and subscriptions share: the current master and how to find the next one.
struct Inner {
    prefix: String,
    /// The master in use; replaced (generation + 1) when the sentinels name another one.
    master: watch::Sender<Arc<Master>>,
    sentinel: Option<SentinelSource>,
    /// Serialises lookups; holds when the last one started.
    lookup: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// One Redis server the node talks to.
struct Master {
    /// `host:port`, for logs and for telling a new master from the current one.
    address: String,
    client: Client,
    connection: ConnectionManager,
    generation: u64,
}

/// Why asking the sentinels for the master failed.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("no Redis Sentinel of REDIS_SENTINELS answered: {0}")]
    Unreachable(String),
    #[error("the Redis Sentinels ({sentinels}) do not know the service name {service:?} (REDIS_SENTINEL_SERVICE_NAME)")]
    UnknownService { service: String, sentinels: String },
    #[error("the master the Redis Sentinels name for {service:?} cannot be used: {reason}")]
    BadMaster { service: String, reason: String },
}

impl SentinelError {
    /// Whether waiting can help (a sentinel or master not up yet, a failover under way).
    fn is_transient(&self) -> bool {
        !matches!(self, SentinelError::UnknownService { .. })
    }
}

/// How to ask the sentinels and how to connect to the master they name.
#[derive(Clone)]
pub struct SentinelSource {
    sentinels: Vec<(String, u16)>,
    service: String,
    /// Credentials for the sentinels (database 0).
    sentinel_redis: RedisConnectionInfo,
    /// Credentials and database for the master.
    master_redis: RedisConnectionInfo,
    tls: Option<bool>,
    timeout: Duration,
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// `Some(insecure)` when `REDIS_USE_SSL` is on.
fn tls_mode(settings: &Settings) -> Option<bool> {
    settings
        .redis_use_ssl
        .then(|| settings.redis_ssl_cert_reqs.as_deref().is_some_and(|reqs| reqs.eq_ignore_ascii_case("CERT_NONE")))
}

fn address(host: &str, port: u16, tls: Option<bool>) -> ConnectionAddr {
    match tls {
        Some(insecure) => ConnectionAddr::TcpTls { host: host.to_string(), port, insecure, tls_params: None },
        None => ConnectionAddr::Tcp(host.to_string(), port),
    }
}

impl SentinelSource {
    /// The sentinel settings; errors name the setting that is wrong.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<SentinelSource> {
        let sentinels = settings.redis_sentinel_addresses()?;
        let service = settings.redis_sentinel_service_name.clone().unwrap_or_default().trim().to_string();
        if service.is_empty() {
            anyhow::bail!("REDIS_SENTINEL_SERVICE_NAME is required with REDIS_USE_SENTINEL");
        }
        Ok(SentinelSource {
            sentinels,
            service,
            sentinel_redis: RedisConnectionInfo {
                db: 0,
                username: nonempty(&settings.redis_sentinel_username),
                password: nonempty(&settings.redis_sentinel_password),
                ..Default::default()
            },
            master_redis: RedisConnectionInfo {
                db: i64::from(settings.redis_db),
                username: nonempty(&settings.redis_username),
                password: nonempty(&settings.redis_password),
                ..Default::default()
            },
            tls: tls_mode(settings),
            timeout: settings.redis_sentinel_timeout(),
        })
    }

    /// The configured sentinels, `host:port,host:port`.
    pub fn described(&self) -> String {
        self.sentinels.iter().map(|(host, port)| format!("{host}:{port}")).collect::<Vec<_>>().join(",")
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Asks the sentinels in order for the master's address; the first that names one wins.
    pub async fn master_address(&self) -> Result<(String, u16), SentinelError> {
        let mut failures = Vec::new();
        let mut unknown = 0usize;
        for (host, port) in &self.sentinels {
            let info = ConnectionInfo { addr: address(host, *port, self.tls), redis: self.sentinel_redis.clone() };
            let exchange = async {
                let client = Client::open(info)?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.service)
                    .query_async::<Option<(String, String)>>(&mut connection)
                    .await
            };
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(Ok(Some((master_host, master_port)))) => match master_port.parse::<u16>() {
                    Ok(master_port) => return Ok((master_host, master_port)),
                    Err(_) => failures.push(format!("{host}:{port}: answered port {master_port:?}")),
                },
                Ok(Ok(None)) => {
                    unknown += 1;
                    failures.push(format!("{host}:{port}: unknown service name"));
                }
                Ok(Err(error)) => failures.push(format!("{host}:{port}: {error}")),
                Err(_) => failures.push(format!("{host}:{port}: no answer within {:?}", self.timeout)),
            }
        }
        if unknown > 0 && unknown == failures.len() {
            return Err(SentinelError::UnknownService { service: self.service.clone(), sentinels: self.described() });
        }
        Err(SentinelError::Unreachable(failures.join("; ")))
    }

    /// Asks the sentinels and connects to the master they name.
    async fn find_master(&self, generation: u64) -> Result<Master, SentinelError> {
        let (host, port) = self.master_address().await?;
        self.connect_master(&host, port, generation).await
    }

    /// Connects to the master at `host:port`, checking that it is one (`ROLE`).
    async fn connect_master(&self, host: &str, port: u16, generation: u64) -> Result<Master, SentinelError> {
        let described = format!("{host}:{port}");
        let bad = |reason: String| SentinelError::BadMaster { service: self.service.clone(), reason: format!("{described}: {reason}") };
        let info = ConnectionInfo { addr: address(host, port, self.tls), redis: self.master_redis.clone() };
        let client = Client::open(info).map_err(|e| bad(e.to_string()))?;
        let attempt = tokio::time::timeout(self.timeout + COORD_TIMEOUT, async {
            let mut connection = client.get_connection_manager_with_config(manager_config(self.timeout)).await?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
            Ok::<_, redis::RedisError>((connection, role))
        })
        .await;
        let (connection, role) = match attempt {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(bad(error.to_string())),
            Err(_) => return Err(bad("no answer".into())),
        };
        let role = match role.first() {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(redis::Value::SimpleString(text)) => text.clone(),
            _ => String::new(),
        };
        if role != "master" {
            return Err(bad(format!("its role is {role:?}, not master (failover under way?)")));
        }
        Ok(Master { address: described, client, connection, generation })
    }
}

fn manager_config(connect_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(connect_timeout)
        .set_response_timeout(COORD_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(1000)
}

fn unavailable(error: redis::RedisError) -> CoordError {
    CoordError::Unavailable(error.to_string())
}

/// Whether `error` may mean the master moved: ask the sentinels again.
fn failover_suspected(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(error.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// The connection description the settings give for a directly addressed Redis (`REDIS_HOST`).
pub fn connection_info(settings: &Settings) -> anyhow::Result<ConnectionInfo> {
    let host = settings.redis_host.clone().unwrap_or_default().trim().to_string();
    let redis = RedisConnectionInfo {
        db: i64::from(settings.redis_db),
        username: nonempty(&settings.redis_username),
        password: nonempty(&settings.redis_password),
        ..Default::default()
    };
    Ok(ConnectionInfo { addr: address(&host, settings.redis_port, tls_mode(settings)), redis })
}

impl Inner {
    fn current(&self) -> Arc<Master> {
        self.master.borrow().clone()
    }

    /// Asks the sentinels whether the master moved since generation `seen`, and switches to the new
    /// one; whether the master in use is now a newer one than `seen`.
    async fn follow_master(&self, seen: u64) -> bool {
        self.lookup_master(Some(seen)).await
    }

    /// Asks the sentinels (`seen`: unless the master changed since that generation or the last
    /// lookup is too recent; `None`: now) and switches to the master they name if it is another.
    async fn lookup_master(&self, seen: Option<u64>) -> bool {
        let Some(source) = &self.sentinel else { return false };
        let mut last = self.lookup.lock().await;
        let current = self.current();
        if let Some(seen) = seen {
            if current.generation != seen {
                return true;
            }
            if last.is_some_and(|at| at.elapsed() < MIN_LOOKUP_INTERVAL) {
                return false;
            }
        }
        *last = Some(tokio::time::Instant::now());
        match source.master_address().await {
            Ok((host, port)) if format!("{host}:{port}") == current.address => false,
            Ok((host, port)) => match source.connect_master(&host, port, current.generation + 1).await {
                Ok(master) => {
                    tracing::warn!(from = %current.address, to = %master.address, service = %source.service,
                        "Redis master changed (Sentinel); following it");
                    self.master.send_replace(Arc::new(master));
                    true
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot switch to the new Redis master yet");
                    false
                }
            },
            Err(error) => {
                tracing::debug!(%error, "cannot ask Redis Sentinel for the master");
                false
            }
        }
    }
}

impl RedisCoordination {
    /// Connects (retrying for a bounded time) and checks the server answers.
    pub async fn connect(settings: &Settings) -> anyhow::Result<RedisCoordination> {
        RedisCoordination::connect_within(settings, CONNECT_BUDGET).await
    }

    /// [`RedisCoordination::connect`] with a given budget for reaching Redis (or a sentinel).
    pub async fn connect_within(settings: &Settings, budget: Duration) -> anyhow::Result<RedisCoordination> {
        let deadline = tokio::time::Instant::now() + budget;
        let (master, sentinel) = if settings.redis_use_sentinel {
            let source = SentinelSource::from_settings(settings)?;
            let master = loop {
                match source.find_master(0).await {
                    Ok(master) => break master,
                    Err(error) if !error.is_transient() => return Err(error.into()),
                    Err(error) => {
                        if tokio::time::Instant::now() >= deadline {
                            anyhow::bail!(
                                "cannot find the Redis master {:?} through Redis Sentinel ({}) within {} s: {error}",
                                source.service,
                                source.described(),
                                budget.as_secs_f64()
                            );
                        }
                        tracing::warn!(sentinels = %source.described(), %error, "Redis master not found yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            tracing::info!(master = %master.address, service = %source.service, "Redis master found through Sentinel");
            (master, Some(source))
        } else {
            (connect_direct(settings, deadline).await?, None)
        };
        let prefix = settings.redis_key_prefix.trim_end_matches(':').to_string();
        let (master, _) = watch::channel(Arc::new(master));
        let watched = sentinel.clone();
        let inner = Arc::new(Inner { prefix, master, sentinel, lookup: tokio::sync::Mutex::new(None) });
        if let Some(source) = watched {
            tokio::spawn(switch_watch(source, Arc::downgrade(&inner)));
        }
        Ok(RedisCoordination { inner })
    }

    /// `host:port` of the Redis server commands go to now.
    pub fn master_address(&self) -> String {
        self.inner.current().address.clone()
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.prefix)
    }

    /// Runs `op` on the current master's connection, bounded by [`COORD_TIMEOUT`]. With Sentinel, a
    /// failure a failover explains makes the node look the master up again, and `op` runs once more
    /// on the new master when there is one.
    async fn run<T, F, Fut>(&self, op: F) -> CoordResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let master = self.inner.current();
        let generation = master.generation;
        let work = async {
            match op(master.connection.clone()).await {
                Ok(value) => Ok(value),
                Err(error) if self.inner.sentinel.is_some() && failover_suspected(&error) => {
                    // The lookup runs on its own so that a caller giving up does not cut it short.
                    let inner = self.inner.clone();
                    let moved = tokio::spawn(async move { inner.follow_master(generation).await }).await.unwrap_or(false);
                    if !moved {
                        return Err(unavailable(error));
                    }
                    let master = self.inner.current();
                    op(master.connection.clone()).await.map_err(unavailable)
                }
                Err(error) => Err(unavailable(error)),
            }
        };
        match tokio::time::timeout(COORD_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => {
                if self.inner.sentinel.is_some() {
                    let inner = self.inner.clone();
                    tokio::spawn(async move { inner.follow_master(generation).await });
                }
                Err(CoordError::Timeout(COORD_TIMEOUT))
            }
        }
    }
}

/// Connects to `REDIS_HOST:REDIS_PORT`, retrying until `deadline`.
async fn connect_direct(settings: &Settings, deadline: tokio::time::Instant) -> anyhow::Result<Master> {
    let info = connection_info(settings)?;
    let described = format!("{}:{}", settings.redis_host.as_deref().unwrap_or_default(), settings.redis_port);
    let client = Client::open(info).map_err(|e| anyhow::anyhow!("invalid Redis settings ({described}): {e}"))?;
    let config = manager_config(Duration::from_secs(1));
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config.clone())).await;
        match attempt {
            Ok(Ok(connection)) => return Ok(Master { address: described, client, connection, generation: 0 }),
            other => {
                let reason = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!("cannot reach Redis at {described}: {reason}");
                }
                tracing::warn!(redis = %described, %reason, "Redis not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Coordination for RedisCoordination {
    fn is_shared(&self) -> bool {
        true
    }

    fn heartbeat<'a>(&'a self, node: &'a NodeInfo, ttl: Duration) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let value = serde_json::to_string(node).unwrap_or_default();
            let now = now_ms();
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(self.key(&format!("node:{}", node.id)))
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .ignore()
                .zadd(self.key("nodes"), &node.id, now)
                .ignore()
                .zrembyscore(self.key("nodes"), "-inf", now - INDEX_RETENTION_MS)
                .ignore();
            let pipe = &pipe;
            self.run(|mut connection| async move { pipe.query_async::<()>(&mut connection).await }).await
        })
    }

    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.del(self.key(&format!("node:{node_id}"))).ignore().zrem(self.key("nodes"), node_id).ignore();
            let pipe = &pipe;
            self.run(|mut connection| async move { pipe.query_async::<()>(&mut connection).await }).await
        })
    }

    fn live_nodes(&self) -> BoxFuture<'_, CoordResult<Vec<NodeInfo>>> {
        Box::pin(async move {
            let index = self.key("nodes");
            let index = &index;
            let ids: Vec<String> = self.run(|mut connection| async move { connection.zrange(index, 0, -1).await }).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| self.key(&format!("node:{id}"))).collect();
            let keys = &keys;
            let values: Vec<Option<String>> = self
                .run(|mut connection| async move { redis::cmd("MGET").arg(keys).query_async(&mut connection).await })
                .await?;
            let mut nodes: Vec<NodeInfo> =
                values.into_iter().flatten().filter_map(|value| serde_json::from_str::<NodeInfo>(&value).ok()).collect();
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(nodes)
        })
    }

    fn set_with_ttl<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let key = self.key(key);
            let key = &key;
            self.run(|mut connection| async move {
                redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis(ttl)).query_async::<()>(&mut connection).await
            })
            .await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CoordResult<Option<String>>> {
        Box::pin(async move {
            let key = self.key(key);
            let key = &key;
            self.run(|mut connection| async move { connection.get(key).await }).await
        })
    }

    fn delete_if<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, CoordResult<bool>> {
        Box::pin(async move {
            let key = self.key(key);
            let key = &key;
            let script = Script::new(DELETE_IF_SCRIPT);
            let script = &script;
            let deleted: i64 = self
                .run(|mut connection| async move { script.key(key).arg(value).invoke_async(&mut connection).await })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<Option<FencedLock>>> {
        Box::pin(async move {
            let fence = self.key(&format!("fence:{name}"));
            let fence = &fence;
            let token: u64 = self.run(|mut connection| async move { connection.incr(fence, 1).await }).await?;
            let lock = self.key(&format!("lock:{name}"));
            let lock = &lock;
            let set: Option<String> = self
                .run(|mut connection| async move {
                    redis::cmd("SET").arg(lock).arg(token).arg("NX").arg("PX").arg(millis(ttl)).query_async(&mut connection).await
                })
                .await?;
            Ok(set.map(|_| FencedLock { name: name.to_string(), token }))
        })
    }

    fn unlock<'a>(&'a self, lock: &'a FencedLock) -> BoxFuture<'a, CoordResult<bool>> {
        Box::pin(async move {
            let key = self.key(&format!("lock:{}", lock.name));
            let key = &key;
            let script = Script::new(UNLOCK_SCRIPT);
            let script = &script;
            let deleted: i64 = self
                .run(|mut connection| async move { script.key(key).arg(lock.token).invoke_async(&mut connection).await })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let channel = self.key(channel);
            let channel = &channel;
            self.run(|mut connection| async move { connection.publish::<_, _, ()>(channel, message).await }).await
        })
    }

    fn subscribe(&self, channel: &str) -> UnboundedReceiver<SubscriptionEvent> {
        let (sender, receiver) = unbounded_channel();
        tokio::spawn(subscription_loop(self.inner.clone(), self.key(channel), sender));
        receiver
    }
}

/// Listens on the sentinels' `+switch-master` channel (one sentinel at a time, the next when it
/// goes away) and, when the service's master is switched, looks the master up at once: a demoted
/// master keeps accepting writes until the sentinels reconfigure it (seconds later), so waiting for
/// a command to fail would leave the node writing to it meanwhile. Ends with the coordination.
async fn switch_watch(source: SentinelSource, inner: std::sync::Weak<Inner>) {
    let mut turn = 0usize;
    let mut backoff = Duration::from_millis(200);
    loop {
        let (host, port) = source.sentinels[turn % source.sentinels.len()].clone();
        turn += 1;
        let info = ConnectionInfo { addr: address(&host, port, source.tls), redis: source.sentinel_redis.clone() };
        let attempt = tokio::time::timeout(source.timeout, async {
            let mut pubsub = Client::open(info)?.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = attempt {
            backoff = Duration::from_millis(200);
            // A switch may have happened while not listening.
            match inner.upgrade() {
                Some(inner) => inner.lookup_master(None).await,
                None => return,
            };
            let mut messages = pubsub.into_on_message();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let payload: String = message.get_payload().unwrap_or_default();
                            if payload.split(' ').next() != Some(source.service.as_str()) {
                                continue;
                            }
                            let Some(inner) = inner.upgrade() else { return };
                            tracing::info!(sentinel = %format!("{host}:{port}"), %payload, "Redis Sentinel switched the master");
                            inner.lookup_master(None).await;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        if inner.strong_count() == 0 {
                            return;
                        }
                    }
                }
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Keeps one subscription standing until the receiver is dropped: subscribe on the current master,
/// relay messages, and on a lost connection or a new master report `Disconnected` and subscribe
/// again (backoff up to 2 s; at once on a new master).
async fn subscription_loop(inner: Arc<Inner>, channel: String, sender: UnboundedSender<SubscriptionEvent>) {
    let mut masters = inner.master.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut connected = false;
    loop {
        let master = masters.borrow_and_update().clone();
        let attempt = tokio::time::timeout(COORD_TIMEOUT, async {
            let mut pubsub = master.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let mut lost = true;
        match attempt {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                if sender.send(SubscriptionEvent::Connected).is_err() {
                    return;
                }
                connected = true;
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let payload: String = message.get_payload().unwrap_or_default();
                                if sender.send(SubscriptionEvent::Message(payload)).is_err() {
                                    return;
                                }
                            }
                            None => break,
                        },
                        changed = masters.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            tracing::info!(%channel, "Redis master changed; resubscribing there");
                            lost = false;
                            break;
                        }
                        _ = sender.closed() => return,
                    }
                }
                if lost {
                    tracing::warn!(%channel, "Redis subscription lost; resubscribing");
                }
            }
            Ok(Err(error)) => tracing::debug!(%channel, %error, "cannot subscribe to Redis"),
            Err(_) => tracing::debug!(%channel, "subscribing to Redis timed out"),
        }
        if connected {
            connected = false;
            if sender.send(SubscriptionEvent::Disconnected).is_err() {
                return;
            }
        }
        if !lost {
            continue;
        }
        if inner.sentinel.is_some() {
            let inner = inner.clone();
            let generation = master.generation;
            tokio::spawn(async move { inner.follow_master(generation).await });
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = masters.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sender.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel_settings(sentinels: &str) -> Settings {
        Settings {
            redis_use_sentinel: true,
            redis_sentinels: Some(sentinels.to_string()),
            redis_sentinel_service_name: Some("mymaster".into()),
            redis_sentinel_socket_timeout: 0.5,
            ..Settings::default()
        }
    }

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1)
    }

    #[tokio::test]
    async fn no_reachable_sentinel_is_a_clear_start_up_error() {
        let (a, b) = (closed_port(), closed_port());
        let settings = sentinel_settings(&format!("127.0.0.1:{a},127.0.0.1:{b}"));
        let started = std::time::Instant::now();
        let error = match RedisCoordination::connect_within(&settings, Duration::from_millis(600)).await {
            Ok(_) => panic!("connected without a sentinel"),
            Err(error) => format!("{error:#}"),
        };
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(
            error.starts_with(&format!(
                "cannot find the Redis master \"mymaster\" through Redis Sentinel (127.0.0.1:{a},127.0.0.1:{b}) within 0.6 s: \
                 no Redis Sentinel of REDIS_SENTINELS answered: 127.0.0.1:{a}: "
            )),
            "{error}"
        );
        assert!(error.contains(&format!("; 127.0.0.1:{b}: ")), "{error}");
    }

    #[tokio::test]
    async fn a_silent_sentinel_is_bounded_by_the_socket_timeout() {
        // Accepts connections but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let source = SentinelSource::from_settings(&sentinel_settings(&format!("127.0.0.1:{port}"))).unwrap();
        let started = std::time::Instant::now();
        let error = source.master_address().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(error.to_string(), format!("no Redis Sentinel of REDIS_SENTINELS answered: 127.0.0.1:{port}: no answer within 500ms"));
    }
}
