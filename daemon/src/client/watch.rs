//! `probemesh workers watch`: follows `/v1/events` and prints one line per event.
//! On a dropped connection it reconnects with `Last-Event-ID`, so nothing is missed
//! while the agent's buffer covers the gap.

use super::Api;
use anyhow::{Context, anyhow};
use serde_json::Value;
use std::time::Duration;

/// One parsed Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct SseFrame {
    id: Option<String>,
    event: String,
    data: String,
}

/// Splits buffered text into complete events (blank-line separated), leaving any
/// partial event in `buf`. Comment lines (keep-alives) are skipped.
fn take_frames(buf: &mut String) -> Vec<SseFrame> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut f = SseFrame::default();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                f.id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                f.event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !f.data.is_empty() {
                    f.data.push('\n');
                }
                f.data.push_str(v.trim_start());
            }
        }
        if !f.event.is_empty() || !f.data.is_empty() {
            out.push(f);
        }
    }
    out
}

fn line(f: &SseFrame) -> String {
    let v: Value = serde_json::from_str(&f.data).unwrap_or(Value::String(f.data.clone()));
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    match f.event.as_str() {
        "transition" => format!(
            "{}  {}  {}  {} -> {}  ({})",
            s("at"),
            s("worker_id"),
            s("url"),
            v.get("from").and_then(Value::as_str).unwrap_or("new"),
            s("to"),
            s("reason")
        ),
        "removed" => format!(
            "{}  {}  {}  removed  ({})",
            s("at"),
            s("worker_id"),
            s("url"),
            s("reason")
        ),
        "degraded" => {
            if v.get("degraded").and_then(Value::as_bool) == Some(true) {
                format!(
                    "{}  node {}  degraded  ({})",
                    s("at"),
                    s("node_id"),
                    s("reason")
                )
            } else {
                format!("{}  node {}  no longer degraded", s("at"), s("node_id"))
            }
        }
        other => format!("{other}: {}", f.data),
    }
}

/// The wait a 503 asks for in `Retry-After` (seconds), 1 s when absent, at most 30 s.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |s| {
            Duration::from_secs(s.clamp(1, 30))
        })
}

/// Follows the event stream until interrupted.
pub async fn run(api: &Api, json: bool) -> anyhow::Result<()> {
    let mut last_id: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let mut req = api.http.get(format!("{}/v1/events", api.base));
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id);
        }
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        let resp = match req.send().await {
            Ok(r) if r.status().is_success() => {
                failures = 0;
                r
            }
            // Busy (too many event streams, or too many connections): wait as asked.
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                failures += 1;
                if failures > 30 {
                    return Err(anyhow!(
                        "the agent at {} kept answering 503 (busy) to /v1/events",
                        api.base
                    ));
                }
                let wait = retry_after(r.headers());
                eprintln!(
                    "the agent is busy (503); retrying in {}",
                    humantime::format_duration(wait)
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            Ok(r) => return Err(anyhow!("the agent answered {} to /v1/events", r.status())),
            Err(e) => {
                failures += 1;
                if failures > 30 {
                    return Err(e)
                        .with_context(|| format!("cannot reach the agent at {}", api.base));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut resp = resp;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            for f in take_frames(&mut buf) {
                if f.id.is_some() {
                    last_id.clone_from(&f.id);
                }
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"event": f.event, "id": f.id, "data": serde_json::from_str::<Value>(&f.data).unwrap_or(Value::Null)})
                    );
                } else {
                    println!("{}", line(&f));
                }
            }
        }
        // The agent closed the stream (restart, shutdown): resume from the last id.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(reqwest::header::RETRY_AFTER, "5".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(5));
        h.insert(reqwest::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(30));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }

    #[test]
    fn frames_are_parsed_and_partial_ones_kept() {
        let mut buf = String::from(
            ": keep-alive\n\nid: 7\nevent: transition\ndata: {\"to\":\"ready\"}\n\nid: 8\nevent: rem",
        );
        let frames = take_frames(&mut buf);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].id.as_deref(), Some("7"));
        assert_eq!(frames[0].event, "transition");
        assert!(buf.starts_with("id: 8"));
        buf.push_str("oved\ndata: {}\n\n");
        assert_eq!(take_frames(&mut buf)[0].event, "removed");
    }
}
