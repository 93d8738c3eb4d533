//! The Redis [`Coordination`]: several nodes sharing one Redis (`REDIS_HOST`, `REDIS_PORT`,
//! `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_USE_SSL`).
//!
//! Key layout, every key under `REDIS_KEY_PREFIX` (`{p}`):
//! - `{p}:node:{id}` → the node's JSON [`NodeInfo`], `PX` = the node TTL; `{p}:nodes` is a sorted set
//!   of node ids scored by their last heartbeat (an index only: the node key's existence is the truth);
//! - `{p}:lock:{name}` → the holder's fencing token (`SET NX PX`), `{p}:fence:{name}` → the last
//!   token handed out (`INCR`); release and ownership checks are one Lua script each, so a lock is
//!   only ever deleted by the holder of its current token;
//! - any other key given to [`Coordination::set_with_ttl`] as `{p}:{key}`; channels as `{p}:{channel}`.
//!
//! Commands go through one [`ConnectionManager`] (multiplexed, reconnecting by itself); each
//! subscription holds its own connection in a task that reconnects with backoff and reports
//! `Disconnected`/`Connected` so the subscriber can stop trusting what it caches meanwhile.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, ConnectionAddr, ConnectionInfo, RedisConnectionInfo, Script};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{CoordError, CoordResult, Coordination, FencedLock, NodeInfo, SubscriptionEvent, COORD_TIMEOUT};
use crate::config::Settings;

/// How long start-up keeps trying to reach Redis before it gives up.
const CONNECT_BUDGET: Duration = Duration::from_secs(15);
/// Registry index entries older than this are pruned (their node keys expired long before).
const INDEX_RETENTION_MS: i64 = 60_000;

const UNLOCK_SCRIPT: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const DELETE_IF_SCRIPT: &str = UNLOCK_SCRIPT;

/// Coordination over Redis.
pub struct RedisCoordination {
    client: Client,
    connection: ConnectionManager,
    prefix: String,
}

fn unavailable(error: redis::RedisError) -> CoordError {
    CoordError::Unavailable(error.to_string())
}

async fn bounded<T>(future: impl std::future::Future<Output = redis::RedisResult<T>>) -> CoordResult<T> {
    match tokio::time::timeout(COORD_TIMEOUT, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(CoordError::Timeout(COORD_TIMEOUT)),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// The connection description the settings give.
pub fn connection_info(settings: &Settings) -> anyhow::Result<ConnectionInfo> {
    let host = settings.redis_host.clone().unwrap_or_default().trim().to_string();
    if settings.redis_use_sentinel {
        anyhow::bail!("REDIS_USE_SENTINEL is not supported by the daemon's cluster coordination; point REDIS_HOST at the primary");
    }
    let addr = if settings.redis_use_ssl {
        let insecure = settings.redis_ssl_cert_reqs.as_deref().is_some_and(|reqs| reqs.eq_ignore_ascii_case("CERT_NONE"));
        ConnectionAddr::TcpTls { host, port: settings.redis_port, insecure, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host, settings.redis_port)
    };
    let nonempty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let redis = RedisConnectionInfo {
        db: i64::from(settings.redis_db),
        username: nonempty(&settings.redis_username),
        password: nonempty(&settings.redis_password),
        ..Default::default()
    };
    Ok(ConnectionInfo { addr, redis })
}

impl RedisCoordination {
    /// Connects (retrying for a bounded time) and checks the server answers.
    pub async fn connect(settings: &Settings) -> anyhow::Result<RedisCoordination> {
        let info = connection_info(settings)?;
        let described = format!("{}:{}", settings.redis_host.as_deref().unwrap_or_default(), settings.redis_port);
        let client = Client::open(info).map_err(|e| anyhow::anyhow!("invalid Redis settings ({described}): {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(COORD_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let deadline = tokio::time::Instant::now() + CONNECT_BUDGET;
        let connection = loop {
            let attempt = tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config.clone())).await;
            match attempt {
                Ok(Ok(connection)) => break connection,
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
        };
        let prefix = settings.redis_key_prefix.trim_end_matches(':').to_string();
        Ok(RedisCoordination { client, connection, prefix })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
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
            let mut connection = self.connection();
            bounded(pipe.query_async::<()>(&mut connection)).await
        })
    }

    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.del(self.key(&format!("node:{node_id}"))).ignore().zrem(self.key("nodes"), node_id).ignore();
            let mut connection = self.connection();
            bounded(pipe.query_async::<()>(&mut connection)).await
        })
    }

    fn live_nodes(&self) -> BoxFuture<'_, CoordResult<Vec<NodeInfo>>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let ids: Vec<String> = bounded(connection.zrange(self.key("nodes"), 0, -1)).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| self.key(&format!("node:{id}"))).collect();
            let values: Vec<Option<String>> = bounded(redis::cmd("MGET").arg(&keys).query_async(&mut connection)).await?;
            let mut nodes: Vec<NodeInfo> =
                values.into_iter().flatten().filter_map(|value| serde_json::from_str::<NodeInfo>(&value).ok()).collect();
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(nodes)
        })
    }

    fn set_with_ttl<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let mut connection = self.connection();
            bounded(redis::cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl)).query_async::<()>(&mut connection)).await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CoordResult<Option<String>>> {
        Box::pin(async move {
            let mut connection = self.connection();
            bounded(connection.get(self.key(key))).await
        })
    }

    fn delete_if<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, CoordResult<bool>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let deleted: i64 = bounded(Script::new(DELETE_IF_SCRIPT).key(self.key(key)).arg(value).invoke_async(&mut connection)).await?;
            Ok(deleted == 1)
        })
    }

    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<Option<FencedLock>>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let token: u64 = bounded(connection.incr(self.key(&format!("fence:{name}")), 1)).await?;
            let set: Option<String> = bounded(
                redis::cmd("SET")
                    .arg(self.key(&format!("lock:{name}")))
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut connection),
            )
            .await?;
            Ok(set.map(|_| FencedLock { name: name.to_string(), token }))
        })
    }

    fn unlock<'a>(&'a self, lock: &'a FencedLock) -> BoxFuture<'a, CoordResult<bool>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let key = self.key(&format!("lock:{}", lock.name));
            let deleted: i64 = bounded(Script::new(UNLOCK_SCRIPT).key(key).arg(lock.token).invoke_async(&mut connection)).await?;
            Ok(deleted == 1)
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        Box::pin(async move {
            let mut connection = self.connection();
            bounded(connection.publish::<_, _, ()>(self.key(channel), message)).await
        })
    }

    fn subscribe(&self, channel: &str) -> UnboundedReceiver<SubscriptionEvent> {
        let (sender, receiver) = unbounded_channel();
        tokio::spawn(subscription_loop(self.client.clone(), self.key(channel), sender));
        receiver
    }
}

/// Keeps one subscription standing until the receiver is dropped: subscribe, relay messages, and on
/// a lost connection report `Disconnected` and try again (backoff up to 2 s).
async fn subscription_loop(client: Client, channel: String, sender: UnboundedSender<SubscriptionEvent>) {
    let mut backoff = Duration::from_millis(100);
    let mut connected = false;
    loop {
        let attempt = tokio::time::timeout(COORD_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
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
                        _ = sender.closed() => return,
                    }
                }
                tracing::warn!(%channel, "Redis subscription lost; resubscribing");
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
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = sender.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
