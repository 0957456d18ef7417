//! Loading as `main` does it: argument vectors through the real clap definition,
//! environment maps and temporary files; and the schema held to `--help`, the docs and
//! the example files.

use super::key::doc_cells;
use super::schema::KEYS;
use super::*;
use crate::cli::{self, AgentArgs, Cli, Command};
use clap::FromArgMatches;
use std::collections::HashMap;
use std::io::Write;

fn agent_args(argv: &[&str]) -> AgentArgs {
    let full = ["probemesh", "agent"].iter().chain(argv);
    let matches = cli::command(agent_flags())
        .try_get_matches_from(full)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match Cli::from_arg_matches(&matches).unwrap().command {
        Command::Agent(args) => args,
        other => panic!("not the agent command: {other:?}"),
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

/// Loads from `argv` (after `probemesh agent`) and `env`, as `main` does.
pub(super) fn load_from(argv: &[&str], env: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
    let args = agent_args(argv);
    let env = env_of(env);
    load(&Sources {
        flags: &args.values,
        config_file: args.config.as_deref(),
        env: &env,
    })
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn path_of(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().unwrap()
}

fn problems(argv: &[&str], env: &[(&str, &str)]) -> String {
    load_from(argv, env).unwrap_err().to_string()
}

#[test]
fn defaults_need_no_configuration() {
    let c = load_from(&[], &[]).unwrap();
    assert_eq!(c.admin_listen, "127.0.0.1:7801".parse().unwrap());
    assert_eq!(c.admin_max_connections, 1024);
    assert_eq!(c.probe, ProbeDefaults::default());
    assert_eq!(c.probe.interval, Duration::from_secs(5));
    assert!(c.remove_failed);
    assert_eq!(c.tombstone_ttl, Duration::from_secs(86_400));
    assert_eq!(c.data_dir, PathBuf::from("./probemesh-data"));
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(!c.node_id.is_empty());
    assert_eq!(c.cluster.cluster_id, "probemesh");
    assert_eq!(c.cluster.gossip_listen, "0.0.0.0:7800".parse().unwrap());
    assert_eq!(
        c.cluster.gossip_advertise, None,
        "derived later, by the caller"
    );
    assert_eq!(c.cluster.gossip_interval, Duration::from_millis(200));
    assert_eq!(c.cluster.dead_node_grace_period, Duration::from_secs(900));
    assert_eq!(c.cluster.tls, TlsSource::Auto);
    assert!(c.workers.is_empty() && c.cluster.seeds.is_empty());
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let f = file_with(
        "probe_interval = \"7s\"\nprobe_timeout = \"3s\"\nprobe_path = \"/file\"\nsuccess_threshold = 4\n",
    );
    let env = [
        ("PROBEMESH_PROBE_INTERVAL", "9s"),
        ("PROBEMESH_PROBE_TIMEOUT", "500ms"),
    ];
    let c = load_from(&["--config", path_of(&f), "--probe-interval", "1s"], &env).unwrap();
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
fn the_config_file_may_be_named_by_the_environment() {
    let f = file_with("probe_path = \"/ready\"\n");
    let c = load_from(&[], &[("PROBEMESH_CONFIG", path_of(&f))]).unwrap();
    assert_eq!(c.probe.path, "/ready");
    let other = file_with("probe_path = \"/other\"\n");
    let c = load_from(
        &["--config", path_of(&other)],
        &[("PROBEMESH_CONFIG", path_of(&f))],
    )
    .unwrap();
    assert_eq!(c.probe.path, "/other", "--config wins");
}

#[test]
fn every_problem_is_reported_with_its_key_and_source() {
    let f = file_with("failure_threshold = 0\nprobe_path = \"health\"\n");
    let msg = problems(
        &["--config", path_of(&f), "--admin-listen", "nonsense"],
        &[
            ("PROBEMESH_PROBE_INTERVAL", "fast"),
            ("PROBEMESH_WORKER", "ftp://x,http://ok:1"),
        ],
    );
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

/// The improvement of the one parse path: flag values of the wrong type, file values
/// of the wrong TOML type and unknown keys no longer stop at the first.
#[test]
fn bad_flags_bad_file_keys_and_bad_env_are_reported_together() {
    let f = file_with("colour = \"red\"\nremove_failed = \"yes\"\nseeds = \"a:1\"\n");
    let msg = problems(
        &[
            "--config",
            path_of(&f),
            "--probe-interval",
            "fast",
            "--success-threshold",
            "-1",
            "--log-format",
            "xml",
            "--admin-max-connections",
            "lots",
        ],
        &[("PROBEMESH_TOMBSTONE_TTL", "10ms")],
    );
    for needle in [
        "config file key `colour`: not a setting (line 1)",
        "config file key `remove_failed`: expected true or false, found a string: \"yes\" (line 2)",
        "config file key `seeds`: expected an array of strings",
        "flag --probe-interval: `fast` is not a duration",
        "flag --success-threshold: `-1`: invalid digit",
        "flag --log-format: `xml` is not a log format; use text or json",
        "flag --admin-max-connections: `lots`: invalid digit",
        "environment variable PROBEMESH_TOMBSTONE_TTL: must be at least 1s",
    ] {
        assert!(msg.contains(needle), "missing {needle} in:\n{msg}");
    }
    assert_eq!(
        msg.lines().count(),
        9,
        "a heading and one line each:\n{msg}"
    );
}

#[test]
fn a_flag_overrides_a_bad_env_value_but_not_a_badly_typed_file() {
    // As before: a source that is overridden is not parsed...
    let c = load_from(
        &["--probe-interval", "1s"],
        &[("PROBEMESH_PROBE_INTERVAL", "fast")],
    )
    .unwrap();
    assert_eq!(c.probe.interval, Duration::from_secs(1));
    // ...but the file must be a valid file as a whole.
    let f = file_with("remove_failed = \"yes\"\n");
    let msg = problems(&["--config", path_of(&f), "--remove-failed"], &[]);
    assert!(msg.contains("config file key `remove_failed`"), "{msg}");
}

#[test]
fn unknown_file_keys_are_refused_by_name() {
    let f = file_with("probe_intervall = \"5s\"\n");
    let msg = problems(&["--config", path_of(&f)], &[]);
    assert!(
        msg.contains("probe_intervall") && msg.contains("did you mean `probe_interval`"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_toml_is_reported_alone() {
    let f = file_with("probe_interval = \n");
    let msg = problems(&["--config", path_of(&f), "--probe-interval", "fast"], &[]);
    assert!(msg.contains(path_of(&f)) && msg.contains("line 1"), "{msg}");
    assert!(!msg.contains("flag --probe-interval"), "{msg}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let msg = problems(&["--config", "/nonexistent/probemesh.toml"], &[]);
    assert!(msg.contains("/nonexistent/probemesh.toml"), "{msg}");
}

#[test]
fn non_loopback_admin_needs_a_token() {
    let msg = problems(&["--admin-listen", "0.0.0.0:7801"], &[]);
    assert!(msg.contains("admin_token"), "{msg}");
    let c = load_from(
        &["--admin-listen", "0.0.0.0:7801"],
        &[("PROBEMESH_ADMIN_TOKEN", "s3cret")],
    )
    .unwrap();
    assert_eq!(c.admin_token.as_deref(), Some("s3cret"));
    let msg = problems(
        &["--admin-listen", "0.0.0.0:7801", "--admin-token", ""],
        &[("PROBEMESH_ADMIN_TOKEN", "s3cret")],
    );
    assert!(
        msg.contains("admin_token"),
        "an empty flag is no token: {msg}"
    );
}

#[test]
fn workers_come_from_flags_env_or_file_and_are_normalized() {
    let env = [("PROBEMESH_WORKER", "http://A:1/, http://b:2")];
    let c = load_from(&[], &env).unwrap();
    let urls: Vec<&str> = c.workers.iter().map(|w| w.as_str()).collect();
    assert_eq!(urls, vec!["http://a:1", "http://b:2"]);
    let f = file_with(
        "worker = [\"http://c:3\", \"http://c:3/\"]\nremove_failed = false\nlog_format = \"json\"\n",
    );
    let c = load_from(&["--config", path_of(&f)], &[]).unwrap();
    assert_eq!(c.workers.len(), 1);
    assert!(!c.remove_failed);
    assert_eq!(c.log_format, LogFormat::Json);
    // A list is replaced, not merged: the flags' list wins whole.
    let c = load_from(
        &[
            "--config",
            path_of(&f),
            "--worker",
            "http://d:4",
            "--worker",
            "http://e:5",
        ],
        &env,
    )
    .unwrap();
    let urls: Vec<&str> = c.workers.iter().map(|w| w.as_str()).collect();
    assert_eq!(urls, vec!["http://d:4", "http://e:5"]);
}

#[test]
fn remove_failed_alone_means_true() {
    let f = file_with("remove_failed = false\n");
    let c = load_from(&["--config", path_of(&f), "--remove-failed"], &[]).unwrap();
    assert!(c.remove_failed);
    let c = load_from(&["--remove-failed=false"], &[]).unwrap();
    assert!(!c.remove_failed);
    let msg = problems(&["--remove-failed=maybe"], &[]);
    assert!(msg.contains("flag --remove-failed: `maybe`"), "{msg}");
}

#[test]
fn admin_max_connections_resolves_like_every_key() {
    let f = file_with("admin_max_connections = 64\n");
    let file = ["--config", path_of(&f)];
    assert_eq!(load_from(&file, &[]).unwrap().admin_max_connections, 64);
    let env = [("PROBEMESH_ADMIN_MAX_CONNECTIONS", " 32 ")];
    assert_eq!(
        load_from(&file, &env).unwrap().admin_max_connections,
        32,
        "env beats file"
    );
    let flag = ["--config", path_of(&f), "--admin-max-connections", "8"];
    assert_eq!(
        load_from(&flag, &env).unwrap().admin_max_connections,
        8,
        "flag wins"
    );
}

#[test]
fn invalid_admin_max_connections_stops_start_up_naming_the_key() {
    let msg = problems(&["--admin-max-connections", "0"], &[]);
    assert!(msg.contains("flag --admin-max-connections"), "{msg}");
    let msg = problems(&[], &[("PROBEMESH_ADMIN_MAX_CONNECTIONS", "lots")]);
    assert!(
        msg.contains("environment variable PROBEMESH_ADMIN_MAX_CONNECTIONS"),
        "{msg}"
    );
    for text in [
        "admin_max_connections = 0\n",
        "admin_max_connections = \"many\"\n",
        "admin_max_connections = 5000000000\n",
    ] {
        let f = file_with(text);
        let msg = problems(&["--config", path_of(&f)], &[]);
        assert!(
            msg.contains("config file key `admin_max_connections`"),
            "{text}: {msg}"
        );
    }
}

#[test]
fn cluster_settings_resolve_and_are_checked_together() {
    let f = file_with("seeds = [\"a:7800\", \"b.example:7800\"]\ngossip_interval = \"1s\"\n");
    let c = load_from(
        &[
            "--config",
            path_of(&f),
            "--gossip-listen",
            "127.0.0.1:17800",
            "--gossip-advertise",
            "10.0.0.2:17800",
            "--allow-worker-cidr",
            "10.1.2.3/8",
        ],
        &[("PROBEMESH_CLUSTER_ID", " blue ")],
    )
    .unwrap();
    let cl = &c.cluster;
    assert_eq!(cl.cluster_id, "blue");
    assert_eq!(cl.seeds, ["a:7800", "b.example:7800"]);
    assert_eq!(cl.gossip_advertise, Some("10.0.0.2:17800".parse().unwrap()));
    assert_eq!(cl.gossip_interval, Duration::from_secs(1));
    assert_eq!(cl.allow_worker_cidrs, ["10.0.0.0/8".parse().unwrap()]);
    let c = load_from(&["--seeds", "a:1,b:2", "--seeds", "c:3"], &[]).unwrap();
    assert_eq!(c.cluster.seeds, ["a:1", "b:2", "c:3"], "commas or repeats");

    let msg = problems(
        &[
            "--gossip-listen",
            "127.0.0.1:0",
            "--tls-ca",
            "ca.pem",
            "--seeds",
            "nohost,b:0",
            "--gossip-advertise",
            "0.0.0.0:7800",
            "--cluster-id",
            "x y",
        ],
        &[("PROBEMESH_ALLOW_WORKER_CIDR", "10.0.0.0/33")],
    );
    for needle in [
        "flag --gossip-listen: needs a fixed port",
        "flag --seeds: `nohost` is not host:port",
        "flag --seeds: `b:0` is not host:port",
        "flag --gossip-advertise: `0.0.0.0:7800` must be a concrete ip:port",
        "flag --cluster-id: `x y`",
        "tls_ca, tls_cert, tls_key: give all three or none",
        "environment variable PROBEMESH_ALLOW_WORKER_CIDR: `10.0.0.0/33` is not a network",
    ] {
        assert!(msg.contains(needle), "missing {needle} in:\n{msg}");
    }
    // The three files together (read at load for the node id, SPEC S10).
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    probemesh_gossip::tls::create_ca(&ca_dir).unwrap();
    let (cert, key) =
        probemesh_gossip::tls::create_node_cert(&ca_dir, "n1", &[], &[], dir.path()).unwrap();
    let ca = ca_dir.join("ca.pem");
    let c = load_from(
        &[
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.node_id, "n1");
    assert_eq!(c.cluster.tls, TlsSource::Files { ca, cert, key });
}

#[test]
fn every_setting_has_a_flag_and_is_resolved() {
    let mut argv = Vec::new();
    for k in KEYS {
        argv.push(format!("--{}", flag_name(k.name())));
        argv.push("x".to_string());
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = agent_args(&argv);
    let given: Vec<&str> = args.values.keys().map(String::as_str).collect();
    let mut names: Vec<&str> = KEYS.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    assert_eq!(given, names, "one flag per setting, and no other");
    let env = env_of(&[]);
    let layers = Layers {
        flags: &args.values,
        env: &env,
        file: FileLayer::default(),
    };
    let mut r = Resolver::new(&layers);
    resolve::agent_config(&mut r);
    let mut seen = r.seen.clone();
    seen.sort_unstable();
    assert_eq!(seen, names, "every setting resolved once");
}

#[test]
fn documented_defaults_read_back_through_their_parsers() {
    for k in KEYS {
        k.default_reads_back().unwrap();
    }
}

#[test]
fn help_shows_each_flag_with_the_schemas_default() {
    let mut cmd = cli::command(agent_flags());
    cmd.build();
    cmd.clone().debug_assert();
    let agent = cmd.find_subcommand_mut("agent").unwrap();
    let help = agent.render_help().to_string();
    for needle in [
        "--probe-interval <DURATION>",
        "[default: 5s]",
        "[default: 24h]",
        "[default: 127.0.0.1:7801]",
        "--remove-failed [<BOOL>]",
        "--gossip-listen <ADDR>",
        "--config <FILE>",
        "Precedence: flag > environment > file > default",
    ] {
        assert!(help.contains(needle), "missing {needle} in:\n{help}");
    }
}

/// The first four cells of every setting's row in docs/configuration.md (flag,
/// environment variable, TOML key, default) are what the schema says, in its order.
#[test]
fn the_configuration_docs_tables_match_the_schema() {
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ));
    let mut in_tables = false;
    let mut rows = Vec::new();
    for line in doc.lines() {
        if line.starts_with("## ") {
            in_tables = line == "## Agent settings" || line == "## Cluster settings";
        }
        if in_tables && line.starts_with("| `--") && !line.starts_with("| `--config") {
            let cells: Vec<String> = line
                .split('|')
                .skip(1)
                .take(4)
                .map(|c| c.trim().to_string())
                .collect();
            rows.push(cells);
        }
    }
    let expected: Vec<Vec<String>> = KEYS.iter().map(|k| doc_cells(*k).to_vec()).collect();
    let table = |rows: &[Vec<String>]| {
        rows.iter()
            .map(|r| format!("| {} |", r.join(" | ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let stale: Vec<String> = (0..rows.len().max(expected.len()))
        .filter(|&i| rows.get(i) != expected.get(i))
        .map(|i| {
            format!(
                "row {}: docs {:?}, schema {:?}",
                i + 1,
                rows.get(i),
                expected.get(i)
            )
        })
        .collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md is stale:\n{}\nIts setting rows should start:\n{}",
        stale.join("\n"),
        table(&expected)
    );
}

/// `deploy/probemesh.example.toml` and the docs' example file are files the agent
/// accepts.
#[test]
fn the_example_files_load() {
    let example = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/probemesh.example.toml"
    ));
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ));
    let in_doc = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    for text in [example, in_doc] {
        let f = file_with(text);
        let c = load_from(&["--config", path_of(&f)], &[]);
        assert!(c.is_ok(), "{:?}\n{text}", c.err());
    }
}
