//! Kept connections: at most one idle connection per [`Origin`], reused by the next
//! probe of it. An idle connection is its socket and the address it was dialled at,
//! nothing else (no task, no buffers; see [`super::http1`]).
//!
//! Bounds:
//! - at most `max_idle` connections (the agent derives it from the open-file limit);
//!   past it a probe's connection is closed after its answer, and the probe asks the
//!   worker to close (`Connection: close`), as every probe did before the pool;
//! - a connection idle for longer than `idle_timeout` is closed by a sweep that runs,
//!   at most every [`SWEEP_EVERY`], on the probe path (so no task either);
//! - a worker the engine stops probing has its connection closed at once
//!   ([`super::Check::forget`]).
//!
//! The lock is a `std` mutex held for map operations only, never across an await;
//! sockets are closed after it is released.

use super::conn::Stream;
use super::origin::Origin;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long an idle connection is kept by default. Longer than every common
/// probe interval, shorter than the idle timeouts of most servers that have one
/// longer than the interval (nginx 75 s, probemesh's admin API 60 s...).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the probe path looks for connections idle past their timeout.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// An idle connection.
#[derive(Debug)]
pub struct Idle {
    /// The connection.
    pub stream: Stream,
    /// The address it was dialled at (a name's answer may change, see
    /// [`super::dns`]).
    pub peer: SocketAddr,
    since: Instant,
}

impl Idle {
    /// A connection that just became idle (its readiness waker released, see
    /// [`Stream::release_waker`]).
    pub fn new(stream: Stream, peer: SocketAddr) -> Idle {
        stream.release_waker();
        Idle {
            stream,
            peer,
            since: Instant::now(),
        }
    }
}

#[derive(Debug)]
struct Slots {
    idle: HashMap<Origin, Idle>,
    next_sweep: Instant,
}

/// The idle connections.
#[derive(Debug)]
pub struct Pool {
    slots: Mutex<Slots>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// A pool of at most `max_idle` connections kept `idle_timeout` each.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            slots: Mutex::new(Slots {
                idle: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY.min(idle_timeout),
            }),
            max_idle,
            idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Map operations cannot leave the map half-changed; a poisoned lock is usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `origin`'s idle connection, if it has one that has not timed out. Runs
    /// the sweep when it is due.
    pub fn take(&self, origin: &Origin) -> Option<Idle> {
        let (taken, swept) = {
            let mut slots = self.lock();
            let swept = self.sweep_if_due(&mut slots);
            (slots.idle.remove(origin), swept)
        };
        drop(swept);
        taken.filter(|idle| idle.since.elapsed() < self.idle_timeout)
    }

    /// Whether a connection to `origin` would be kept after its answer.
    pub fn has_room(&self, origin: &Origin) -> bool {
        let slots = self.lock();
        slots.idle.len() < self.max_idle || slots.idle.contains_key(origin)
    }

    /// Keeps `idle` as `origin`'s connection; closes it instead when the pool is full
    /// or `origin` already has one (two probes of one origin ran at once).
    pub fn put(&self, origin: Origin, idle: Idle) {
        let refused = {
            let mut slots = self.lock();
            if slots.idle.len() >= self.max_idle || slots.idle.contains_key(&origin) {
                Some(idle)
            } else {
                slots.idle.insert(origin, idle);
                None
            }
        };
        drop(refused);
    }

    /// Closes `origin`'s idle connection.
    pub fn forget(&self, origin: &Origin) {
        let removed = self.lock().idle.remove(origin);
        drop(removed);
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.lock().idle.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes out the connections idle past the timeout, when a sweep is due; the
    /// caller drops them after releasing the lock.
    fn sweep_if_due(&self, slots: &mut Slots) -> Vec<Idle> {
        let now = Instant::now();
        if now < slots.next_sweep {
            return Vec::new();
        }
        slots.next_sweep = now + SWEEP_EVERY.min(self.idle_timeout);
        let timeout = self.idle_timeout;
        let expired: Vec<Origin> = slots
            .idle
            .iter()
            .filter(|(_, idle)| now.duration_since(idle.since) >= timeout)
            .map(|(origin, _)| origin.clone())
            .collect();
        expired
            .iter()
            .filter_map(|origin| slots.idle.remove(origin))
            .collect()
    }
}
