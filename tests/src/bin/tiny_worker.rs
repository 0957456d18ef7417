//! `tiny_worker`: the smallest stand-in for an inference worker, for container tests.
//!
//! It uses the standard library only, so the container test compiles it with `rustc`
//! alone, statically linked, in a few seconds (no crate graph to build), and ships it in
//! a `FROM scratch` image of its own (see `tests/tests/containers.rs`).
//!
//! - listens on the address given as the first argument, else `$TINY_WORKER_LISTEN`,
//!   else `0.0.0.0:8000`;
//! - `GET /health…` (any path starting with `/health`, so per-node probe paths work)
//!   answers `200 {"status":"ok"}`; `GET /v1/models` lists the model named by
//!   `$TINY_WORKER_MODEL` (default `tiny-model`); anything else is a 404;
//! - one thread per connection, every answer closes the connection, a request head must
//!   arrive within 5 s and fit in 8 KiB;
//! - prints one line per request on stdout (`docker logs` shows who probed it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const MAX_HEAD: usize = 8 * 1024;

fn main() {
    let listen = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TINY_WORKER_LISTEN").ok())
        .unwrap_or_else(|| "0.0.0.0:8000".to_string());
    let model = std::env::var("TINY_WORKER_MODEL").unwrap_or_else(|_| "tiny-model".to_string());
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tiny_worker: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("tiny_worker: listening on {listen}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let model = model.clone();
                std::thread::spawn(move || serve(stream, &model));
            }
            Err(e) => eprintln!("tiny_worker: accept: {e}"),
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, model: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = answer(method, path, model);
    println!("{peer} {method} {path} -> {status}");
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

/// Status and JSON body for `method path`.
fn answer(method: &str, path: &str, model: &str) -> (u16, String) {
    let path = path.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", p) if p.starts_with("/health") => (200, r#"{"status":"ok"}"#.to_string()),
        ("GET", "/v1/models") => (
            200,
            format!(r#"{{"object":"list","data":[{{"id":"{model}","object":"model"}}]}}"#),
        ),
        ("GET", _) => (404, r#"{"error":"not found"}"#.to_string()),
        _ => (405, r#"{"error":"method not allowed"}"#.to_string()),
    }
}

/// Reads up to the end of the request head (`\r\n\r\n`); `None` on a timeout, a closed
/// connection or a head over [`MAX_HEAD`].
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() + n > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn health_paths_answer_200_and_others_do_not() {
        assert_eq!(answer("GET", "/health", "m").0, 200);
        assert_eq!(answer("GET", "/health/node-1?x=1", "m").0, 200);
        assert_eq!(answer("GET", "/nope", "m").0, 404);
        assert_eq!(answer("POST", "/health", "m").0, 405);
        let (code, body) = answer("GET", "/v1/models", "llama");
        assert_eq!(code, 200);
        assert!(body.contains(r#""id":"llama""#), "{body}");
    }
}
