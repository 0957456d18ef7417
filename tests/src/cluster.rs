//! Several real agents on loopback sharing one cluster CA: certificates made with
//! `probemesh tls`, gossip on private UDP ports, every agent seeded with the first.

use crate::agent::{Agent, AgentBuilder};
use crate::binary::probemesh_command;
use crate::wait::{eventually, free_udp_port};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// Runs a `probemesh tls …` command, panicking with its output if it fails.
fn run_tls(args: &[&str]) {
    let out = probemesh_command()
        .args(args)
        .output()
        .expect("run probemesh tls");
    assert!(
        out.status.success(),
        "probemesh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Gossip interval of test clusters.
pub const GOSSIP_INTERVAL: &str = "100ms";

/// A cluster CA in a temporary directory, able to issue node certificates.
#[derive(Debug)]
pub struct ClusterCa {
    dir: TempDir,
}

impl ClusterCa {
    /// Creates a CA with `probemesh tls ca create`.
    pub fn new() -> ClusterCa {
        let dir = tempfile::Builder::new()
            .prefix("probemesh-ca-")
            .tempdir()
            .expect("ca tempdir");
        run_tls(&[
            "tls",
            "ca",
            "create",
            "--out",
            &dir.path().join("ca").to_string_lossy(),
        ]);
        ClusterCa { dir }
    }

    /// The CA directory (`ca.pem`, `ca-key.pem`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issues (once) a certificate for `node` and returns the TLS flags for it.
    pub fn flags(&self, node: &str) -> Vec<String> {
        let certs = self.dir.path().join("certs");
        let cert = certs.join(format!("{node}.pem"));
        if !cert.exists() {
            run_tls(&[
                "tls",
                "cert",
                "create",
                "--ca",
                &self.ca_dir().to_string_lossy(),
                "--node",
                node,
                "--ip",
                "127.0.0.1",
                "--out",
                &certs.to_string_lossy(),
            ]);
        }
        let s = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--tls-ca".into(),
            s(&self.ca_dir().join("ca.pem")),
            "--tls-cert".into(),
            s(&cert),
            "--tls-key".into(),
            s(&certs.join(format!("{node}-key.pem"))),
        ]
    }
}

impl Default for ClusterCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Arguments for one member: gossip on `gossip_port`, seeds, fast gossip and probes,
/// and a per-node probe path (`/health/<node>`) so a worker can tell which node probed
/// it.
pub fn member_args(
    node: &str,
    gossip_port: u16,
    seed: Option<u16>,
    tls: Vec<String>,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "--gossip-listen".to_string(),
        format!("127.0.0.1:{gossip_port}"),
        "--gossip-interval".into(),
        GOSSIP_INTERVAL.into(),
        "--probe-interval".into(),
        "100ms".into(),
        "--probe-path".into(),
        format!("/health/{node}"),
    ];
    if let Some(seed) = seed {
        args.push("--seeds".into());
        args.push(format!("127.0.0.1:{seed}"));
    }
    args.extend(tls);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A running cluster of agents.
#[derive(Debug)]
pub struct Cluster {
    /// The CA every member's certificate comes from.
    pub ca: ClusterCa,
    /// The members, `node-0` first (the seed).
    pub agents: Vec<Agent>,
    /// Their gossip ports, in the same order.
    pub gossip_ports: Vec<u16>,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `n` agents (`node-0` … `node-{n-1}`) with `extra` flags each, and waits
    /// until every one lists `n` alive members.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        let mut c = Cluster {
            ca: ClusterCa::new(),
            agents: Vec::new(),
            gossip_ports: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for _ in 0..n {
            c.add().await;
        }
        c.wait_members(n).await;
        c
    }

    /// Starts one more member seeded with `node-0` (or `seed`), returns its index.
    pub async fn add_seeded(&mut self, seed: usize) -> usize {
        let i = self.agents.len();
        let node = format!("node-{i}");
        let port = free_udp_port();
        let seed_port = (i > 0).then(|| self.gossip_ports[seed]);
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let args = member_args(&node, port, seed_port, self.ca.flags(&node), &extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = AgentBuilder::default()
            .node_id(&node)
            .args(&args)
            .start()
            .await;
        self.agents.push(agent);
        self.gossip_ports.push(port);
        i
    }

    /// Starts one more member seeded with `node-0`.
    pub async fn add(&mut self) -> usize {
        self.add_seeded(0).await
    }

    /// Waits until every running member lists `n` alive members.
    pub async fn wait_members(&self, n: usize) {
        for a in &self.agents {
            let api = a.api().clone();
            eventually(
                &format!("{} sees {n} alive members", a.node_id()),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || {
                    let api = api.clone();
                    async move {
                        let m = api.get("/v1/members").await.body;
                        let alive = alive_members(&m);
                        if alive == n {
                            Ok(())
                        } else {
                            Err(format!("{alive} alive: {m}"))
                        }
                    }
                },
            )
            .await;
        }
    }
}

/// Alive members in a `/v1/members` answer.
pub fn alive_members(members: &Value) -> usize {
    members["members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|x| x["state"] == "alive").count())
}
