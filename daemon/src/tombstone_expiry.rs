//! The task that forgets tombstones whose TTL has passed (SPEC S6), in one commit per
//! pass ([`crate::node::Node::expire_tombstones`]).

use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often to look for expired tombstones with `ttl`: often enough that a short TTL
/// is honoured within a few seconds, at most once a second and at least once a minute.
pub fn period(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Expires tombstones every `every` until `stop`.
pub async fn run(node: Arc<Node>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => match node.expire_tombstones().await {
                Ok(0) => {}
                Ok(k) => tracing::info!(expired = k, "forgot expired tombstones"),
                Err(e) => tracing::warn!(error = %e, "could not expire tombstones; will try again"),
            },
        }
    }
}
