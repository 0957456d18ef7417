//! What a run did, line by line, in virtual milliseconds: every status transition and
//! removal from each node's event log, membership changes as each node's cluster sync
//! saw them, the steps the runner took, and (optionally) every probe result. Two runs
//! of one scenario with one seed render the same text, byte for byte.

use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A worker's status changed on the node (`from` is `None` when it entered).
    Transition {
        /// The worker.
        url: String,
        /// Its generation.
        generation: u64,
        /// The status before.
        from: Option<String>,
        /// The status after.
        to: String,
        /// Why.
        reason: String,
    },
    /// A worker left the node's view.
    Removed {
        /// The worker.
        url: String,
        /// Its generation.
        generation: u64,
        /// Its status then.
        last: String,
        /// Why.
        reason: String,
    },
    /// A member's state as the node's cluster sync saw it changed.
    Member {
        /// The member's node id.
        member: String,
        /// `alive`, `dead` or `forgotten`.
        state: &'static str,
    },
    /// A probe result (only with probe tracing on).
    Probe {
        /// `host:port`.
        worker: String,
        /// The result class (`ok`, `refused`, `timeout`).
        result: &'static str,
    },
    /// The runner did something (a step, an assertion that held).
    Runner(String),
    /// The node's event subscription fell behind and lost events.
    Lagged(u64),
}

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Virtual milliseconds since the run started.
    pub at_ms: u64,
    /// The node it happened on (`-` for the runner).
    pub node: String,
    /// What happened.
    pub event: Event,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9} {:<8} ", self.at_ms, self.node)?;
        match &self.event {
            Event::Transition {
                url,
                generation,
                from,
                to,
                reason,
            } => write!(
                f,
                "{url}#{generation} {} -> {to} ({reason})",
                from.as_deref().unwrap_or("new")
            ),
            Event::Removed {
                url,
                generation,
                last,
                reason,
            } => write!(f, "{url}#{generation} removed, was {last} ({reason})"),
            Event::Member { member, state } => write!(f, "member {member} {state}"),
            Event::Probe { worker, result } => write!(f, "probe {worker} {result}"),
            Event::Runner(text) => write!(f, "{text}"),
            Event::Lagged(n) => write!(f, "LAGGED: {n} events lost"),
        }
    }
}

/// The shared trace of one run.
#[derive(Clone, Debug)]
pub struct Trace {
    start: Instant,
    enabled: bool,
    probes: bool,
    lines: Arc<Mutex<Vec<Line>>>,
}

impl Trace {
    /// A trace starting now; with `enabled` false nothing is kept (large runs).
    pub fn new(enabled: bool, probes: bool) -> Trace {
        Trace {
            start: Instant::now(),
            enabled,
            probes: enabled && probes,
            lines: Arc::default(),
        }
    }

    /// Virtual milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether probe results are traced.
    pub fn probes(&self) -> bool {
        self.probes
    }

    /// Records `event` on `node` now.
    pub fn push(&self, node: &str, event: Event) {
        if !self.enabled {
            return;
        }
        let line = Line {
            at_ms: self.now_ms(),
            node: node.to_string(),
            event,
        };
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The whole trace as text, one line per event.
    pub fn render(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(lines.len() * 64);
        for l in lines.iter() {
            out.push_str(&l.to_string());
            out.push('\n');
        }
        out
    }

    /// The last `n` lines as text.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let from = lines.len().saturating_sub(n);
        lines[from..].iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Reads one node's event log into the trace until the log closes.
pub async fn follow(
    trace: Trace,
    node: String,
    mut live: tokio::sync::broadcast::Receiver<Arc<probemesh::events::Event>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match live.recv().await {
            Ok(ev) => {
                if let Some(e) = from_log(&ev) {
                    trace.push(&node, e);
                }
            }
            Err(RecvError::Lagged(n)) => trace.push(&node, Event::Lagged(n)),
            Err(RecvError::Closed) => return,
        }
    }
}

/// The trace event of one event-log entry (its `at` field is left out: removals
/// carry the real time of day, which would differ between runs).
fn from_log(ev: &probemesh::events::Event) -> Option<Event> {
    let d = &ev.data;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let url = s("url")?;
    let generation = d.get("generation").and_then(|v| v.as_u64())?;
    let reason = s("reason").unwrap_or_default();
    match ev.kind {
        "transition" => Some(Event::Transition {
            url,
            generation,
            from: s("from"),
            to: s("to")?,
            reason,
        }),
        "removed" => Some(Event::Removed {
            url,
            generation,
            last: s("last_status")?,
            reason,
        }),
        _ => None,
    }
}
