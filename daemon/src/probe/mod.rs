//! The probe engine: one task that owns the [`schedule::Schedule`], runs due probes
//! with bounded concurrency, feeds results to its [`ProbeHost`] and schedules what
//! comes next. The probes in flight are futures polled by that same task (no task of
//! their own): with 10,000 workers a spawned task per probe cost as much CPU in
//! scheduling (allocation, queueing, waking other threads) as the probe's own I/O.
//!
//! - [`ports`]: the host and checker interfaces, the only things the engine calls;
//! - [`schedule`]: pure "what is due at now", with jitter;
//! - [`check`]: one HTTP health check (the agent's [`Check`]), over
//!   - [`pool`]: one kept connection per worker origin ([`origin`]), bounded;
//!   - [`conn`]: dialling TCP and TLS; [`dns`]: names, with kept answers;
//!   - [`http1`]: one request and its bounded answer over a connection;
//! - [`result`]: what a probe found;
//! - [`allow`]: the allowlist, checked on the address a probe dials.
//!
//! Time is `tokio::time` and the jitter comes from an RNG the caller seeds, so the
//! engine runs unchanged, and reproducibly, in a paused-time simulation.

pub mod allow;
pub mod check;
pub mod conn;
pub mod dns;
pub(crate) mod grpc;
pub mod http1;
pub mod models;
pub mod origin;
pub mod pool;
pub mod ports;
pub mod result;
pub mod schedule;
#[cfg(test)]
mod test_worker;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
pub use ports::{Check, Expect, NextStep, ProbeHost, Target};
use probemesh_gossip::model::WorkerId;
use rand::rngs::StdRng;
use result::ProbeReport;
use schedule::{Due, Schedule, Task};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Probes allowed in flight at once. Bounds sockets and memory with 10,000 workers
/// while keeping a slow worker from delaying others. A probe due past it waits in the
/// engine's queue, not as a task: a task holds the whole probe's state (about 3 KiB),
/// and 10,000 of them parked at start-up would leave the allocator's pages fragmented
/// for good.
pub const DEFAULT_CONCURRENCY: usize = 512;
/// How long shutdown waits for in-flight probes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// A worker became known: probe it almost at once (SPEC S3).
    First {
        /// The worker.
        id: WorkerId,
        /// Its generation.
        generation: u64,
        /// Its probe interval (bounds the first-probe jitter).
        interval: Duration,
    },
    /// Forget the worker's pending task.
    Cancel {
        /// The worker.
        id: WorkerId,
    },
}

/// The engine's settings.
#[derive(Debug)]
pub struct EngineSettings {
    /// Probes in flight at most.
    pub concurrency: usize,
    /// The jitter source (seeded from the OS in the agent, from the scenario's seed in
    /// simulations).
    pub rng: StdRng,
}

/// Runs the engine until `shutdown`, then lets in-flight probes finish (bounded by
/// [`DRAIN_TIMEOUT`]) and records their results.
pub async fn run<H: ProbeHost, C: Check>(
    host: Arc<H>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    checker: Arc<C>,
    settings: EngineSettings,
    shutdown: CancellationToken,
) {
    let mut engine = Engine {
        host,
        checker,
        schedule: Schedule::default(),
        rng: settings.rng,
        concurrency: settings.concurrency.max(1),
        in_flight: FuturesUnordered::new(),
        waiting: VecDeque::new(),
        targets: HashMap::new(),
    };
    loop {
        let deadline = engine.schedule.next_deadline();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            cmd = rx.recv() => match cmd {
                Some(cmd) => engine.apply(cmd),
                None => break,
            },
            Some(ended) = engine.in_flight.next(), if !engine.in_flight.is_empty() => {
                engine.host.in_flight(-1);
                match ended {
                    Ok((id, generation, target, report)) => {
                        engine.follow_up(id, generation, target, report)
                    }
                    Err(_) => tracing::error!("a probe panicked; its worker is not probed again until it is rescheduled"),
                }
                engine.admit();
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                for due in engine.schedule.pop_due(Instant::now()) {
                    engine.start(due);
                }
            }
        }
    }
    engine.drain().await;
}

/// Runs the engine ([`run`]) on a thread of its own with a single-threaded runtime,
/// so that its probes' sockets, timers and wake-ups stay on one thread: no hand-offs
/// between the agent's worker threads, and probing does not share them with the admin
/// API and gossip. The handle ends when the engine does. If that runtime cannot be
/// built, the engine runs on the caller's runtime instead (on the same thread).
pub fn spawn_engine<H: ProbeHost, C: Check>(
    host: Arc<H>,
    rx: mpsc::UnboundedReceiver<Command>,
    checker: Arc<C>,
    settings: EngineSettings,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let caller = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let engine = run(host, rx, checker, settings, shutdown);
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("probemesh-probe")
            .build()
        {
            Ok(rt) => rt.block_on(engine),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the probe runtime; probing on the agent's runtime");
                caller.block_on(engine);
            }
        }
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What a probe in flight gives when it ends: `Err` if the check panicked.
type Ended = Result<(WorkerId, u64, Target, ProbeReport), Box<dyn std::any::Any + Send>>;

/// A probe in flight.
type InFlight = Pin<Box<dyn Future<Output = Ended> + Send>>;

/// The engine's state while it runs.
struct Engine<H, C> {
    host: Arc<H>,
    checker: Arc<C>,
    schedule: Schedule,
    rng: StdRng,
    concurrency: usize,
    /// The probes in flight, at most `concurrency`; polled by the engine's task.
    in_flight: FuturesUnordered<InFlight>,
    /// Probes that came due while `concurrency` were in flight, started in order as
    /// probes end. At most one per task taken from the schedule, which holds at most
    /// one per worker: bounded by the workers known.
    waiting: VecDeque<Due>,
    /// The last target probed of every worker with a pending task or a probe in
    /// flight, so that the checker can be told to [`Check::forget`] it when the worker
    /// is cancelled. Bounded by the workers in the engine's care: an entry goes when
    /// its worker is cancelled, has no target any more or needs nothing more.
    targets: HashMap<WorkerId, Target>,
}

impl<H: ProbeHost, C: Check> Engine<H, C> {
    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::First {
                id,
                generation,
                interval,
            } => {
                let at = Instant::now() + schedule::first_delay(interval, &mut self.rng);
                self.push(id, generation, Task::Probe, at, schedule::slack(interval));
            }
            Command::Cancel { id } => {
                self.schedule.cancel(&id);
                self.forget(&id);
            }
        }
    }

    /// Tells the checker the worker's last target is no longer probed.
    fn forget(&mut self, id: &WorkerId) {
        if let Some(target) = self.targets.remove(id) {
            self.checker.forget(&target);
        }
    }

    fn push(&mut self, id: WorkerId, generation: u64, task: Task, at: Instant, slack: Duration) {
        self.schedule.push_with_slack(
            Due {
                id,
                generation,
                task,
            },
            at,
            slack,
        );
    }

    fn start(&mut self, due: Due) {
        match due.task {
            Task::Retry => match self.host.retry(&due.id, due.generation) {
                Some(interval) => {
                    let at = Instant::now() + schedule::first_delay(interval, &mut self.rng);
                    let slack = schedule::slack(interval);
                    self.push(due.id, due.generation, Task::Probe, at, slack);
                }
                None => self.forget(&due.id),
            },
            Task::Probe if self.in_flight.len() >= self.concurrency => {
                self.waiting.push_back(due);
            }
            Task::Probe => self.launch(due),
        }
    }

    /// Starts waiting probes while there is room.
    fn admit(&mut self) {
        while self.in_flight.len() < self.concurrency {
            match self.waiting.pop_front() {
                Some(due) => self.launch(due),
                None => break,
            }
        }
    }

    /// Starts one probe, with the target its host gives now.
    fn launch(&mut self, due: Due) {
        let Some(target) = self.host.target(&due.id, due.generation) else {
            self.forget(&due.id);
            return;
        };
        match self.targets.get_mut(&due.id) {
            Some(kept) if *kept == target => {}
            Some(kept) => *kept = target.clone(),
            None => {
                self.targets.insert(due.id.clone(), target.clone());
            }
        }
        let checker = Arc::clone(&self.checker);
        self.host.in_flight(1);
        let probe = async move {
            let report = checker.check(&target).await;
            (due.id, due.generation, target, report)
        };
        // A panic in a check must not take the engine down with it.
        self.in_flight
            .push(Box::pin(std::panic::AssertUnwindSafe(probe).catch_unwind()));
    }

    fn follow_up(&mut self, id: WorkerId, generation: u64, target: Target, report: ProbeReport) {
        let next = self.host.record(&id, generation, report);
        if next == NextStep::Stop || !self.targets.contains_key(&id) {
            // Nothing more for this worker, or it was cancelled while this probe was in
            // flight: what the probe kept goes too.
            self.targets.remove(&id);
            self.checker.forget(&target);
        }
        match next {
            NextStep::Probe(interval) => {
                let at = Instant::now() + schedule::next_delay(interval, &mut self.rng);
                self.push(id, generation, Task::Probe, at, schedule::slack(interval));
            }
            NextStep::Retry(backoff) => {
                tracing::info!(id = %id, retry_in = %humantime::format_duration(backoff), "worker failed on this node; will retry unless the cluster evicts it first");
                let at = Instant::now() + backoff;
                self.push(id, generation, Task::Retry, at, schedule::slack(backoff));
            }
            NextStep::Stop => {}
        }
    }

    /// Waits for the probes in flight (bounded) and records their results, so a
    /// result that arrived is not lost at shutdown.
    async fn drain(mut self) {
        let host = Arc::clone(&self.host);
        let in_flight = &mut self.in_flight;
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(ended) = in_flight.next().await {
                host.in_flight(-1);
                if let Ok((id, generation, _target, report)) = ended {
                    host.record(&id, generation, report);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.in_flight.len(),
                "shutdown: abandoning probes still in flight"
            );
            self.host
                .in_flight(-i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
