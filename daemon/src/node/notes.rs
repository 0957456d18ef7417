//! What the node tells about changes of its view: events for `/v1/events`, the
//! transition metric and the log line of each status change.

use super::Node;
use crate::registry::{Entry, Transition};

impl Node {
    /// Records that `entry` entered the view (`from` is null in the event).
    pub(super) fn note_added(&self, entry: &Entry, reason: &'static str) {
        self.events.push(
            "transition",
            serde_json::json!({
                "worker_id": entry.reg.id,
                "url": entry.reg.spec.url,
                "generation": entry.reg.generation,
                "from": null,
                "to": entry.status,
                "at": humantime::format_rfc3339_millis(entry.status_since).to_string(),
                "reason": reason,
            }),
        );
    }

    /// Records that a worker left the view.
    pub(super) fn note_removed(&self, removed: &Entry, reason: &'static str) {
        self.events.push(
            "removed",
            serde_json::json!({
                "worker_id": removed.reg.id,
                "url": removed.reg.spec.url,
                "generation": removed.reg.generation,
                "last_status": removed.status,
                "at": humantime::format_rfc3339_millis(self.settings.clock.now()).to_string(),
                "reason": reason,
            }),
        );
    }

    pub(super) fn note_transition(&self, t: &Transition, entry: &Entry) {
        self.events.push(
            "transition",
            serde_json::json!({
                "worker_id": t.id,
                "url": entry.reg.spec.url,
                "generation": t.generation,
                "from": t.from,
                "to": t.to,
                "at": humantime::format_rfc3339_millis(entry.status_since).to_string(),
                "reason": t.reason,
            }),
        );
        self.metrics.transition(t.from, t.to);
        let last = entry
            .last_probe
            .as_ref()
            .map_or("none", |p| p.result.as_str());
        tracing::info!(worker = %entry.reg.spec.url, id = %t.id, from = %t.from, to = %t.to, reason = t.reason, last_result = last, "worker status changed");
    }
}
