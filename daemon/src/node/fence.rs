//! The node's degraded state (SPEC S12): decided by the reconcile step
//! ([`crate::lifecycle::fencing`]), applied here: `/v1/ready`, metrics, events, logs.

use super::Node;
use crate::lifecycle::fencing::{Cause, Change};
use probemesh_gossip::model::WorkerId;

/// Workers named in the log line of a fence change.
const LOGGED: usize = 20;

impl Node {
    /// `--fence-ratio`.
    pub fn fence_ratio(&self) -> f64 {
        self.settings.fence_ratio
    }

    /// Why this node is degraded, while it is (for `/v1/ready`).
    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records this round's fence state: `reason` is the current reason while degraded;
    /// `change` says whether it was entered or left now; `unreachable` lists this node's
    /// failing workers that most healthy peers reach.
    pub fn set_fence(
        &self,
        change: Option<&Change>,
        reason: Option<String>,
        unreachable: &[WorkerId],
    ) {
        *self.degraded.write().unwrap_or_else(|e| e.into_inner()) = reason.clone();
        let Some(change) = change else {
            return;
        };
        let at = humantime::format_rfc3339_millis(self.settings.clock.now()).to_string();
        match change {
            Change::Entered(cause) => {
                let label = match cause {
                    Cause::Unreachable(_) => "unreachable",
                    Cause::LocalResources => "local_resources",
                };
                self.metrics.fence().entered(label);
                let named: Vec<&str> = unreachable
                    .iter()
                    .take(LOGGED)
                    .map(|w| w.as_str())
                    .collect();
                tracing::error!(
                    cause = label,
                    reason = reason.as_deref().unwrap_or_default(),
                    unreachable_here = ?named,
                    unreachable_count = unreachable.len(),
                    "this node is degraded: /v1/ready answers 503 so that the gateway beside it leaves rotation, and its failed verdicts no longer count toward eviction; it keeps probing and recovers by itself"
                );
                self.events.push(
                    "degraded",
                    serde_json::json!({
                        "node_id": self.settings.node_id,
                        "degraded": true,
                        "cause": label,
                        "reason": reason,
                        "at": at,
                    }),
                );
            }
            Change::Left => {
                self.metrics.fence().left();
                tracing::warn!("this node is no longer degraded: /v1/ready answers 200 again");
                self.events.push(
                    "degraded",
                    serde_json::json!({
                        "node_id": self.settings.node_id,
                        "degraded": false,
                        "at": at,
                    }),
                );
            }
        }
    }
}
