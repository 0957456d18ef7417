//! Command-line types (clap). Parsing only; `main` dispatches.

use clap::{Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
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
    Agent(AgentArgs),
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
    Check(CheckArgs),
    /// Create TLS material for a cluster.
    Tls {
        /// The TLS command.
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Print version, git revision and protocol version.
    Version,
}

/// Flags of `probemesh agent`: `--config`, and the value of every setting flag as text.
///
/// The setting flags are not declared here: `config::schema` declares each setting
/// once (flag, help, default) and [`command`] adds them. Their values stay text so
/// that `config` parses flags, environment and file through one path and reports every
/// bad value together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AgentArgs {
    /// `--config FILE`: the TOML configuration file.
    pub config: Option<PathBuf>,
    /// Every setting flag given, by its argument id (the setting's TOML key,
    /// `probe_interval`), with its values in order.
    pub values: BTreeMap<String, Vec<String>>,
}

/// Printed after `probemesh agent --help`.
const AGENT_AFTER_HELP: &str = "Every flag can also be set in the environment as PROBEMESH_<FLAG_IN_UPPER_SNAKE_CASE> \
(e.g. PROBEMESH_PROBE_INTERVAL=2s) or in the --config file as <flag_in_snake_case> = value.\n\
Precedence: flag > environment > file > default. See docs/configuration.md.";

impl clap::Args for AgentArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.after_help(AGENT_AFTER_HELP).arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file"),
        )
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for AgentArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = AgentArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for id in matches.ids() {
            let id = id.as_str();
            if id == "config" {
                self.config = matches.get_one::<PathBuf>(id).cloned();
                continue;
            }
            // Every setting flag takes text (clap's default value parser).
            let values = matches
                .try_get_many::<String>(id)
                .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))?;
            if let Some(values) = values {
                self.values
                    .insert(id.to_string(), values.cloned().collect());
            }
        }
        Ok(())
    }
}

/// The command line with `agent_flags` (`config::agent_flags()`) added to `probemesh
/// agent`.
pub fn command(agent_flags: impl IntoIterator<Item = Arg>) -> clap::Command {
    Cli::command().mut_subcommand("agent", |agent| agent.args(agent_flags))
}

/// Parses the process's command line with `agent_flags` added to `probemesh agent`;
/// on bad usage, prints clap's message and exits with code 2.
pub fn parse(agent_flags: impl IntoIterator<Item = Arg>) -> Cli {
    let mut cmd = command(agent_flags);
    let matches = cmd.get_matches_mut();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
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
    /// Evict a worker cluster-wide (writes a tombstone), at once or after a drain.
    Remove {
        /// Worker id, or its URL.
        id: String,
        /// Drain for this long first (at most 1h): the worker is `draining` on every
        /// node (not routable, still listed) and tombstoned when the period ends.
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration)]
        drain: Option<std::time::Duration>,
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
    /// What a probe checks for this worker: http, models (its --model must be listed
    /// in GET /v1/models) or grpc (the standard gRPC health check).
    #[arg(long, value_name = "KIND")]
    pub health_kind: Option<String>,
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

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not a label; write it as key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ArgAction;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn agent_flags_are_kept_as_text_by_id() {
        let flags = [
            Arg::new("probe_interval").long("probe-interval"),
            Arg::new("worker").long("worker").action(ArgAction::Append),
            Arg::new("seeds")
                .long("seeds")
                .action(ArgAction::Append)
                .value_delimiter(','),
        ];
        let matches = command(flags)
            .try_get_matches_from([
                "probemesh",
                "agent",
                "--config",
                "c.toml",
                "--probe-interval",
                "fast",
                "--worker",
                "http://a:1",
                "--worker",
                "http://b:2",
                "--seeds",
                "x:1,y:2",
            ])
            .unwrap();
        let Command::Agent(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not the agent command");
        };
        assert_eq!(args.config, Some(PathBuf::from("c.toml")));
        let text = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(args.values["probe_interval"], text(&["fast"]));
        assert_eq!(args.values["worker"], text(&["http://a:1", "http://b:2"]));
        assert_eq!(args.values["seeds"], text(&["x:1", "y:2"]));
        assert_eq!(args.values.len(), 3, "flags not given are absent");
    }
}

/// Flags of `probemesh check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// What to check: `health` (`GET /v1/health`: the agent answers) or `ready`
    /// (`GET /v1/ready`: state loaded, gossip up, not degraded).
    #[arg(value_enum)]
    pub what: CheckTarget,
    /// Admin API of the agent (plain http only).
    #[arg(long, env = "PROBEMESH_ADMIN", default_value = "http://127.0.0.1:7801")]
    pub admin: String,
    /// Give up after this long (connect and answer together).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::duration::parse_duration)]
    pub timeout: Duration,
}

/// The endpoint `probemesh check` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckTarget {
    /// `GET /v1/health`.
    Health,
    /// `GET /v1/ready`.
    Ready,
}
