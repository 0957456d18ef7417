//! From the file's strings to typed steps: node indices checked against the nodes
//! started (and still running) at that point of the scenario, URLs normalized,
//! networks and durations parsed.

use super::ScenarioError;
use super::raw::{RawCond, RawNodes, RawOp, RawScenario, RawSettings};
pub use super::steps::{Cond, Expect, MemberIs, Sel, Settings, Step, Worker, WorkerStatus};
use probemesh_gossip::model::{Status, WorkerUrl};
use std::time::Duration;

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
            RawCond::Count { status, count, on } => {
                let s = match status.as_str() {
                    "known" => WorkerStatus::Known,
                    other => WorkerStatus::Is(Status::parse(other).ok_or_else(|| {
                        self.err(format!(
                            "status `{other}`: one of pending, ready, not_ready, failed, known"
                        ))
                    })?),
                };
                Cond::Count(s, *count, self.sel(on)?)
            }
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
            RawCond::Degraded { node, on } => Cond::Degraded(*node, self.sel(on)?),
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
        fence_ratio: raw.fence_ratio.unwrap_or(d.fence_ratio),
        poll: dur("poll", &raw.poll, d.poll)?,
    };
    if !(0.0..=1.0).contains(&s.fence_ratio) {
        return Err(err("fence_ratio must be from 0 to 1".into()));
    }
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
