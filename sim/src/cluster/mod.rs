//! The simulated cluster: N in-process [`Node`]s, each with the real probe engine (over
//! a [`SimChecker`]), the real cluster sync over a [`SimSource`] (the model or real
//! chitchat over its in-memory transport), and the tombstone expiry task; a data
//! directory per node that outlives its restarts; one virtual clock for all.

pub mod source;

use crate::check::{Reachability, SimChecker};
use crate::disk::SimDisk;
use crate::model::{ModelConfig, Network};
use crate::scenario::Settings;
use crate::trace::{Trace, follow};
use chitchat::ChitchatId;
use chitchat::transport::ChannelTransport;
use probemesh::clock::Clock;
use probemesh::config::ProbeDefaults;
use probemesh::metrics::Metrics;
use probemesh::node::{Node, NodeSettings};
use probemesh::probe::EngineSettings;
use probemesh::store::Store;
use probemesh_gossip::keys::VERSION_KEY;
use probemesh_gossip::node::{GossipConfig, spawn_gossip};
use probemesh_gossip::publication::verdict_hold;
use rand::SeedableRng;
use rand::rngs::StdRng;
use source::{Inner, SimSource};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which dissemination the nodes sync over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The seeded scuttlebutt model (deterministic).
    Model,
    /// Real chitchat 0.11 over `ChannelTransport` (its peer choice uses the thread RNG:
    /// same end states, not the same trace).
    Chitchat,
}

enum Net {
    Model(Network),
    Chitchat(ChannelTransport),
}

/// A running node.
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// Its cluster source.
    pub source: Arc<SimSource>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// One simulated node, running or not.
pub struct SimNode {
    /// `node-NN`.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// While it runs.
    pub running: Option<Running>,
    seed_addr: Option<SocketAddr>,
    allow: Vec<ipnet::IpNet>,
    starts: u64,
    dir: tempfile::TempDir,
}

/// The cluster.
pub struct SimCluster {
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// What the nodes' probes reach.
    pub matrix: Arc<Reachability>,
    /// The trace.
    pub trace: Trace,
    settings: Settings,
    seed: u64,
    clock: Clock,
    net: Net,
    stop: CancellationToken,
}

/// The gossip address of node `i`.
pub fn addr(i: usize) -> SocketAddr {
    let i = u16::try_from(i).unwrap_or(u16::MAX - 41_000);
    SocketAddr::from(([127, 0, 0, 1], 41_000 + i))
}

/// The name of node `i`.
pub fn name(i: usize) -> String {
    format!("node-{i:02}")
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The temp dir or the store.
    #[error("node {node}: {message}")]
    Local {
        /// The node.
        node: String,
        /// What failed.
        message: String,
    },
}

impl SimCluster {
    /// An empty cluster; the model's driver task starts at once (call inside the
    /// runtime).
    pub fn new(settings: Settings, seed: u64, backend: Backend, trace: Trace) -> SimCluster {
        let stop = CancellationToken::new();
        let net = match backend {
            Backend::Model => {
                let cfg = ModelConfig::new(settings.gossip_interval, settings.dead_node_grace);
                let network = Network::new(cfg, seed);
                tokio::spawn(network.clone().run(stop.clone()));
                Net::Model(network)
            }
            Backend::Chitchat => Net::Chitchat(ChannelTransport::with_mtu(crate::model::MTU)),
        };
        SimCluster {
            nodes: Vec::new(),
            matrix: Reachability::new(),
            trace,
            settings,
            seed,
            clock: Clock::virtual_fixed(),
            net,
            stop,
        }
    }

    /// The model, on that backend.
    pub fn network(&self) -> Option<&Network> {
        match &self.net {
            Net::Model(n) => Some(n),
            Net::Chitchat(_) => None,
        }
    }

    /// Bytes sent by all nodes over chitchat's transport (chitchat backend).
    pub fn chitchat_bytes(&self) -> Option<(u64, u64)> {
        match &self.net {
            Net::Chitchat(t) => {
                let s = t.statistics();
                Some((s.num_bytes_total, s.num_messages_total))
            }
            Net::Model(_) => None,
        }
    }

    /// Adds node `nodes.len()` seeded with `seed` (none for the very first node) and
    /// starts it.
    pub async fn add(
        &mut self,
        seed: Option<usize>,
        allow: Vec<ipnet::IpNet>,
    ) -> Result<usize, StartError> {
        let i = self.nodes.len();
        let dir = tempfile::tempdir().map_err(|e| StartError::Local {
            node: name(i),
            message: format!("cannot create a data directory: {e}"),
        })?;
        self.nodes.push(SimNode {
            name: name(i),
            addr: addr(i),
            running: None,
            seed_addr: seed.map(addr),
            allow,
            starts: 0,
            dir,
        });
        self.start(i).await?;
        Ok(i)
    }

    /// Starts node `i` on its data directory (first start or restart).
    pub async fn start(&mut self, i: usize) -> Result<(), StartError> {
        let s = &self.settings;
        let n = &mut self.nodes[i];
        n.starts += 1;
        let local = |message: String| StartError::Local {
            node: n.name.clone(),
            message,
        };
        let (store, _) = Store::open_with(n.dir.path(), Box::new(SimDisk))
            .map_err(|e| local(format!("cannot open the store: {e}")))?;
        let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let settings = NodeSettings {
            node_id: n.name.clone(),
            probe: ProbeDefaults {
                interval: s.probe_interval,
                timeout: s.probe_timeout,
                path: "/health".into(),
                success_threshold: s.success_threshold,
                failure_threshold: s.failure_threshold,
                kind: probemesh_gossip::model::ProbeKind::Http,
            },
            remove_failed: s.remove_failed,
            tombstone_ttl: s.tombstone_ttl,
            allow: n.allow.clone(),
            clock: self.clock.clone(),
            fence_ratio: s.fence_ratio,
        };
        let node = Arc::new(Node::new(
            settings,
            store,
            Arc::new(Metrics::new()),
            probe_tx,
        ));
        let stop = self.stop.child_token();
        let mut tasks = vec![tokio::spawn(follow(
            self.trace.clone(),
            n.name.clone(),
            node.events().subscribe(None).live,
        ))];
        // A restart is a new gossip generation, as the agent's start time in ms is.
        let generation = self.clock.now_ms();
        let seeds: Vec<SocketAddr> = n.seed_addr.into_iter().collect();
        let inner = match &self.net {
            Net::Model(network) => Inner::Model(Box::new(network.join(
                ChitchatId::new(n.name.clone(), generation, n.addr),
                seeds,
                &[(VERSION_KEY.to_string(), "sim".to_string())],
                verdict_hold(s.probe_interval),
            ))),
            Net::Chitchat(transport) => {
                let config = GossipConfig {
                    node_id: n.name.clone(),
                    generation,
                    cluster_id: "sim".into(),
                    listen: n.addr,
                    advertise: n.addr,
                    seeds: seeds.iter().map(ToString::to_string).collect(),
                    interval: s.gossip_interval,
                    dead_node_grace_period: s.dead_node_grace,
                    version: "sim".into(),
                    identities: None,
                    verdict_hold: verdict_hold(s.probe_interval),
                };
                // The address of a killed node is freed when its aborted task is
                // dropped, which the runtime does at its next turn.
                let mut tries = 0;
                let handle = loop {
                    match spawn_gossip(config.clone(), transport).await {
                        Ok(h) => break h,
                        Err(_) if tries < 100 => {
                            tries += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => return Err(local(format!("cannot start chitchat: {e}"))),
                    }
                };
                Inner::Chitchat(Arc::new(handle))
            }
        };
        let source = Arc::new(SimSource::new(inner, &n.name, self.trace.clone()));
        let engine_seed = self
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64)
            .wrapping_add(n.starts << 32);
        tasks.push(tokio::spawn(probemesh::probe::run(
            Arc::clone(&node),
            probe_rx,
            Arc::new(SimChecker::new(
                &n.name,
                Arc::clone(&self.matrix),
                Some(self.trace.clone()),
            )),
            EngineSettings {
                concurrency: probemesh::probe::DEFAULT_CONCURRENCY,
                rng: StdRng::seed_from_u64(engine_seed),
            },
            stop.clone(),
        )));
        node.schedule_all();
        tasks.push(tokio::spawn(probemesh::cluster_sync::run(
            Arc::clone(&node),
            Arc::clone(&source),
            s.gossip_interval,
            None,
            stop.clone(),
        )));
        tasks.push(tokio::spawn(probemesh::tombstone_expiry::run(
            Arc::clone(&node),
            probemesh::tombstone_expiry::period(s.tombstone_ttl),
            stop.clone(),
        )));
        n.running = Some(Running {
            node,
            source,
            stop,
            tasks,
        });
        Ok(())
    }

    /// Node `i` crashes: its tasks are aborted, its gossip stops without a goodbye.
    /// Its data directory stays for a restart.
    pub async fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(r) = n.running.take() else {
            return;
        };
        r.stop.cancel();
        for t in &r.tasks {
            t.abort();
        }
        if let Some(h) = r.source.chitchat() {
            h.abort();
        }
        if let Net::Model(network) = &self.net {
            network.crash(n.addr);
        }
        for t in r.tasks {
            let _ = t.await;
        }
    }

    /// Cuts (or with `heal`, restores) the links between nodes `a` and `b`.
    pub async fn link(&self, a: usize, b: usize, heal: bool) {
        if a == b {
            return;
        }
        let (x, y) = (addr(a), addr(b));
        match (&self.net, heal) {
            (Net::Model(n), false) => n.cut(x, y),
            (Net::Model(n), true) => n.heal(x, y),
            (Net::Chitchat(t), false) => t.remove_link(x, y).await,
            (Net::Chitchat(t), true) => t.add_link(x, y).await,
        }
    }

    /// The running nodes, with their index.
    pub fn running(&self) -> impl Iterator<Item = (usize, &SimNode, &Running)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.running.as_ref().map(|r| (i, n, r)))
    }

    /// Stops everything (tasks end at their next turn).
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i).await;
        }
        self.stop.cancel();
    }
}
