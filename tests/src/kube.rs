//! Offline checks of the Kubernetes manifests (`deploy/kubernetes`): `kubectl
//! kustomize` renders them, PyPI `kubernetes-validate` (installed on first use into a
//! virtual environment under the target directory) checks every object against the
//! published schemas, and the venv's PyYAML turns the rendering into JSON for the
//! tests' own assertions.

use crate::binary::workspace_root;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The kubernetes-validate release the tests use (its newest schemas: Kubernetes 1.37).
pub const VALIDATE_VERSION: &str = "1.37.0";

/// The virtual environment (`<target>/kubernetes-validate-venv`, or
/// `$PROBEMESH_KUBE_VALIDATE_VENV`).
pub fn venv_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PROBEMESH_KUBE_VALIDATE_VENV") {
        return PathBuf::from(d);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("kubernetes-validate-venv")
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// The venv's python with kubernetes-validate installed (installed on first use, one
/// installer at a time). Errors say why it is not available, so callers can skip.
pub fn validator_python() -> Result<PathBuf, String> {
    let dir = venv_dir();
    crate::pytools::install_into(
        &dir,
        &[format!("kubernetes-validate=={VALIDATE_VERSION}")],
        &format!(".probemesh-kubernetes-validate-{VALIDATE_VERSION}"),
    )?;
    Ok(dir.join("bin/python"))
}

/// `kubectl kustomize DIR` (DIR relative to the workspace root): the rendered YAML.
pub fn render(dir: &str) -> Result<String, String> {
    run(Command::new("kubectl")
        .arg("kustomize")
        .arg(workspace_root().join(dir))
        .stdin(Stdio::null()))
}

/// Every object of a multi-document YAML text, as JSON (through the venv's PyYAML).
pub fn to_json(python: &Path, yaml: &str) -> Result<Vec<Value>, String> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(yaml.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v.as_array()
        .cloned()
        .ok_or_else(|| "not a list".to_string())
}

/// What `kubernetes-validate --strict` said about one file for one Kubernetes version.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Exit code (0: no error).
    pub code: Option<i32>,
    /// Its report, one line per object (`INFO … passed`, `WARN …`, `ERROR …`).
    pub lines: Vec<String>,
}

/// Runs `kubernetes-validate --strict -k VERSION FILE`.
pub fn validate(python: &Path, file: &Path, version: &str) -> Result<Validation, String> {
    let out = Command::new(python)
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Validation {
        code: out.status.code(),
        lines: text.lines().map(str::to_string).collect(),
    })
}
