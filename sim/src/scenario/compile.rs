//! From the file's strings to typed steps: node indices checked against the nodes
//! started (and still running) at that point of the scenario, URLs normalized,
//! networks and durations parsed.

use super::ScenarioError;
pub use super::raw::Expect;
use super::raw::{RawCond, RawNodes, RawOp, RawScenario, RawSettings};
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

struct Ctx<'a> {
    file: &'a str,
    index: usize,
    kind: String,
    /// Per node started so far: whether it runs.
    running: Vec<bool>,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Op {
            file: self.file.to_string(),
            index: self.index,
            kind: self.kind.clone(),
            message: message.into(),
        }
    }

    fn node(&self, n: usize) -> Result<usize, ScenarioError> {
        if n >= self.running.len() {
            return Err(self.err(format!(
                "node {n} does not exist ({} nodes started so far)",
                self.running.len()
            )));
        }
        Ok(n)
    }

    fn running(&self, n: usize) -> Result<usize, ScenarioError> {
        self.node(n)?;
        if !self.running[n] {
            return Err(self.err(format!("node {n} is not running at this point")));
        }
        Ok(n)
    }

    fn url(&self, s: &str) -> Result<WorkerUrl, ScenarioError> {
        WorkerUrl::parse(s).map_err(|e| self.err(format!("url `{s}`: {e}")))
    }

    fn worker(&self, s: &str) -> Result<Worker, ScenarioError> {
        let url = self.url(s)?;
        Ok(Worker { id: url.id(), url })
    }

    fn duration(&self, field: &str, s: &str) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(s).map_err(|e| self.err(format!("{field} `{s}`: {e}")))
    }

    fn nodes(&self, raw: &RawNodes) -> Result<Vec<usize>, ScenarioError> {
        let mut out = Vec::new();
        match raw {
            RawNodes::One(n) => out.push(self.node(*n)?),
            RawNodes::List(items) => {
                for item in items {
                    out.extend(self.nodes(item)?);
                }
            }
            RawNodes::Text(t) if t == "all" => out.extend(0..self.running.len()),
            RawNodes::Text(t) => {
                let (a, b, inclusive) = match t.split_once("..=") {
                    Some((a, b)) => (a, b, true),
                    None => match t.split_once("..") {
                        Some((a, b)) => (a, b, false),
                        None => {
                            return Err(self.err(format!(
                                "nodes `{t}`: write an index, \"all\", \"a..b\" or \"a..=b\""
                            )));
                        }
                    },
                };
                let parse = |x: &str| {
                    x.trim()
                        .parse::<usize>()
                        .map_err(|_| self.err(format!("nodes `{t}`: `{x}` is not a node index")))
                };
                let (a, b) = (parse(a)?, parse(b)?);
                let end = if inclusive { b + 1 } else { b };
                for n in a..end {
                    out.push(self.node(n)?);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn sel(&self, raw: &Option<RawNodes>) -> Result<Sel, ScenarioError> {
        match raw {
            None => Ok(Sel::All),
            Some(RawNodes::Text(t)) if t == "all" => Ok(Sel::All),
            Some(r) => Ok(Sel::Nodes(self.nodes(r)?)),
        }
    }

    fn cond(&self, raw: &RawCond) -> Result<Cond, ScenarioError> {
        Ok(match raw {
            RawCond::Status { worker, status, on } => {
                let s = match status.as_str() {
                    "gone" => WorkerStatus::Gone,
                    "known" => WorkerStatus::Known,
                    other => WorkerStatus::Is(Status::parse(other).ok_or_else(|| {
                        self.err(format!("status `{other}`: one of pending, ready, not_ready, failed, known, gone"))
                    })?),
                };
                Cond::Status(self.worker(worker)?, s, self.sel(on)?)
            }
            RawCond::Gone { worker, on } => {
                Cond::Status(self.worker(worker)?, WorkerStatus::Gone, self.sel(on)?)
            }
            RawCond::MembersAlive { count, on } => Cond::MembersAlive(*count, self.sel(on)?),
            RawCond::Member { node, state, on } => {
                let is = match state.as_str() {
                    "alive" => MemberIs::Alive,
                    "dead" => MemberIs::Dead,
                    "forgotten" => MemberIs::Forgotten,
                    other => {
                        return Err(self.err(format!(
                            "member state `{other}`: one of alive, dead, forgotten"
                        )));
                    }
                };
                Cond::Member(self.node(*node)?, is, self.sel(on)?)
            }
            RawCond::Tombstone {
                worker,
                generation,
                on,
            } => Cond::Tombstone(self.worker(worker)?, *generation, self.sel(on)?),
            RawCond::Advertised {
                worker,
                by,
                label,
                on,
            } => {
                let label = match label {
                    None => None,
                    Some(l) => match l.split_once('=') {
                        Some((k, v)) => Some((k.to_string(), v.to_string())),
                        None => return Err(self.err(format!("label `{l}`: write key=value"))),
                    },
                };
                Cond::Advertised(self.worker(worker)?, self.node(*by)?, label, self.sel(on)?)
            }
            RawCond::Verdict {
                worker,
                of,
                status,
                on,
            } => {
                let s = Status::parse(status).ok_or_else(|| {
                    self.err(format!(
                        "status `{status}`: one of pending, ready, not_ready, failed"
                    ))
                })?;
                Cond::Verdict(self.worker(worker)?, self.node(*of)?, s, self.sel(on)?)
            }
            RawCond::Owner { worker, node, on } => {
                Cond::Owner(self.worker(worker)?, self.node(*node)?, self.sel(on)?)
            }
            RawCond::Label {
                worker,
                key,
                value,
                on,
            } => Cond::Label(
                self.worker(worker)?,
                key.clone(),
                value.clone(),
                self.sel(on)?,
            ),
            RawCond::Generation {
                worker,
                generation,
                on,
            } => Cond::Generation(self.worker(worker)?, *generation, self.sel(on)?),
            RawCond::Verdicts { worker, count, on } => {
                Cond::Verdicts(self.worker(worker)?, *count, self.sel(on)?)
            }
            RawCond::Agree { on } => Cond::Agree(self.sel(on)?),
            RawCond::NoResurrection {} => Cond::NoResurrection,
            RawCond::Not { condition } => {
                let inner = self.cond(condition)?;
                if matches!(
                    inner,
                    Cond::All(_) | Cond::Agree(_) | Cond::NoResurrection | Cond::Not(_)
                ) {
                    return Err(self.err("`not` takes a per-node condition (status, member, tombstone, advertised, owner, label, generation, verdicts, members_alive)"));
                }
                Cond::Not(Box::new(inner))
            }
            RawCond::All { of } => {
                Cond::All(of.iter().map(|c| self.cond(c)).collect::<Result<_, _>>()?)
            }
        })
    }

    fn step(&mut self, op: RawOp) -> Result<Step, ScenarioError> {
        Ok(match op {
            RawOp::Start {
                nodes,
                seed_node,
                allow,
            } => {
                if nodes == 0 {
                    return Err(self.err("nodes must be at least 1"));
                }
                if !self.running.is_empty() {
                    self.running(seed_node)?;
                } else if seed_node != 0 {
                    return Err(self.err("the first nodes are seeded with node 0"));
                }
                let allow = allow
                    .iter()
                    .map(|a| a.parse().map_err(|e| self.err(format!("allow `{a}`: {e}"))))
                    .collect::<Result<_, _>>()?;
                self.running.extend(std::iter::repeat_n(true, nodes));
                Step::Start {
                    count: nodes,
                    seed_node,
                    allow,
                }
            }
            RawOp::Register {
                on,
                url,
                disable_checks,
                expect,
            } => Step::Register {
                on: self.running(on)?,
                url: self.url(&url)?,
                disable_checks,
                expect,
            },
            RawOp::Delete { on, worker, expect } => Step::Delete {
                on: self.running(on)?,
                worker: self.url(&worker)?,
                expect,
            },
            RawOp::Patch {
                on,
                worker,
                labels,
                priority,
                disable_checks,
                expect,
            } => Step::Patch {
                on: self.running(on)?,
                worker: self.url(&worker)?,
                labels,
                priority,
                disable_checks,
                expect,
            },
            RawOp::Kill { node } => {
                self.running(node)?;
                self.running[node] = false;
                Step::Kill { node }
            }
            RawOp::Restart { node } => {
                self.node(node)?;
                if self.running[node] {
                    return Err(self.err(format!("node {node} is running; kill it first")));
                }
                self.running[node] = true;
                Step::Restart { node }
            }
            RawOp::Cut { a, b } => Step::Cut {
                a: self.nodes(&a)?,
                b: self.nodes(&b)?,
            },
            RawOp::Heal { a, b } => Step::Heal {
                a: self.nodes(&a)?,
                b: self.nodes(&b)?,
            },
            RawOp::Unreachable { worker, from, how } => Step::Unreachable {
                worker: self.url(&worker)?,
                from: self.sel(&from)?,
                how,
            },
            RawOp::Reachable { worker, from } => Step::Reachable {
                worker: self.url(&worker)?,
                from: self.sel(&from)?,
            },
            RawOp::Advance { by } => Step::Advance(self.duration("by", &by)?),
            RawOp::AssertWithin {
                deadline,
                condition,
            } => Step::AssertWithin(
                self.duration("deadline", &deadline)?,
                self.cond(&condition)?,
            ),
            RawOp::AssertFor {
                duration,
                condition,
            } => Step::AssertFor(
                self.duration("duration", &duration)?,
                self.cond(&condition)?,
            ),
            RawOp::Mark { label } => Step::Mark(label),
        })
    }
}

fn settings(file: &str, raw: &RawSettings) -> Result<Settings, ScenarioError> {
    let err = |message: String| ScenarioError::Settings {
        file: file.to_string(),
        message,
    };
    let d = Settings::default();
    let dur =
        |name: &str, v: &Option<String>, default: Duration| -> Result<Duration, ScenarioError> {
            match v {
                None => Ok(default),
                Some(s) => {
                    let parsed = humantime::parse_duration(s)
                        .map_err(|e| err(format!("{name} `{s}`: {e}")))?;
                    if parsed.is_zero() {
                        return Err(err(format!("{name} must be more than zero")));
                    }
                    Ok(parsed)
                }
            }
        };
    let s = Settings {
        gossip_interval: dur("gossip_interval", &raw.gossip_interval, d.gossip_interval)?,
        dead_node_grace: dur("dead_node_grace", &raw.dead_node_grace, d.dead_node_grace)?,
        tombstone_ttl: dur("tombstone_ttl", &raw.tombstone_ttl, d.tombstone_ttl)?,
        probe_interval: dur("probe_interval", &raw.probe_interval, d.probe_interval)?,
        probe_timeout: dur("probe_timeout", &raw.probe_timeout, d.probe_timeout)?,
        success_threshold: raw.success_threshold.unwrap_or(d.success_threshold),
        failure_threshold: raw.failure_threshold.unwrap_or(d.failure_threshold),
        remove_failed: raw.remove_failed.unwrap_or(d.remove_failed),
        poll: dur("poll", &raw.poll, d.poll)?,
    };
    if s.success_threshold == 0 || s.failure_threshold == 0 {
        return Err(err("thresholds must be at least 1".into()));
    }
    if s.probe_timeout >= s.probe_interval.max(Duration::from_secs(60)) {
        return Err(err("probe_timeout must be shorter than a minute".into()));
    }
    Ok(s)
}

/// Checks and types the whole scenario.
pub(super) fn compile(file: &str, raw: RawScenario) -> Result<super::Scenario, ScenarioError> {
    let settings = settings(file, &raw.settings)?;
    let mut ctx = Ctx {
        file,
        index: 0,
        kind: String::new(),
        running: Vec::new(),
    };
    let mut steps = Vec::with_capacity(raw.ops.len());
    for (i, value) in raw.ops.into_iter().enumerate() {
        ctx.index = i + 1;
        ctx.kind = RawOp::kind(&value);
        let op: RawOp = value
            .try_into()
            .map_err(|e: toml::de::Error| ctx.err(e.to_string()))?;
        if i == 0 && !matches!(op, RawOp::Start { .. }) {
            return Err(ctx.err("a scenario begins with a `start` op"));
        }
        steps.push(ctx.step(op)?);
    }
    if steps.is_empty() {
        return Err(ScenarioError::Parse {
            file: file.to_string(),
            message: "no [[op]]: a scenario begins with a `start` op".into(),
        });
    }
    Ok(super::Scenario {
        name: raw.name,
        file: file.to_string(),
        seed: raw.seed,
        settings,
        steps,
    })
}
