//! The typed form of a scenario: settings, node selections, conditions and steps, as
//! [`super::compile`] produces them from the file.

pub use super::raw::Expect;
use crate::check::Failure;
use probemesh_gossip::model::{Status, WorkerId, WorkerUrl};
use std::collections::BTreeMap;
use std::time::Duration;

/// Cluster and probe settings of a scenario (defaults: the daemon's).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `--gossip-interval`.
    pub gossip_interval: Duration,
    /// `--dead-node-grace-period`.
    pub dead_node_grace: Duration,
    /// `--tombstone-ttl`.
    pub tombstone_ttl: Duration,
    /// `--probe-interval`.
    pub probe_interval: Duration,
    /// `--probe-timeout`.
    pub probe_timeout: Duration,
    /// `--success-threshold`.
    pub success_threshold: u32,
    /// `--failure-threshold`.
    pub failure_threshold: u32,
    /// `--remove-failed`.
    pub remove_failed: bool,
    /// `--fence-ratio` (SPEC S12).
    pub fence_ratio: f64,
    /// How often assertions look at the cluster, in virtual time.
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gossip_interval: Duration::from_millis(200),
            dead_node_grace: Duration::from_secs(15 * 60),
            tombstone_ttl: Duration::from_secs(24 * 3600),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            success_threshold: 2,
            failure_threshold: 3,
            fence_ratio: 0.8,
            remove_failed: true,
            poll: Duration::from_millis(20),
        }
    }
}

/// A set of nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sel {
    /// Every node running when the step runs (for reachability: every node, also
    /// those started later).
    All,
    /// These nodes (running ones only, for conditions).
    Nodes(Vec<usize>),
}

/// What a worker's entry must be on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    /// In the view with this status.
    Is(Status),
    /// In the view, any status.
    Known,
    /// Not in the view.
    Gone,
}

/// A worker named in a condition, with its id computed once.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// Its URL.
    pub url: WorkerUrl,
    /// Its id.
    pub id: WorkerId,
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// A condition over the cluster, checked on a set of nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// The worker's entry on every node of `on`.
    Status(Worker, WorkerStatus, Sel),
    /// Each node of `on` counts this many live members (itself included).
    MembersAlive(usize, Sel),
    /// Each node of `on` holds exactly this many workers with this status (`Known`:
    /// this many workers in all; `Gone` is not allowed). One pass over each view, for
    /// clusters of thousands of workers.
    Count(WorkerStatus, usize, Sel),
    /// Each node of `on` lists node `node` as alive, dead, or not at all.
    Member(usize, MemberIs, Sel),
    /// Each node of `on` holds a tombstone for the worker (at least `generation`).
    Tombstone(Worker, Option<u64>, Sel),
    /// Each node of `on` sees the worker's registration advertised by node `by`
    /// (with label `key=value` in it, when given).
    Advertised(Worker, usize, Option<(String, String)>, Sel),
    /// Each node of `on` sees node `of`'s verdict on the worker with this status.
    Verdict(Worker, usize, Status, Sel),
    /// Each node of `on` holds the worker with node `node` as its owner.
    Owner(Worker, usize, Sel),
    /// Each node of `on` holds the worker with label `key` = `value`.
    Label(Worker, String, String, Sel),
    /// Each node of `on` holds this generation of the worker.
    Generation(Worker, u64, Sel),
    /// Each node of `on` sees this many peers' verdicts on the worker.
    Verdicts(Worker, usize, Sel),
    /// Every node of `on` holds the same (worker, generation) pairs.
    Agree(Sel),
    /// Each node of `on` sees node `node` degraded (SPEC S12): its own state when it is
    /// node `node`, else the member's gossiped flag.
    Degraded(usize, Sel),
    /// No running node holds a generation that a running node holds a tombstone for.
    NoResurrection,
    /// The per-node condition fails on every node it names ("nowhere").
    Not(Box<Cond>),
    /// Every one of these.
    All(Vec<Cond>),
}

/// How a member appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberIs {
    /// Listed alive.
    Alive,
    /// Listed dead.
    Dead,
    /// Not listed.
    Forgotten,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Starts `count` more nodes seeded with `seed_node` (the first seeds itself).
    Start {
        /// How many.
        count: usize,
        /// Their seed.
        seed_node: usize,
        /// Their `--allow-worker-cidr`.
        allow: Vec<ipnet::IpNet>,
    },
    /// `POST /v1/workers` on node `on`.
    Register {
        /// The node.
        on: usize,
        /// The worker.
        url: WorkerUrl,
        /// `health.disable`.
        disable_checks: bool,
        /// What it must answer.
        expect: Expect,
    },
    /// `DELETE /v1/workers/{id}` on node `on`.
    Delete {
        /// The node.
        on: usize,
        /// The worker.
        worker: WorkerUrl,
        /// What it must answer.
        expect: Expect,
    },
    /// `PATCH /v1/workers/{id}` on node `on`.
    Patch {
        /// The node.
        on: usize,
        /// The worker.
        worker: WorkerUrl,
        /// Labels to set.
        labels: BTreeMap<String, String>,
        /// New priority.
        priority: Option<u32>,
        /// New `health.disable`.
        disable_checks: Option<bool>,
        /// What it must answer.
        expect: Expect,
    },
    /// The node crashes (its tasks are aborted).
    Kill {
        /// The node.
        node: usize,
    },
    /// The node starts again on its data directory (a new gossip generation).
    Restart {
        /// The node.
        node: usize,
    },
    /// Cuts every link between a node of `a` and a node of `b`.
    Cut {
        /// One side.
        a: Vec<usize>,
        /// The other.
        b: Vec<usize>,
    },
    /// Restores those links.
    Heal {
        /// One side.
        a: Vec<usize>,
        /// The other.
        b: Vec<usize>,
    },
    /// The worker becomes unreachable from `from`.
    Unreachable {
        /// The worker.
        worker: WorkerUrl,
        /// From where.
        from: Sel,
        /// Refused or silent.
        how: Failure,
    },
    /// The worker becomes reachable from `from` again.
    Reachable {
        /// The worker.
        worker: WorkerUrl,
        /// From where.
        from: Sel,
    },
    /// Lets virtual time pass.
    Advance(Duration),
    /// Waits until the condition holds; fails past the deadline.
    AssertWithin(Duration, Cond),
    /// The condition must hold at every look for this long.
    AssertFor(Duration, Cond),
    /// Writes a label into the trace.
    Mark(String),
}
