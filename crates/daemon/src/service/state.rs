//! [`AppState`], the handle every HTTP handler and service receives, and how it is opened from the
//! settings; plus the constants services share with start-up (task lease, task messages).
//!
//! It belongs to the service layer so services never reach up to `server` (start-up and shutdown) or
//! `http`. It must not contain request handling or business rules.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use anyhow::Context;

use super::cluster::{Cluster, ClusterInstallationListener};
use super::installation_cache::{InstallationCache, DEFAULT_INSTALLATION_CACHE_CAPACITY};
use super::metrics::Metrics;
use crate::backwards::{BackwardsHandler, DifyBackwards};
use crate::config::{Platform, Settings};
use crate::runtime::{RuntimeConfig, RuntimeManager};
use crate::shutdown::Shutdown;
use crate::store::{BlobStore, Db, PluginKv};

/// Seconds a node's claim on its running install tasks lasts without renewal.
pub const TASK_LEASE_SECS: i64 = 30;
/// Message of tasks interrupted by a daemon stop.
pub const SHUTDOWN_TASK_MESSAGE: &str = "An unexpected daemon shutdown occurred";
/// Message of tasks that outlived their install budget or lost their node.
pub const STALE_TASK_MESSAGE: &str = "Task timed out but not properly terminated";

/// Everything a request handler or service needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// The effective `X-Api-Key` value (configured or generated).
    pub server_key: Arc<str>,
    pub db: Db,
    pub blobs: Arc<dyn BlobStore>,
    pub runtime: Arc<RuntimeManager>,
    /// Answers plugins' backwards invocations (storage in `db`, the rest forwarded to Dify).
    pub backwards: Arc<dyn BackwardsHandler>,
    /// This node's identity, stable across restarts of the same working directory.
    pub node_id: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// Extra trusted public keys (`THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`), parsed at start-up.
    pub extra_public_keys: Arc<Vec<dify_package::PublicKey>>,
    pub active_requests: Arc<AtomicI64>,
    pub active_dispatch_requests: Arc<AtomicI64>,
    /// Slots for background jobs such as plugin installs (`ROUTINE_POOL_SIZE`).
    pub job_slots: Arc<tokio::sync::Semaphore>,
    /// Dispatch's view of installation rows; `db`'s installation writers invalidate it after commit.
    pub installation_cache: Arc<InstallationCache>,
    /// Membership, routing and cross-node cache invalidation (in-process without `REDIS_HOST`).
    pub cluster: Arc<Cluster>,
    /// The stop signal every background task holds; start-up waits on it at shutdown.
    pub shutdown: Shutdown,
}

impl AppState {
    /// Builds the state from settings: opens the database (running migrations) and blob storage.
    pub async fn open(settings: Settings, server_key: String, node_id: String) -> anyhow::Result<AppState> {
        let db = Db::connect(&settings).await.context("cannot open the database")?;
        let coord = crate::coord::open(&settings).await.context("cannot open the coordination backend")?;
        let installation_cache = Arc::new(InstallationCache::new(DEFAULT_INSTALLATION_CACHE_CAPACITY));
        let cluster = Arc::new(Cluster::new(coord, &node_id, &settings, installation_cache.clone())?);
        // In a cluster the other nodes learn of this node's installation writes over pub/sub.
        let db = if cluster.is_shared() {
            db.with_installation_listener(Arc::new(ClusterInstallationListener {
                cache: installation_cache.clone(),
                cluster: cluster.clone(),
            }))
        } else {
            db.with_installation_listener(installation_cache.clone())
        };
        let settings_pool_size = settings.routine_pool_size.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let blobs: Arc<dyn BlobStore> = crate::store::open_blob_store(&settings).await?;
        let mut extra_public_keys = Vec::new();
        for path in settings.third_party_key_paths() {
            let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read third-party public key {}", path.display()))?;
            let key = dify_package::PublicKey::from_pem(&pem)
                .with_context(|| format!("third-party public key {} is not a PEM RSA public key", path.display()))?;
            extra_public_keys.push(key);
        }
        let runtime = RuntimeManager::with_config(RuntimeConfig::from_settings(&settings));
        if settings.platform() == Platform::Serverless {
            crate::runtime::serverless::enable_serverless_platform(&runtime, &settings).await?;
            // In a cluster a function's backwards calls may reach any node: each session's node is recorded.
            if let (true, Some(serverless)) = (cluster.is_shared(), runtime.serverless()) {
                serverless.set_session_directory(cluster.clone());
            }
        }
        let kv = PluginKv::new(db.clone(), blobs.clone(), &settings.persistence_storage_path);
        let moved = kv.move_table_values().await.context("cannot move plugin storage values to the storage")?;
        if moved > 0 {
            tracing::info!(values = moved, "moved plugin storage values from the database to the storage");
        }
        let backwards = Arc::new(DifyBackwards::new(runtime.config(), Arc::new(kv)));
        Ok(AppState {
            settings: Arc::new(settings),
            server_key: server_key.into(),
            db,
            blobs,
            runtime,
            backwards,
            node_id: node_id.into(),
            metrics: Arc::new(Metrics::default()),
            extra_public_keys: Arc::new(extra_public_keys),
            active_requests: Arc::new(AtomicI64::new(0)),
            active_dispatch_requests: Arc::new(AtomicI64::new(0)),
            job_slots: Arc::new(tokio::sync::Semaphore::new(settings_pool_size)),
            installation_cache,
            cluster,
            shutdown: Shutdown::new(),
        })
    }
}
