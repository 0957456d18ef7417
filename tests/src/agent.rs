//! `Agent`: one `probemesh agent` process on a private data directory and a free
//! 127.0.0.1 admin port, with its output in a log file.

use crate::binary::{private_gossip_args, probemesh_command};
use crate::http::Api;
use crate::wait::{free_port, free_udp_port, scaled};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long an agent may take to answer `/v1/ready` (scaled by patience).
pub const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Attempts to start on a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

fn unique_node_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "node-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a failed start (error text with the log) was a port taken meanwhile.
fn lost_port_race(error: &str) -> bool {
    [
        "cannot listen on",
        "Address already in use",
        "address in use",
        "os error 98",
    ]
    .iter()
    .any(|needle| error.contains(needle))
}

/// Settings of an agent to start; see [`Agent::builder`].
#[derive(Debug, Clone, Default)]
pub struct AgentBuilder {
    node_id: Option<String>,
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl AgentBuilder {
    /// Runs the agent through a wrapper command that execs it, e.g.
    /// `&["prlimit", "--nofile=256:256", "--"]` (see [`crate::limits`]).
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        self
    }

    /// `--node-id` (default: unique per agent).
    pub fn node_id(mut self, id: &str) -> Self {
        self.node_id = Some(id.to_string());
        self
    }

    /// `--data-dir` (default: `data/` in the agent's own temporary directory).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// One more command-line argument after the built-in ones.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// More command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable for the agent process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the agent and waits until `/v1/ready` answers 200. Panics (with the log)
    /// if it does not.
    pub async fn start(self) -> Agent {
        self.launch(true).await
    }

    /// Starts the agent and waits until its admin API answers `/v1/ready` with any
    /// status (for agents expected to stay unready, such as a refused one). Panics
    /// (with the log) if the process exits first.
    pub async fn start_unready(self) -> Agent {
        self.launch(false).await
    }

    async fn launch(self, ready: bool) -> Agent {
        let tmp = tempfile::Builder::new()
            .prefix("probemesh-agent-")
            .tempdir()
            .expect("agent tempdir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut agent = Agent {
            child: None,
            log_path: tmp.path().join("agent.log"),
            tmp,
            data_dir,
            port: 0,
            node_id: self.node_id.unwrap_or_else(unique_node_id),
            args: self.args,
            env: self.env,
            wrapper: self.wrapper,
            api: Api::new("http://127.0.0.1:0"),
            starts: 0,
            gossip_port: None,
        };
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            agent.port = free_port();
            agent.gossip_port = None;
            agent.api = Api::new(format!("http://127.0.0.1:{}", agent.port));
            match agent.spawn_and_wait(ready).await {
                Ok(()) => return agent,
                Err(e) if lost_port_race(&e) => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("agent could not get a port in {START_ATTEMPTS} attempts: {last}")
    }
}

/// A running (or stopped) `probemesh agent`. Killed on drop; when dropped during a
/// panic, prints its log to stderr so a failing test shows it.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    tmp: TempDir,
    log_path: PathBuf,
    data_dir: PathBuf,
    port: u16,
    node_id: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
    api: Api,
    starts: u32,
    gossip_port: Option<u16>,
}

impl Agent {
    /// Settings for a new agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Starts an agent with these extra arguments and default everything else.
    pub async fn start(args: &[&str]) -> Agent {
        Agent::builder().args(args).start().await
    }

    /// The API client.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The admin base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.api.base()
    }

    /// The admin port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `--node-id`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch directory that lives as long as the agent.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the agent printed so far, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path).map_or(0, |m| m.len())
    }

    fn log_since(&self, offset: u64) -> String {
        let log = self.log();
        log.get(offset as usize..).unwrap_or(&log).to_string()
    }

    async fn spawn_and_wait(&mut self, ready: bool) -> Result<(), String> {
        self.starts += 1;
        let offset = self.log_len();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open agent log");
        let mut cmd = probemesh_command();
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--node-id")
            .arg(&self.node_id)
            .args(self.gossip_args())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut cmd = crate::limits::wrap(cmd, &self.wrapper);
        let _ = writeln!(log, "=== start #{}: {:?}", self.starts, cmd);
        cmd.stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().expect("spawn probemesh agent"));
        let waited = if ready {
            self.wait_ready().await
        } else {
            self.wait_answering().await
        };
        match waited {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill9();
                Err(format!(
                    "{e}\n--- agent log ---\n{}",
                    self.log_since(offset)
                ))
            }
        }
    }

    /// Keeps gossip (when the binary has it) on a private loopback UDP port, so that
    /// agents of parallel tests never meet and nothing leaves 127.0.0.1. Nothing is added
    /// when the test passes `--gossip-listen` itself.
    fn gossip_args(&mut self) -> Vec<String> {
        let given = |flag: &str| self.args.iter().any(|a| a.split('=').next() == Some(flag));
        if given("--gossip-listen") {
            return Vec::new();
        }
        let port = *self.gossip_port.get_or_insert_with(free_udp_port);
        private_gossip_args(port)
    }

    /// Waits until `/v1/ready` answers 200 for this node id; `Err` if the process exits
    /// first or the deadline passes.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + scaled(READY_DEADLINE);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("agent exited ({status}) before it was ready"));
            }
            if self.child.is_none() {
                return Err("agent is not running".into());
            }
            let last = match self
                .api
                .try_send(reqwest::Method::GET, "/v1/ready", None)
                .await
            {
                Ok(r) if r.status == 200 && r.body["node_id"] == self.node_id.as_str() => {
                    return Ok(());
                }
                Ok(r) => format!("HTTP {}: {}", r.status, r.text),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("agent not ready in time; last: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `/v1/ready` answers at all for this node id (any status); `Err` if
    /// the process exits first or the deadline passes.
    pub async fn wait_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + scaled(READY_DEADLINE);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("agent exited ({status}) before its API answered"));
            }
            let last = match self
                .api
                .try_send(reqwest::Method::GET, "/v1/ready", None)
                .await
            {
                Ok(r) if r.body["node_id"] == self.node_id.as_str() => return Ok(()),
                Ok(r) => format!("HTTP {}: {}", r.status, r.text),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("agent's API did not answer in time; last: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then reap. No-op if not running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (at most `deadline`, scaled) for the exit. On timeout
    /// the agent is killed and `Err` returned.
    pub async fn sigterm(&mut self, deadline: Duration) -> Result<ExitStatus, String> {
        let pid = self.pid().ok_or("agent is not running")?;
        let ok = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !ok.success() {
            return Err(format!("kill -s TERM {pid} failed: {ok}"));
        }
        self.wait_exit(deadline).await
    }

    /// Waits (at most `deadline`, scaled) for the process to exit by itself. On timeout
    /// it is killed and `Err` returned.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus, String> {
        let limit = scaled(deadline);
        let start = Instant::now();
        let Some(c) = self.child.as_mut() else {
            return Err("agent is not running".into());
        };
        loop {
            if let Some(status) = c.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() >= limit {
                self.kill9();
                return Err(format!("agent did not exit within {limit:?}; killed"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the agent again on the same data directory, port, node id and arguments
    /// (killing it first if it still runs), and waits until it is ready. Retries a few
    /// times if the port is briefly unavailable.
    pub async fn restart(&mut self) {
        self.kill9();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn_and_wait(true).await {
                Ok(()) => return,
                Err(e) if lost_port_race(&e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
        panic!("restart could not bind port {}: {last}", self.port)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "===== log of agent {} (port {}, data {}) =====\n{}\n===== end of agent log =====",
                self.node_id,
                self.port,
                self.data_dir.display(),
                self.log()
            );
        }
    }
}
