//! The documented schema: every agent setting once, with its name, the TOML type of its
//! file value, its parser, its default and its `--help` line.
//!
//! A setting's flag and environment variable are derived from its name (`key.rs`), and
//! its flag is made from this table ([`agent_flags`]), so adding a setting means one
//! entry here, one line where `resolve.rs` puts it into [`AgentConfig`], and a row in
//! docs/configuration.md (a unit test fails until the row is there). Settings are
//! listed in the order of the docs' tables.
//!
//! [`AgentConfig`]: super::AgentConfig

use super::LogFormat;
use super::key::{FileType, Key, ListKey, Setting, Shown};
use super::parse;
use probemesh_gossip::model::{ProbeKind, WorkerUrl};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

// Defaults: one named function each, used by the resolver, by `ProbeDefaults::default`,
// and (through `Shown::Value`) by `--help` and the docs test.

/// `node_id`: the host name, or `probemesh` when the host name is not a valid node id.
pub fn default_node_id() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| parse::validate_node_id(h).is_ok())
        .unwrap_or_else(|| "probemesh".into())
}

/// `admin_listen`: loopback, so an agent without a token is reachable only locally.
pub fn default_admin_listen() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 7801)
}

/// `admin_max_connections` (SPEC section 2).
pub fn default_admin_max_connections() -> u32 {
    1024
}

/// `data_dir`, relative to the working directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./probemesh-data")
}

/// `probe_interval`.
pub fn default_probe_interval() -> Duration {
    Duration::from_secs(5)
}

/// `probe_timeout`.
pub fn default_probe_timeout() -> Duration {
    Duration::from_secs(2)
}

/// `probe_path`.
pub fn default_probe_path() -> String {
    "/health".into()
}

/// `probe_kind` (SPEC S3).
pub fn default_probe_kind() -> ProbeKind {
    ProbeKind::Http
}

/// `success_threshold`.
pub fn default_success_threshold() -> u32 {
    2
}

/// `failure_threshold`.
pub fn default_failure_threshold() -> u32 {
    3
}

/// `remove_failed`: failed workers are evicted cluster-wide (SPEC S6 b).
pub fn default_remove_failed() -> bool {
    true
}

/// `fence_ratio` (SPEC S12).
pub fn default_fence_ratio() -> f64 {
    0.8
}

/// `tombstone_ttl`.
pub fn default_tombstone_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `log_format`.
pub fn default_log_format() -> LogFormat {
    LogFormat::Text
}

/// `cluster_id`.
pub fn default_cluster_id() -> String {
    "probemesh".into()
}

/// `gossip_listen`: every interface, so peers can reach a node started without flags.
pub fn default_gossip_listen() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 7800)
}

/// `gossip_interval`: Serf's LAN interval. Membership of 16 nodes converges in about a
/// second and each node sends a few small messages per second.
pub fn default_gossip_interval() -> Duration {
    Duration::from_millis(200)
}

/// `dead_node_grace_period`: Quickwit's 15 minutes.
pub fn default_dead_node_grace_period() -> Duration {
    Duration::from_secs(15 * 60)
}

/// Settings that are off, or derived at start, when not given.
fn none<T>() -> Option<T> {
    None
}

/// `--node-id`. Its default is decided by `node_id.rs`: the certificate's node name with
/// `--tls-cert`, else [`default_node_id`].
pub const NODE_ID: Key<String> = Key {
    name: "node_id",
    value_name: "NAME",
    help: "Unique name of this node; with --tls-cert it must be the certificate's node \
           name [default: the certificate's node name with --tls-cert, else the host name]",
    file_type: FileType::String,
    parse: parse::node_id,
    default: default_node_id,
    shown: Shown::Text(
        "with `--tls-cert`: the node name in the certificate (its subject CN); else the host name (`probemesh` if the host name is not a valid node id)",
    ),
};

/// `--admin-listen`.
pub const ADMIN_LISTEN: Key<SocketAddr> = Key {
    name: "admin_listen",
    value_name: "ADDR",
    help: "TCP address of the admin HTTP API",
    file_type: FileType::String,
    parse: parse::admin_listen,
    default: default_admin_listen,
    shown: Shown::Value(SocketAddr::to_string),
};

/// `--admin-token`.
pub const ADMIN_TOKEN: Key<Option<String>> = Key {
    name: "admin_token",
    value_name: "TOKEN",
    help: "Bearer token required on every mutating admin request",
    file_type: FileType::String,
    parse: parse::admin_token,
    default: none,
    shown: Shown::Text("none"),
};

/// `--admin-max-connections`.
pub const ADMIN_MAX_CONNECTIONS: Key<u32> = Key {
    name: "admin_max_connections",
    value_name: "N",
    help: "Connections the admin API holds at once; past it a new connection gets a fast \
           503. Lowered at start to stay below the open-file limit",
    file_type: FileType::Integer,
    parse: parse::admin_max_connections,
    default: default_admin_max_connections,
    shown: Shown::Value(u32::to_string),
};

/// `--data-dir`.
pub const DATA_DIR: Key<PathBuf> = Key {
    name: "data_dir",
    value_name: "DIR",
    help: "Directory for durable state",
    file_type: FileType::String,
    parse: parse::path,
    default: default_data_dir,
    shown: Shown::Value(|p| p.display().to_string()),
};

/// `--probe-interval`.
pub const PROBE_INTERVAL: Key<Duration> = Key {
    name: "probe_interval",
    value_name: "DURATION",
    help: "Default time between probes of a worker",
    file_type: FileType::String,
    parse: parse::probe_interval,
    default: default_probe_interval,
    shown: Shown::Value(parse::format_duration),
};

/// `--probe-timeout`.
pub const PROBE_TIMEOUT: Key<Duration> = Key {
    name: "probe_timeout",
    value_name: "DURATION",
    help: "Default probe timeout",
    file_type: FileType::String,
    parse: parse::probe_timeout,
    default: default_probe_timeout,
    shown: Shown::Value(parse::format_duration),
};

/// `--probe-path`.
pub const PROBE_PATH: Key<String> = Key {
    name: "probe_path",
    value_name: "PATH",
    help: "Default probe path",
    file_type: FileType::String,
    parse: parse::probe_path,
    default: default_probe_path,
    shown: Shown::Value(String::clone),
};

/// `--probe-kind`.
pub const PROBE_KIND: Key<ProbeKind> = Key {
    name: "probe_kind",
    value_name: "KIND",
    help: "What a probe checks when a worker does not say: http (GET url + path, any 2xx), models (GET url + /v1/models lists the worker's model_id; workers without one are checked with http) or grpc (grpc.health.v1 Check answers SERVING); grpc:// workers are always checked with grpc",
    file_type: FileType::String,
    parse: parse::probe_kind,
    default: default_probe_kind,
    shown: Shown::Value(|k: &ProbeKind| k.as_str().to_string()),
};

/// `--success-threshold`.
pub const SUCCESS_THRESHOLD: Key<u32> = Key {
    name: "success_threshold",
    value_name: "N",
    help: "Consecutive successes to become ready",
    file_type: FileType::Integer,
    parse: parse::threshold,
    default: default_success_threshold,
    shown: Shown::Value(u32::to_string),
};

/// `--failure-threshold`.
pub const FAILURE_THRESHOLD: Key<u32> = Key {
    name: "failure_threshold",
    value_name: "N",
    help: "Consecutive failures to leave ready",
    file_type: FileType::Integer,
    parse: parse::threshold,
    default: default_failure_threshold,
    shown: Shown::Value(u32::to_string),
};

/// `--remove-failed`.
pub const REMOVE_FAILED: Key<bool> = Key {
    name: "remove_failed",
    value_name: "BOOL",
    help: "Evict workers that every tracking node holds failed",
    file_type: FileType::Boolean,
    parse: parse::boolean,
    default: default_remove_failed,
    shown: Shown::Value(bool::to_string),
};

/// `--fence-ratio`.
pub const FENCE_RATIO: Key<f64> = Key {
    name: "fence_ratio",
    value_name: "RATIO",
    help: "Self-fencing threshold: the node is degraded when it fails at least this share of the workers most of its healthy peers reach; 0 turns self-fencing off",
    file_type: FileType::Float,
    parse: parse::fence_ratio,
    default: default_fence_ratio,
    shown: Shown::Value(f64::to_string),
};

/// `--tombstone-ttl`.
pub const TOMBSTONE_TTL: Key<Duration> = Key {
    name: "tombstone_ttl",
    value_name: "DURATION",
    help: "How long tombstones are kept",
    file_type: FileType::String,
    parse: parse::tombstone_ttl,
    default: default_tombstone_ttl,
    shown: Shown::Value(parse::format_duration),
};

/// `--worker`.
pub const WORKER: ListKey<WorkerUrl> = ListKey {
    name: "worker",
    value_name: "URL",
    help: "A declarative worker registration owned by this node; repeatable",
    flag_takes_commas: false,
    parse: parse::worker_url,
    empty: "none",
};

/// `--smg-url`.
pub const SMG_URL: Key<Option<String>> = Key {
    name: "smg_url",
    value_name: "URL",
    help: "Push the local ready set into the smg gateway at this URL (e.g. \
           http://127.0.0.1:30000)",
    file_type: FileType::String,
    parse: parse::smg_url,
    default: none,
    shown: Shown::Text("none"),
};

/// `--smg-manifest`.
pub const SMG_MANIFEST: Key<Option<PathBuf>> = Key {
    name: "smg_manifest",
    value_name: "PATH",
    help: "Keep smg's file-discovery manifest at this path equal to the local ready set            (smg launch --discovery-provider file --discovery-file PATH)",
    file_type: FileType::String,
    parse: parse::some_path,
    default: none,
    shown: Shown::Text("none"),
};

/// `--log-format`.
pub const LOG_FORMAT: Key<LogFormat> = Key {
    name: "log_format",
    value_name: "FORMAT",
    help: "Log format: text or json",
    file_type: FileType::String,
    parse: parse::log_format,
    default: default_log_format,
    shown: Shown::Value(LogFormat::to_string),
};

/// `--cluster-id`.
pub const CLUSTER_ID: Key<String> = Key {
    name: "cluster_id",
    value_name: "NAME",
    help: "Nodes of other clusters are ignored",
    file_type: FileType::String,
    parse: parse::node_id,
    default: default_cluster_id,
    shown: Shown::Value(String::clone),
};

/// `--gossip-listen`.
pub const GOSSIP_LISTEN: Key<SocketAddr> = Key {
    name: "gossip_listen",
    value_name: "ADDR",
    help: "UDP address for gossip over QUIC",
    file_type: FileType::String,
    parse: parse::gossip_listen,
    default: default_gossip_listen,
    shown: Shown::Value(SocketAddr::to_string),
};

/// `--gossip-advertise`. Without it the caller derives the address after loading
/// (the `advertise` module): finding it asks the network stack.
pub const GOSSIP_ADVERTISE: Key<Option<SocketAddr>> = Key {
    name: "gossip_advertise",
    value_name: "ADDR",
    help: "Address peers dial [default: derived from the listen address or the host's \
           outbound interface]",
    file_type: FileType::String,
    parse: parse::gossip_advertise,
    default: none,
    shown: Shown::Text("derived, see [below](#advertised-address)"),
};

/// `--seeds`.
pub const SEEDS: ListKey<String> = ListKey {
    name: "seeds",
    value_name: "HOST:PORT",
    help: "Seed peers, host:port, repeatable or a comma list; DNS names are re-resolved \
           periodically",
    flag_takes_commas: true,
    parse: parse::seed,
    empty: "none: a cluster of one until a peer contacts it",
};

/// The documented default of the three TLS settings.
const TLS_ABSENT: &str = "none: the private CA under `DATA_DIR/tls/`";

/// `--tls-ca`.
pub const TLS_CA: Key<Option<PathBuf>> = Key {
    name: "tls_ca",
    value_name: "FILE",
    help: "Cluster CA certificate (PEM); with --tls-cert and --tls-key",
    file_type: FileType::String,
    parse: parse::some_path,
    default: none,
    shown: Shown::Text(TLS_ABSENT),
};

/// `--tls-cert`.
pub const TLS_CERT: Key<Option<PathBuf>> = Key {
    name: "tls_cert",
    value_name: "FILE",
    help: "This node's certificate (PEM), signed by the cluster CA",
    file_type: FileType::String,
    parse: parse::some_path,
    default: none,
    shown: Shown::Text(TLS_ABSENT),
};

/// `--tls-key`.
pub const TLS_KEY: Key<Option<PathBuf>> = Key {
    name: "tls_key",
    value_name: "FILE",
    help: "This node's private key (PEM)",
    file_type: FileType::String,
    parse: parse::some_path,
    default: none,
    shown: Shown::Text(TLS_ABSENT),
};

/// `--gossip-interval`.
pub const GOSSIP_INTERVAL: Key<Duration> = Key {
    name: "gossip_interval",
    value_name: "DURATION",
    help: "Gossip round interval",
    file_type: FileType::String,
    parse: parse::gossip_interval,
    default: default_gossip_interval,
    shown: Shown::Value(parse::format_duration),
};

/// `--dead-node-grace-period`.
pub const DEAD_NODE_GRACE_PERIOD: Key<Duration> = Key {
    name: "dead_node_grace_period",
    value_name: "DURATION",
    help: "How long a dead member's gossiped state is kept",
    file_type: FileType::String,
    parse: parse::dead_node_grace_period,
    default: default_dead_node_grace_period,
    shown: Shown::Value(parse::format_duration),
};

/// `--allow-worker-cidr`.
pub const ALLOW_WORKER_CIDR: ListKey<ipnet::IpNet> = ListKey {
    name: "allow_worker_cidr",
    value_name: "CIDR",
    help: "Only workers whose host is an IP in these networks are accepted and probed; \
           repeatable [default: all allowed]",
    flag_takes_commas: false,
    parse: parse::cidr,
    empty: "none: every worker allowed",
};

/// Every setting, in the order of `--help` and of the tables in docs/configuration.md.
pub static KEYS: &[&dyn Setting] = &[
    &NODE_ID,
    &ADMIN_LISTEN,
    &ADMIN_TOKEN,
    &ADMIN_MAX_CONNECTIONS,
    &DATA_DIR,
    &PROBE_INTERVAL,
    &PROBE_TIMEOUT,
    &PROBE_PATH,
    &PROBE_KIND,
    &SUCCESS_THRESHOLD,
    &FAILURE_THRESHOLD,
    &REMOVE_FAILED,
    &FENCE_RATIO,
    &TOMBSTONE_TTL,
    &WORKER,
    &SMG_URL,
    &SMG_MANIFEST,
    &LOG_FORMAT,
    &CLUSTER_ID,
    &GOSSIP_LISTEN,
    &GOSSIP_ADVERTISE,
    &SEEDS,
    &TLS_CA,
    &TLS_CERT,
    &TLS_KEY,
    &GOSSIP_INTERVAL,
    &DEAD_NODE_GRACE_PERIOD,
    &ALLOW_WORKER_CIDR,
];

/// The setting named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static dyn Setting> {
    KEYS.iter().copied().find(|k| k.name() == name)
}

/// The flags of `probemesh agent` other than `--config`, one per setting, each keeping
/// its value as text (`cli::AgentArgs::values`) for [`super::load`] to parse with the
/// environment and the file.
pub fn agent_flags() -> Vec<clap::Arg> {
    KEYS.iter().map(|k| k.arg()).collect()
}
