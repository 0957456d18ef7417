//! A probemesh cluster on network-namespace hosts: agents `a0…` and HTTP workers
//! `w0…` on one switch (10.233.0.0/24), reachable from the test process through an
//! uplink. Built on [`crate::netns::Lab`]; everything is removed on drop.

use crate::binary::probemesh_bin;
use crate::cluster::ClusterCa;
use crate::http::Api;
use crate::netns::Lab;
use crate::wait::eventually;
use std::time::Duration;
use tempfile::TempDir;

/// Admin token of every agent (their admin APIs listen on switch addresses).
pub const TOKEN: &str = "t";

/// Picks a /24 of its own for every cluster in this process, so that clusters of tests
/// running in parallel never share addresses (their uplinks live in the same root
/// namespace).
fn next_subnet() -> u8 {
    static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let pid_part = (std::process::id() % 20) as u8 * 5;
    200 + (pid_part + N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % 50
}

/// The cluster and its lab.
#[derive(Debug)]
pub struct NsCluster {
    /// Second octet of this cluster's 10.x.0.0/24 switch subnet.
    pub net: u8,
    /// The namespaces.
    pub lab: Lab,
    /// The cluster CA.
    pub ca: ClusterCa,
    /// Logs and data directories.
    pub dir: TempDir,
    /// Admin API of each agent.
    pub apis: Vec<Api>,
    procs: Vec<Option<usize>>,
    extra: Vec<String>,
}

impl NsCluster {
    /// Builds the switch, `agents` agent hosts and `workers` worker hosts (each running
    /// an HTTP server that answers 200), then starts every agent with `extra` flags and
    /// waits until all list each other alive.
    pub async fn start(agents: usize, workers: usize, extra: &[&str]) -> NsCluster {
        let dir = tempfile::Builder::new()
            .prefix("probemesh-ns-")
            .tempdir()
            .expect("tempdir");
        let mut lab = Lab::new();
        let net = next_subnet();
        let agent_ip = |i: usize| format!("10.{net}.0.{}", i + 1);
        let worker_ip = |j: usize| format!("10.{net}.0.{}", 100 + j);
        lab.add_switch();
        lab.uplink(&format!("10.{net}.0.254/24"));
        for i in 0..agents {
            lab.add_ns(&format!("a{i}"));
            lab.plug(&format!("a{i}"), &format!("{}/24", agent_ip(i)));
        }
        let fixture = format!("{}/fixtures/fake_llm_worker.py", env!("CARGO_MANIFEST_DIR"));
        for j in 0..workers {
            let h = format!("w{j}");
            lab.add_ns(&h);
            lab.plug(&h, &format!("{}/24", worker_ip(j)));
            lab.spawn(
                &h,
                "python3",
                &[&fixture, &worker_ip(j), "8000"],
                &dir.path().join(format!("{h}.log")),
            );
        }
        let mut c = NsCluster {
            net,
            lab,
            ca: ClusterCa::new(),
            dir,
            apis: (0..agents)
                .map(|i| Api::new(format!("http://{}:7801", agent_ip(i))).with_token(TOKEN))
                .collect(),
            procs: vec![None; agents],
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..agents {
            c.start_agent(i);
        }
        for i in 0..agents {
            c.wait_ready(i).await;
        }
        c.wait_members(agents).await;
        c
    }

    /// Address of agent `i`.
    pub fn agent_ip(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.net, i + 1)
    }

    /// Address of worker `j`.
    pub fn worker_ip(&self, j: usize) -> String {
        format!("10.{}.0.{}", self.net, 100 + j)
    }

    /// URL of worker `j`.
    pub fn worker_url(&self, j: usize) -> String {
        format!("http://{}:8000", self.worker_ip(j))
    }

    /// Starts (or restarts) agent `i` on its data directory.
    pub fn start_agent(&mut self, i: usize) {
        let host = format!("a{i}");
        let ip = self.agent_ip(i);
        let mut args: Vec<String> = [
            "agent",
            "--node-id",
            &host,
            "--data-dir",
            &self.dir.path().join(&host).to_string_lossy(),
            "--admin-listen",
            &format!("{ip}:7801"),
            "--admin-token",
            TOKEN,
            "--gossip-listen",
            &format!("{ip}:7800"),
            "--gossip-interval",
            "100ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i > 0 {
            args.extend(["--seeds".to_string(), format!("{}:7800", self.agent_ip(0))]);
        }
        args.extend(self.ca.flags(&host));
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = probemesh_bin().to_string_lossy().into_owned();
        let log = self.dir.path().join(format!("{host}.log"));
        self.procs[i] = Some(self.lab.spawn(&host, &bin, &args, &log));
    }

    /// Kills agent `i` with SIGKILL.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(h) = self.procs[i].take() {
            self.lab.kill(h);
        }
    }

    /// Stops agent `i` with SIGTERM; returns whether it exited within 10 s.
    pub fn stop_agent(&mut self, i: usize) -> bool {
        self.procs[i]
            .take()
            .is_some_and(|h| self.lab.terminate(h, Duration::from_secs(10)))
    }

    /// Waits until agent `i` answers `/v1/ready` with 200.
    pub async fn wait_ready(&self, i: usize) {
        let api = self.apis[i].clone();
        eventually(
            &format!("a{i} ready"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let api = api.clone();
                async move {
                    match api.try_send(reqwest::Method::GET, "/v1/ready", None).await {
                        Ok(r) if r.status == 200 => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
    }

    /// Waits until every agent lists `n` alive members.
    pub async fn wait_members(&self, n: usize) {
        for (i, api) in self.apis.iter().enumerate() {
            eventually(
                &format!("a{i} sees {n} alive"),
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let api = api.clone();
                    async move {
                        let m = api.get("/v1/members").await.body;
                        let alive = crate::cluster::alive_members(&m);
                        if alive == n {
                            Ok(())
                        } else {
                            Err(m.to_string())
                        }
                    }
                },
            )
            .await;
        }
    }

    /// Statuses of `url` on every agent (`None` where not listed).
    pub async fn statuses(&self, url: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for api in &self.apis {
            let ws = api
                .try_send(
                    reqwest::Method::GET,
                    &format!("/v1/workers?url={url}"),
                    None,
                )
                .await
                .ok()
                .map(|r| r.body["workers"].clone());
            out.push(
                ws.and_then(|w| w.as_array().and_then(|a| a.first().cloned()))
                    .and_then(|w| w["status"].as_str().map(str::to_string)),
            );
        }
        out
    }
}
