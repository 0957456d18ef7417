//! Reconciliation plan: pure, so every case is a table test.

use probemesh_gossip::model::{WorkerSpec, WorkerUrl};
use std::collections::{BTreeMap, BTreeSet};

/// Label the agent puts on every worker it adds, so it only ever removes its own.
pub const MANAGED_LABEL: &str = "probemesh.managed";

/// A worker as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayWorker {
    /// The gateway's id for it (used to delete).
    pub id: String,
    /// Its URL as the gateway reports it.
    pub url: String,
    /// Whether it carries [`MANAGED_LABEL`] (or, for a gateway that keeps no labels,
    /// whether the adapter counts it as its own; see [`super::smg`]).
    pub managed: bool,
    /// The gateway lists it without an id and without labels (vllm-router): it is
    /// named by its URL, and [`MANAGED_LABEL`] cannot be read back.
    pub unlabeled: bool,
}

/// What to change in the gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Workers to add (ready here, absent there).
    pub add: Vec<WorkerSpec>,
    /// Gateway ids of managed workers to remove (not ready here any more).
    pub remove: Vec<String>,
}

/// Plans one reconciliation. A gateway worker is matched by normalized URL; one the
/// agent did not add is left alone even when it is not ready here (and is never added
/// twice); a managed one is removed when its URL is not in `ready`.
pub fn plan(ready: &BTreeMap<WorkerUrl, WorkerSpec>, gateway: &[GatewayWorker]) -> Plan {
    let mut present: BTreeSet<WorkerUrl> = BTreeSet::new();
    let mut out = Plan::default();
    for g in gateway {
        let url = WorkerUrl::parse(&g.url).ok();
        if let Some(u) = &url {
            present.insert(u.clone());
        }
        let wanted = url.as_ref().is_some_and(|u| ready.contains_key(u));
        if g.managed && !wanted {
            out.remove.push(g.id.clone());
        }
    }
    for (url, spec) in ready {
        if !present.contains(url) {
            out.add.push(spec.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(u: &str) -> (WorkerUrl, WorkerSpec) {
        let url = WorkerUrl::parse(u).unwrap();
        (url.clone(), WorkerSpec::new(url))
    }

    fn gw(id: &str, url: &str, managed: bool) -> GatewayWorker {
        GatewayWorker {
            id: id.into(),
            url: url.into(),
            managed,
            unlabeled: false,
        }
    }

    #[test]
    fn adds_missing_removes_stale_managed_and_leaves_foreign_workers_alone() {
        let ready: BTreeMap<_, _> = [spec("http://a:1"), spec("http://b:2"), spec("http://c:3")]
            .into_iter()
            .collect();
        let gateway = vec![
            gw("1", "http://a:1", true),       // in sync
            gw("2", "http://B:2/", false),     // foreign, same worker: neither add nor remove
            gw("3", "http://old:9", true),     // ours, no longer ready: remove
            gw("4", "http://manual:7", false), // foreign, not ours: leave
        ];
        let p = plan(&ready, &gateway);
        assert_eq!(p.remove, vec!["3".to_string()]);
        assert_eq!(p.add.len(), 1);
        assert_eq!(p.add[0].url.as_str(), "http://c:3");
    }

    #[test]
    fn an_empty_ready_set_removes_only_managed_workers() {
        let gateway = vec![gw("1", "http://a:1", true), gw("2", "http://b:1", false)];
        let p = plan(&BTreeMap::new(), &gateway);
        assert_eq!(p.remove, vec!["1".to_string()]);
        assert!(p.add.is_empty());
    }

    #[test]
    fn unparsable_gateway_urls_are_never_matched_but_managed_ones_are_cleaned() {
        let ready: BTreeMap<_, _> = [spec("http://a:1")].into_iter().collect();
        let p = plan(
            &ready,
            &[gw("x", "not a url", true), gw("y", "also bad", false)],
        );
        assert_eq!(p.remove, vec!["x".to_string()]);
        assert_eq!(p.add.len(), 1);
    }
}
