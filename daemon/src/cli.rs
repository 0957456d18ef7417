//! Command-line types (clap). Parsing only; `main` dispatches.

use crate::config::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// probemesh: gossip LLM-gateway worker membership, route only to workers verified
/// by this node's own probes.
#[derive(Debug, Parser)]
#[command(name = "probemesh", version = crate::version::VERSION, disable_version_flag = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Agent(Box<AgentArgs>),
    /// Inspect and change the workers of a running agent.
    Workers {
        /// Connection to the agent.
        #[command(flatten)]
        client: ClientArgs,
        /// The workers command.
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Cluster members as this node sees them.
    Members {
        /// Connection to the agent.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Exit 0 when the local agent is healthy (`check health`) or ready (`check ready`):
    /// an exec probe for orchestrators that cannot reach the admin API.
    Check(crate::client::check::CheckArgs),
    /// Create TLS material for a cluster.
    Tls {
        /// The TLS command.
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Print version, git revision and protocol version.
    Version,
}

/// Flags of `probemesh agent`. Every flag can also be set as `PROBEMESH_<FLAG>` in the
/// environment or as a key in the `--config` TOML file; precedence is
/// flag > env > file > default (see docs/configuration.md).
#[derive(Debug, Default, Args)]
#[command(
    after_help = "Every flag can also be set in the environment as PROBEMESH_<FLAG_IN_UPPER_SNAKE_CASE> \
(e.g. PROBEMESH_PROBE_INTERVAL=2s) or in the --config file as <flag_in_snake_case> = value.\n\
Precedence: flag > environment > file > default. See docs/configuration.md."
)]
pub struct AgentArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unique name of this node [default: host name].
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,
    /// TCP address of the admin HTTP API [default: 127.0.0.1:7801].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Bearer token required on every mutating admin request.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Directory for durable state [default: ./probemesh-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Default time between probes of a worker [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub probe_interval: Option<Duration>,
    /// Default probe timeout [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub probe_timeout: Option<Duration>,
    /// Default probe path [default: /health].
    #[arg(long, value_name = "PATH")]
    pub probe_path: Option<String>,
    /// Consecutive successes to become ready [default: 2].
    #[arg(long, value_name = "N")]
    pub success_threshold: Option<u32>,
    /// Consecutive failures to leave ready [default: 3].
    #[arg(long, value_name = "N")]
    pub failure_threshold: Option<u32>,
    /// Evict workers that every tracking node holds failed [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub remove_failed: Option<bool>,
    /// How long tombstones are kept [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub tombstone_ttl: Option<Duration>,
    /// A declarative worker registration owned by this node; repeatable.
    #[arg(long = "worker", value_name = "URL")]
    pub workers: Vec<String>,
    /// Nodes of other clusters are ignored [default: probemesh].
    #[arg(long, value_name = "NAME")]
    pub cluster_id: Option<String>,
    /// UDP address for gossip over QUIC [default: 0.0.0.0:7800].
    #[arg(long, value_name = "ADDR")]
    pub gossip_listen: Option<String>,
    /// Address peers dial [default: derived from the listen address or the host's
    /// outbound interface].
    #[arg(long, value_name = "ADDR")]
    pub gossip_advertise: Option<String>,
    /// Seed peers, comma list of host:port; DNS names are re-resolved periodically.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Cluster CA certificate (PEM); with --tls-cert and --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster CA.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Gossip round interval [default: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub gossip_interval: Option<Duration>,
    /// How long a dead member's gossiped state is kept [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dead_node_grace_period: Option<Duration>,
    /// Only workers whose host is an IP in these networks are accepted and probed;
    /// repeatable [default: all allowed].
    #[arg(long = "allow-worker-cidr", value_name = "CIDR")]
    pub allow_worker_cidrs: Vec<String>,
    /// Push the local ready set into the smg gateway at this URL (e.g.
    /// http://127.0.0.1:30000).
    #[arg(long, value_name = "URL")]
    pub smg_url: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT", value_parser = |s: &str| s.parse::<LogFormat>())]
    pub log_format: Option<LogFormat>,
}

/// `probemesh tls …`
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Certificate authority commands.
    Ca {
        /// The CA command.
        #[command(subcommand)]
        command: TlsCaCommand,
    },
    /// Node certificate commands.
    Cert {
        /// The certificate command.
        #[command(subcommand)]
        command: TlsCertCommand,
    },
}

/// `probemesh tls ca …`
#[derive(Debug, Subcommand)]
pub enum TlsCaCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca-key.pem.
    Create {
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `probemesh tls cert …`
#[derive(Debug, Subcommand)]
pub enum TlsCertCommand {
    /// Create a node certificate signed by the CA in --ca: OUT/NAME.pem and OUT/NAME-key.pem.
    Create {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Node name (also a DNS name in the certificate).
        #[arg(long, value_name = "NAME")]
        node: String,
        /// IP address to include; repeatable.
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<std::net::IpAddr>,
        /// DNS name to include; repeatable.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// How client commands reach the agent.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Admin API of the agent.
    #[arg(
        long,
        global = true,
        env = "PROBEMESH_ADMIN",
        default_value = "http://127.0.0.1:7801"
    )]
    pub admin: String,
    /// Bearer token for mutating requests.
    #[arg(
        long,
        global = true,
        env = "PROBEMESH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `probemesh workers …`
#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Table of the local view.
    List {
        /// Only these statuses (comma list: pending,ready,not_ready,failed).
        #[arg(long)]
        status: Option<String>,
        /// Only workers serving this model.
        #[arg(long)]
        model: Option<String>,
    },
    /// One worker, with every node's view of it.
    Get {
        /// Worker id, or its URL.
        id: String,
    },
    /// Register a worker on this node.
    Add {
        /// Worker base URL, e.g. http://10.0.0.5:8000.
        url: String,
        /// Fields of the spec.
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Change a worker's metadata or health settings (keeps its status).
    Update {
        /// Worker id, or its URL.
        id: String,
        /// Fields to change.
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print status changes and removals as they happen (`/v1/events`); reconnects and
    /// resumes after interruptions.
    Watch,
    /// Evict a worker cluster-wide (writes a tombstone).
    Remove {
        /// Worker id, or its URL.
        id: String,
    },
}

/// Spec fields settable from the command line.
#[derive(Debug, Default, Args)]
pub struct SpecArgs {
    /// Model served by the worker.
    #[arg(long = "model")]
    pub model_id: Option<String>,
    /// regular, prefill or decode.
    #[arg(long)]
    pub worker_type: Option<String>,
    /// A label `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Routing priority.
    #[arg(long)]
    pub priority: Option<u32>,
    /// Routing cost.
    #[arg(long)]
    pub cost: Option<f32>,
    /// Bootstrap port (prefill workers).
    #[arg(long)]
    pub bootstrap_port: Option<u16>,
    /// Probe path for this worker.
    #[arg(long)]
    pub health_path: Option<String>,
    /// Probe interval for this worker, e.g. 5s.
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Probe timeout for this worker, e.g. 2s.
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive successes to become ready.
    #[arg(long)]
    pub success_threshold: Option<u32>,
    /// Consecutive failures to leave ready.
    #[arg(long)]
    pub failure_threshold: Option<u32>,
    /// Disable health checks (the worker is ready at once); `false` re-enables.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub disable_health: Option<bool>,
}

/// Parses `500ms`, `5s`, `2m`, `24h` and the other humantime forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 500ms, 5s, 2m or 24h"))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a label; write it as key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_labels_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("500ms"));
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("=x").is_err());
    }
}
