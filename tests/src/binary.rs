//! Finding (building if needed) the `probemesh` binary, and running it as a one-shot
//! command with a deadline.

use crate::wait::scaled;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable naming a prebuilt `probemesh` binary; when unset the suite
/// builds it with cargo.
pub const BIN_ENV: &str = "PROBEMESH_BIN";

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The `probemesh` executable: `$PROBEMESH_BIN`, or the result of
/// `cargo build -p probemesh --bin probemesh` (run once per test process). Panics with
/// cargo's output when the build fails.
pub fn probemesh_bin() -> &'static Path {
    // The outcome is cached, failure included, so a broken build is tried only once.
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| match std::env::var_os(BIN_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => build(),
    });
    match bin {
        Ok(p) => p,
        Err(e) => panic!("cannot build probemesh: {e}"),
    }
}

fn cargo() -> String {
    std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_string))
        .unwrap_or_else(|| "cargo".to_string())
}

/// `--release` when this test binary itself was built in the release profile, so the
/// suite does not compile the daemon twice.
fn profile_args() -> Vec<&'static str> {
    let exe = std::env::current_exe().ok();
    let profile_dir = exe
        .as_deref()
        .and_then(Path::parent) // deps
        .and_then(Path::parent) // <profile>
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    if profile_dir == Some("release") {
        vec!["--release"]
    } else {
        Vec::new()
    }
}

/// Whether `key` is one of the variables cargo sets for the test process about the test
/// crate itself. They must not reach the nested `cargo build`: build scripts that watch
/// them (ring's watches `CARGO_MANIFEST_DIR`) would see them change between a build from
/// a shell and one from the suite, and every such switch would rebuild ring and all
/// that depends on it.
pub fn is_test_crate_var(key: &str) -> bool {
    matches!(
        key,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_BIN_NAME"
    ) || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
}

fn build() -> Result<PathBuf, String> {
    let mut cmd = Command::new(cargo());
    for (k, _) in std::env::vars_os() {
        if is_test_crate_var(&k.to_string_lossy()) {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "probemesh",
            "--bin",
            "probemesh",
            "--message-format=json",
        ])
        .args(profile_args())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let messages: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !out.status.success() {
        let rendered: String = messages
            .iter()
            .filter(|m| m["reason"] == "compiler-message")
            .filter_map(|m| m["message"]["rendered"].as_str())
            .collect();
        return Err(format!(
            "cargo build failed ({}):\n{rendered}\n{stderr}",
            out.status
        ));
    }
    let mut found = None;
    for msg in &messages {
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "probemesh"
            && is_bin
            && let Some(exe) = msg["executable"].as_str()
        {
            found = Some(PathBuf::from(exe));
        }
    }
    found.ok_or_else(|| format!("cargo reported no probemesh executable:\n{stderr}"))
}

/// Whether `probemesh agent` knows the flag `--NAME` (asked once via `agent --help`),
/// so the harness can pin options of features that arrive over time.
pub fn agent_supports(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        probemesh_command()
            .args(["agent", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n"))
}

/// Arguments that keep an agent's gossip (once the binary has it) on 127.0.0.1:`port`
/// instead of the default 0.0.0.0:7800, so agents of parallel tests never collide or
/// meet. Empty when the binary has no such flag.
pub fn private_gossip_args(port: u16) -> Vec<String> {
    let mut args = Vec::new();
    if agent_supports("gossip-listen") {
        args.push("--gossip-listen".to_string());
        args.push(format!("127.0.0.1:{port}"));
    }
    if agent_supports("gossip-advertise") {
        args.push("--gossip-advertise".to_string());
        args.push(format!("127.0.0.1:{port}"));
    }
    args
}

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `Command` for the probemesh binary with a clean environment: every
/// `PROBEMESH_*` variable of the test process removed (so a developer's settings
/// cannot leak in) and `RUST_LOG=info`.
pub fn probemesh_command() -> Command {
    let mut cmd = Command::new(probemesh_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PROBEMESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info").stdin(Stdio::null());
    cmd
}

/// Runs `probemesh ARGS` with extra environment `env` and waits (at most 30 s, scaled)
/// for it to exit. Panics if it does not.
pub async fn run_probemesh_env(args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = probemesh_command();
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn probemesh");
    let deadline = Instant::now() + scaled(Duration::from_secs(30));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let out = CmdOutput {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "`probemesh {}` did not exit within its deadline; killed.\n{out}",
        args.join(" ")
    );
    out
}

/// Runs `probemesh ARGS` and waits for it to exit (see [`run_probemesh_env`]).
pub async fn run_probemesh(args: &[&str]) -> CmdOutput {
    run_probemesh_env(args, &[]).await
}
