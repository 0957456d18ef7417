//! The cluster source a simulated node syncs over: the model or real chitchat, behind
//! one type (the trait's `impl Future` methods are not object-safe), recording in the
//! trace each membership change the node's cluster sync sees.

use crate::model::ModelSource;
use crate::trace::{Event, Trace};
use probemesh_gossip::cluster::{ClusterSnapshot, MemberState};
use probemesh_gossip::node::GossipHandle;
use probemesh_gossip::publication::{Publication, Published};
use probemesh_gossip::source::{ClusterSource, Fingerprint};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where the state comes from.
pub enum Inner {
    /// The seeded scuttlebutt model (boxed: it holds the publisher's state inline).
    Model(Box<ModelSource>),
    /// Real chitchat over its in-memory transport.
    Chitchat(Arc<GossipHandle>),
}

/// A node's source, with membership tracing.
pub struct SimSource {
    inner: Inner,
    node: String,
    trace: Trace,
    members: Mutex<BTreeMap<String, &'static str>>,
}

impl SimSource {
    /// `inner` for `node`.
    pub fn new(inner: Inner, node: &str, trace: Trace) -> SimSource {
        SimSource {
            inner,
            node: node.to_string(),
            trace,
            members: Mutex::new(BTreeMap::new()),
        }
    }

    /// The chitchat handle, on that backend.
    pub fn chitchat(&self) -> Option<&Arc<GossipHandle>> {
        match &self.inner {
            Inner::Chitchat(h) => Some(h),
            Inner::Model(_) => None,
        }
    }

    fn observe(&self, snap: &ClusterSnapshot) {
        let now: BTreeMap<String, &'static str> = snap
            .members
            .iter()
            .map(|m| {
                let state = match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Dead => "dead",
                };
                (m.node_id.clone(), state)
            })
            .collect();
        let mut before = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for (id, state) in &now {
            if before.get(id) != Some(state) {
                self.trace.push(
                    &self.node,
                    Event::Member {
                        member: id.clone(),
                        state,
                    },
                );
            }
        }
        for id in before.keys().filter(|id| !now.contains_key(*id)) {
            self.trace.push(
                &self.node,
                Event::Member {
                    member: id.clone(),
                    state: "forgotten",
                },
            );
        }
        *before = now;
    }
}

impl ClusterSource for SimSource {
    async fn changed(&self) {
        match &self.inner {
            Inner::Model(m) => m.changed().await,
            Inner::Chitchat(h) => h.changed().await,
        }
    }

    async fn fingerprint(&self) -> Fingerprint {
        match &self.inner {
            Inner::Model(m) => m.fingerprint().await,
            Inner::Chitchat(h) => h.fingerprint().await,
        }
    }

    async fn snapshot(&self) -> ClusterSnapshot {
        let snap = match &self.inner {
            Inner::Model(m) => m.snapshot().await,
            Inner::Chitchat(h) => h.snapshot().await,
        };
        self.observe(&snap);
        snap
    }

    async fn publish(&self, desired: &Publication) -> Published {
        match &self.inner {
            Inner::Model(m) => m.publish(desired).await,
            Inner::Chitchat(h) => h.publish(desired).await,
        }
    }
}
