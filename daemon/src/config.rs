//! The agent's configuration: flags, `PROBEMESH_*` environment and the TOML file,
//! merged with precedence flag > env > file > default and validated before anything is
//! bound or opened. Every problem is reported at once, each naming its key and source.

use crate::cli::{AgentArgs, parse_duration};
use probemesh_gossip::model::WorkerUrl;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod node_id;

/// Prefix of every environment variable the agent reads.
pub const ENV_PREFIX: &str = "PROBEMESH_";

/// Fully resolved agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Unique name of this node.
    pub node_id: String,
    /// Admin API address.
    pub admin_listen: SocketAddr,
    /// Bearer token for mutating admin requests.
    pub admin_token: Option<String>,
    /// `--admin-max-connections`: the connection cap asked for (the server lowers it
    /// below the open-file limit at start, see `admin::server::fd_limit`).
    pub admin_max_connections: u32,
    /// Durable state directory.
    pub data_dir: PathBuf,
    /// Defaults for workers that do not override their health settings.
    pub probe: ProbeDefaults,
    /// Whether failed workers are evicted (SPEC S6 b).
    pub remove_failed: bool,
    /// How long tombstones are kept.
    pub tombstone_ttl: Duration,
    /// Declarative registrations owned by this node.
    pub workers: Vec<WorkerUrl>,
    /// Log output format.
    pub log_format: LogFormat,
    /// Gossip settings.
    pub cluster: ClusterConfig,
    /// `--smg-url`: the gateway to push the ready set into.
    pub smg_url: Option<String>,
}

/// Where the gossip TLS material comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// A private CA and node certificate under `--data-dir/tls`, made on first start.
    Auto,
    /// Operator-provided PEM files.
    Files {
        /// Cluster CA certificate.
        ca: PathBuf,
        /// Node certificate.
        cert: PathBuf,
        /// Node private key.
        key: PathBuf,
    },
}

/// Gossip and cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Nodes of other clusters are ignored.
    pub cluster_id: String,
    /// UDP address the QUIC endpoint binds.
    pub gossip_listen: SocketAddr,
    /// Address peers dial.
    pub gossip_advertise: SocketAddr,
    /// Seed peers (`host:port`).
    pub seeds: Vec<String>,
    /// TLS material.
    pub tls: TlsSource,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// How long a dead member's state is kept.
    pub dead_node_grace_period: Duration,
    /// Allowed worker networks; empty allows all.
    pub allow_worker_cidrs: Vec<ipnet::IpNet>,
}

/// Default gossip interval: Serf's LAN interval. Membership of 16 nodes converges in
/// about a second and each node sends a few small messages per second.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// Node-wide probe defaults (`--probe-*`, `--*-threshold`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeDefaults {
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Probe path.
    pub path: String,
    /// Consecutive successes to become ready.
    pub success_threshold: u32,
    /// Consecutive failures to leave ready.
    pub failure_threshold: u32,
}

impl Default for ProbeDefaults {
    fn default() -> Self {
        ProbeDefaults {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            path: "/health".into(),
            success_threshold: 2,
            failure_threshold: 3,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format; use text or json")),
        }
    }
}

/// Bounds on settings that would make the agent useless or dangerous.
pub mod limits {
    use std::time::Duration;
    /// Shortest probe interval.
    pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
    /// Shortest probe timeout.
    pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(1);
    /// Largest success or failure threshold (the cluster validator's).
    pub const MAX_THRESHOLD: u32 = probemesh_gossip::model::validate::MAX_THRESHOLD;
    /// Longest probe path (the cluster validator's).
    pub const MAX_PATH_LEN: usize = probemesh_gossip::model::validate::MAX_PATH_LEN;
    /// Longest node id (the cluster validator's).
    pub const MAX_NODE_ID_LEN: usize = probemesh_gossip::model::validate::MAX_NODE_ID_LEN;
    /// Default of `--admin-max-connections` (SPEC section 2).
    pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 1024;
    /// Largest `--admin-max-connections`: far above any sensible local client count;
    /// each connection may hold up to ~100 KiB of buffers.
    pub const MAX_ADMIN_MAX_CONNECTIONS: u32 = 1 << 20;
}

/// The TOML file: the same keys as the flags, in snake_case. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    admin_listen: Option<String>,
    admin_token: Option<String>,
    admin_max_connections: Option<u32>,
    data_dir: Option<PathBuf>,
    probe_interval: Option<String>,
    probe_timeout: Option<String>,
    probe_path: Option<String>,
    success_threshold: Option<u32>,
    failure_threshold: Option<u32>,
    remove_failed: Option<bool>,
    tombstone_ttl: Option<String>,
    worker: Option<Vec<String>>,
    log_format: Option<String>,
    cluster_id: Option<String>,
    gossip_listen: Option<String>,
    gossip_advertise: Option<String>,
    seeds: Option<Vec<String>>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    gossip_interval: Option<String>,
    dead_node_grace_period: Option<String>,
    allow_worker_cidr: Option<Vec<String>>,
    smg_url: Option<String>,
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy, Debug)]
enum Source {
    Flag,
    Env,
    File,
    Default,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem(String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

fn describe(key: &str, source: Source) -> String {
    let env = format!("{ENV_PREFIX}{}", key.to_uppercase());
    match source {
        Source::Flag => format!("flag --{}", key.replace('_', "-")),
        Source::Env => format!("environment variable {env}"),
        Source::File => format!("config file key `{key}`"),
        Source::Default => format!("default of `{key}`"),
    }
}

/// Collects problems while resolving; keeps going so all are reported together.
struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
}

impl Resolver<'_> {
    fn problem(&mut self, key: &str, source: Source, msg: impl fmt::Display) {
        self.problems
            .push(ConfigProblem(format!("{}: {msg}", describe(key, source))));
    }

    fn env_raw(&self, key: &str) -> Option<String> {
        (self.env)(&format!("{ENV_PREFIX}{}", key.to_uppercase()))
    }

    /// Picks flag > env > file > default. `parse` turns env text into a value; the
    /// file value arrives already converted by `from_file`.
    fn pick<T, F>(
        &mut self,
        key: &str,
        flag: Option<T>,
        file: Option<F>,
        parse: impl Fn(&str) -> Result<T, String>,
        from_file: impl Fn(F) -> Result<T, String>,
    ) -> Option<(T, Source)> {
        if let Some(v) = flag {
            return Some((v, Source::Flag));
        }
        if let Some(raw) = self.env_raw(key) {
            return match parse(&raw) {
                Ok(v) => Some((v, Source::Env)),
                Err(e) => {
                    self.problem(key, Source::Env, e);
                    None
                }
            };
        }
        if let Some(raw) = file {
            return match from_file(raw) {
                Ok(v) => Some((v, Source::File)),
                Err(e) => {
                    self.problem(key, Source::File, e);
                    None
                }
            };
        }
        None
    }

    /// Like `pick` for values whose file form equals their typed form.
    fn pick_same<T: FromStr>(
        &mut self,
        key: &str,
        flag: Option<T>,
        file: Option<T>,
    ) -> Option<(T, Source)>
    where
        T::Err: fmt::Display,
    {
        self.pick(
            key,
            flag,
            file,
            |s| s.trim().parse::<T>().map_err(|e| format!("`{s}`: {e}")),
            Ok,
        )
    }

    fn pick_path(
        &mut self,
        key: &str,
        flag: Option<PathBuf>,
        file: Option<PathBuf>,
    ) -> Option<(PathBuf, Source)> {
        self.pick(key, flag, file, |s| Ok(PathBuf::from(s)), Ok)
    }

    fn pick_duration(
        &mut self,
        key: &str,
        flag: Option<Duration>,
        file: Option<String>,
    ) -> Option<(Duration, Source)> {
        self.pick(key, flag, file, parse_duration, |s| parse_duration(&s))
    }
}

/// Loads and validates the configuration. `env` looks up environment variables (tests
/// pass a map; `main` passes `std::env::var`).
pub fn load(
    args: &AgentArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigError> {
    let mut r = Resolver {
        env,
        problems: Vec::new(),
    };
    let config_path = args
        .config
        .clone()
        .or_else(|| env(&format!("{ENV_PREFIX}CONFIG")).map(PathBuf::from));
    let file = match config_path {
        Some(path) => match read_file(&path) {
            Ok(f) => f,
            Err(e) => return Err(ConfigError(vec![ConfigProblem(e)])),
        },
        None => FileConfig::default(),
    };
    let d = ProbeDefaults::default();

    let node_id = r
        .pick(
            "node_id",
            args.node_id.clone(),
            file.node_id,
            |s| Ok(s.to_string()),
            Ok,
        )
        .map(|(v, s)| (v.trim().to_string(), s));
    if let Some((id, src)) = &node_id
        && let Err(e) = validate_node_id(id)
    {
        r.problem("node_id", *src, e);
    }

    let admin_listen = r
        .pick(
            "admin_listen",
            args.admin_listen.clone(),
            file.admin_listen,
            |s| Ok(s.to_string()),
            Ok,
        )
        .unwrap_or(("127.0.0.1:7801".into(), Source::Default));
    let admin_listen = match admin_listen.0.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.problem(
                "admin_listen",
                admin_listen.1,
                format!(
                    "`{}` is not an address; write it like 127.0.0.1:7801",
                    admin_listen.0
                ),
            );
            None
        }
    };
    let admin_token = r
        .pick(
            "admin_token",
            args.admin_token.clone(),
            file.admin_token,
            |s| Ok(s.to_string()),
            Ok,
        )
        .map(|(t, _)| t)
        .filter(|t| !t.is_empty());
    if let Some(addr) = admin_listen
        && !addr.ip().is_loopback()
        && admin_token.is_none()
    {
        r.problems.push(ConfigProblem(format!(
            "admin_listen: {addr} is not a loopback address and no admin_token is set; anyone who can reach it could change the worker set. Set --admin-token (or PROBEMESH_ADMIN_TOKEN), or listen on 127.0.0.1"
        )));
    }

    let admin_max_connections = match r.pick_same(
        "admin_max_connections",
        args.admin_max_connections,
        file.admin_max_connections,
    ) {
        Some((v, src)) => match check_admin_max_connections(v) {
            Ok(()) => v,
            Err(e) => {
                r.problem("admin_max_connections", src, e);
                limits::DEFAULT_ADMIN_MAX_CONNECTIONS
            }
        },
        None => limits::DEFAULT_ADMIN_MAX_CONNECTIONS,
    };

    let data_dir = r
        .pick_path("data_dir", args.data_dir.clone(), file.data_dir)
        .map_or_else(|| PathBuf::from("./probemesh-data"), |(p, _)| p);

    let interval = r.pick_duration("probe_interval", args.probe_interval, file.probe_interval);
    let timeout = r.pick_duration("probe_timeout", args.probe_timeout, file.probe_timeout);
    let path = r.pick(
        "probe_path",
        args.probe_path.clone(),
        file.probe_path,
        |s| Ok(s.to_string()),
        Ok,
    );
    let success = r.pick_same(
        "success_threshold",
        args.success_threshold,
        file.success_threshold,
    );
    let failure = r.pick_same(
        "failure_threshold",
        args.failure_threshold,
        file.failure_threshold,
    );
    let mut probe = d.clone();
    if let Some((v, src)) = interval {
        match check_interval(v) {
            Ok(()) => probe.interval = v,
            Err(e) => r.problem("probe_interval", src, e),
        }
    }
    if let Some((v, src)) = timeout {
        match check_timeout(v) {
            Ok(()) => probe.timeout = v,
            Err(e) => r.problem("probe_timeout", src, e),
        }
    }
    if let Some((v, src)) = path {
        match check_probe_path(&v) {
            Ok(()) => probe.path = v,
            Err(e) => r.problem("probe_path", src, e),
        }
    }
    for (key, picked, slot) in [
        ("success_threshold", success, &mut probe.success_threshold),
        ("failure_threshold", failure, &mut probe.failure_threshold),
    ] {
        if let Some((v, src)) = picked {
            match check_threshold(v) {
                Ok(()) => *slot = v,
                Err(e) => r.problem(key, src, e),
            }
        }
    }

    let remove_failed = r
        .pick_same("remove_failed", args.remove_failed, file.remove_failed)
        .is_none_or(|(v, _)| v);
    let tombstone_ttl =
        match r.pick_duration("tombstone_ttl", args.tombstone_ttl, file.tombstone_ttl) {
            Some((v, _)) if v >= Duration::from_secs(1) => v,
            Some((_, src)) => {
                r.problem(
                    "tombstone_ttl",
                    src,
                    "must be at least 1s; a shorter TTL lets deleted workers come back",
                );
                Duration::from_secs(86_400)
            }
            None => Duration::from_secs(86_400),
        };

    let worker_flag = (!args.workers.is_empty()).then(|| args.workers.clone());
    let workers_raw = r.pick(
        "worker",
        worker_flag,
        file.worker,
        |s| {
            Ok(s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect())
        },
        Ok,
    );
    let mut workers = Vec::new();
    if let Some((list, src)) = workers_raw {
        for raw in list {
            match WorkerUrl::parse(&raw) {
                Ok(u) if !workers.contains(&u) => workers.push(u),
                Ok(_) => {}
                Err(e) => r.problem("worker", src, e),
            }
        }
    }

    let log_format = r
        .pick(
            "log_format",
            args.log_format,
            file.log_format,
            |s| s.trim().parse(),
            |s| s.parse(),
        )
        .map_or(LogFormat::Text, |(v, _)| v);

    let cluster = resolve_cluster(
        &mut r,
        args,
        ClusterFile {
            cluster_id: file.cluster_id,
            gossip_listen: file.gossip_listen,
            gossip_advertise: file.gossip_advertise,
            seeds: file.seeds,
            tls_ca: file.tls_ca,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            gossip_interval: file.gossip_interval,
            dead_node_grace_period: file.dead_node_grace_period,
            allow_worker_cidr: file.allow_worker_cidr,
        },
    );

    let node_id = node_id::resolve(&mut r, node_id, cluster.as_ref().map(|c| &c.tls));

    let smg_url = match r.pick(
        "smg_url",
        args.smg_url.clone(),
        file.smg_url,
        |s| Ok(s.to_string()),
        Ok,
    ) {
        Some((raw, src)) => match WorkerUrl::parse(&raw) {
            Ok(u) => Some(u.to_string()),
            Err(e) => {
                r.problem("smg_url", src, e);
                None
            }
        },
        None => None,
    };

    let (Some(admin_listen), Some(cluster), true) = (admin_listen, cluster, r.problems.is_empty())
    else {
        return Err(ConfigError(r.problems));
    };
    Ok(AgentConfig {
        node_id,
        admin_listen,
        admin_token,
        admin_max_connections,
        data_dir,
        probe,
        remove_failed,
        tombstone_ttl,
        workers,
        log_format,
        cluster,
        smg_url,
    })
}

/// The cluster keys of the file, moved out so `resolve_cluster` can own them.
struct ClusterFile {
    cluster_id: Option<String>,
    gossip_listen: Option<String>,
    gossip_advertise: Option<String>,
    seeds: Option<Vec<String>>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    gossip_interval: Option<String>,
    dead_node_grace_period: Option<String>,
    allow_worker_cidr: Option<Vec<String>>,
}

fn comma_list(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect())
}

fn resolve_cluster(
    r: &mut Resolver<'_>,
    args: &AgentArgs,
    file: ClusterFile,
) -> Option<ClusterConfig> {
    let before = r.problems.len();
    let cluster_id = r
        .pick(
            "cluster_id",
            args.cluster_id.clone(),
            file.cluster_id,
            |s| Ok(s.trim().to_string()),
            Ok,
        )
        .map_or_else(
            || "probemesh".to_string(),
            |(v, src)| {
                if let Err(e) = validate_node_id(&v) {
                    r.problem("cluster_id", src, e);
                }
                v
            },
        );
    let listen = r
        .pick(
            "gossip_listen",
            args.gossip_listen.clone(),
            file.gossip_listen,
            |s| Ok(s.to_string()),
            Ok,
        )
        .unwrap_or(("0.0.0.0:7800".into(), Source::Default));
    let listen = match listen.0.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            r.problem(
                "gossip_listen",
                listen.1,
                "needs a fixed port: peers dial the advertised address",
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            r.problem(
                "gossip_listen",
                listen.1,
                format!(
                    "`{}` is not an address; write it like 0.0.0.0:7800",
                    listen.0
                ),
            );
            None
        }
    };
    let seeds_flag = (!args.seeds.is_empty()).then(|| args.seeds.clone());
    let seeds = r.pick("seeds", seeds_flag, file.seeds, comma_list, Ok);
    let mut seed_list = Vec::new();
    if let Some((list, src)) = seeds {
        for seed in list {
            match seed.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    seed_list.push(seed)
                }
                _ => r.problem("seeds", src, format!("`{seed}` is not host:port")),
            }
        }
    }
    let advertise_raw = r.pick(
        "gossip_advertise",
        args.gossip_advertise.clone(),
        file.gossip_advertise,
        |s| Ok(s.to_string()),
        Ok,
    );
    let advertise = match (advertise_raw, listen) {
        (Some((raw, src)), _) => match raw.trim().parse::<SocketAddr>() {
            Ok(a) if !a.ip().is_unspecified() && a.port() != 0 => Some(a),
            _ => {
                r.problem(
                    "gossip_advertise",
                    src,
                    format!("`{raw}` must be a concrete ip:port that peers can dial"),
                );
                None
            }
        },
        (None, Some(l)) => match derive_advertise(l, !seed_list.is_empty()) {
            Ok(a) => Some(a),
            Err(e) => {
                r.problems
                    .push(ConfigProblem(format!("gossip_advertise: {e}")));
                None
            }
        },
        (None, None) => None,
    };

    let ca = r.pick_path("tls_ca", args.tls_ca.clone(), file.tls_ca);
    let cert = r.pick_path("tls_cert", args.tls_cert.clone(), file.tls_cert);
    let key = r.pick_path("tls_key", args.tls_key.clone(), file.tls_key);
    let tls = match (ca, cert, key) {
        (None, None, None) => TlsSource::Auto,
        (Some((ca, _)), Some((cert, _)), Some((key, _))) => TlsSource::Files { ca, cert, key },
        _ => {
            r.problems.push(ConfigProblem(
                "tls_ca, tls_cert, tls_key: give all three or none (none makes a private CA under --data-dir/tls)".into(),
            ));
            TlsSource::Auto
        }
    };
    let gossip_interval = match r.pick_duration(
        "gossip_interval",
        args.gossip_interval,
        file.gossip_interval,
    ) {
        Some((v, src)) if v < Duration::from_millis(10) || v > Duration::from_secs(60) => {
            r.problem("gossip_interval", src, "must be between 10ms and 60s");
            DEFAULT_GOSSIP_INTERVAL
        }
        Some((v, _)) => v,
        None => DEFAULT_GOSSIP_INTERVAL,
    };
    let grace = match r.pick_duration(
        "dead_node_grace_period",
        args.dead_node_grace_period,
        file.dead_node_grace_period,
    ) {
        Some((v, src)) if v < Duration::from_secs(1) => {
            r.problem("dead_node_grace_period", src, "must be at least 1s");
            Duration::from_secs(900)
        }
        Some((v, _)) => v,
        None => Duration::from_secs(900),
    };
    let cidr_flag = (!args.allow_worker_cidrs.is_empty()).then(|| args.allow_worker_cidrs.clone());
    let mut allow = Vec::new();
    if let Some((list, src)) = r.pick(
        "allow_worker_cidr",
        cidr_flag,
        file.allow_worker_cidr,
        comma_list,
        Ok,
    ) {
        for raw in list {
            let parsed = raw
                .parse::<ipnet::IpNet>()
                .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => allow.push(n.trunc()),
                Err(_) => r.problem(
                    "allow_worker_cidr",
                    src,
                    format!("`{raw}` is not a network; write it like 10.0.0.0/8"),
                ),
            }
        }
    }
    if r.problems.len() > before {
        return None;
    }
    Some(ClusterConfig {
        cluster_id,
        gossip_listen: listen?,
        gossip_advertise: advertise?,
        seeds: seed_list,
        tls,
        gossip_interval,
        dead_node_grace_period: grace,
        allow_worker_cidrs: allow,
    })
}

/// The advertise address when none is given: the listen address if it is concrete;
/// else the address of the interface that routes outward (found without sending a
/// packet); else, for a node without seeds, loopback (a single-node cluster works).
fn derive_advertise(listen: SocketAddr, has_seeds: bool) -> Result<SocketAddr, String> {
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    let outbound = std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    match outbound {
        Some(ip) => Ok(SocketAddr::new(ip, listen.port())),
        None if !has_seeds => Ok(SocketAddr::new(
            std::net::Ipv4Addr::LOCALHOST.into(),
            listen.port(),
        )),
        None => Err(format!(
            "cannot find a non-loopback address to advertise for {listen}; set --gossip-advertise to the address peers should dial"
        )),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

fn default_node_id() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| validate_node_id(h).is_ok())
        .unwrap_or_else(|| "probemesh".into())
}

/// Node ids appear in URLs, metrics labels and logs: printable, no spaces. The rule is
/// the cluster validator's, which peers' records are checked against too.
pub fn validate_node_id(id: &str) -> Result<(), String> {
    probemesh_gossip::model::validate::node_id(probemesh_gossip::model::Field::Owner, id)
        .map_err(|e| e.detail().to_string())
}

/// Probe intervals below the minimum would turn the agent into a load generator.
pub fn check_interval(d: Duration) -> Result<(), String> {
    if d < limits::MIN_PROBE_INTERVAL {
        return Err(format!(
            "{} is too short; the minimum is 10ms",
            humantime::format_duration(d)
        ));
    }
    Ok(())
}

/// The admin connection cap: at least 1 (0 would refuse every client), at most
/// [`limits::MAX_ADMIN_MAX_CONNECTIONS`].
pub fn check_admin_max_connections(v: u32) -> Result<(), String> {
    if v == 0 || v > limits::MAX_ADMIN_MAX_CONNECTIONS {
        return Err(format!(
            "{v} is out of range; use 1 to {}",
            limits::MAX_ADMIN_MAX_CONNECTIONS
        ));
    }
    Ok(())
}

/// Probe timeouts must be positive.
pub fn check_timeout(d: Duration) -> Result<(), String> {
    if d < limits::MIN_PROBE_TIMEOUT {
        return Err("must be at least 1ms".into());
    }
    Ok(())
}

/// Thresholds between 1 and [`limits::MAX_THRESHOLD`] (the cluster validator's rule).
pub fn check_threshold(v: u32) -> Result<(), String> {
    use probemesh_gossip::model::{Field, validate};
    validate::threshold(Field::HealthSuccessThreshold, v).map_err(|e| e.detail().to_string())
}

/// `--probe-path` follows the rule of a worker's `health.path` (the cluster
/// validator's): it is joined to every worker's address the same way.
pub fn check_probe_path(p: &str) -> Result<(), String> {
    probemesh_gossip::model::validate::health_path(p).map_err(|e| e.detail().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = load(&AgentArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(c.admin_listen, "127.0.0.1:7801".parse().unwrap());
        assert_eq!(c.probe, ProbeDefaults::default());
        assert!(c.remove_failed);
        assert_eq!(c.tombstone_ttl, Duration::from_secs(86_400));
        assert_eq!(c.data_dir, PathBuf::from("./probemesh-data"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.node_id.is_empty());
    }

    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let f = file_with(
            "probe_interval = \"7s\"\nprobe_timeout = \"3s\"\nprobe_path = \"/file\"\nsuccess_threshold = 4\n",
        );
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            probe_interval: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let env = env_of(&[
            ("PROBEMESH_PROBE_INTERVAL", "9s"),
            ("PROBEMESH_PROBE_TIMEOUT", "500ms"),
        ]);
        let c = load(&args, &env).unwrap();
        assert_eq!(c.probe.interval, Duration::from_secs(1), "flag wins");
        assert_eq!(
            c.probe.timeout,
            Duration::from_millis(500),
            "env beats file"
        );
        assert_eq!(c.probe.path, "/file", "file beats default");
        assert_eq!(c.probe.success_threshold, 4);
        assert_eq!(c.probe.failure_threshold, 3, "default");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_source() {
        let f = file_with("failure_threshold = 0\nprobe_path = \"health\"\n");
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            admin_listen: Some("nonsense".into()),
            ..Default::default()
        };
        let env = env_of(&[
            ("PROBEMESH_PROBE_INTERVAL", "fast"),
            ("PROBEMESH_WORKER", "ftp://x,http://ok:1"),
        ]);
        let msg = load(&args, &env).unwrap_err().to_string();
        for needle in [
            "environment variable PROBEMESH_PROBE_INTERVAL",
            "config file key `failure_threshold`",
            "config file key `probe_path`",
            "flag --admin-listen",
            "environment variable PROBEMESH_WORKER",
        ] {
            assert!(msg.contains(needle), "missing {needle} in:\n{msg}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        let f = file_with("probe_intervall = \"5s\"\n");
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let msg = load(&args, &env_of(&[])).unwrap_err().to_string();
        assert!(msg.contains("probe_intervall"), "{msg}");
    }

    #[test]
    fn non_loopback_admin_needs_a_token() {
        let args = AgentArgs {
            admin_listen: Some("0.0.0.0:7801".into()),
            ..Default::default()
        };
        let msg = load(&args, &env_of(&[])).unwrap_err().to_string();
        assert!(msg.contains("admin_token"), "{msg}");
        let c = load(&args, &env_of(&[("PROBEMESH_ADMIN_TOKEN", "s3cret")])).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn workers_come_from_flags_env_or_file_and_are_normalized() {
        let env = env_of(&[("PROBEMESH_WORKER", "http://A:1/, http://b:2")]);
        let c = load(&AgentArgs::default(), &env).unwrap();
        let urls: Vec<&str> = c.workers.iter().map(|w| w.as_str()).collect();
        assert_eq!(urls, vec!["http://a:1", "http://b:2"]);
        let f = file_with(
            "worker = [\"http://c:3\", \"http://c:3/\"]\nremove_failed = false\nlog_format = \"json\"\n",
        );
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let c = load(&args, &env_of(&[])).unwrap();
        assert_eq!(c.workers.len(), 1);
        assert!(!c.remove_failed);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn admin_max_connections_resolves_like_every_key() {
        let c = load(&AgentArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(c.admin_max_connections, 1024, "default");
        let f = file_with("admin_max_connections = 64\n");
        let from_file = AgentArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(
            load(&from_file, &env_of(&[]))
                .unwrap()
                .admin_max_connections,
            64
        );
        let env = env_of(&[("PROBEMESH_ADMIN_MAX_CONNECTIONS", " 32 ")]);
        assert_eq!(
            load(&from_file, &env).unwrap().admin_max_connections,
            32,
            "env beats file"
        );
        let flag = AgentArgs {
            admin_max_connections: Some(8),
            ..from_file
        };
        assert_eq!(
            load(&flag, &env).unwrap().admin_max_connections,
            8,
            "flag wins"
        );
    }

    #[test]
    fn invalid_admin_max_connections_stops_start_up_naming_the_key() {
        let zero = AgentArgs {
            admin_max_connections: Some(0),
            ..Default::default()
        };
        let msg = load(&zero, &env_of(&[])).unwrap_err().to_string();
        assert!(msg.contains("flag --admin-max-connections"), "{msg}");
        let env = env_of(&[("PROBEMESH_ADMIN_MAX_CONNECTIONS", "lots")]);
        let msg = load(&AgentArgs::default(), &env).unwrap_err().to_string();
        assert!(
            msg.contains("environment variable PROBEMESH_ADMIN_MAX_CONNECTIONS"),
            "{msg}"
        );
        let f = file_with("admin_max_connections = 0\n");
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let msg = load(&args, &env_of(&[])).unwrap_err().to_string();
        assert!(
            msg.contains("config file key `admin_max_connections`"),
            "{msg}"
        );
        let f = file_with("admin_max_connections = \"many\"\n");
        let args = AgentArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let msg = load(&args, &env_of(&[])).unwrap_err().to_string();
        assert!(msg.contains("admin_max_connections"), "{msg}");
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let args = AgentArgs {
            config: Some("/nonexistent/probemesh.toml".into()),
            ..Default::default()
        };
        let msg = load(&args, &env_of(&[])).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/probemesh.toml"), "{msg}");
    }
}
