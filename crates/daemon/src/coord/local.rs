//! The in-process [`Coordination`]: one node, maps behind a mutex, channels to this process's
//! subscribers. The default (no `REDIS_HOST`); the registry then only ever holds this node.
//!
//! Owns nothing beyond its maps; expiry is checked when a key is read.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{CoordResult, Coordination, FencedLock, NodeInfo, SubscriptionEvent};

#[derive(Default)]
struct Maps {
    keys: HashMap<String, (String, Instant)>,
    nodes: HashMap<String, (NodeInfo, Instant)>,
    locks: HashMap<String, (u64, Instant)>,
    fences: HashMap<String, u64>,
    subscribers: HashMap<String, Vec<UnboundedSender<SubscriptionEvent>>>,
}

/// Coordination inside one process.
#[derive(Default)]
pub struct LocalCoordination {
    maps: Mutex<Maps>,
}

impl LocalCoordination {
    fn maps(&self) -> MutexGuard<'_, Maps> {
        // Plain map operations cannot leave the maps half-updated.
        self.maps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Coordination for LocalCoordination {
    fn is_shared(&self) -> bool {
        false
    }

    fn heartbeat<'a>(&'a self, node: &'a NodeInfo, ttl: Duration) -> BoxFuture<'a, CoordResult<()>> {
        self.maps().nodes.insert(node.id.clone(), (node.clone(), Instant::now() + ttl));
        ready(Ok(()))
    }

    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        self.maps().nodes.remove(node_id);
        ready(Ok(()))
    }

    fn live_nodes(&self) -> BoxFuture<'_, CoordResult<Vec<NodeInfo>>> {
        let now = Instant::now();
        let mut maps = self.maps();
        maps.nodes.retain(|_, (_, expiry)| *expiry > now);
        let mut nodes: Vec<NodeInfo> = maps.nodes.values().map(|(node, _)| node.clone()).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        ready(Ok(nodes))
    }

    fn set_with_ttl<'a>(&'a self, key: &'a str, value: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<()>> {
        self.maps().keys.insert(key.to_string(), (value.to_string(), Instant::now() + ttl));
        ready(Ok(()))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, CoordResult<Option<String>>> {
        let now = Instant::now();
        let value = self.maps().keys.get(key).filter(|(_, expiry)| *expiry > now).map(|(value, _)| value.clone());
        ready(Ok(value))
    }

    fn delete_if<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, CoordResult<bool>> {
        let mut maps = self.maps();
        let matches = maps.keys.get(key).is_some_and(|(current, expiry)| current == value && *expiry > Instant::now());
        if matches {
            maps.keys.remove(key);
        }
        ready(Ok(matches))
    }

    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, CoordResult<Option<FencedLock>>> {
        let now = Instant::now();
        let mut maps = self.maps();
        if maps.locks.get(name).is_some_and(|(_, expiry)| *expiry > now) {
            return ready(Ok(None));
        }
        let token = {
            let fence = maps.fences.entry(name.to_string()).or_insert(0);
            *fence += 1;
            *fence
        };
        maps.locks.insert(name.to_string(), (token, now + ttl));
        ready(Ok(Some(FencedLock { name: name.to_string(), token })))
    }

    fn unlock<'a>(&'a self, lock: &'a FencedLock) -> BoxFuture<'a, CoordResult<bool>> {
        let mut maps = self.maps();
        let owner = maps.locks.get(&lock.name).is_some_and(|(token, expiry)| *token == lock.token && *expiry > Instant::now());
        if owner {
            maps.locks.remove(&lock.name);
        }
        ready(Ok(owner))
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a str) -> BoxFuture<'a, CoordResult<()>> {
        if let Some(subscribers) = self.maps().subscribers.get_mut(channel) {
            subscribers.retain(|sender| sender.send(SubscriptionEvent::Message(message.to_string())).is_ok());
        }
        ready(Ok(()))
    }

    fn subscribe(&self, channel: &str) -> UnboundedReceiver<SubscriptionEvent> {
        let (sender, receiver) = unbounded_channel();
        let _ = sender.send(SubscriptionEvent::Connected);
        self.maps().subscribers.entry(channel.to_string()).or_default().push(sender);
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_locks_nodes_and_channels() {
        let coord = LocalCoordination::default();
        coord.set_with_ttl("k", "v", Duration::from_secs(60)).await.unwrap();
        assert_eq!(coord.get("k").await.unwrap().as_deref(), Some("v"));
        assert!(!coord.delete_if("k", "other").await.unwrap());
        assert!(coord.delete_if("k", "v").await.unwrap());
        assert_eq!(coord.get("k").await.unwrap(), None);
        coord.set_with_ttl("short", "v", Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(coord.get("short").await.unwrap(), None, "expired");

        let first = coord.lock("job", Duration::from_secs(60)).await.unwrap().expect("free");
        assert!(coord.lock("job", Duration::from_secs(60)).await.unwrap().is_none(), "held");
        assert!(coord.unlock(&first).await.unwrap());
        let second = coord.lock("job", Duration::from_millis(1)).await.unwrap().expect("free again");
        assert!(second.token > first.token, "fencing tokens grow");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let third = coord.lock("job", Duration::from_secs(60)).await.unwrap().expect("expired lock is free");
        assert!(!coord.unlock(&second).await.unwrap(), "a lost lock cannot release the new holder's");
        assert!(coord.unlock(&third).await.unwrap());

        let node = NodeInfo { id: "n1".into(), url: "http://127.0.0.1:1".into() };
        coord.heartbeat(&node, Duration::from_secs(60)).await.unwrap();
        assert_eq!(coord.live_nodes().await.unwrap(), vec![node.clone()]);
        coord.leave("n1").await.unwrap();
        assert!(coord.live_nodes().await.unwrap().is_empty());

        let mut events = coord.subscribe("c");
        coord.publish("c", "hello").await.unwrap();
        assert_eq!(events.recv().await, Some(SubscriptionEvent::Connected));
        assert_eq!(events.recv().await, Some(SubscriptionEvent::Message("hello".into())));
    }
}
