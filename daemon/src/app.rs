//! Start-up and run: validate (done by `config`), open the data directory, bind the
//! admin port, spawn the probe engine and background tasks, serve until shutdown, then
//! drain and flush.

use crate::admin::{self, AdminState};
use crate::config::{AgentConfig, TlsSource};
use crate::declarative::Reasserter;
use crate::identity_watch::IdentityWatch;
use crate::metrics::Metrics;
use crate::node::{Node, NodeSettings};
use crate::probe::{self, check::Checker, check::CheckerConfig};
use crate::readiness::Readiness;
use crate::store::{RejectedRecord, Store};
use anyhow::Context;
use probemesh_gossip::identity::IdentityGuard;
use probemesh_gossip::model::WorkerSpec;
use probemesh_gossip::node::{GossipConfig, GossipHandle};
use probemesh_gossip::thread::spawn_gossip_thread;
use probemesh_gossip::tls::{self, TlsMaterial};
use probemesh_gossip::transport::{QuicSettings, QuicTransport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built agent: state loaded, admin port bound, nothing running yet.
pub struct App {
    config: AgentConfig,
    node: Arc<Node>,
    probe_rx: tokio::sync::mpsc::UnboundedReceiver<probe::Command>,
    listener: TcpListener,
    gossip: Arc<GossipHandle>,
    readiness: Readiness,
    latches: Vec<crate::readiness::Latch>,
    admin_server: admin::server::ServerConfig,
    identity: IdentityWatch,
}

impl App {
    /// Opens the data directory and binds the admin address. `advertise` is the gossip
    /// address peers dial (`crate::advertise::resolve`).
    pub async fn build(config: AgentConfig, advertise: SocketAddr) -> anyhow::Result<App> {
        let (readiness, latches) = Readiness::new(&["state", "gossip", "identity", "admin"]);
        let admin_server = admin_server_config(config.admin_max_connections);
        if let Some(path) = &config.smg_manifest {
            check_manifest_dir(path)?;
        }
        let dir = config.data_dir.clone();
        let (store, report) = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .context("opening the data directory")??;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            registrations = store.state().registrations.len(),
            tombstones = store.state().tombstones.len(),
            replayed = report.replayed,
            truncated_bytes = report.truncated_bytes,
            "state loaded"
        );
        if report.truncated_bytes > 0 {
            tracing::warn!(
                bytes = report.truncated_bytes,
                "cut a torn record off the end of the log (a crash during a write that was never acknowledged)"
            );
        }
        if report.removed_temp_snapshot {
            tracing::warn!(
                "removed an unfinished snapshot (state.bin.tmp) left by a crash during compaction; the log still had everything"
            );
        }
        let metrics = Arc::new(Metrics::new());
        report_rejected_records(&report.rejected, &metrics);
        let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let settings = NodeSettings {
            node_id: config.node_id.clone(),
            probe: config.probe.clone(),
            remove_failed: config.remove_failed,
            tombstone_ttl: config.tombstone_ttl,
            allow: config.cluster.allow_worker_cidrs.clone(),
            clock: crate::clock::Clock::System,
            fence_ratio: config.fence_ratio,
        };
        let node = Arc::new(Node::new(settings, store, metrics, probe_tx));
        latches[0].release();
        let listener = crate::admin::server::listen::bind(config.admin_listen).with_context(|| {
            format!(
                "cannot listen on the admin address {}; is another agent running? Choose another --admin-listen",
                config.admin_listen
            )
        })?;
        let tls = load_tls(&config)?;
        crate::metrics::tls::record_certificate_expiry(
            node.metrics(),
            &config.cluster.tls,
            &config.data_dir,
            &config.node_id,
        );
        // SPEC S10: the node id is the certificate's node name. The configuration
        // already checked operator files; this also covers auto material from disk.
        let cert_name = tls
            .node_name()
            .context("reading the node name of this node's certificate")?;
        if cert_name != config.node_id {
            anyhow::bail!(
                "the node id `{}` is not the node name `{cert_name}` of this node's certificate; a node's id is the name its certificate was issued for",
                config.node_id
            );
        }
        let c = &config.cluster;
        let transport =
            QuicTransport::new(tls, QuicSettings::for_gossip_interval(c.gossip_interval));
        node.metrics().attach_transport(transport.metrics());
        let generation = crate::clock::Clock::System.now_ms();
        let gossip_config = GossipConfig {
            node_id: config.node_id.clone(),
            generation,
            cluster_id: c.cluster_id.clone(),
            listen: c.gossip_listen,
            advertise,
            seeds: c.seeds.clone(),
            interval: c.gossip_interval,
            dead_node_grace_period: c.dead_node_grace_period,
            version: crate::version::VERSION.to_string(),
            identities: Some(transport.identities()),
            verdict_hold: probemesh_gossip::publication::verdict_hold(config.probe.interval),
        };
        // Gossip runs on a thread of its own (see probemesh_gossip::thread).
        let gossip = Arc::new(spawn_gossip_thread(gossip_config, transport).await?);
        if let Some(pace) = gossip.pace() {
            node.metrics().attach_pace(pace);
        }
        let guard = IdentityGuard::new(
            &config.node_id,
            generation,
            advertise,
            c.gossip_interval,
            !c.seeds.is_empty(),
            std::time::Instant::now(),
        );
        let identity = IdentityWatch::new(
            Arc::clone(&gossip),
            guard,
            latches[2].clone(),
            readiness.clone(),
        );
        tracing::info!(
            cluster_id = %c.cluster_id,
            listen = %c.gossip_listen,
            advertise = %advertise,
            seeds = ?c.seeds,
            interval = %humantime::format_duration(c.gossip_interval),
            "gossip endpoint up (QUIC, mutual TLS)"
        );
        latches[1].release();
        Ok(App {
            config,
            node,
            probe_rx,
            listener,
            gossip,
            readiness,
            latches,
            admin_server,
            identity,
        })
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` is cancelled, then stops every task in order.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            config,
            node,
            probe_rx,
            listener,
            gossip,
            readiness,
            latches,
            admin_server,
            identity,
        } = self;
        let checker =
            Checker::with_config(probe_checker_config(&config, admin_server.max_connections))
                .context("building the probe HTTP client")?;
        let engine = probe::spawn_engine(
            Arc::clone(&node),
            probe_rx,
            Arc::new(checker),
            probe::EngineSettings {
                concurrency: probe::DEFAULT_CONCURRENCY,
                rng: rand::SeedableRng::from_os_rng(),
            },
            shutdown.child_token(),
        );
        node.schedule_all();

        // Declarative workers are re-asserted at start, even if they were deleted before.
        for url in &config.workers {
            if node.registry().get(&url.id()).is_none() {
                match node.register(WorkerSpec::new(url.clone())).await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(worker = %url, error = %e, "could not register declarative worker")
                    }
                }
            }
        }
        let mut background = spawn_background(&node, &config, shutdown.child_token());
        if let Some(url) = &config.smg_url {
            let client = crate::gateway::smg::SmgClient::new(url, &config.node_id)
                .context("building the smg client")?;
            tracing::info!(smg = %url, "pushing the ready set into smg");
            background.push(tokio::spawn(crate::gateway::smg::run(
                Arc::clone(&node),
                client,
                shutdown.child_token(),
            )));
        }
        if let Some(path) = &config.smg_manifest {
            tracing::info!(path = %path.display(), "keeping the smg file-discovery manifest equal to the ready set");
            background.push(tokio::spawn(crate::gateway::manifest::run(
                Arc::clone(&node),
                path.clone(),
                shutdown.child_token(),
            )));
        }
        background.push(tokio::spawn(crate::cluster_sync::run(
            Arc::clone(&node),
            Arc::clone(&gossip),
            config.cluster.gossip_interval,
            Some(identity),
            shutdown.child_token(),
        )));

        let state = Arc::new(AdminState {
            node: Arc::clone(&node),
            token: config.admin_token.clone(),
            readiness,
            shutdown: shutdown.clone(),
            list_cache: Default::default(),
            held: admin::held::HeldLimits::new(node.metrics().admin().clone()),
        });
        let addr = listener.local_addr().context("reading the admin address")?;
        tracing::info!(
            node_id = %config.node_id,
            admin = %addr,
            token = config.admin_token.is_some(),
            max_connections = admin_server.max_connections,
            "admin API listening"
        );
        let router = admin::router(state);
        // Start-up is done: what it built and dropped (the OpenAPI document behind the
        // router, the decoded state) goes back to the kernel now (crate::memory).
        crate::memory::release_now();
        // And the code only start-up ran is unmapped (it reads procfs: a blocking thread).
        tokio::task::spawn_blocking(|| match crate::memory::unmap_start_up_code() {
            Ok(bytes) => tracing::debug!(
                bytes,
                "unmapped the code start-up ran; what runs now maps back in"
            ),
            Err(e) => {
                tracing::debug!(error = %e, "could not unmap the code start-up ran; it stays resident")
            }
        });
        latches[3].release();
        admin::server::serve(
            listener,
            router,
            admin_server,
            node.metrics().admin().clone(),
            shutdown.clone(),
        )
        .await;

        shutdown.cancel();
        // Every task stops at the cancellation; a commit or probe in progress is let
        // finish, within a deadline, so that shutdown cannot hang on a stuck disk or
        // worker. What is left is aborted (nothing acknowledged is lost: a commit is
        // acknowledged only after its fsync).
        let mut tasks = background;
        tasks.push(engine);
        let stopped = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
            for task in tasks.iter_mut() {
                let _ = task.await;
            }
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                left = tasks.iter().filter(|t| !t.is_finished()).count(),
                deadline = %humantime::format_duration(SHUTDOWN_DEADLINE),
                "shutdown: tasks still running at the deadline were stopped"
            );
            for task in &tasks {
                task.abort();
            }
        }
        match Arc::try_unwrap(gossip) {
            Ok(g) => {
                if let Err(e) = g.shutdown().await {
                    tracing::warn!(error = %e, "gossip did not stop cleanly");
                }
            }
            Err(_) => tracing::warn!("gossip handle still in use at shutdown"),
        }
        let n = Arc::clone(&node);
        match tokio::task::spawn_blocking(move || n.compact()).await {
            Ok(Ok(())) => tracing::info!("state flushed; bye"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not write a final snapshot (the log still has everything)")
            }
            Err(e) => tracing::warn!(error = %e, "final snapshot task failed"),
        }
        Ok(())
    }
}

/// Refuses to start when the `--smg-manifest` directory does not exist: a typo would
/// otherwise leave smg with no workers and only a warning in the log.
fn check_manifest_dir(path: &std::path::Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "--smg-manifest {}: the directory {} does not exist; create it (smg must be able to read it) or fix the path",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        anyhow::bail!(
            "--smg-manifest {} is a directory; give the path of the manifest file, e.g. {}/workers.json",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// How long shutdown waits for the agent's tasks (probe engine, cluster sync, smg
/// adapter, expiry) to stop after the cancellation; the probe engine's own drain
/// (3 s) fits inside it.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Raises the open-file limit (SPEC S13) and derives the admin server's connection cap
/// from it, so that admin connections can never use the descriptors probes need.
fn admin_server_config(requested: u32) -> admin::server::ServerConfig {
    use admin::server::fd_limit;
    let soft = match fd_limit::raise() {
        Ok(l) => {
            tracing::info!(
                before = l.before,
                soft = l.soft,
                hard = l.hard,
                "open-file limit raised to the hard limit"
            );
            l.soft
        }
        Err(e) => {
            // Keep going with what we have; the cap below still follows the limit.
            let soft = rlimit::Resource::NOFILE.get().map_or(1024, |(s, _)| s);
            tracing::warn!(error = %e, soft, "could not raise the open-file limit");
            soft
        }
    };
    let cap = fd_limit::effective_max_connections(requested, soft);
    if cap < requested as usize {
        tracing::warn!(
            requested,
            max_connections = cap,
            open_file_limit = soft,
            reserved = fd_limit::reserve(soft),
            "--admin-max-connections lowered to stay below the open-file limit (descriptors are reserved for probes, gossip and the store); raise `ulimit -n` to allow more"
        );
    }
    admin::server::ServerConfig::new(cap, fd_limit::max_refusing(soft))
}

/// The probe checker's settings: the allowlist, and at most as many kept connections
/// as the open-file limit leaves after the admin server's cap, the probes in flight
/// and the reserve (`fd_limit::reserve`). Past that bound probes fall back to a new
/// connection each (`probe::pool`).
fn probe_checker_config(config: &AgentConfig, admin_cap: usize) -> CheckerConfig {
    use admin::server::fd_limit;
    let soft = rlimit::Resource::NOFILE.get().map_or(1024, |(s, _)| s);
    let taken = u64::try_from(admin_cap.saturating_add(probe::DEFAULT_CONCURRENCY))
        .unwrap_or(u64::MAX)
        .saturating_add(fd_limit::reserve(soft));
    let max_idle = usize::try_from(soft.saturating_sub(taken))
        .unwrap_or(usize::MAX)
        .min(probe::check::DEFAULT_MAX_IDLE);
    tracing::info!(
        max_idle,
        open_file_limit = soft,
        "probe connections: one kept per worker between probes, at most max_idle"
    );
    CheckerConfig {
        max_idle,
        ..CheckerConfig::new(config.cluster.allow_worker_cidrs.clone())
    }
}

/// The gossip TLS identity: operator files, or a private CA made on first start.
fn load_tls(config: &AgentConfig) -> anyhow::Result<TlsMaterial> {
    match &config.cluster.tls {
        TlsSource::Files { ca, cert, key } => Ok(TlsMaterial::load(ca, cert, key)?),
        TlsSource::Auto => {
            let dir = config.data_dir.join("tls");
            let (m, outcome) = tls::ensure_auto_material(&dir, &config.node_id)
                .with_context(|| format!("creating TLS material under {}", dir.display()))?;
            match outcome {
                tls::AutoTls::Created => {
                    tracing::info!(dir = %dir.display(), "created a private cluster CA and node certificate; other nodes can join only with certificates from this CA (probemesh tls cert create --ca {})", dir.display())
                }
                tls::AutoTls::Completed => {
                    tracing::warn!(dir = %dir.display(), "completed TLS material that a crash during an earlier first start left half-made (a key without its certificate)")
                }
                tls::AutoTls::Reused => {
                    tracing::info!(dir = %dir.display(), "using the private cluster CA from an earlier start")
                }
            }
            Ok(m)
        }
    }
}

fn spawn_background(
    node: &Arc<Node>,
    config: &AgentConfig,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(crate::memory::run(
        crate::memory::RELEASE_PERIOD,
        shutdown.clone(),
    ))];
    tasks.push(tokio::spawn(crate::tombstone_expiry::run(
        Arc::clone(node),
        crate::tombstone_expiry::period(config.tombstone_ttl),
        shutdown.clone(),
    )));
    if !config.workers.is_empty() {
        let mut reasserter = Reasserter::new(&config.workers);
        let (n, stop) = (Arc::clone(node), shutdown);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let due = reasserter.due(tokio::time::Instant::now(), |id| n.registry().get(id).map(|e| e.status));
                        for url in due {
                            tracing::info!(worker = %url, "re-registering declarative worker after eviction");
                            if let Err(e) = n.register(WorkerSpec::new(url.clone())).await {
                                tracing::warn!(worker = %url, error = %e, "could not re-register declarative worker");
                            }
                        }
                    }
                }
            }
        }));
    }
    tasks
}

/// Individual log lines for records left out at load; past it, one summary line.
const MAX_REJECTED_LOGGED: usize = 100;

/// Counts every record the store left out at load (SPEC S11) and logs each one once.
fn report_rejected_records(rejected: &[RejectedRecord], metrics: &Metrics) {
    for (i, r) in rejected.iter().enumerate() {
        metrics.store().record_rejected(r.reason);
        if i < MAX_REJECTED_LOGGED {
            tracing::warn!(file = r.file, kind = r.kind, id = %r.id, generation = r.generation, reason = r.reason, error = %r.error, "left a stored record out of the loaded state: it fails validation, so it is never probed or shown");
        }
    }
    if rejected.len() > MAX_REJECTED_LOGGED {
        tracing::warn!(
            total = rejected.len(),
            logged = MAX_REJECTED_LOGGED,
            "more stored records failed validation than were logged one by one; all are counted in probemesh_store_records_rejected_total"
        );
    }
}
