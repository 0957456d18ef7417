//! Time and ports: patience scaling, polling with deadlines, free ports.

use std::future::Future;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable holding a multiplier for every deadline of the suite (e.g. `3`
/// on a slow CI machine). Defaults to 1.
pub const PATIENCE_ENV: &str = "PROBEMESH_TEST_PATIENCE";

/// The deadline multiplier read from [`PATIENCE_ENV`] (at least 0.1, default 1).
pub fn patience() -> f64 {
    static P: OnceLock<f64> = OnceLock::new();
    *P.get_or_init(|| {
        std::env::var(PATIENCE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p >= 0.1)
            .unwrap_or(1.0)
    })
}

/// `d` multiplied by [`patience`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(patience())
}

/// Polls `check` every `every` until it returns `Ok`, for at most `deadline` (scaled by
/// [`patience`]). Returns the value, or on timeout an error naming `what` and the last
/// reason `check` gave.
pub async fn try_eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = scaled(deadline);
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(why) => why,
        };
        if start.elapsed() >= deadline {
            return Err(format!(
                "timed out after {:?} ({attempts} attempts) waiting for {what}; last observation: {last}",
                start.elapsed()
            ));
        }
        tokio::time::sleep(every).await;
    }
}

/// Like [`try_eventually`], but panics on timeout (tests print the agent log then).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, every: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_eventually(what, deadline, every, check).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
/// Whoever uses it must cope with losing a race for it.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    s.local_addr().expect("local_addr").port()
}

/// First port of the kernel's ephemeral range (Linux: `ip_local_port_range`), 32768
/// when unknown.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A URL on 127.0.0.1 where nothing listens, so connections are refused. The port is
/// below the ephemeral range, so no `bind(0)` or outgoing connection of the suite can
/// take it while a test relies on it being refused.
pub fn refused_url() -> String {
    use std::hash::{BuildHasher, Hasher};
    let top = ephemeral_start().clamp(2048, 32768);
    let low = 1024u16;
    for _ in 0..100 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        let port = low + (h.finish() % u64::from(top - low)) as u16;
        // Free right now (and nobody in the suite binds such ports on purpose).
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("http://127.0.0.1:{port}");
        }
    }
    panic!("no free port below {top} for a refused URL")
}
