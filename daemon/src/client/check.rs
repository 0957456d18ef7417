//! `probemesh check health|ready`: one `GET /v1/health` or `/v1/ready` on the local
//! agent, as an exit code, for orchestrators that cannot reach the admin API themselves.
//!
//! A Kubernetes sidecar keeps the admin API on 127.0.0.1 inside the pod, where the
//! kubelet's HTTP probes (which dial the pod IP) cannot reach it; an `exec` probe runs
//! this command inside the container instead (see deploy/kubernetes and
//! docs/deploy.md). The image is `FROM scratch`, so there is no shell or curl to do it.
//!
//! It speaks plain HTTP/1.1 over one std `TcpStream`, without the async runtime or the
//! HTTPS client: a probe every few seconds should cost a connect and a few hundred bytes,
//! not a TLS root store load. Exit 0 on a 200; 1 on any other status, a timeout or no
//! connection (the reason on stderr); the answer's body on stdout.

use crate::cli::{CheckArgs, CheckTarget};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Answers larger than this are cut (the endpoints answer a few hundred bytes).
const MAX_ANSWER: u64 = 64 * 1024;

impl CheckTarget {
    fn path(self) -> &'static str {
        match self {
            CheckTarget::Health => "/v1/health",
            CheckTarget::Ready => "/v1/ready",
        }
    }
}

/// Runs `probemesh check`: exit 0 when the endpoint answered 200, 1 otherwise, 2 when
/// `--admin` is not a plain `http://host:port` URL.
pub fn run(args: &CheckArgs) -> ExitCode {
    let (host, port) = match parse_admin(&args.admin) {
        Ok(hp) => hp,
        Err(e) => {
            eprintln!("error: --admin {}: {e}", args.admin);
            return ExitCode::from(2);
        }
    };
    match get(&host, port, args.what.path(), args.timeout) {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{}", body.trim_end());
            eprintln!(
                "error: {} answered {status}: {}",
                args.what.path(),
                reason_of(&body)
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "error: {}{}: {e}",
                args.admin.trim_end_matches('/'),
                args.what.path()
            );
            ExitCode::from(1)
        }
    }
}

/// `http://host[:port][/]` → (host, port); brackets of an IPv6 literal are removed.
fn parse_admin(admin: &str) -> Result<(String, u16), String> {
    let url = url::Url::parse(admin).map_err(|e| e.to_string())?;
    if url.scheme() != "http" {
        return Err("only http:// is supported (the admin API has no TLS)".into());
    }
    if url.path() != "/" || url.query().is_some() {
        return Err("give the base URL only, like http://127.0.0.1:7801".into());
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => return Err("no host".into()),
    };
    Ok((host, url.port_or_known_default().unwrap_or(80)))
}

/// The `status` and `reason` of an error answer, for one readable line.
fn reason_of(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.trim().chars().take(200).collect();
    };
    let status = v["status"].as_str().unwrap_or("unknown");
    match (&v["reason"], &v["waiting_for"]) {
        (serde_json::Value::String(r), _) => format!("{status} ({r})"),
        (_, w) if !w.is_null() => format!("{status} (waiting for {w})"),
        _ => status.to_string(),
    }
}

/// One `GET path` with `Connection: close`; the status code and the body.
fn get(host: &str, port: u16, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}; is the agent running?"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: probemesh-check/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        crate::version::VERSION
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer within {timeout:?}")
            }
            _ => format!("reading the answer: {e}"),
        })?;
    parse_answer(&raw)
}

/// Status code and body of a complete HTTP/1.1 answer (the body as sent: the agent
/// answers these endpoints with a `Content-Length`, not chunked).
fn parse_answer(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer is not HTTP (no end of head)".to_string())?;
    let status = head
        .lines()
        .next()
        .and_then(|l| {
            let mut parts = l.split_whitespace();
            let version = parts.next()?;
            let code = parts.next()?.parse::<u16>().ok()?;
            version.starts_with("HTTP/1.").then_some(code)
        })
        .ok_or_else(|| "the answer is not HTTP (bad status line)".to_string())?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_plain_http_base_urls() {
        assert_eq!(
            parse_admin("http://127.0.0.1:7801").unwrap(),
            ("127.0.0.1".into(), 7801)
        );
        assert_eq!(parse_admin("http://[::1]:9/").unwrap(), ("::1".into(), 9));
        assert_eq!(parse_admin("http://agent").unwrap(), ("agent".into(), 80));
        assert!(parse_admin("https://127.0.0.1:7801").is_err());
        assert!(parse_admin("http://127.0.0.1:7801/v1/ready").is_err());
        assert!(parse_admin("127.0.0.1:7801").is_err());
    }

    #[test]
    fn answers_are_read_with_their_status_and_reason() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 40\r\n\r\n{\"status\":\"degraded\",\"reason\":\"no disk\"}";
        let (code, body) = parse_answer(raw).unwrap();
        assert_eq!(code, 503);
        assert_eq!(reason_of(&body), "degraded (no disk)");
        let starting = r#"{"status":"starting","waiting_for":["gossip"]}"#;
        assert_eq!(reason_of(starting), r#"starting (waiting for ["gossip"])"#);
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }
}
