//! Self-fencing (SPEC S12, S13): when this node cannot reach what its peers reach, the
//! fault is most likely its own, so it takes itself out of rotation (`/v1/ready` 503
//! `degraded`) and its `failed` verdicts stop counting toward eviction.
//!
//! Two pure parts: [`assess`] compares this node's results with the other live,
//! non-degraded members' verdicts; [`Fence::step`] adds hysteresis so that a node does
//! not flap in and out. Time is passed in.
//!
//! The numbers (see docs/decisions.md):
//! - a worker *counts* when a strict majority of the other live, non-degraded members
//!   hold it `ready`; at least [`MIN_WITNESSES`] such members and [`MIN_WORKERS`] such
//!   workers are needed, so one or two nodes never fence on a split they cannot
//!   attribute, and a whole-fleet outage (no peer reaches the workers) fences nobody;
//! - the node is *suspect* when it fails at least `--fence-ratio` of the counted
//!   workers, and enters `degraded` after being suspect for [`ENTER_AFTER`];
//! - it leaves once it has failed fewer than half of `--fence-ratio` of them (or no
//!   longer has enough witnesses) for [`EXIT_AFTER`];
//! - a probe that failed for lack of a local resource (S13) makes it degraded at once,
//!   for as long as such faults are current.

use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::{Status, WorkerId};
use std::time::Duration;
use tokio::time::Instant;

/// How long the condition must hold before the node fences itself.
pub const ENTER_AFTER: Duration = Duration::from_secs(5);
/// How long the condition must stay clear before the node unfences.
pub const EXIT_AFTER: Duration = Duration::from_secs(30);
/// Other live, non-degraded members needed before peers' verdicts can fence a node.
pub const MIN_WITNESSES: usize = 2;
/// Workers that a majority of those members hold ready, needed likewise.
pub const MIN_WORKERS: usize = 2;
/// Workers named in a reason (the rest are counted).
const NAMED: usize = 5;

/// Whether this node's own probes of a worker are failing now: it left `ready` or
/// never reached it, and its last probes failed.
pub fn is_failing(status: Status, consecutive_failures: u32) -> bool {
    match status {
        Status::NotReady | Status::Failed => true,
        Status::Pending => consecutive_failures > 0,
        Status::Ready | Status::Draining => false,
    }
}

/// One local worker, as the assessment needs it.
#[derive(Clone, Copy, Debug)]
pub struct LocalResult<'a> {
    /// The worker.
    pub id: &'a WorkerId,
    /// The generation this node tracks.
    pub generation: u64,
    /// [`is_failing`] for it.
    pub failing: bool,
}

/// This node's results against its peers'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Other live, non-degraded members.
    pub witnesses: usize,
    /// Workers a strict majority of them hold `ready` (same generation as here).
    pub counted: usize,
    /// Of those, the ones this node fails, in id order.
    pub failing: Vec<WorkerId>,
}

impl Assessment {
    /// Whether the peers' verdicts say this node is at fault at `ratio`.
    fn at_fault(&self, ratio: f64) -> bool {
        self.witnesses >= MIN_WITNESSES
            && self.counted >= MIN_WORKERS
            && self.failing.len() as f64 >= ratio * self.counted as f64
    }

    /// Whether the peers' verdicts are clear of this node at `ratio` (hysteresis: half
    /// the entry ratio).
    fn clear(&self, ratio: f64) -> bool {
        self.witnesses < MIN_WITNESSES
            || self.counted < MIN_WORKERS
            || (self.failing.len() as f64) < ratio / 2.0 * self.counted as f64
    }

    fn reason(&self) -> String {
        let named: Vec<&str> = self
            .failing
            .iter()
            .take(NAMED)
            .map(|w| w.as_str())
            .collect();
        let more = self.failing.len().saturating_sub(NAMED);
        format!(
            "this node fails {} of the {} workers that most of its {} healthy peers reach ({}{}): its own network path is the likely fault",
            self.failing.len(),
            self.counted,
            self.witnesses,
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// Compares `local` with the verdicts of the other live, attested, non-degraded
/// members in `snapshot`.
pub fn assess<'a>(
    snapshot: &ClusterSnapshot,
    local: impl IntoIterator<Item = LocalResult<'a>>,
) -> Assessment {
    let witnesses = snapshot.healthy_peer_count();
    let mut out = Assessment {
        witnesses,
        ..Assessment::default()
    };
    if witnesses < MIN_WITNESSES {
        return out;
    }
    for w in local {
        let ready = snapshot
            .peer_verdicts(w.id)
            .filter(|p| {
                !p.degraded
                    && p.verdict.generation == w.generation
                    && p.verdict.status == Status::Ready
            })
            .count();
        if ready * 2 > witnesses {
            out.counted += 1;
            if w.failing {
                out.failing.push(w.id.clone());
            }
        }
    }
    out
}

/// Why a node is degraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Its peers reach what it does not.
    Unreachable(String),
    /// Its probes fail for lack of a local resource (S13).
    LocalResources,
}

impl Cause {
    /// The reason `/v1/ready`, the log and gossip give.
    pub fn reason(&self) -> String {
        match self {
            Cause::Unreachable(r) => r.clone(),
            Cause::LocalResources => "probes fail for lack of a local resource (file descriptors, sockets, ports or memory): see probemesh_probe_local_errors_total".into(),
        }
    }
}

/// A change of the fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The node became degraded.
    Entered(Cause),
    /// The node is no longer degraded.
    Left,
}

/// The fence's state across rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fence {
    degraded: Option<Cause>,
    /// Since when the entry condition has held (while not degraded).
    suspect_since: Option<Instant>,
    /// Since when the exit condition has held (while degraded).
    clear_since: Option<Instant>,
}

impl Fence {
    /// Why the node is degraded, if it is.
    pub fn degraded(&self) -> Option<&Cause> {
        self.degraded.as_ref()
    }

    /// One evaluation at `now`. `ratio` is `--fence-ratio` (0 turns fencing off);
    /// `local_fault` says whether local resource faults are current.
    pub fn step(
        &mut self,
        now: Instant,
        ratio: f64,
        assessment: &Assessment,
        local_fault: bool,
    ) -> Option<Change> {
        if ratio <= 0.0 {
            self.suspect_since = None;
            self.clear_since = None;
            return self.degraded.take().map(|_| Change::Left);
        }
        let at_fault = assessment.at_fault(ratio);
        match &self.degraded {
            None => {
                if local_fault {
                    return self.enter(Cause::LocalResources);
                }
                if !at_fault {
                    self.suspect_since = None;
                    return None;
                }
                let since = *self.suspect_since.get_or_insert(now);
                (now.duration_since(since) >= ENTER_AFTER)
                    .then(|| self.enter(Cause::Unreachable(assessment.reason())))
                    .flatten()
            }
            Some(cause) => {
                if local_fault {
                    self.clear_since = None;
                    self.degraded = Some(Cause::LocalResources);
                    return None;
                }
                if *cause == Cause::LocalResources {
                    // The faults' own window (`local_faults::ACTIVE_FOR_MS`) was the
                    // hysteresis: leave at once, unless the peers' verdicts now say
                    // the node is at fault anyway.
                    if at_fault {
                        self.degraded = Some(Cause::Unreachable(assessment.reason()));
                        return None;
                    }
                    self.degraded = None;
                    return Some(Change::Left);
                }
                if !assessment.clear(ratio) {
                    self.clear_since = None;
                    if at_fault {
                        // Keep the reason current (which workers, how many).
                        self.degraded = Some(Cause::Unreachable(assessment.reason()));
                    }
                    return None;
                }
                let since = *self.clear_since.get_or_insert(now);
                if now.duration_since(since) >= EXIT_AFTER {
                    self.degraded = None;
                    self.clear_since = None;
                    return Some(Change::Left);
                }
                None
            }
        }
    }

    fn enter(&mut self, cause: Cause) -> Option<Change> {
        self.suspect_since = None;
        self.clear_since = None;
        self.degraded = Some(cause.clone());
        Some(Change::Entered(cause))
    }

    /// When the fence may change with no change of its inputs (a wait ends).
    pub fn due(&self) -> Option<Instant> {
        match self.degraded {
            None => self.suspect_since.map(|s| s + ENTER_AFTER),
            Some(_) => self.clear_since.map(|s| s + EXIT_AFTER),
        }
    }
}

#[cfg(test)]
#[path = "fencing_tests.rs"]
mod tests;
