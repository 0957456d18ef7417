//! The daemon's side of "one live process per node id" (SPEC S10): feeds the gossip
//! crate's [`IdentityGuard`] from chitchat's state on every sync round, holds the
//! cluster sync back until the node has joined, and on refusal makes the node say so
//! (`/v1/ready` 503 `refused`, an error in the log every [`REPEAT_LOG`]) and leave
//! gossip after a few heartbeats (so the other process reports it too), so that the process already in the cluster keeps its membership, views and
//! verdicts.

use crate::metrics::Metrics;
use crate::readiness::{Latch, Readiness};
use probemesh_gossip::identity::{IdentityGuard, Phase};
use probemesh_gossip::node::GossipHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a refused node, or a node that sees a rival, repeats its error in the log.
pub const REPEAT_LOG: Duration = Duration::from_secs(30);

/// What the sync loop should do after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not joined yet: do not import or publish.
    Wait,
    /// Joined: sync as usual.
    Sync,
    /// Refused: stop syncing (gossip has been left).
    Refused,
}

/// The guard and what it drives.
#[derive(Debug)]
pub struct IdentityWatch {
    gossip: Arc<GossipHandle>,
    guard: IdentityGuard,
    joined: Option<Latch>,
    readiness: Readiness,
    last_rival_log: Option<Instant>,
}

impl IdentityWatch {
    /// Watches `gossip` with `guard`; releases `joined` when the node joins and refuses
    /// through `readiness`.
    pub fn new(
        gossip: Arc<GossipHandle>,
        guard: IdentityGuard,
        joined: Latch,
        readiness: Readiness,
    ) -> IdentityWatch {
        IdentityWatch {
            gossip,
            guard,
            joined: Some(joined),
            readiness,
            last_rival_log: None,
        }
    }

    /// One check against chitchat's current state.
    pub async fn check(&mut self, metrics: &Metrics) -> Step {
        let view = self.gossip.self_id_view().await;
        let now = Instant::now();
        let rivals = self.guard.observe(now, view.peers, &view.others);
        metrics.identity_rivals(rivals.len());
        match self.guard.phase().clone() {
            Phase::Refused(reason) => {
                metrics.identity_refused();
                tracing::error!(reason = %reason, "node refused: not joining the cluster; /v1/ready answers 503 refused until this process is restarted");
                self.readiness.refuse(reason);
                // Leave gossip after a few more heartbeats (publishing nothing: the sync
                // stops here), so that the process this one stepped back for sees a
                // live rival and reports it too; then this instance ages out of every
                // peer's view, and the other's membership and state stay as they are.
                let gossip = Arc::clone(&self.gossip);
                let linger = self.guard.refused_linger();
                tokio::spawn(async move {
                    tokio::time::sleep(linger).await;
                    gossip.abort();
                });
                Step::Refused
            }
            Phase::Checking => Step::Wait,
            phase @ (Phase::Joined | Phase::Established) => {
                if let Some(latch) = self.joined.take() {
                    latch.release();
                    tracing::info!("joined the cluster: no other live process has this node id");
                }
                if !rivals.is_empty()
                    && self
                        .last_rival_log
                        .is_none_or(|t| now.duration_since(t) >= REPEAT_LOG)
                {
                    self.last_rival_log = Some(now);
                    for r in &rivals {
                        tracing::error!(
                            other = %r.addr,
                            generation = r.generation,
                            established = phase == Phase::Established,
                            "another live process uses this node's id; this node keeps its place. Two hosts share the node id (give each its own --node-id and certificate), or another party holds this node's certificate: replace it"
                        );
                    }
                }
                Step::Sync
            }
        }
    }

    /// The refusal reason, once refused.
    pub fn refused(&self) -> Option<String> {
        self.readiness.refused()
    }
}
