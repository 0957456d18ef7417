//! Precedence and parsing: for each setting, the first source that has it (flag > env >
//! file) is parsed by the setting's one parser; without one, the schema's default. A
//! bad value is recorded, naming its key and source, and resolution goes on with the
//! default, so that one start-up reports every problem. Then the rules that involve
//! several settings, and the assembly of [`AgentConfig`].

use super::key::{Key, ListKey};
use super::layers::{Layers, Source};
use super::schema::{self as s};
use super::{AgentConfig, ClusterConfig, ConfigProblem, ProbeDefaults, TlsSource, node_id};
use std::fmt;

/// Resolves settings from `layers`, collecting problems instead of stopping at one.
pub(super) struct Resolver<'a> {
    layers: &'a Layers<'a>,
    /// Every problem so far, in the order found.
    pub(super) problems: Vec<ConfigProblem>,
    /// Names of the settings resolved so far (a test checks that this is every key).
    pub(super) seen: Vec<&'static str>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(layers: &'a Layers<'a>) -> Self {
        Resolver {
            layers,
            problems: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Records a problem with `key` as given by `source`.
    pub(super) fn problem(&mut self, key: &str, source: Source, msg: impl fmt::Display) {
        self.problems.push(ConfigProblem::new(format!(
            "{}: {msg}",
            source.describe(key)
        )));
    }

    /// The value the first source that has `key` gives, with that source; `None` when
    /// no source has it or its value is bad (then the problem is recorded).
    pub(super) fn pick<T>(&mut self, key: &Key<T>) -> Option<(T, Source)> {
        self.seen.push(key.name);
        let (raw, source) = self.layers.find(key.name)?;
        match raw.text(key.file_type).and_then(|text| (key.parse)(&text)) {
            Ok(value) => Some((value, source)),
            Err(e) => {
                self.problem(key.name, source, e);
                None
            }
        }
    }

    /// The value of `key`: given, or its default (also when the given one is bad, so
    /// resolution can go on; the problem stops start-up).
    pub(super) fn get<T>(&mut self, key: &Key<T>) -> T {
        self.pick(key).map_or_else(key.default, |(v, _)| v)
    }

    /// The elements of a list setting; each bad element is its own problem.
    pub(super) fn list<T>(&mut self, key: &ListKey<T>) -> Vec<T> {
        self.seen.push(key.name);
        let Some((raw, source)) = self.layers.find(key.name) else {
            return Vec::new();
        };
        let items = match raw.list() {
            Ok(items) => items,
            Err(e) => {
                self.problem(key.name, source, e);
                return Vec::new();
            }
        };
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            match (key.parse)(&item) {
                Ok(v) => values.push(v),
                Err(e) => self.problem(key.name, source, e),
            }
        }
        values
    }
}

/// Every setting into an [`AgentConfig`]; problems are left in `r`. The order of the
/// calls is the order in which problems are reported.
pub(super) fn agent_config(r: &mut Resolver<'_>) -> AgentConfig {
    let node_id = r.pick(&s::NODE_ID);
    let admin_listen = r.get(&s::ADMIN_LISTEN);
    let admin_token = r.get(&s::ADMIN_TOKEN);
    if !admin_listen.ip().is_loopback() && admin_token.is_none() {
        r.problems.push(ConfigProblem::new(format!(
            "admin_listen: {admin_listen} is not a loopback address and no admin_token is set; anyone who can reach it could change the worker set. Set --admin-token (or PROBEMESH_ADMIN_TOKEN), or listen on 127.0.0.1"
        )));
    }
    let admin_max_connections = r.get(&s::ADMIN_MAX_CONNECTIONS);
    let data_dir = r.get(&s::DATA_DIR);
    let probe = ProbeDefaults {
        interval: r.get(&s::PROBE_INTERVAL),
        timeout: r.get(&s::PROBE_TIMEOUT),
        path: r.get(&s::PROBE_PATH),
        kind: r.get(&s::PROBE_KIND),
        success_threshold: r.get(&s::SUCCESS_THRESHOLD),
        failure_threshold: r.get(&s::FAILURE_THRESHOLD),
    };
    let remove_failed = r.get(&s::REMOVE_FAILED);
    let fence_ratio = r.get(&s::FENCE_RATIO);
    let tombstone_ttl = r.get(&s::TOMBSTONE_TTL);
    let mut workers = Vec::new();
    for url in r.list(&s::WORKER) {
        // Two spellings of one URL normalize to one registration.
        if !workers.contains(&url) {
            workers.push(url);
        }
    }
    let log_format = r.get(&s::LOG_FORMAT);
    let cluster = cluster_config(r);
    let node_id = node_id::resolve(r, node_id, &cluster.tls);
    let smg_url = r.get(&s::SMG_URL);
    let smg_manifest = r.get(&s::SMG_MANIFEST);
    AgentConfig {
        node_id,
        admin_listen,
        admin_token,
        admin_max_connections,
        data_dir,
        probe,
        remove_failed,
        fence_ratio,
        tombstone_ttl,
        workers,
        log_format,
        cluster,
        smg_url,
        smg_manifest,
    }
}

fn cluster_config(r: &mut Resolver<'_>) -> ClusterConfig {
    let cluster_id = r.get(&s::CLUSTER_ID);
    let gossip_listen = r.get(&s::GOSSIP_LISTEN);
    let seeds = r.list(&s::SEEDS);
    let gossip_advertise = r.get(&s::GOSSIP_ADVERTISE);
    let tls = match (r.get(&s::TLS_CA), r.get(&s::TLS_CERT), r.get(&s::TLS_KEY)) {
        (None, None, None) => TlsSource::Auto,
        (Some(ca), Some(cert), Some(key)) => TlsSource::Files { ca, cert, key },
        _ => {
            r.problems.push(ConfigProblem::new(
                "tls_ca, tls_cert, tls_key: give all three or none (none makes a private CA under --data-dir/tls)",
            ));
            TlsSource::Auto
        }
    };
    ClusterConfig {
        cluster_id,
        gossip_listen,
        gossip_advertise,
        seeds,
        tls,
        gossip_interval: r.get(&s::GOSSIP_INTERVAL),
        dead_node_grace_period: r.get(&s::DEAD_NODE_GRACE_PERIOD),
        allow_worker_cidrs: r.list(&s::ALLOW_WORKER_CIDR),
    }
}
