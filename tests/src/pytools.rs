//! PyPI tools for the tests, each installed on first use into its own virtual
//! environment under the target directory (one installer at a time, a marker file per
//! pinned version), the way [`crate::kube`] installs kubernetes-validate.

use crate::binary::workspace_root;
use std::path::PathBuf;
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
    let marker = dir.join(format!(".probemesh-{package}-{version}"));
    if marker.exists() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(&dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let lock_path = dir.with_extension("lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| e.to_string())?;
    if marker.exists() {
        return Ok(dir);
    }
    if !dir.join("bin/pip").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    run(Command::new(dir.join("bin/pip")).args([
        "install",
        "-q",
        &format!("{package}=={version}"),
    ]))?;
    std::fs::write(&marker, version).map_err(|e| e.to_string())?;
    Ok(dir)
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
