//! Resource limits and raw connections for the admin-limits tests: running the agent
//! under a wrapper such as `prlimit` (check it with [`crate::require::tool`]), raising
//! this test process's own open-file limit, and a minimal keep-alive HTTP/1.1 client
//! that keeps its one connection.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this process's soft open-file limit to its hard limit; returns the soft
/// limit now in force.
pub fn raise_own_nofile_limit() -> u64 {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return 1024;
    };
    if soft < hard && Resource::NOFILE.set(hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// `cmd` run through `wrapper` (e.g. `prlimit --nofile=256:256 --`): same program,
/// arguments and environment changes, as arguments of the wrapper. The wrapper must
/// exec the program, so the child's pid stays the agent's.
pub(crate) fn wrap(cmd: Command, wrapper: &[String]) -> Command {
    let Some((program, args)) = wrapper.split_first() else {
        return cmd;
    };
    let mut w = Command::new(program);
    w.args(args).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w.stdin(Stdio::null());
    w
}

/// One HTTP/1.1 connection kept open across requests, for talking to an agent while
/// every other connection slot is taken.
#[derive(Debug)]
pub struct KeepAliveConn {
    stream: TcpStream,
}

impl KeepAliveConn {
    /// Connects to 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> std::io::Result<KeepAliveConn> {
        Ok(KeepAliveConn {
            stream: TcpStream::connect(("127.0.0.1", port)).await?,
        })
    }

    /// The socket, e.g. to wait for the agent to close it.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// `GET path` on this connection (at most 10 s); the status and the JSON body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Value), String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        tokio::time::timeout(Duration::from_secs(10), async {
            self.stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                if let Some(done) = complete_response(&buf)? {
                    return Ok(done);
                }
                match self.stream.read(&mut chunk).await {
                    Ok(0) => return Err(format!("closed by the agent after {buf:?}")),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        })
        .await
        .map_err(|_| format!("GET {path}: no answer in 10s"))?
    }
}

/// The status and JSON body once `buf` holds a whole response with a content-length.
fn complete_response(buf: &[u8]) -> Result<Option<(u16, Value)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let body = &buf[end + 4..];
    if body.len() < len {
        return Ok(None);
    }
    Ok(Some((
        status,
        serde_json::from_slice(&body[..len]).unwrap_or(Value::Null),
    )))
}

/// Whether the agent closed `stream` (EOF or reset) within `within`; bytes it sends
/// meanwhile (an answer) are read and dropped.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
