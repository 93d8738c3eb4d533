//! The in-memory answer to "which installation of `plugin_id` does this tenant have", so that
//! dispatch does not run a SQL query per invocation.
//!
//! It owns only the map and its consistency rule: entries are dropped by the writes that change
//! installation rows (the store's install, uninstall and upgrade functions notify their
//! [`InstallationWriteListener`], which this cache is, after they commit), never by a timer. It must not read the
//! database itself; [`crate::service::find_installation`] fills it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Installation;
use crate::store::InstallationWriteListener;

/// How many `(tenant, plugin_id)` entries the cache keeps by default.
pub const DEFAULT_INSTALLATION_CACHE_CAPACITY: usize = 16_384;

/// `(tenant, plugin_id)` → the tenant's installation, with its identifier and declaration parsed.
///
/// Consistency: every write of `plugin_installations` (or of a declaration an installation joins)
/// goes through a `Db` function that, once its transaction has committed, tells the store's
/// [`InstallationWriteListener`] (this cache, registered by `AppState::open`), which calls
/// [`invalidate`](Self::invalidate) or [`invalidate_all`](Self::invalidate_all). A reader takes the
/// [`generation`](Self::generation) *before* its SQL lookup and [`insert`](Self::insert)s with it; an
/// insert whose generation is no longer current is dropped, so a lookup that raced with a write can
/// never leave the old row behind.
///
/// Several nodes: this only sees the writes of its own process. With several daemons sharing one
/// database (`REDIS_HOST` set), `service::cluster` publishes each write over Redis and every node
/// applies the others' writes here; while that subscription (or Redis) is lost the cluster marks the
/// cache [unavailable](Self::set_available), so a node never answers from entries that may have
/// missed an invalidation.
pub struct InstallationCache {
    capacity: usize,
    inner: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Bumped by every invalidation.
    generation: u64,
    /// Cleared while invalidations may be missed (see [`InstallationCache::set_available`]).
    unavailable: bool,
    entries: HashMap<(String, String), Arc<Installation>>,
}

impl InstallationCache {
    /// A cache keeping at most `capacity` entries; 0 disables it (every lookup misses).
    pub fn new(capacity: usize) -> InstallationCache {
        InstallationCache { capacity, inner: Mutex::new(CacheState::default()) }
    }

    /// Whether entries are kept at all.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    fn state(&self) -> MutexGuard<'_, CacheState> {
        // The lock guards plain map operations that cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached installation, if any.
    pub fn get(&self, tenant_id: &str, plugin_id: &str) -> Option<Arc<Installation>> {
        if !self.is_enabled() {
            return None;
        }
        let state = self.state();
        if state.unavailable {
            return None;
        }
        state.entries.get(&(tenant_id, plugin_id) as &dyn KeyPair).cloned()
    }

    /// The current generation; take it before reading the row that will be [`insert`](Self::insert)ed.
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Keeps `installation` unless an invalidation happened since `generation` was taken. When full,
    /// an arbitrary entry makes room.
    pub fn insert(&self, generation: u64, installation: Arc<Installation>) {
        if !self.is_enabled() {
            return;
        }
        let mut state = self.state();
        if state.generation != generation || state.unavailable {
            return;
        }
        let key = (installation.tenant_id.clone(), installation.plugin_id.clone());
        if !state.entries.contains_key(&key) && state.entries.len() >= self.capacity {
            if let Some(victim) = state.entries.keys().next().cloned() {
                state.entries.remove(&victim);
            }
        }
        state.entries.insert(key, installation);
    }

    /// Drops the tenant's entry for `plugin_id`; called after a committed write of that row.
    pub fn invalidate(&self, tenant_id: &str, plugin_id: &str) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.remove(&(tenant_id, plugin_id) as &dyn KeyPair);
    }

    /// Drops every entry; for writes whose affected keys are unknown.
    pub fn invalidate_all(&self) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.clear();
    }

    /// Turns the cache off (dropping every entry, every lookup misses) or on again. A cluster node
    /// turns it off while it may be missing other nodes' invalidations.
    pub fn set_available(&self, available: bool) {
        let mut state = self.state();
        if state.unavailable != available {
            return;
        }
        state.unavailable = !available;
        state.generation = state.generation.wrapping_add(1);
        state.entries.clear();
    }

    /// Whether lookups are currently served (enabled and available).
    pub fn is_serving(&self) -> bool {
        self.is_enabled() && !self.state().unavailable
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `(tenant, plugin_id)` key, owned or borrowed, so a lookup needs no owned copy of the key.
trait KeyPair {
    fn pair(&self) -> (&str, &str);
}

impl KeyPair for (String, String) {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl KeyPair for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn KeyPair + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn KeyPair + 'a) {
        self
    }
}

/// Hashes as the owned tuple does (each string in turn), as `Borrow` requires.
impl Hash for dyn KeyPair + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pair().hash(state);
    }
}

impl PartialEq for dyn KeyPair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for dyn KeyPair + '_ {}

impl InstallationWriteListener for InstallationCache {
    fn installation_written(&self, tenant_id: &str, plugin_id: &str) {
        self.invalidate(tenant_id, plugin_id);
    }

    fn installations_written(&self) {
        self.invalidate_all();
    }
}

impl std::fmt::Debug for InstallationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationCache").field("capacity", &self.capacity).field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dify_protocol::PluginUniqueIdentifier;

    fn installation(tenant: &str, plugin_id: &str) -> Arc<Installation> {
        let uid = format!("{plugin_id}:0.0.1@{}", "a".repeat(64));
        Arc::new(Installation {
            id: "row".into(),
            tenant_id: tenant.into(),
            plugin_id: plugin_id.into(),
            plugin_unique_identifier: PluginUniqueIdentifier::parse(&uid).expect("valid identifier"),
            runtime_type: Some(crate::store::RuntimeType::Local),
            source: "package".into(),
            meta: serde_json::json!({}),
            declaration: None,
        })
    }

    #[test]
    fn invalidation_drops_the_key_and_rejects_a_racing_insert() {
        let cache = InstallationCache::new(8);
        let g = cache.generation();
        cache.insert(g, installation("t1", "a/one"));
        cache.insert(g, installation("t1", "a/two"));
        assert!(cache.get("t1", "a/one").is_some());
        let before_write = cache.generation();
        cache.invalidate("t1", "a/one");
        assert!(cache.get("t1", "a/one").is_none());
        assert!(cache.get("t1", "a/two").is_some(), "other keys stay");
        // A lookup that started before the write must not put its (old) row back.
        cache.insert(before_write, installation("t1", "a/one"));
        assert!(cache.get("t1", "a/one").is_none());
        cache.invalidate_all();
        assert!(cache.is_empty());
    }

    #[test]
    fn size_is_bounded_and_zero_capacity_disables() {
        let cache = InstallationCache::new(3);
        for i in 0..10 {
            cache.insert(cache.generation(), installation("t", &format!("a/p{i}")));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get("t", "a/p9").is_some());
        cache.set_available(false);
        assert!(cache.get("t", "a/p9").is_none(), "unavailable: every lookup misses");
        let g = cache.generation();
        cache.insert(g, installation("t", "a/p1"));
        cache.set_available(true);
        assert!(cache.is_empty(), "nothing was kept while unavailable");
        cache.insert(cache.generation(), installation("t", "a/p1"));
        assert!(cache.get("t", "a/p1").is_some());
        let disabled = InstallationCache::new(0);
        disabled.insert(disabled.generation(), installation("t", "a/p"));
        assert!(disabled.get("t", "a/p").is_none());
    }
}
