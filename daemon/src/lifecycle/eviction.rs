//! When a failed worker leaves the cluster, and when a local failure is retried.

use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::{Status, WorkerId};
use std::time::Duration;

/// First retry delay of a locally failed worker (SPEC S6b) and of a declarative
/// re-registration (SPEC S7).
pub const BACKOFF_START: Duration = Duration::from_secs(60);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Whether a worker generation is tombstoned for failure (SPEC S6 b): only with
/// `--remove-failed`, only when this node holds it `failed`, and only when every other
/// live member that tracks it reports `failed` too. In a one-node cluster `peers` is
/// empty and the node's own verdict decides.
pub fn should_evict_failed(
    remove_failed: bool,
    local: Status,
    peers: impl IntoIterator<Item = Status>,
) -> bool {
    remove_failed && local == Status::Failed && peers.into_iter().all(|s| s == Status::Failed)
}

/// Whether the cluster agrees to evict `generation` of `id`, which this node holds
/// `local`: [`should_evict_failed`] over the verdicts of the other live, non-degraded
/// members in `snapshot` on that generation (SPEC S6 b, S12). Only members seen
/// first-hand count (an invented member neither blocks nor makes an eviction); while a
/// live member is still being checked, the decision waits, so a member that just
/// joined is never left out. A degraded node (`self_degraded`) never evicts: its
/// `failed` is most likely its own fault, and the healthy trackers decide without it.
pub fn agreed(
    snapshot: &ClusterSnapshot,
    remove_failed: bool,
    self_degraded: bool,
    id: &WorkerId,
    generation: u64,
    local: Status,
) -> bool {
    if self_degraded || snapshot.attestation_pending() {
        return false;
    }
    let peers = snapshot
        .peer_verdicts(id)
        .filter(|p| p.verdict.generation == generation && !p.degraded)
        .map(|p| p.verdict.status);
    should_evict_failed(remove_failed, local, peers)
}

/// When a worker in `status` after a probe is retried (SPEC S6b): `Some(backoff)` when
/// it failed on this node (its `attempts`-th retry), `None` when it is simply probed
/// again at its interval. Eviction, if the cluster agrees, comes first ([`agreed`]).
pub fn retry_delay(status: Status, attempts: u32) -> Option<Duration> {
    (status == Status::Failed).then(|| backoff(attempts))
}

/// The delay before retry number `attempt` (0-based): one minute doubling up to one
/// hour.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
    BACKOFF_START
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn eviction_needs_flag_local_failure_and_unanimous_peers() {
        assert!(should_evict_failed(true, Failed, []));
        assert!(should_evict_failed(true, Failed, [Failed, Failed]));
        assert!(!should_evict_failed(false, Failed, []));
        assert!(!should_evict_failed(true, NotReady, []));
        assert!(!should_evict_failed(true, Failed, [Failed, Ready]));
        assert!(!should_evict_failed(true, Failed, [Pending]));
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour() {
        let mins: Vec<u64> = (0..9).map(|a| backoff(a).as_secs() / 60).collect();
        assert_eq!(mins, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
