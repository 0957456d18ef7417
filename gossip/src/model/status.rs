//! The per-node status of a worker (SPEC S3).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's own verdict on a worker. Only [`Status::Ready`] is routable (SPEC S4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Known but not yet verified by this node's probes.
    Pending,
    /// Verified by this node's probes: routable.
    Ready,
    /// Was ready, then failed `failure_threshold` probes in a row.
    NotReady,
    /// Gave up on this node: no more probes until a retry or an eviction.
    Failed,
    /// Being drained (SPEC S14): not routable, still listed, probed without effect,
    /// tombstoned when its drain period ends.
    Draining,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Ready,
        Status::NotReady,
        Status::Failed,
        Status::Draining,
    ];

    /// The snake_case name used in the API, the CLI and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Ready => "ready",
            Status::NotReady => "not_ready",
            Status::Failed => "failed",
            Status::Draining => "draining",
        }
    }

    /// Parses the snake_case name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for st in Status::ALL {
            assert_eq!(Status::parse(st.as_str()), Some(st));
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert_eq!(Status::parse("READY"), None);
    }
}
