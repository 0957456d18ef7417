//! A node's [`ClusterSource`] over the model: snapshots are built from the node's
//! [`super::exchange::View`] through the same decoder and validator as chitchat's state
//! ([`RawNode::new`], [`ClusterSnapshot::from_raw`]), and publications go through the
//! same [`Publisher`] diff, each changed key bumping the node's version as chitchat's
//! `set` and `delete` do.

use super::replica::Replica;
use super::{Mid, Network};
use chitchat::ChitchatId;
use probemesh_gossip::cluster::{ClusterSnapshot, DecodeCache, RawNode, RawState};
use probemesh_gossip::publication::{Publication, Published, Publisher};
use probemesh_gossip::source::{ClusterSource, Fingerprint};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One instance's window on the model.
pub struct ModelSource {
    network: Network,
    index: usize,
    id: ChitchatId,
    changed: Arc<Notify>,
    cache: Mutex<DecodeCache>,
    publisher: Mutex<Publisher>,
}

impl std::fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSource").field("id", &self.id).finish()
    }
}

impl ModelSource {
    pub(super) fn new(
        network: Network,
        index: usize,
        id: ChitchatId,
        changed: Arc<Notify>,
        verdict_hold: std::time::Duration,
    ) -> ModelSource {
        ModelSource {
            network,
            index,
            id,
            changed,
            cache: Mutex::new(DecodeCache::default()),
            publisher: Mutex::new(Publisher::new(verdict_hold)),
        }
    }

    /// This instance's chitchat id.
    pub fn id(&self) -> &ChitchatId {
        &self.id
    }
}

impl ClusterSource for ModelSource {
    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn fingerprint(&self) -> Fingerprint {
        let w = self.network.lock();
        let view = &w.instances[self.index].view;
        let mut out: Vec<(&ChitchatId, u64, bool)> = view
            .states
            .iter()
            .map(|(m, r)| {
                let live = m == self.index || view.detector.is_live(m);
                (&w.ids[m], r.max_version, live)
            })
            .collect();
        // chitchat's order: by id.
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter()
            .map(|(id, v, live)| (id.node_id.to_string(), id.generation_id, v, live))
            .collect()
    }

    async fn snapshot(&self) -> ClusterSnapshot {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let raw = {
            let w = self.network.lock();
            let view = &w.instances[self.index].view;
            let mut members: Vec<(&ChitchatId, Mid, &Replica)> =
                view.states.iter().map(|(m, r)| (&w.ids[m], m, r)).collect();
            // chitchat's order: by id.
            members.sort_by(|a, b| a.0.cmp(b.0));
            let nodes = members
                .into_iter()
                .map(|(id, m, r)| {
                    let kvs = (!cache.holds(id, r.max_version)).then(|| {
                        r.key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    });
                    RawNode::new(
                        id.clone(),
                        r.max_version,
                        m == self.index,
                        view.detector.is_live(m),
                        kvs,
                    )
                })
                .collect();
            RawState::from_nodes(nodes)
        };
        ClusterSnapshot::from_raw(raw, &mut cache)
    }

    async fn publish(&self, desired: &Publication) -> Published {
        let now = Instant::now();
        let (changes, published) = {
            let mut publisher = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
            let changes = publisher.changes(desired, now);
            let published = publisher.published(changes.len());
            (changes, published)
        };
        if changes.is_empty() {
            return published;
        }
        let mut w = self.network.lock();
        let inst = &mut w.instances[self.index];
        let own = inst.view.own_mut();
        for (key, value) in &changes {
            match value {
                Some(v) => {
                    own.set_own(key.as_str().into(), v.as_str().into(), now);
                }
                None => {
                    own.delete_own(key, now);
                }
            }
        }
        // chitchat's listeners fire on this node's own sets too.
        inst.changed.notify_one();
        published
    }
}
