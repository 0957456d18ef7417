//! How far each worker's readiness reaches across the cluster, from this node's view:
//! `probemesh_cluster_workers{ready_on="none"|"some"|"all"}` counts the workers of the
//! local view that are ready on no live member, on some, or on every one (S5: every
//! node holds every live member's verdicts, so any node can tell).
//!
//! Computed at scrape time from the view and the cluster snapshot, like the per-status
//! gauge, so it cannot drift. It is what the alerts "worker ready on no node" and
//! "worker ready on some nodes only, for long" need without a series per worker.

use crate::registry::View;
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::Status;

/// Workers by how many live members hold them ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    /// Ready on no live member.
    pub none: u64,
    /// Ready on at least one live member but not on all.
    pub some: u64,
    /// Ready on every live member.
    pub all: u64,
}

/// Counts the workers of `view` by the live members that hold them ready: this node by
/// its own status, each peer by its verdict on the same generation.
pub fn spread(view: &View, cluster: &ClusterSnapshot) -> Spread {
    let live = cluster.live_node_ids().count().max(1);
    let mut s = Spread::default();
    for e in view.workers.values() {
        let peers_ready = cluster
            .peer_verdicts(&e.reg.id)
            .map(|p| p.verdict)
            .filter(|v| v.generation == e.reg.generation && v.status == Status::Ready)
            .count();
        let ready = peers_ready + usize::from(e.status == Status::Ready);
        if ready == 0 {
            s.none += 1;
        } else if ready >= live {
            s.all += 1;
        } else {
            s.some += 1;
        }
    }
    s
}
