//! The agent's configuration: flags, `PROBEMESH_*` environment and the TOML file, merged
//! with precedence flag > env > file > default and checked before anything is bound or
//! opened. Every problem is reported at once, each naming its key and source.
//!
//! - `schema.rs`: every setting once (name, TOML type, parser, default, `--help`);
//!   `key.rs`: what a setting is, and the names derived from its key;
//! - `layers.rs`: the raw layers (flag text, environment text, TOML values);
//! - `resolve.rs`: precedence, one parse path for all three, the rules across
//!   settings, the assembly of [`AgentConfig`]; `node_id.rs`: the node id;
//! - `parse.rs`: the parsers and limits ([`parse_duration`] is the API's too).
//!
//! Loading does not touch the network: the advertised gossip address, when not given,
//! is derived by the caller afterwards (the `advertise` module).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod key;
mod layers;
mod node_id;
mod parse;
mod resolve;
pub mod schema;
#[cfg(test)]
mod tests;

pub use key::{ENV_PREFIX, FileType, Key, ListKey, Setting, Shown, env_name, flag_name};
pub use layers::Source;
pub use parse::{
    check_admin_max_connections, check_interval, check_probe_path, check_threshold, check_timeout,
    format_duration, limits, parse_duration, validate_node_id,
};
pub use schema::agent_flags;

use layers::{FileLayer, Layers};
use probemesh_gossip::model::WorkerUrl;
use resolve::Resolver;
use schema::default_node_id;

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
    /// `--fence-ratio` (SPEC S12; 0 turns self-fencing off).
    pub fence_ratio: f64,
    /// How long tombstones are kept.
    pub tombstone_ttl: Duration,
    /// Declarative registrations owned by this node, without duplicates.
    pub workers: Vec<WorkerUrl>,
    /// Log output format.
    pub log_format: LogFormat,
    /// Gossip settings.
    pub cluster: ClusterConfig,
    /// `--smg-url`: the gateway to push the ready set into.
    pub smg_url: Option<String>,
    /// `--smg-manifest`: smg's file-discovery manifest to keep equal to the ready set.
    pub smg_manifest: Option<PathBuf>,
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
    /// `--gossip-advertise`, the address peers dial. `None`: not given, and derived
    /// from the listen address by the caller (`advertise::resolve`, beside this module), because
    /// that may ask the network stack.
    pub gossip_advertise: Option<SocketAddr>,
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
    /// What a probe checks when a worker does not say (`--probe-kind`).
    pub kind: probemesh_gossip::model::ProbeKind,
}

impl Default for ProbeDefaults {
    /// The schema's defaults.
    fn default() -> Self {
        ProbeDefaults {
            interval: schema::default_probe_interval(),
            timeout: schema::default_probe_timeout(),
            path: schema::default_probe_path(),
            success_threshold: schema::default_success_threshold(),
            kind: schema::default_probe_kind(),
            failure_threshold: schema::default_failure_threshold(),
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

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// One configuration problem, naming its key and, for a bad value, its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem(String);

impl ConfigProblem {
    /// A problem described by `text` (which names the key).
    pub fn new(text: impl Into<String>) -> Self {
        ConfigProblem(text.into())
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<ConfigProblem>);

/// Where the settings of one start-up come from. `main` passes the parsed command line
/// and `std::env::var`; tests pass maps, so no test depends on the process.
pub struct Sources<'a> {
    /// Flag values by setting name, as text (`cli::AgentArgs::values`).
    pub flags: &'a std::collections::BTreeMap<String, Vec<String>>,
    /// `--config FILE`; without it, `PROBEMESH_CONFIG` names the file, if set.
    pub config_file: Option<&'a Path>,
    /// Looks up one environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Loads and checks the configuration, reporting every problem at once. Reads the
/// config file, and nothing else: no socket, no directory, no name lookup.
pub fn load(sources: &Sources<'_>) -> Result<AgentConfig, ConfigError> {
    let path = sources
        .config_file
        .map(Path::to_path_buf)
        .or_else(|| (sources.env)(&format!("{ENV_PREFIX}CONFIG")).map(PathBuf::from));
    let (file, file_problems) = match path {
        Some(path) => FileLayer::read(&path).map_err(|p| ConfigError(vec![p]))?,
        None => (FileLayer::default(), Vec::new()),
    };
    let layers = Layers {
        flags: sources.flags,
        env: sources.env,
        file,
    };
    let mut r = Resolver::new(&layers);
    r.problems = file_problems;
    let config = resolve::agent_config(&mut r);
    if r.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError(r.problems))
    }
}
