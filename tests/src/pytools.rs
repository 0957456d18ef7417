//! PyPI tools for the tests, each installed on first use into its own virtual
//! environment under the target directory (one installer at a time, a marker file per
//! pinned version), the way the Kubernetes manifest checks install kubernetes-validate.

use crate::binary::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The schemathesis release the API tests run.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The grpcio-health-checking release the gRPC probe tests serve health with.
pub const GRPC_HEALTH_VERSION: &str = "1.85.1";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// The directory of a venv holding `package==version` (installed now if missing).
/// Errors say why it is not available (no python3, no venv module, no network), so
/// callers can skip with the reason.
pub fn venv_with(package: &str, version: &str) -> Result<PathBuf, String> {
    let dir = target_dir().join(format!("{package}-venv"));
    install_into(
        &dir,
        &[format!("{package}=={version}")],
        &format!(".probemesh-{package}-{version}"),
    )?;
    Ok(dir)
}

/// Makes `dir` a venv holding the pinned `requirements`, once: a file named `marker`
/// in it says they are installed, and one installer runs at a time across test
/// processes (a lock file next to it). Returns at once when the marker is there.
pub fn install_into(dir: &Path, requirements: &[String], marker: &str) -> Result<(), String> {
    let marker = dir.join(marker);
    if marker.exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let lock_path = dir.with_extension("lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| e.to_string())?;
    if marker.exists() {
        return Ok(());
    }
    if !dir.join("bin/pip").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
    }
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "-q"])
        .args(requirements))?;
    std::fs::write(&marker, requirements.join("\n")).map_err(|e| e.to_string())
}

/// The `st` executable of schemathesis.
pub fn schemathesis() -> Result<PathBuf, String> {
    venv_with("schemathesis", SCHEMATHESIS_VERSION).map(|d| d.join("bin/st"))
}

/// The `python3` of a venv with grpcio-health-checking (for
/// `tests/fixtures/grpc_health_worker.py`).
pub fn grpc_health_python() -> Result<PathBuf, String> {
    venv_with("grpcio-health-checking", GRPC_HEALTH_VERSION).map(|d| d.join("bin/python3"))
}
