//! [`GrpcWorker`]: a gRPC worker serving the standard `grpc.health.v1` service with
//! Python's grpcio-health-checking (`tests/fixtures/grpc_health_worker.py`, in a venv
//! from [`crate::pytools`]), whose status the test switches and which it can stop.

use crate::binary::workspace_root;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The whole-server health status the worker answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// `SERVING`.
    Serving,
    /// `NOT_SERVING`.
    NotServing,
    /// No status for the server: `Check` answers `NOT_FOUND`.
    Unset,
}

impl Serving {
    fn word(self) -> &'static str {
        match self {
            Serving::Serving => "serving",
            Serving::NotServing => "not_serving",
            Serving::Unset => "none",
        }
    }
}

/// A running gRPC health server on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct GrpcWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    /// The port it serves on.
    pub port: u16,
}

impl GrpcWorker {
    /// Starts a worker answering `initial`, over TLS with the PEM files in `tls`
    /// (certificate chain, key) when given. Errors say why it could not start (no
    /// Python, no venv, no network for the package), for the caller to skip with.
    pub fn start(initial: Serving, tls: Option<(&Path, &Path)>) -> Result<GrpcWorker, String> {
        let python = crate::pytools::grpc_health_python()?;
        let fixture = workspace_root().join("tests/fixtures/grpc_health_worker.py");
        let mut cmd = Command::new(python);
        // grpc-core logs every refused TLS handshake at INFO; the tests check results.
        cmd.env("GRPC_VERBOSITY", "ERROR");
        cmd.arg(fixture).args(["127.0.0.1", "0", initial.word()]);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the gRPC worker: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = GrpcWorker {
            child,
            stdin,
            lines,
            port: 0,
        };
        let line = worker.next_line(Duration::from_secs(30))?;
        worker.port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("the gRPC worker did not start: {line:?}"))?;
        Ok(worker)
    }

    fn next_line(&mut self, deadline: Duration) -> Result<String, String> {
        let limit = crate::wait::scaled(deadline);
        let start = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => return Ok(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if start.elapsed() < limit => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!("the gRPC worker exited: {status}"));
                    }
                }
                Err(e) => return Err(format!("no line from the gRPC worker: {e}")),
            }
        }
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// Switches the answer; returns once the worker says it switched.
    pub fn set(&mut self, status: Serving) {
        let stdin = self.stdin.as_mut().expect("the worker was stopped");
        writeln!(stdin, "{}", status.word()).expect("write to the gRPC worker");
        stdin.flush().expect("flush");
        let line = self.next_line(Duration::from_secs(10)).expect("switch");
        assert_eq!(line, format!("status {}", status.word()));
    }

    /// Stops serving: the listener closes and the process exits.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "stop");
        }
        let start = Instant::now();
        while start.elapsed() < crate::wait::scaled(Duration::from_secs(10)) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GrpcWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
