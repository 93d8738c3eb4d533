//! Coordination between daemon nodes: the [`Coordination`] seam and its two implementations,
//! in-process ([`local::LocalCoordination`], the default: one node, nothing shared) and Redis
//! ([`redis::RedisCoordination`], chosen by `REDIS_HOST` or `REDIS_USE_SENTINEL`), plus the placement function
//! ([`placement`]) that maps a plugin onto live nodes.
//!
//! Owns: the node registry (heartbeat keys with a TTL), keys with a TTL, locks with fencing tokens
//! and pub/sub channels, and their key layout under `REDIS_KEY_PREFIX`. Must not: know about
//! installations, runtimes, HTTP or the database (the service layer gives these primitives their
//! meaning).

pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// How often a node renews its registry key.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a node's registry key lives without renewal: a node is live while its key exists.
pub const NODE_TTL: Duration = Duration::from_secs(3);
/// Bound of one round trip to the coordination backend.
pub const COORD_TIMEOUT: Duration = Duration::from_secs(2);

/// One daemon node as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// Base URL of the node's HTTP API for other nodes (`CLUSTER_ADVERTISE_URL`).
    pub url: String,
}

/// A held lock: `token` grows with every acquisition of the same name, so a writer that lost its
/// lock (expired while paused) can be told apart from the current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedLock {
    pub name: String,
    pub token: u64,
}

/// What a subscriber receives, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// Subscribed (again): messages published from now on arrive; earlier ones may have been missed.
    Connected,
    /// The subscription is lost: messages may be missed until the next `Connected`.
    Disconnected,
    Message(String),
}

/// Why a coordination call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("coordination backend (Redis) unavailable: {0}")]
    Unavailable(String),
    #[error("coordination backend (Redis) did not answer within {0:?}")]
    Timeout(Duration),
}

pub type CoordResult<T> = Result<T, CoordError>;

/// The coordination backend. Every call is bounded by [`COORD_TIMEOUT`].
pub trait Coordination: Send + Sync + 'static {
    /// Whether other processes share this backend (Redis); `false` for the in-process one.
    fn is_shared(&self) -> bool;
    /// Writes (or renews) `node`'s registry key with time to live `ttl`.
    fn heartbeat<'a>(&'a self, node: &'a NodeInfo, ttl: Duration) -> BoxFuture<'a, CoordResult<()>>;
    /// Removes `node_id`'s registry key (clean shutdown).
    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, CoordResult<()>>;
    /// The nodes whose registry keys exist, sorted by id.
    fn live_nodes(&self) -> BoxFuture<'_, CoordResult<Vec<NodeInfo>>>;
    /// Sets `key` (below the prefix) to `value`, expiring after `ttl`.
    fn set_with_ttl<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<()>>;
    /// The value of `key`, if it exists.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CoordResult<Option<String>>>;
    /// Deletes `key` if its value is `value`; whether it did.
    fn delete_if<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, CoordResult<bool>>;
    /// Takes the lock `name` for `ttl` unless someone holds it; `None` when held elsewhere.
    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<Option<FencedLock>>>;
    /// Releases `lock` if it is still the holder's (its token is current); whether it was.
    fn unlock<'a>(&'a self, lock: &'a FencedLock) -> BoxFuture<'a, CoordResult<bool>>;
    /// Sends `message` to every subscriber of `channel` (on every node, this one included).
    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> BoxFuture<'a, CoordResult<()>>;
    /// Subscribes to `channel`; the first event is `Connected` once the subscription stands. The
    /// subscription ends when the receiver is dropped.
    fn subscribe(&self, channel: &str) -> tokio::sync::mpsc::UnboundedReceiver<SubscriptionEvent>;
}

/// The backend the settings choose: Redis when `REDIS_HOST` is set or `REDIS_USE_SENTINEL` is on
/// (connecting, bounded), else in-process.
pub async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Coordination>> {
    if settings.redis_enabled() {
        Ok(Arc::new(redis::RedisCoordination::connect(settings).await?))
    } else {
        Ok(Arc::new(local::LocalCoordination::default()))
    }
}

/// Where plugin `plugin` runs: the `replicas` nodes of `nodes` with the highest rendezvous weight
/// for it, best first. Every node computes the same answer from the same registry, a node joining or
/// leaving moves only the plugins whose top set it enters or leaves, and no table is stored.
/// `replicas == 0` or an empty registry gives an empty list (serve where the request arrived).
pub fn placement<'a>(plugin: &str, nodes: &'a [NodeInfo], replicas: usize) -> Vec<&'a NodeInfo> {
    let mut weighted: Vec<(u64, &NodeInfo)> = nodes.iter().map(|node| (rendezvous_weight(&node.id, plugin), node)).collect();
    // Ties (practically impossible) break by id so every node orders alike.
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    weighted.into_iter().take(replicas).map(|(_, node)| node).collect()
}

/// A 64-bit weight of `(node, plugin)`: FNV-1a over both (with a separator) and a final avalanche
/// (SplitMix64's finaliser), identical on every build and platform.
pub fn rendezvous_weight(node_id: &str, plugin: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node_id.bytes().chain(std::iter::once(0xff)).chain(plugin.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (0..n).map(|i| NodeInfo { id: format!("node-{i}"), url: format!("http://127.0.0.1:{}", 5000 + i) }).collect()
    }

    #[test]
    fn placement_is_stable_spread_and_moves_little() {
        let five = nodes(5);
        let plugins: Vec<String> = (0..2000).map(|i| format!("author/p{i}:0.0.1@{i:064}")).collect();
        let mut counts = std::collections::HashMap::new();
        for plugin in &plugins {
            let placed = placement(plugin, &five, 2);
            assert_eq!(placed.len(), 2);
            assert_ne!(placed[0].id, placed[1].id);
            assert_eq!(placed, placement(plugin, &five, 2), "deterministic");
            *counts.entry(placed[0].id.clone()).or_insert(0usize) += 1;
        }
        // Each of 5 nodes owns about 400 of 2000 plugins.
        for (node, count) in &counts {
            assert!((300..=500).contains(count), "{node} owns {count}");
        }
        // Removing node-4 moves only the plugins it owned.
        let four = &five[..4];
        let moved = plugins
            .iter()
            .filter(|p| placement(p, &five, 1)[0].id != "node-4" && placement(p, &five, 1)[0] != placement(p, four, 1)[0])
            .count();
        assert_eq!(moved, 0);
        assert!(placement("x", &five, 0).is_empty());
        assert!(placement("x", &[], 2).is_empty());
        assert_eq!(placement("x", &five, 9).len(), 5);
    }
}
