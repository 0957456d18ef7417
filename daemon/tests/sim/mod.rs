//! An in-process cluster for simulations: real `Node`s and real chitchat instances
//! joined by chitchat's in-memory `ChannelTransport` (links can be cut and restored),
//! with probe outcomes scripted by the test instead of an HTTP engine.

#![allow(dead_code)]

use chitchat::transport::ChannelTransport;
use probemesh::config::ProbeDefaults;
use probemesh::metrics::Metrics;
use probemesh::node::{Node, NodeSettings};
use probemesh::probe::check::{Checker, ProbeReport, ProbeResult};
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
    /// Run the real probe engine (HTTP probes, with the allowlist) instead of letting
    /// the test script probe outcomes.
    pub real_probes: bool,
}

/// One simulation at a time in a test binary. Twenty in-process nodes gossiping in real
/// time already keep two cores busy; ten simulations at once (the test harness runs a
/// file's tests in parallel) made membership miss its deadlines on a loaded machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A simulated cluster.
pub struct Sim {
    /// The in-memory network.
    pub transport: ChannelTransport,
    /// The nodes, in start order.
    pub nodes: Vec<SimNode>,
    /// Held while the simulation runs; released when it is stopped or dropped (also when
    /// its test panics).
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 41000 + i as u16))
}

impl Sim {
    /// Starts `n` nodes, each seeded with the first.
    pub async fn start(n: usize, options: impl Fn(usize) -> SimOptions) -> Sim {
        let turn = ONE_AT_A_TIME.lock().await;
        let transport = ChannelTransport::with_mtu(65_507);
        let mut sim = Sim {
            transport,
            nodes: Vec::new(),
            _turn: turn,
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
        let settings = NodeSettings {
            node_id: name.clone(),
            probe: ProbeDefaults::default(),
            remove_failed: true,
            tombstone_ttl: Duration::from_secs(3600),
            allow: opts.allow.clone(),
            clock: probemesh::clock::Clock::System,
            fence_ratio: 0.8,
        };
        let node = Arc::new(Node::new(
            settings,
            store,
            Arc::new(Metrics::new()),
            probe_tx,
        ));
        let stop = CancellationToken::new();
        if opts.real_probes {
            let checker = Checker::new(opts.allow).unwrap();
            tokio::spawn(probemesh::probe::run(
                Arc::clone(&node),
                probe_rx,
                Arc::new(checker),
                probemesh::probe::EngineSettings {
                    concurrency: 16,
                    rng: rand::SeedableRng::seed_from_u64(i as u64),
                },
                stop.clone(),
            ));
        } else {
            // Probes are scripted: drain the engine's commands.
            tokio::spawn(async move { while probe_rx.recv().await.is_some() {} });
        }
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
            identities: None,
            verdict_hold: probemesh_gossip::publication::MIN_VERDICT_HOLD,
        };
        let gossip = Arc::new(spawn_gossip(config, &self.transport).await.unwrap());
        tokio::spawn(probemesh::cluster_sync::run(
            Arc::clone(&node),
            Arc::clone(&gossip),
            INTERVAL,
            None,
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

    /// Starts a bare gossip member named `name` at address index `i`, seeded with node
    /// 0: no `Node` behind it, so the test publishes whatever keys it likes under its
    /// name, as a member holding a valid certificate could.
    pub async fn rogue(&self, name: &str, i: usize) -> Arc<GossipHandle> {
        let config = GossipConfig {
            node_id: name.into(),
            generation: 1,
            cluster_id: "sim".into(),
            listen: addr(i),
            advertise: addr(i),
            seeds: vec![addr(0).to_string()],
            interval: INTERVAL,
            dead_node_grace_period: Duration::from_secs(3600),
            version: "rogue".into(),
            identities: None,
            verdict_hold: probemesh_gossip::publication::MIN_VERDICT_HOLD,
        };
        Arc::new(spawn_gossip(config, &self.transport).await.unwrap())
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

/// A plain HTTP server on `ip` that answers every request with `status`; counts the
/// connections it accepted and the requests it answered, per path.
pub struct TestHttp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Request paths answered, in order.
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestHttp {
    /// Starts the server on a free port of `ip`.
    pub async fn start(ip: &str, status: u16) -> TestHttp {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, p) = (Arc::clone(&connections), Arc::clone(&paths));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let p = Arc::clone(&p);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split(' ').nth(1).unwrap_or("").to_string();
                    p.lock().unwrap().push(path);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        TestHttp {
            addr,
            connections,
            paths,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests answered so far whose path starts with `prefix`.
    pub fn requests_under(&self, prefix: &str) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(prefix))
            .count()
    }
}
