//! The probe engine: one task that owns the [`schedule::Schedule`], starts due probes
//! with bounded concurrency over one keep-alive client, feeds results to the
//! [`Node`](crate::node::Node) and schedules what comes next.
//!
//! - [`schedule`]: pure "what is due at now", with jitter;
//! - [`check`]: one HTTP health check;
//! - [`allow`]: the allowlist, checked on the address a probe dials.

pub mod allow;
pub mod check;
pub mod schedule;

use crate::node::{NextStep, Node};
use check::{Checker, ProbeReport};
use probemesh_gossip::model::WorkerId;
use rand::SeedableRng;
use schedule::{Due, Schedule, Task};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Probes allowed in flight at once. Bounds sockets and memory with 10,000 workers
/// while keeping a slow worker from delaying others.
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
    /// Run `task` after `after`.
    At {
        /// The worker.
        id: WorkerId,
        /// Its generation.
        generation: u64,
        /// What to do.
        task: Task,
        /// Delay from now (jittered for probes).
        after: Duration,
    },
    /// Forget the worker's pending task.
    Cancel {
        /// The worker.
        id: WorkerId,
    },
}

/// Runs the engine until `shutdown`, then lets in-flight probes finish (bounded).
pub async fn run(
    node: Arc<Node>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    checker: Checker,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let mut schedule = Schedule::default();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight: JoinSet<(WorkerId, u64, ProbeReport)> = JoinSet::new();
    loop {
        let deadline = schedule.next_deadline();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            cmd = rx.recv() => match cmd {
                Some(cmd) => apply(&mut schedule, cmd, &mut rng),
                None => break,
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                node.metrics().probes_in_flight().dec();
                match joined {
                    Ok((id, generation, report)) => follow_up(&node, &mut schedule, &mut rng, id, generation, report),
                    Err(e) => tracing::error!(error = %e, "probe task failed"),
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                for due in schedule.pop_due(Instant::now()) {
                    start(&node, &checker, &permits, &mut in_flight, &mut schedule, &mut rng, due);
                }
            }
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(joined) = in_flight.join_next().await {
            if let Ok((id, generation, report)) = joined {
                node.record_probe(&id, generation, report);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "shutdown: abandoning probes still in flight"
        );
        in_flight.abort_all();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn apply(schedule: &mut Schedule, cmd: Command, rng: &mut impl rand::Rng) {
    match cmd {
        Command::First {
            id,
            generation,
            interval,
        } => {
            let at = Instant::now() + schedule::first_delay(interval, rng);
            schedule.push(
                Due {
                    id,
                    generation,
                    task: Task::Probe,
                },
                at,
            );
        }
        Command::At {
            id,
            generation,
            task,
            after,
        } => {
            schedule.push(
                Due {
                    id,
                    generation,
                    task,
                },
                Instant::now() + after,
            );
        }
        Command::Cancel { id } => schedule.cancel(&id),
    }
}

fn start(
    node: &Arc<Node>,
    checker: &Checker,
    permits: &Arc<Semaphore>,
    in_flight: &mut JoinSet<(WorkerId, u64, ProbeReport)>,
    schedule: &mut Schedule,
    rng: &mut impl rand::Rng,
    due: Due,
) {
    match due.task {
        Task::Retry => {
            if let Some(interval) = node.retry(&due.id, due.generation) {
                let at = Instant::now() + schedule::first_delay(interval, rng);
                schedule.push(
                    Due {
                        task: Task::Probe,
                        ..due
                    },
                    at,
                );
            }
        }
        Task::Probe => {
            let Some((url, timeout)) = node.probe_target(&due.id, due.generation) else {
                return;
            };
            let checker = checker.clone();
            let permits = Arc::clone(permits);
            node.metrics().probes_in_flight().inc();
            in_flight.spawn(async move {
                // The semaphore is never closed, so acquire only fails if it were; a
                // probe then simply runs unbounded.
                let _permit = permits.acquire_owned().await.ok();
                let report = checker.check(&url, timeout).await;
                (due.id, due.generation, report)
            });
        }
    }
}

fn follow_up(
    node: &Arc<Node>,
    schedule: &mut Schedule,
    rng: &mut impl rand::Rng,
    id: WorkerId,
    generation: u64,
    report: ProbeReport,
) {
    match node.record_probe(&id, generation, report) {
        NextStep::Probe(interval) => {
            let at = Instant::now() + schedule::next_delay(interval, rng);
            schedule.push(
                Due {
                    id,
                    generation,
                    task: Task::Probe,
                },
                at,
            );
        }
        NextStep::Retry(backoff) => {
            tracing::info!(id = %id, retry_in = %humantime::format_duration(backoff), "worker failed on this node; will retry");
            schedule.push(
                Due {
                    id,
                    generation,
                    task: Task::Retry,
                },
                Instant::now() + backoff,
            );
        }
        NextStep::Evict => {
            let node = Arc::clone(node);
            tokio::spawn(async move {
                if let Err(e) = node.evict_failed(&id, generation).await {
                    tracing::error!(id = %id, error = %e, "could not evict failed worker; starting a retry cycle instead");
                    node.schedule(id, generation, Task::Retry, Duration::from_secs(5));
                }
            });
        }
        NextStep::Stop => {}
    }
}
