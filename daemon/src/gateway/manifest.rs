//! `--smg-manifest`: the manifest of smg's file discovery (`smg launch
//! --discovery-provider file --discovery-file PATH`), kept equal to this node's ready
//! set (SPEC section 6).
//!
//! The format is smg 1.13.0's, learned from its own errors: `{"version": 1, "workers":
//! [{"id", "url", "worker_type", "bootstrap_port", "model_id", …}]}`; smg refuses
//! unknown fields, so only those it names are written. smg rereads the file as soon as
//! it changes (and every 30 s). The file is replaced atomically (a temp file in the
//! same directory, fsync, rename, fsync of the directory), so smg never reads a partial
//! manifest, and only when its content changes.

use crate::node::Node;
use probemesh_gossip::model::{Status, WorkerSpec, WorkerType};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The manifest format version smg 1.13.0 reads.
pub const VERSION: u32 = 1;
/// How long changes are gathered before one write (a burst of transitions costs one).
const COALESCE: Duration = Duration::from_millis(50);
/// Wait before writing again after a failed write.
const RETRY: Duration = Duration::from_secs(1);

/// The manifest.
#[derive(Debug, Serialize, PartialEq)]
pub struct Manifest<'a> {
    /// [`VERSION`].
    pub version: u32,
    /// The ready workers, in URL order.
    pub workers: Vec<Entry<'a>>,
}

/// One worker, with the fields smg's file discovery knows.
#[derive(Debug, Serialize, PartialEq)]
pub struct Entry<'a> {
    /// A stable id: probemesh's worker id (smg shows it as label `smg.ai/discovery-id`).
    pub id: &'a str,
    /// The worker's URL.
    pub url: &'a str,
    /// `regular`, `prefill` or `decode`.
    pub worker_type: WorkerType,
    /// The bootstrap port of a prefill worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_port: Option<u16>,
    /// The model it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<&'a str>,
}

/// Renders the manifest of `ready` (id and spec of each ready worker): pure, so the
/// format is a table test.
pub fn render<'a>(ready: impl IntoIterator<Item = (&'a str, &'a WorkerSpec)>) -> String {
    let mut workers: Vec<Entry<'a>> = ready
        .into_iter()
        .map(|(id, spec)| Entry {
            id,
            url: spec.url.as_str(),
            worker_type: spec.worker_type,
            bootstrap_port: spec.bootstrap_port,
            model_id: spec.model_id.as_deref(),
        })
        .collect();
    workers.sort_by(|a, b| a.url.cmp(b.url));
    let manifest = Manifest {
        version: VERSION,
        workers,
    };
    // Serializing plain strings, numbers and enums cannot fail.
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    text
}

/// The manifest of this node's ready set now.
fn current(node: &Node) -> String {
    let view = node.registry().read();
    render(
        view.workers
            .values()
            .filter(|e| e.status == Status::Ready)
            .map(|e| (e.reg.id.as_str(), &e.reg.spec)),
    )
}

/// Writes `text` to `path` atomically: temp file beside it, fsync, rename, fsync the
/// directory. Blocking: call it from a blocking thread.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    let tmp = dir.join(format!(".{name}.probemesh-tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Keeps the manifest at `path` equal to the ready set until `stop`.
pub async fn run(node: Arc<Node>, path: PathBuf, stop: CancellationToken) {
    let mut index = node.registry().subscribe();
    let mut written: Option<String> = None;
    loop {
        let text = current(&node);
        if written.as_deref() != Some(text.as_str()) {
            let (p, t) = (path.clone(), text.clone());
            let res = tokio::task::spawn_blocking(move || write_atomically(&p, &t)).await;
            match res {
                Ok(Ok(())) => {
                    node.metrics().gateway().manifest_write(true);
                    tracing::debug!(path = %path.display(), "wrote the smg manifest");
                    written = Some(text);
                }
                Ok(Err(e)) => {
                    node.metrics().gateway().manifest_write(false);
                    tracing::warn!(path = %path.display(), error = %e, "could not write the smg manifest; smg keeps the previous one; retrying");
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
                Err(e) => tracing::error!(error = %e, "manifest write task failed"),
            }
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            changed = index.changed() => if changed.is_err() { return },
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(COALESCE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::WorkerUrl;

    #[test]
    fn the_manifest_lists_ready_workers_in_url_order_with_smgs_fields() {
        let mut a = WorkerSpec::new(WorkerUrl::parse("http://10.0.0.2:8000").unwrap());
        a.model_id = Some("llama".into());
        let mut b = WorkerSpec::new(WorkerUrl::parse("http://10.0.0.1:8000").unwrap());
        b.worker_type = WorkerType::Prefill;
        b.bootstrap_port = Some(8998);
        let text = render([("aaaa", &a), ("bbbb", &b)]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version": 1, "workers": [
                {"id": "bbbb", "url": "http://10.0.0.1:8000", "worker_type": "prefill", "bootstrap_port": 8998},
                {"id": "aaaa", "url": "http://10.0.0.2:8000", "worker_type": "regular", "model_id": "llama"},
            ]})
        );
        assert_eq!(
            render(std::iter::empty()),
            "{\n  \"version\": 1,\n  \"workers\": []\n}\n"
        );
    }

    #[test]
    fn writes_replace_the_file_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workers.json");
        write_atomically(&path, "one").unwrap();
        write_atomically(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("workers.json")]);
        let missing = dir.path().join("no/such/dir/workers.json");
        assert!(write_atomically(&missing, "x").is_err());
    }
}
