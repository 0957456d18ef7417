//! The interface between the daemon's cluster sync and whatever disseminates state:
//! real chitchat (`GossipHandle`, in the `node` module) in the agent, or a seeded model of
//! scuttlebutt in the deterministic simulator. Both hand the daemon the same decoded
//! [`ClusterSnapshot`] and take the same typed [`Publication`].

use crate::cluster::ClusterSnapshot;
use crate::publication::{Publication, Published};
use std::future::Future;

/// A cheap summary of the cluster state: every member instance's id, generation,
/// highest key version and liveness. Equal fingerprints mean nothing a snapshot shows
/// has changed, so a caller can skip decoding.
pub type Fingerprint = Vec<(String, u64, u64, bool)>;

/// Where a node reads the cluster and publishes its own records.
pub trait ClusterSource: Send + Sync + 'static {
    /// Resolves when a peer's key may have changed (deletions and membership changes
    /// need not be signalled: the caller also polls every gossip interval).
    fn changed(&self) -> impl Future<Output = ()> + Send;

    /// The current [`Fingerprint`].
    fn fingerprint(&self) -> impl Future<Output = Fingerprint> + Send;

    /// The current cluster state, decoded and validated.
    fn snapshot(&self) -> impl Future<Output = ClusterSnapshot> + Send;

    /// Makes this node's own state match `desired`, but for verdict buckets written
    /// too recently (`GossipConfig::verdict_hold`); says what it wrote
    /// and when to publish again for what it held back.
    fn publish(&self, desired: &Publication) -> impl Future<Output = Published> + Send;
}
