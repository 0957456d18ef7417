//! Runs a [`Scenario`]: a current-thread tokio runtime with paused time (every timer,
//! the nodes' clocks, the probe timeouts and the model's rounds are virtual), one
//! [`SimCluster`], the steps in order. An assertion that does not hold panics with the
//! scenario's name and file, the seed, what failed where, and the tail of the trace.

use crate::check::{ANY_NODE, authority};
use crate::cluster::{Backend, SimCluster, name};
use crate::conditions::{check, describe};
use crate::scenario::compile::Expect;
use crate::scenario::{Cond, Scenario, Sel, Step};
use crate::trace::{Event, Trace};
use probemesh_gossip::model::{WorkerSpec, WorkerUrl};
use std::time::Duration;
use tokio::time::Instant;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The seed (default: the scenario's).
    pub seed: Option<u64>,
    /// The model or real chitchat.
    pub backend: Backend,
    /// Keep a trace (off for large runs).
    pub trace: bool,
    /// Trace every probe result too.
    pub trace_probes: bool,
    /// Paused (virtual) time; `false` runs in real time, deadlines times `patience`.
    pub paused: bool,
    /// Multiplies deadlines in real time.
    pub patience: f64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: None,
            backend: Backend::Model,
            trace: true,
            trace_probes: false,
            paused: true,
            patience: 1.0,
        }
    }
}

/// An assertion that held.
#[derive(Clone, Debug)]
pub struct Held {
    /// 1-based step number.
    pub step: usize,
    /// What held.
    pub what: String,
    /// Virtual ms since the start when it held (or, for `assert_for`, ended).
    pub at_ms: u64,
    /// Virtual ms it waited.
    pub waited_ms: u64,
    /// Resident memory of the process then, in KiB.
    pub rss_kib: u64,
    /// Gossip bytes sent by all nodes so far.
    pub bytes: u64,
    /// Wall-clock ms since the run started (not part of the trace).
    pub wall_ms: u64,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// The trace.
    pub trace: Trace,
    /// Every assertion, in order.
    pub held: Vec<Held>,
    /// Virtual ms the run took.
    pub virtual_ms: u64,
    /// Resident memory before the first node started, in KiB.
    pub rss_before_kib: u64,
    /// Per node id, what the model counted (model backend).
    pub traffic: Option<std::collections::BTreeMap<String, crate::model::Traffic>>,
    /// What the model held at the end (model backend).
    pub footprint: Option<crate::model::Footprint>,
}

/// Runs `scenario` to its end; panics on a failed assertion.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Outcome {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_time();
    if opts.paused {
        b.start_paused(true);
    }
    let rt = match b.build() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build the simulation runtime: {e}"),
    };
    rt.block_on(run_async(scenario, opts))
}

/// [`run`] inside the caller's (current-thread, paused) runtime.
pub async fn run_async(scenario: &Scenario, opts: &RunOptions) -> Outcome {
    let seed = opts.seed.unwrap_or(scenario.seed);
    let trace = Trace::new(opts.trace, opts.trace_probes);
    let cluster = SimCluster::new(scenario.settings.clone(), seed, opts.backend, trace.clone());
    let mut r = Runner {
        cluster,
        scenario,
        seed,
        opts,
        held: Vec::new(),
        rss_before: rss_kib(),
        wall: std::time::Instant::now(),
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        r.step(i + 1, step).await;
    }
    let out = Outcome {
        scenario: scenario.name.clone(),
        seed,
        virtual_ms: trace.now_ms(),
        trace,
        held: std::mem::take(&mut r.held),
        rss_before_kib: r.rss_before,
        traffic: r.cluster.network().map(crate::model::Network::traffic),
        footprint: r.cluster.network().map(crate::model::Network::footprint),
    };
    r.cluster.shutdown().await;
    out
}

/// Resident set size of this process, in KiB (0 where `/proc` is missing).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

struct Runner<'a> {
    cluster: SimCluster,
    scenario: &'a Scenario,
    seed: u64,
    opts: &'a RunOptions,
    held: Vec<Held>,
    rss_before: u64,
    wall: std::time::Instant,
}

impl Runner<'_> {
    fn note(&self, text: String) {
        self.cluster.trace.push("-", Event::Runner(text));
    }

    fn fail(&self, step: usize, message: &str) -> ! {
        panic!(
            "scenario `{}` ({}) seed {} ({:?}): op {step} failed at {} ms: {message}\n--- last trace lines ---\n{}",
            self.scenario.name,
            self.scenario.file,
            self.seed,
            self.opts.backend,
            self.cluster.trace.now_ms(),
            self.cluster.trace.tail(60)
        )
    }

    fn scaled(&self, d: Duration) -> Duration {
        if self.opts.paused {
            d
        } else {
            d.mul_f64(self.opts.patience.max(0.1))
        }
    }

    fn bytes(&self) -> u64 {
        if let Some(n) = self.cluster.network() {
            n.traffic().values().map(|t| t.sent).sum()
        } else {
            self.cluster.chitchat_bytes().map_or(0, |(b, _)| b)
        }
    }

    fn record(&mut self, step: usize, what: String, started: Instant) {
        self.note(format!("held: {what}"));
        self.held.push(Held {
            step,
            what,
            at_ms: self.cluster.trace.now_ms(),
            waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            rss_kib: rss_kib(),
            bytes: self.bytes(),
            wall_ms: u64::try_from(self.wall.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }

    fn running_node(&self, step: usize, i: usize) -> std::sync::Arc<probemesh::node::Node> {
        match self.cluster.nodes.get(i).and_then(|n| n.running.as_ref()) {
            Some(r) => std::sync::Arc::clone(&r.node),
            None => self.fail(step, &format!("{} is not running", name(i))),
        }
    }

    fn expect<T, E: std::fmt::Display>(
        &self,
        step: usize,
        what: &str,
        res: Result<T, E>,
        want: Expect,
    ) {
        match (res, want) {
            (Ok(_), Expect::Ok | Expect::Any) => self.note(format!("{what}: ok")),
            (Err(e), Expect::Refused | Expect::Any) => self.note(format!("{what}: refused ({e})")),
            (Ok(_), Expect::Refused) => self.fail(
                step,
                &format!("{what} succeeded, but the scenario expects a refusal"),
            ),
            (Err(e), Expect::Ok) => self.fail(step, &format!("{what} was refused: {e}")),
        }
    }

    async fn step(&mut self, i: usize, step: &Step) {
        match step {
            Step::Start {
                count,
                seed_node,
                allow,
            } => {
                for _ in 0..*count {
                    let seed = (!self.cluster.nodes.is_empty()).then_some(*seed_node);
                    match self.cluster.add(seed, allow.clone()).await {
                        Ok(n) => self.note(format!("start {}", name(n))),
                        Err(e) => self.fail(i, &e.to_string()),
                    }
                }
            }
            Step::Register {
                on,
                url,
                disable_checks,
                expect,
            } => {
                let node = self.running_node(i, *on);
                let mut spec = WorkerSpec::new(url.clone());
                spec.health.disable = *disable_checks;
                let res = node.register(spec).await;
                self.expect(i, &format!("register {url} on {}", name(*on)), res, *expect);
            }
            Step::Delete { on, worker, expect } => {
                let node = self.running_node(i, *on);
                let res = node.delete(&worker.id()).await;
                self.expect(
                    i,
                    &format!("delete {worker} on {}", name(*on)),
                    res,
                    *expect,
                );
            }
            Step::Patch {
                on,
                worker,
                labels,
                priority,
                disable_checks,
                expect,
            } => {
                let node = self.running_node(i, *on);
                let res = node
                    .update(&worker.id(), |s| {
                        let mut s = s.clone();
                        s.labels.extend(labels.clone());
                        if let Some(p) = priority {
                            s.priority = *p;
                        }
                        if let Some(d) = disable_checks {
                            s.health.disable = *d;
                        }
                        Ok(s)
                    })
                    .await;
                self.expect(i, &format!("patch {worker} on {}", name(*on)), res, *expect);
            }
            Step::Kill { node } => {
                self.cluster.kill(*node).await;
                self.note(format!("kill {}", name(*node)));
            }
            Step::Restart { node } => {
                if let Err(e) = self.cluster.start(*node).await {
                    self.fail(i, &e.to_string());
                }
                self.note(format!("restart {}", name(*node)));
            }
            Step::Cut { a, b } | Step::Heal { a, b } => {
                let heal = matches!(step, Step::Heal { .. });
                for x in a {
                    for y in b {
                        self.cluster.link(*x, *y, heal).await;
                    }
                }
                let verb = if heal { "heal" } else { "cut" };
                self.note(format!("{verb} {a:?} x {b:?}"));
            }
            Step::Unreachable { worker, from, how } => {
                let w = worker_key(worker);
                match from {
                    Sel::All => self.cluster.matrix.block(ANY_NODE, &w, *how),
                    Sel::Nodes(v) => {
                        for n in v {
                            self.cluster.matrix.block(&name(*n), &w, *how);
                        }
                    }
                }
                self.note(format!("unreachable {w} from {from:?} ({how:?})"));
            }
            Step::Reachable { worker, from } => {
                let w = worker_key(worker);
                let m = &self.cluster.matrix;
                match from {
                    Sel::All => m.unblock_everywhere(&w),
                    Sel::Nodes(v) => {
                        // A block for every node becomes one per node, minus these.
                        if let Some(how) = m.blocked(ANY_NODE, &w) {
                            m.unblock(ANY_NODE, &w);
                            for n in 0..self.cluster.nodes.len() {
                                m.block(&name(n), &w, how);
                            }
                        }
                        for n in v {
                            m.unblock(&name(*n), &w);
                        }
                    }
                }
                self.note(format!("reachable {w} from {from:?}"));
            }
            Step::Advance(d) => {
                tokio::time::sleep(self.scaled(*d)).await;
            }
            Step::AssertWithin(deadline, cond) => self.within(i, *deadline, cond).await,
            Step::AssertFor(duration, cond) => self.throughout(i, *duration, cond).await,
            Step::Mark(label) => self.note(format!("mark {label}")),
        }
    }

    async fn within(&mut self, i: usize, deadline: Duration, cond: &Cond) {
        let started = Instant::now();
        let end = started + self.scaled(deadline);
        loop {
            match check(&self.cluster, cond) {
                Ok(()) => return self.record(i, describe(cond), started),
                Err(why) if Instant::now() >= end => self.fail(
                    i,
                    &format!("not within {}: {why}", humantime::format_duration(deadline)),
                ),
                Err(_) => tokio::time::sleep(self.scenario.settings.poll).await,
            }
        }
    }

    async fn throughout(&mut self, i: usize, duration: Duration, cond: &Cond) {
        let started = Instant::now();
        let end = started + self.scaled(duration);
        loop {
            if let Err(why) = check(&self.cluster, cond) {
                self.fail(
                    i,
                    &format!(
                        "stopped holding after {} ms of {}: {why}",
                        started.elapsed().as_millis(),
                        humantime::format_duration(duration)
                    ),
                );
            }
            if Instant::now() >= end {
                return self.record(i, format!("{} throughout", describe(cond)), started);
            }
            tokio::time::sleep(self.scenario.settings.poll).await;
        }
    }
}

/// The matrix key of a worker URL (what its probes dial).
pub fn worker_key(url: &WorkerUrl) -> String {
    match url.probe_url("/health") {
        Ok(u) => authority(&u),
        Err(_) => url.as_str().to_string(),
    }
}
