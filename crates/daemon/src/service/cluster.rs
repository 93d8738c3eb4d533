//! This node's part in a cluster of daemons sharing one database, one Redis and one object store:
//! membership (the heartbeat loop writing this node's registry key and reading the live nodes),
//! keeping the installation cache true across nodes (publishing every installation write, applying
//! the other nodes' writes, and switching the cache off while the subscription or Redis is lost),
//! the routing decision of an invocation ([`Cluster::route`]: serve here or forward to the node that
//! placement or a debugging connection names), the debugging-plugin owner keys, the owner keys of
//! serverless sessions (so a backwards-invocation transaction reaching another node finds the node
//! whose memory holds the session: [`Cluster::session_owner`]), and the housekeeping lock.
//!
//! Without `REDIS_HOST` the backend is in-process: no loop runs, [`Cluster::route`] always answers
//! [`Route::Local`] and the installation cache is the local listener alone, as on a single node.
//! Must not: know HTTP (the forwarding itself is `http`'s), SQL or runtimes beyond asking whether a
//! plugin runs here.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::installation_cache::InstallationCache;
use super::state::AppState;
use super::Installation;
use crate::config::Settings;
use crate::coord::{placement, Coordination, FencedLock, NodeInfo, SubscriptionEvent, HEARTBEAT_INTERVAL, NODE_TTL};
use crate::runtime::serverless::SessionDirectory;
use crate::runtime::RuntimeConfig;
use crate::store::{InstallationWriteListener, RuntimeType};

/// Header a forwarded request carries (the forwarding node's id): its receiver serves it itself
/// when the request also carries the cluster key.
pub const FORWARDED_HEADER: &str = "x-dify-forwarded-by";
/// Header carrying the server key between nodes (a public endpoint caller's own `X-Api-Key` is
/// theirs and travels to the plugin untouched). Never handed to a plugin.
pub const CLUSTER_KEY_HEADER: &str = "x-dify-cluster-key";
/// Channel of installation writes.
const INSTALLATIONS_CHANNEL: &str = "installations";
/// How long a node that refused a forwarded request is skipped by this node's routing.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5);
/// How long the housekeeping lock is held (a little shorter than the housekeeping interval).
pub const HOUSEKEEPING_LOCK_TTL: Duration = Duration::from_secs(4);
/// Longest session id looked up in the coordination backend (the daemon's ids are UUIDs).
const MAX_SESSION_ID_LEN: usize = 128;

/// Where an invocation is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this node (find or lazily launch the runtime here).
    Local,
    /// On another node: forward the request to it.
    Forward(NodeInfo),
}

/// One installation write, as published to the other nodes.
#[derive(Debug, Serialize, Deserialize)]
struct InstallationWrite {
    /// The writing node (it has applied the write to its own cache already).
    from: String,
    /// `None`: every installation may have changed.
    tenant_id: Option<String>,
    plugin_id: Option<String>,
}

/// The cluster side of the node, held by [`AppState`].
pub struct Cluster {
    coord: Arc<dyn Coordination>,
    node_id: String,
    replicas: usize,
    cache: Arc<InstallationCache>,
    advertise: OnceLock<NodeInfo>,
    /// The registry as last read (refreshed every heartbeat).
    nodes: RwLock<Vec<NodeInfo>>,
    /// Nodes that refused a forwarded request, with when.
    unreachable: Mutex<HashMap<String, Instant>>,
    /// Plugins being launched here in the background because placement moved them here.
    warming: Mutex<HashSet<String>>,
    /// Debugging-plugin owner keys this node holds (renewed by the heartbeat).
    debug_keys: Mutex<HashSet<String>>,
    /// Serverless sessions running here → when their owner key was last written (`None`: not yet,
    /// the heartbeat retries). Keys live `session_ttl` and are renewed by the heartbeat after half of it.
    sessions: Mutex<HashMap<String, Option<Instant>>>,
    session_ttl: Duration,
    /// Whether the installation subscription stands.
    subscribed: AtomicBool,
    /// Whether the last heartbeat reached the backend.
    healthy: AtomicBool,
    /// Spreads forwarded requests over the placed nodes.
    next: AtomicUsize,
    /// Installation writes to publish (filled by the store's listener, drained by a task).
    outbox: UnboundedSender<String>,
    outbox_receiver: Mutex<Option<UnboundedReceiver<String>>>,
    client: reqwest::Client,
    idle_timeout: Duration,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// The cluster side for `coord`. A shared backend starts with the installation cache off until
    /// the subscription stands.
    pub fn new(coord: Arc<dyn Coordination>, node_id: &str, settings: &Settings, cache: Arc<InstallationCache>) -> anyhow::Result<Cluster> {
        let (outbox, outbox_receiver) = unbounded_channel();
        if coord.is_shared() {
            cache.set_available(false);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.cluster_forward_connect_timeout.max(1)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            // A forwarded answer is passed on as it is: a plugin endpoint's redirect is for its caller.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Cluster {
            coord,
            node_id: node_id.to_string(),
            replicas: settings.plugin_placement_replicas,
            cache,
            advertise: OnceLock::new(),
            nodes: RwLock::new(Vec::new()),
            unreachable: Mutex::new(HashMap::new()),
            debug_keys: Mutex::new(HashSet::new()),
            sessions: Mutex::new(HashMap::new()),
            // A session lasts one invocation: the key outlives it unless renewed (long sessions are).
            session_ttl: RuntimeConfig::from_settings(settings).max_execution_timeout.max(NODE_TTL),
            warming: Mutex::new(HashSet::new()),
            subscribed: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            outbox,
            outbox_receiver: Mutex::new(Some(outbox_receiver)),
            client,
            idle_timeout: Duration::from_secs(settings.cluster_forward_idle_timeout.max(1)),
        })
    }

    /// Whether several nodes share the backend.
    pub fn is_shared(&self) -> bool {
        self.coord.is_shared()
    }

    /// The coordination backend.
    pub fn coord(&self) -> &Arc<dyn Coordination> {
        &self.coord
    }

    /// The HTTP client for forwarded requests (connect timeout set).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// How long a forwarded request may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The live nodes as last read.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Remembers that `node_id` refused a request: routing skips it for a few seconds.
    pub fn mark_unreachable(&self, node_id: &str) {
        locked(&self.unreachable).insert(node_id.to_string(), Instant::now());
    }

    fn is_unreachable(&self, node_id: &str) -> bool {
        locked(&self.unreachable).get(node_id).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR)
    }

    fn update_cache_availability(&self) {
        let available = self.subscribed.load(Ordering::SeqCst) && self.healthy.load(Ordering::SeqCst);
        self.cache.set_available(available);
    }

    /// Where `installation`'s invocation is served. `forwarded`: the request came from another node
    /// (it is never forwarded twice).
    pub async fn route(&self, state: &AppState, installation: &Installation, forwarded: bool) -> Route {
        if forwarded || !self.is_shared() {
            return Route::Local;
        }
        let uid = installation.plugin_unique_identifier.as_str();
        match installation.runtime_type {
            Some(RuntimeType::Remote) => {
                if state.runtime.plugin(uid).is_some() {
                    return Route::Local;
                }
                let key = debug_key(&installation.tenant_id, uid);
                match self.coord.get(&key).await {
                    Ok(Some(owner)) if owner != self.node_id => match self.nodes().into_iter().find(|node| node.id == owner) {
                        Some(node) => Route::Forward(node),
                        None => Route::Local,
                    },
                    Ok(_) => Route::Local,
                    Err(error) => {
                        tracing::warn!(%error, plugin = uid, "cannot look up the node of a debugging plugin");
                        Route::Local
                    }
                }
            }
            Some(RuntimeType::Local) => {
                let mut nodes = self.nodes();
                if let Some(me) = self.advertise.get() {
                    if !nodes.iter().any(|node| node.id == me.id) {
                        nodes.push(me.clone());
                    }
                }
                let placed = placement(uid, &nodes, self.replicas);
                if placed.is_empty() {
                    return Route::Local;
                }
                let placed_here = placed.iter().any(|node| node.id == self.node_id);
                let running_here = state.runtime.plugin(uid).is_some();
                if placed_here && running_here {
                    return Route::Local;
                }
                let candidates: Vec<&NodeInfo> =
                    placed.into_iter().filter(|node| node.id != self.node_id && !self.is_unreachable(&node.id)).collect();
                if candidates.is_empty() {
                    return Route::Local;
                }
                if placed_here {
                    // Placement just moved the plugin here (a node left or joined): the other placed
                    // nodes serve while it is launched here in the background, so callers do not
                    // wait for a cold start.
                    if locked(&self.warming).insert(uid.to_string()) {
                        super::invocation::warm_up(state, installation);
                    }
                }
                let pick = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
                Route::Forward(candidates[pick].clone())
            }
            _ => Route::Local,
        }
    }

    /// A background launch started by [`route`](Self::route) ended (whether or not it succeeded).
    pub fn warmed(&self, uid: &str) {
        locked(&self.warming).remove(uid);
    }

    /// Records that this node holds the debugging plugin `uid` of `tenant_id`.
    pub async fn register_debug(&self, tenant_id: &str, uid: &str) {
        if !self.is_shared() {
            return;
        }
        let key = debug_key(tenant_id, uid);
        locked(&self.debug_keys).insert(key.clone());
        if let Err(error) = self.coord.set_with_ttl(&key, &self.node_id, NODE_TTL).await {
            tracing::warn!(%error, plugin = uid, "cannot register the debugging plugin's node (the heartbeat retries)");
        }
    }

    /// Forgets that this node holds the debugging plugin `uid` of `tenant_id`.
    pub async fn unregister_debug(&self, tenant_id: &str, uid: &str) {
        if !self.is_shared() {
            return;
        }
        let key = debug_key(tenant_id, uid);
        locked(&self.debug_keys).remove(&key);
        if let Err(error) = self.coord.delete_if(&key, &self.node_id).await {
            tracing::warn!(%error, plugin = uid, "cannot remove the debugging plugin's node key (it expires)");
        }
    }

    /// The live node, other than this one, whose memory holds serverless session `session_id`: named
    /// by the session's owner key and present in the registry. `None` without a shared backend, for an
    /// unknown session, a session of this node, an owner that left the registry, or when the backend
    /// cannot be asked.
    pub async fn session_owner(&self, session_id: &str) -> Option<NodeInfo> {
        if !self.is_shared() || session_id.is_empty() || session_id.len() > MAX_SESSION_ID_LEN {
            return None;
        }
        let owner = match self.coord.get(&session_key(session_id)).await {
            Ok(Some(owner)) if owner != self.node_id => owner,
            Ok(_) => return None,
            Err(error) => {
                tracing::warn!(%error, session_id, "cannot look up the node of a serverless session");
                return None;
            }
        };
        if let Some(node) = self.nodes().into_iter().find(|node| node.id == owner) {
            return Some(node);
        }
        // The registry as last read may predate the owner's first heartbeat.
        match self.coord.live_nodes().await {
            Ok(nodes) => nodes.into_iter().find(|node| node.id == owner),
            Err(error) => {
                tracing::warn!(%error, "cannot read the cluster's live nodes");
                None
            }
        }
    }

    async fn write_session_key(&self, session_id: &str) {
        match self.coord.set_with_ttl(&session_key(session_id), &self.node_id, self.session_ttl).await {
            Ok(()) => {
                let ended = match locked(&self.sessions).get_mut(session_id) {
                    Some(written) => {
                        *written = Some(Instant::now());
                        false
                    }
                    None => true,
                };
                // The session ended while its key was being renewed: take the key back.
                if ended {
                    let _ = self.coord.delete_if(&session_key(session_id), &self.node_id).await;
                }
            }
            Err(error) => tracing::warn!(%error, session_id, "cannot record the node of a serverless session (the heartbeat retries)"),
        }
    }

    /// Takes the cluster-wide housekeeping lock; `None` when another node holds it (or, with a
    /// shared backend that cannot be reached, when nobody can tell).
    pub async fn housekeeping_lock(&self) -> Option<FencedLock> {
        match self.coord.lock("housekeeping", HOUSEKEEPING_LOCK_TTL).await {
            Ok(lock) => lock,
            Err(error) => {
                tracing::warn!(%error, "cannot take the housekeeping lock; skipping the shared jobs this round");
                None
            }
        }
    }

    async fn heartbeat_once(&self) {
        let Some(me) = self.advertise.get() else { return };
        let result = self.coord.heartbeat(me, NODE_TTL).await;
        let was_healthy = self.healthy.swap(result.is_ok(), Ordering::SeqCst);
        match &result {
            Ok(()) if !was_healthy => tracing::info!(node = %self.node_id, url = %me.url, "joined the cluster"),
            Err(error) if was_healthy => {
                tracing::error!(%error, "cluster heartbeat failed; installation cache off until Redis answers again")
            }
            _ => {}
        }
        self.update_cache_availability();
        if result.is_err() {
            return;
        }
        let keys: Vec<String> = locked(&self.debug_keys).iter().cloned().collect();
        for key in keys {
            if let Err(error) = self.coord.set_with_ttl(&key, &self.node_id, NODE_TTL).await {
                tracing::warn!(%error, %key, "cannot renew a debugging plugin's node key");
            }
        }
        let due: Vec<String> = locked(&self.sessions)
            .iter()
            .filter(|(_, written)| written.is_none_or(|at| at.elapsed() >= self.session_ttl / 2))
            .map(|(session_id, _)| session_id.clone())
            .collect();
        for session_id in due {
            self.write_session_key(&session_id).await;
        }
        match self.coord.live_nodes().await {
            Ok(nodes) => *self.nodes.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = nodes,
            Err(error) => tracing::warn!(%error, "cannot read the cluster's live nodes"),
        }
        locked(&self.unreachable).retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
    }

    fn apply(&self, event: SubscriptionEvent) {
        match event {
            SubscriptionEvent::Connected => {
                self.subscribed.store(true, Ordering::SeqCst);
                // Writes may have been missed while unsubscribed: start empty.
                self.cache.invalidate_all();
                self.update_cache_availability();
            }
            SubscriptionEvent::Disconnected => {
                tracing::warn!("installation invalidations lost; installation cache off until resubscribed");
                self.subscribed.store(false, Ordering::SeqCst);
                self.update_cache_availability();
            }
            SubscriptionEvent::Message(text) => match serde_json::from_str::<InstallationWrite>(&text) {
                Ok(write) if write.from == self.node_id => {}
                Ok(InstallationWrite { tenant_id: Some(tenant), plugin_id: Some(plugin), .. }) => self.cache.invalidate(&tenant, &plugin),
                Ok(_) => self.cache.invalidate_all(),
                Err(error) => {
                    tracing::warn!(%error, "unreadable installation invalidation; dropping every cached installation");
                    self.cache.invalidate_all();
                }
            },
        }
    }

    async fn publish_write(&self, text: &str) {
        if let Err(error) = self.coord.publish(INSTALLATIONS_CHANNEL, text).await {
            tracing::error!(%error, "cannot publish an installation write; other nodes drop their caches when they resubscribe");
        }
    }

    fn queue(&self, tenant_id: Option<&str>, plugin_id: Option<&str>) {
        let write = InstallationWrite {
            from: self.node_id.clone(),
            tenant_id: tenant_id.map(str::to_owned),
            plugin_id: plugin_id.map(str::to_owned),
        };
        if let Ok(text) = serde_json::to_string(&write) {
            let _ = self.outbox.send(text);
        }
    }
}

fn debug_key(tenant_id: &str, uid: &str) -> String {
    format!("debug:{tenant_id}:{uid}")
}

fn session_key(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// The owner keys of this node's serverless sessions: written before the session's function is
/// called, deleted (if still this node's) when the session ends. Set on the serverless runtime only
/// when the backend is shared.
impl SessionDirectory for Cluster {
    fn opened<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            locked(&self.sessions).insert(session_id.to_string(), None);
            self.write_session_key(session_id).await;
        })
    }

    fn closed<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            locked(&self.sessions).remove(session_id);
            if let Err(error) = self.coord.delete_if(&session_key(session_id), &self.node_id).await {
                tracing::warn!(%error, session_id, "cannot remove a serverless session's node key (it expires)");
            }
        })
    }
}

/// The store's installation listener in a cluster: drops the entry here at once and publishes the
/// write to the other nodes.
pub struct ClusterInstallationListener {
    pub cache: Arc<InstallationCache>,
    pub cluster: Arc<Cluster>,
}

impl InstallationWriteListener for ClusterInstallationListener {
    fn installation_written(&self, tenant_id: &str, plugin_id: &str) {
        self.cache.invalidate(tenant_id, plugin_id);
        self.cluster.queue(Some(tenant_id), Some(plugin_id));
    }

    fn installations_written(&self) {
        self.cache.invalidate_all();
        self.cluster.queue(None, None);
    }
}

/// The URL other nodes reach this node at: `CLUSTER_ADVERTISE_URL`, else the bound address with an
/// unspecified host replaced by loopback.
pub fn advertise_url(settings: &Settings, bound: SocketAddr) -> String {
    if let Some(url) = settings.cluster_advertise_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    let host = if bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { bound.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    format!("http://{host}:{}", bound.port())
}

/// Joins the cluster once the HTTP listener is bound: first heartbeat, then (tracked by the
/// shutdown handle) the heartbeat loop, the publisher of installation writes and the subscriber of
/// the other nodes' writes. Leaves the registry on shutdown. Nothing runs without a shared backend.
pub async fn join(state: &AppState, bound: SocketAddr) {
    let cluster = state.cluster.clone();
    if !cluster.is_shared() {
        return;
    }
    let me = NodeInfo { id: state.node_id.to_string(), url: advertise_url(&state.settings, bound) };
    let _ = cluster.advertise.set(me);
    // Subscribe first, so nothing published after our first dispatch is missed.
    let mut events = cluster.coord.subscribe(INSTALLATIONS_CHANNEL);
    {
        let cluster = cluster.clone();
        let stop = state.shutdown.clone();
        state.shutdown.spawn(async move {
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(event) => cluster.apply(event),
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    if let Some(mut outbox) = locked(&cluster.outbox_receiver).take() {
        let cluster = cluster.clone();
        let stop = state.shutdown.clone();
        state.shutdown.spawn(async move {
            loop {
                let text = tokio::select! {
                    text = outbox.recv() => match text { Some(text) => text, None => return },
                    _ = stop.cancelled() => break,
                };
                cluster.publish_write(&text).await;
            }
            // A write committed during shutdown still reaches the other nodes.
            while let Ok(text) = outbox.try_recv() {
                cluster.publish_write(&text).await;
            }
        });
    }
    cluster.heartbeat_once().await;
    let stop = state.shutdown.clone();
    state.shutdown.spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => cluster.heartbeat_once().await,
                _ = stop.cancelled() => break,
            }
        }
        if let Err(error) = cluster.coord.leave(&cluster.node_id).await {
            tracing::warn!(%error, "cannot leave the cluster registry (the key expires)");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_url_defaults_to_the_bound_address() {
        let settings = Settings::from_lookup_lenient(&|_| None).0;
        assert_eq!(advertise_url(&settings, "0.0.0.0:5002".parse().unwrap()), "http://127.0.0.1:5002");
        assert_eq!(advertise_url(&settings, "10.1.2.3:80".parse().unwrap()), "http://10.1.2.3:80");
        assert_eq!(advertise_url(&settings, "[::1]:80".parse().unwrap()), "http://[::1]:80");
        let settings =
            Settings::from_lookup_lenient(&|name| (name == "CLUSTER_ADVERTISE_URL").then(|| "http://node-a:5002/".to_string())).0;
        assert_eq!(advertise_url(&settings, "0.0.0.0:5002".parse().unwrap()), "http://node-a:5002");
    }
}
