//! Starting chitchat and the handle the daemon uses to publish its keys and read the
//! cluster.

use crate::cluster::ClusterSnapshot;
use crate::identity::Sighting;
use crate::keys;
use crate::pace::Pace;
use crate::publication::{Publication, Published, Publisher};
use crate::source::{ClusterSource, Fingerprint};
use crate::transport::PeerIdentities;
use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// Settings of the gossip layer.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's id (unique in the cluster).
    pub node_id: String,
    /// Distinguishes restarts of the same node (start time in ms works).
    pub generation: u64,
    /// Nodes of other clusters are ignored.
    pub cluster_id: String,
    /// Address the transport binds.
    pub listen: SocketAddr,
    /// Address peers dial.
    pub advertise: SocketAddr,
    /// Seed peers, `host:port` (names are re-resolved periodically by chitchat).
    pub seeds: Vec<String>,
    /// Gossip round interval.
    pub interval: Duration,
    /// How long a dead member's state is kept.
    pub dead_node_grace_period: Duration,
    /// The probemesh version this node publishes.
    pub version: String,
    /// The member instances the transport saw first-hand (`QuicTransport::identities`).
    /// `None` (chitchat's in-memory transport) counts every member as attested.
    pub identities: Option<Arc<PeerIdentities>>,
    /// The shortest time between two writes of one verdict bucket
    /// ([`crate::publication::verdict_hold`] of the default probe interval).
    pub verdict_hold: Duration,
}

/// Why gossip could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// chitchat could not start (most often: the transport could not bind).
    #[error("cannot start gossip: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// chitchat's task did not stop cleanly.
    #[error("gossip did not stop cleanly: {0}")]
    Stop(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What chitchat knows about this node's own id, for the duplicate-id guard
/// ([`crate::identity::IdentityGuard`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfIdView {
    /// Other node ids known (alive or not).
    pub peers: usize,
    /// Instances under this node's id that are not this process.
    pub others: Vec<Sighting>,
}

/// The failure detector tuned to the gossip interval: the first heartbeat interval is
/// assumed to be a few rounds (chitchat's 5 s default made new nodes look dead for
/// seconds), and a heartbeat gap is capped at 10 rounds or 2 s, whichever is longer.
pub fn failure_detector(
    interval: Duration,
    dead_node_grace_period: Duration,
) -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: 8.0,
        sampling_window_size: 1000,
        max_interval: (interval * 10).max(Duration::from_secs(2)),
        initial_interval: interval * 2,
        dead_node_grace_period,
    }
}

/// Keeps the gossip thread running; dropping it stops the thread's runtime, which ends
/// every task of the transport still running on it.
#[derive(Debug)]
pub(crate) struct GossipThread {
    /// Dropping it ends the thread's wait.
    stop: oneshot::Sender<()>,
    /// Resolves once the thread's runtime is gone.
    exited: oneshot::Receiver<()>,
}

impl GossipThread {
    pub(crate) fn new(stop: oneshot::Sender<()>, exited: oneshot::Receiver<()>) -> GossipThread {
        GossipThread { stop, exited }
    }

    /// Lets the thread's runtime end and waits until it has (its tasks are dropped,
    /// its sockets closed). Never blocks the caller's thread.
    pub(crate) async fn stop(self) {
        drop(self.stop);
        let _ = self.exited.await;
    }
}

/// A running gossip node.
pub struct GossipHandle {
    handle: ChitchatHandle,
    /// Held for the whole of `snapshot`, so concurrent snapshots do not interleave
    /// their copy and decode phases.
    decode_cache: tokio::sync::Mutex<crate::cluster::DecodeCache>,
    changed: Arc<Notify>,
    identities: Option<Arc<PeerIdentities>>,
    /// What this node published last (the diff base of [`GossipHandle::publish`]).
    publisher: tokio::sync::Mutex<Publisher>,
    _listener: ListenerHandle,
    /// The thread gossip runs on, if it was started on one (`spawn_gossip_thread`).
    thread: Option<GossipThread>,
    /// That thread's coalescing window.
    pace: Option<Arc<Pace>>,
}

impl std::fmt::Debug for GossipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("id", self.handle.chitchat_id())
            .finish()
    }
}

/// Starts chitchat on `transport`.
pub async fn spawn_gossip(
    config: GossipConfig,
    transport: &dyn Transport,
) -> Result<GossipHandle, GossipError> {
    spawn_paced_gossip(config, transport, None).await
}

/// Starts chitchat on `transport`; every key change, a peer's or this node's own, is
/// reported to `pace` (the gossip thread's coalescing window, see [`crate::pace`]).
pub(crate) async fn spawn_paced_gossip(
    config: GossipConfig,
    transport: &dyn Transport,
    pace: Option<Arc<Pace>>,
) -> Result<GossipHandle, GossipError> {
    let chitchat_id = ChitchatId::new(config.node_id.clone(), config.generation, config.advertise);
    let cc = ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval: config.interval,
        listen_addr: config.listen,
        seed_nodes: config.seeds.clone(),
        failure_detector_config: failure_detector(config.interval, config.dead_node_grace_period),
        // Deleted keys are remembered this long so that every peer sees the deletion.
        marked_for_deletion_grace_period: config
            .dead_node_grace_period
            .max(Duration::from_secs(60)),
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let initial = vec![(keys::VERSION_KEY.to_string(), config.version.clone())];
    let handle = chitchat::spawn_chitchat(cc, initial, transport)
        .await
        .map_err(|e| GossipError::Start(e.into()))?;
    let changed = Arc::new(Notify::new());
    let notify = Arc::clone(&changed);
    let news = pace.clone();
    // Runs under chitchat's lock: only wake the reconciler and note the news, never
    // read state here.
    let listener = handle
        .chitchat()
        .lock()
        .await
        .subscribe_event("", move |_| {
            notify.notify_one();
            if let Some(pace) = &news {
                pace.news(Instant::now());
            }
        });
    Ok(GossipHandle {
        handle,
        decode_cache: tokio::sync::Mutex::new(Default::default()),
        changed,
        identities: config.identities,
        publisher: tokio::sync::Mutex::new(Publisher::new(config.verdict_hold)),
        _listener: listener,
        thread: None,
        pace,
    })
}

impl GossipHandle {
    /// Resolves when a peer's key changed since the last call (deletions and
    /// membership changes are not signalled; poll periodically as well).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Makes this node's own keys match `desired` (only the differences from the last
    /// publication are written, in one critical section, and verdict buckets at most
    /// once per [`GossipConfig::verdict_hold`]); says what it wrote.
    pub async fn publish(&self, desired: &Publication) -> Published {
        let mut publisher = self.publisher.lock().await;
        let changes = publisher.changes(desired, tokio::time::Instant::now());
        let published = publisher.published(changes.len());
        self.update_keys(changes).await;
        published
    }

    /// Sets (`Some`) or deletes (`None`) raw keys of this node, in one critical
    /// section. The daemon publishes through [`GossipHandle::publish`]; this is for
    /// tests that play a member publishing arbitrary keys.
    pub async fn update_keys(&self, changes: Vec<(String, Option<String>)>) {
        if changes.is_empty() {
            return;
        }
        if let Some(pace) = &self.pace {
            pace.news(Instant::now());
        }
        self.handle
            .with_chitchat(|c| {
                let state = c.self_node_state();
                for (key, value) in &changes {
                    match value {
                        Some(v) => state.set(key.clone(), v.clone()),
                        None => {
                            if state.get(key).is_some() {
                                state.delete(key);
                            }
                        }
                    }
                }
            })
            .await;
    }

    /// A cheap summary of the cluster state: every member's id, generation, highest
    /// key version and liveness. Equal fingerprints mean nothing a snapshot shows has
    /// changed, so callers can skip decoding.
    pub async fn fingerprint(&self) -> Fingerprint {
        self.handle
            .with_chitchat(|c| {
                let live: std::collections::HashSet<&chitchat::ChitchatId> =
                    c.live_nodes().collect();
                c.node_states()
                    .iter()
                    .map(|(id, st)| {
                        (
                            id.node_id.to_string(),
                            id.generation_id,
                            st.max_version(),
                            live.contains(id),
                        )
                    })
                    .collect()
            })
            .await
    }

    /// The gossip thread's coalescing window and wake-up counters (`None` when gossip
    /// runs on the caller's runtime, [`spawn_gossip`]).
    pub fn pace(&self) -> Option<Arc<Pace>> {
        self.pace.clone()
    }

    /// Decodes the current cluster state.
    pub async fn snapshot(&self) -> ClusterSnapshot {
        // Copy under chitchat's lock (cheap), decode and merge after releasing it, so
        // that gossip messages are never held up by a large cluster state.
        let mut cache = self.decode_cache.lock().await;
        let mut raw = self
            .handle
            .with_chitchat(|c| crate::cluster::RawState::collect(c, &cache))
            .await;
        if let Some(ids) = &self.identities {
            raw.attest_with(|cid| ids.attestation(&cid.node_id, cid.gossip_advertise_addr));
        }
        ClusterSnapshot::from_raw(raw, &mut cache)
    }

    /// Every member instance's heartbeat as this node knows it, with its node id,
    /// gossip address and liveness (for diagnostics and tests: a heartbeat that stops
    /// advancing is what makes the failure detector declare a member dead).
    pub async fn heartbeats(&self) -> Vec<(String, SocketAddr, u64, bool)> {
        self.handle
            .with_chitchat(|c| {
                let live: std::collections::HashSet<&ChitchatId> = c.live_nodes().collect();
                c.node_states()
                    .iter()
                    .map(|(id, st)| {
                        (
                            id.node_id.to_string(),
                            id.gossip_advertise_addr,
                            u64::from(st.heartbeat()),
                            live.contains(id),
                        )
                    })
                    .collect()
            })
            .await
    }

    /// The other instances under this node's id, with their heartbeats, and how many
    /// other node ids are known.
    pub async fn self_id_view(&self) -> SelfIdView {
        self.handle
            .with_chitchat(|c| {
                let me = c.self_chitchat_id().clone();
                let mut view = SelfIdView::default();
                let mut ids = std::collections::BTreeSet::new();
                for (cid, state) in c.node_states() {
                    if cid.node_id == me.node_id {
                        if *cid != me {
                            view.others.push(Sighting {
                                generation: cid.generation_id,
                                addr: cid.gossip_advertise_addr,
                                heartbeat: u64::from(state.heartbeat()),
                            });
                        }
                    } else {
                        ids.insert(&cid.node_id);
                    }
                }
                view.peers = ids.len();
                view
            })
            .await
    }

    /// Stops the gossip task at once, as a crash would (no goodbye to peers).
    pub fn abort(&self) {
        self.handle.abort();
    }

    pub(crate) fn set_thread(&mut self, thread: GossipThread) {
        self.thread = Some(thread);
    }

    /// Stops gossiping (and the gossip thread, if gossip has one).
    pub async fn shutdown(self) -> Result<(), GossipError> {
        let stopped = self
            .handle
            .shutdown()
            .await
            .map_err(|e| GossipError::Stop(e.into()));
        if let Some(thread) = self.thread {
            thread.stop().await;
        }
        stopped
    }
}

impl ClusterSource for GossipHandle {
    async fn changed(&self) {
        GossipHandle::changed(self).await;
    }

    async fn fingerprint(&self) -> Fingerprint {
        GossipHandle::fingerprint(self).await
    }

    async fn snapshot(&self) -> ClusterSnapshot {
        GossipHandle::snapshot(self).await
    }

    async fn publish(&self, desired: &Publication) -> Published {
        GossipHandle::publish(self, desired).await
    }
}
