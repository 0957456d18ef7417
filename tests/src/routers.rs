//! The other routers of smg's lineage on PyPI, `vllm-router` and `sglang-router`, for
//! the compatibility tests (`tests/routers_compat.rs`): installed at pinned versions
//! into one cached virtual environment on first use, started on loopback, killed on
//! drop.
//!
//! The environment is not smg's ([`crate::smg::venv_dir`]): sglang-router installs an
//! `smg` script of its own (its 0.3 gateway, the name smg had before), which would
//! replace smg 1.13's.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The vllm-router release the tests run against.
pub const VLLM_ROUTER_VERSION: &str = "0.1.17";
/// The sglang-router release the tests run against.
pub const SGLANG_ROUTER_VERSION: &str = "0.3.2";
/// Environment variable overriding the cached virtual environment's directory.
pub const VENV_ENV: &str = "PROBEMESH_ROUTERS_VENV";
/// Attempts to start a router on fresh ports when the chosen ones were taken meanwhile.
const START_ATTEMPTS: u32 = 3;

/// The cached virtual environment: `$PROBEMESH_ROUTERS_VENV`, else
/// `~/.cache/probemesh/routers-venv`.
pub fn venv_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(VENV_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/probemesh/routers-venv")
}

/// The virtual environment with both routers at their pinned versions, installed now
/// if missing (one installer at a time across test processes, a marker file per pair
/// of versions). Errors say why it is not available (no python3, no network), so
/// callers can skip with the reason.
pub fn install() -> Result<PathBuf, String> {
    let dir = venv_dir();
    crate::pytools::install_into(
        &dir,
        &[
            format!("vllm-router=={VLLM_ROUTER_VERSION}"),
            format!("sglang-router=={SGLANG_ROUTER_VERSION}"),
        ],
        &format!(
            ".probemesh-vllm-router-{VLLM_ROUTER_VERSION}-sglang-router-{SGLANG_ROUTER_VERSION}"
        ),
    )?;
    Ok(dir)
}

/// Which router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `vllm-router` (its own executable; flags directly).
    VllmRouter,
    /// `sglang-router launch` (the same program as its `smg` script).
    SglangRouter,
}

impl Kind {
    /// The PyPI package name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VllmRouter => "vllm-router",
            Kind::SglangRouter => "sglang-router",
        }
    }

    /// The pinned version.
    pub fn version(self) -> &'static str {
        match self {
            Kind::VllmRouter => VLLM_ROUTER_VERSION,
            Kind::SglangRouter => SGLANG_ROUTER_VERSION,
        }
    }

    /// `name version`, for messages.
    pub fn label(self) -> String {
        format!("{} {}", self.name(), self.version())
    }

    /// The command that launches the router (installing it first), without flags.
    pub fn command(self) -> Result<Command, String> {
        let bin = install()?.join("bin").join(self.name());
        let mut cmd = Command::new(bin);
        if self == Kind::SglangRouter {
            cmd.arg("launch");
        }
        Ok(cmd)
    }
}

/// How a launch with some flags ended within its deadline.
#[derive(Debug)]
pub enum Launch {
    /// It exited by itself: the status and what it printed.
    Exited {
        /// The exit code, if it had one.
        code: Option<i32>,
        /// stdout and stderr.
        output: String,
    },
    /// It was still running at the deadline (then killed).
    Running,
}

/// Launches `kind` with `flags` (plus loopback addresses and free ports) and reports
/// whether it exited within `deadline` (scaled), e.g. to see a flag refused.
pub fn launch_with(kind: Kind, flags: &[&str], deadline: Duration) -> Result<Launch, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("router.log");
    let mut child = spawn(kind, crate::wait::free_port(), flags, &log)?;
    let end = Instant::now() + crate::wait::scaled(deadline);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Launch::Exited {
                code: status.code(),
                output: std::fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Launch::Running);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(kind: Kind, port: u16, extra: &[&str], log: &Path) -> Result<Child, String> {
    let prom = crate::wait::free_port();
    let logf = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = logf.try_clone().map_err(|e| e.to_string())?;
    kind.command()?
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--prometheus-host", "127.0.0.1"])
        .args(["--prometheus-port", &prom.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kind.label()))
}

/// A running router on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Router {
    child: Child,
    log: PathBuf,
    /// Which router.
    pub kind: Kind,
    /// Base URL, e.g. `http://127.0.0.1:30000`.
    pub url: String,
}

impl Router {
    /// Starts `kind` on a free port with `extra` flags, its output in `log`, and waits
    /// until `GET /workers` answers (deadline 60 s, scaled). Panics with the log if it
    /// does not come up.
    pub async fn start(kind: Kind, extra: &[&str], log: &Path) -> Router {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = crate::wait::free_port();
            let child = spawn(kind, port, extra, log).unwrap_or_else(|e| panic!("{e}"));
            let mut r = Router {
                child,
                log: log.to_path_buf(),
                kind,
                url: format!("http://127.0.0.1:{port}"),
            };
            match r.wait_up().await {
                Ok(()) => return r,
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{} could not bind a port: {last}", kind.label())
    }

    async fn wait_up(&mut self) -> Result<(), String> {
        let end = Instant::now() + crate::wait::scaled(Duration::from_secs(60));
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) at start: {}",
                    self.kind.label(),
                    self.log()
                ));
            }
            if crate::http::gateway_workers(&self.url).await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "{} at {} did not come up: {}",
            self.kind.label(),
            self.url,
            self.log()
        ))
    }

    /// What the router printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `workers` array of `GET /workers` (empty when it does not answer).
    pub async fn workers(&self) -> Vec<Value> {
        crate::http::gateway_workers(&self.url)
            .await
            .unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== log of {} at {} =====\n{}\n===== end of router log =====",
                self.kind.label(),
                self.url,
                self.log()
            );
        }
    }
}
