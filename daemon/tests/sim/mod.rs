//! An in-process cluster for simulations: real `Node`s and real chitchat instances
//! joined by chitchat's in-memory `ChannelTransport` (links can be cut and restored),
//! with probe outcomes scripted by the test instead of an HTTP engine.

#![allow(dead_code)]

use chitchat::transport::ChannelTransport;
use probemesh::config::ProbeDefaults;
use probemesh::metrics::Metrics;
use probemesh::node::{Node, NodeSettings};
use probemesh::probe::check::{ProbeReport, ProbeResult};
use probemesh::store::Store;
use probemesh_gossip::model::{Status, WorkerId, WorkerSpec, WorkerUrl};
use probemesh_gossip::node::{GossipConfig, GossipHandle, spawn_gossip};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Gossip interval of simulated nodes.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// One simulated node.
pub struct SimNode {
    /// Node id.
    pub name: String,
    /// Its gossip address on the in-memory network.
    pub addr: SocketAddr,
    /// The node.
    pub node: Arc<Node>,
    /// Its gossip handle.
    pub gossip: Arc<GossipHandle>,
    stop: CancellationToken,
    /// Killed by the test.
    pub dead: bool,
    _dir: tempfile::TempDir,
}

/// Per-node options.
#[derive(Clone, Default)]
pub struct SimOptions {
    /// `--allow-worker-cidr`.
    pub allow: Vec<ipnet::IpNet>,
    /// `--dead-node-grace-period` (default one hour).
    pub grace: Option<Duration>,
    /// Seed index (default node 0).
    pub seed: Option<usize>,
}

/// A simulated cluster.
pub struct Sim {
    /// The in-memory network.
    pub transport: ChannelTransport,
    /// The nodes, in start order.
    pub nodes: Vec<SimNode>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 41000 + i as u16))
}

impl Sim {
    /// Starts `n` nodes, each seeded with the first.
    pub async fn start(n: usize, options: impl Fn(usize) -> SimOptions) -> Sim {
        let transport = ChannelTransport::with_mtu(65_507);
        let mut sim = Sim {
            transport,
            nodes: Vec::new(),
        };
        for i in 0..n {
            let node = sim.spawn(i, options(i)).await;
            sim.nodes.push(node);
        }
        sim
    }

    async fn spawn(&self, i: usize, opts: SimOptions) -> SimNode {
        let name = format!("node-{i:02}");
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel();
        // Probes are scripted: drain the engine's commands.
        tokio::spawn(async move { while probe_rx.recv().await.is_some() {} });
        let settings = NodeSettings {
            node_id: name.clone(),
            probe: ProbeDefaults::default(),
            remove_failed: true,
            tombstone_ttl: Duration::from_secs(3600),
            allow: opts.allow,
        };
        let node = Arc::new(Node::new(
            settings,
            store,
            Arc::new(Metrics::new()),
            probe_tx,
        ));
        let config = GossipConfig {
            node_id: name.clone(),
            generation: 1,
            cluster_id: "sim".into(),
            listen: addr(i),
            advertise: addr(i),
            seeds: match opts.seed {
                Some(s) => vec![addr(s).to_string()],
                None if i == 0 => vec![],
                None => vec![addr(0).to_string()],
            },
            interval: INTERVAL,
            dead_node_grace_period: opts.grace.unwrap_or(Duration::from_secs(3600)),
            version: "sim".into(),
        };
        let gossip = Arc::new(spawn_gossip(config, &self.transport).await.unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(probemesh::cluster_sync::run(
            Arc::clone(&node),
            Arc::clone(&gossip),
            INTERVAL,
            stop.clone(),
        ));
        SimNode {
            name,
            addr: addr(i),
            node,
            gossip,
            stop,
            dead: false,
            _dir: dir,
        }
    }

    /// Starts one more node (index = current count) with `opts`.
    pub async fn add(&mut self, opts: SimOptions) -> usize {
        let i = self.nodes.len();
        let node = self.spawn(i, opts).await;
        self.nodes.push(node);
        i
    }

    /// Stops node `i` for good (its gossip and tasks); it stays in `nodes` as a corpse
    /// that `until_all` skips.
    pub async fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.stop.cancel();
        n.dead = true;
        n.gossip.abort();
    }

    /// Cuts the link between nodes `a` and `b` in both directions.
    pub async fn cut(&self, a: usize, b: usize) {
        self.transport.remove_link(addr(a), addr(b)).await;
    }

    /// Restores the link between nodes `a` and `b`.
    pub async fn heal(&self, a: usize, b: usize) {
        self.transport.add_link(addr(a), addr(b)).await;
    }

    /// Waits until `check` holds on every node, or panics after `within`.
    pub async fn until_all(&self, within: Duration, what: &str, check: impl Fn(&SimNode) -> bool) {
        let end = Instant::now() + within;
        loop {
            let failing: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| !n.dead && !check(n))
                .map(|n| n.name.as_str())
                .collect();
            if failing.is_empty() {
                return;
            }
            if Instant::now() > end {
                panic!("{what}: still false on {failing:?} after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every node.
    pub async fn stop(self) {
        for n in self.nodes {
            n.stop.cancel();
            n.gossip.abort();
        }
    }

    /// The live nodes.
    pub fn live(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(|n| !n.dead)
    }
}

impl SimNode {
    /// This node's status for `id`, if it knows the worker.
    pub fn status(&self, id: &WorkerId) -> Option<Status> {
        self.node.registry().get(id).map(|e| e.status)
    }

    /// Feeds `n` probe results to this node's state machine for `id`.
    pub fn probe(&self, id: &WorkerId, result: ProbeResult, n: usize) {
        let generation = self
            .node
            .registry()
            .get(id)
            .expect("worker known")
            .reg
            .generation;
        for _ in 0..n {
            self.node.record_probe(
                id,
                generation,
                ProbeReport {
                    result,
                    latency: Duration::from_millis(1),
                },
            );
        }
    }
}

/// A spec for `url`.
pub fn spec(url: &str) -> WorkerSpec {
    WorkerSpec::new(WorkerUrl::parse(url).unwrap())
}
