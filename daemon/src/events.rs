//! The event log behind `GET /v1/events`: every local status change and every removal,
//! numbered, kept in a bounded buffer for clients that reconnect, and broadcast to
//! live subscribers.
//!
//! Event ids start at the wall clock in microseconds and grow by one per event, so they
//! do not go backwards across a restart; a client whose `Last-Event-ID` is older than
//! the buffer (or from before a restart) is told to resync.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Events kept for replay.
pub const BUFFER: usize = 4096;

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the log.
    pub id: u64,
    /// SSE event name: `transition` or `removed`.
    pub kind: &'static str,
    /// The JSON payload.
    pub data: Value,
}

/// What a new subscriber gets.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the client's `Last-Event-ID`, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// The client missed events that are no longer buffered: it must re-read the list.
    pub resync: bool,
    /// Live events from now on.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The numbered, bounded, broadcast event log.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

#[derive(Debug)]
struct Inner {
    buf: VecDeque<Arc<Event>>,
    next_id: u64,
    first_id: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// An empty log whose first id is the current time in microseconds.
    pub fn new() -> EventLog {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        EventLog::starting_at(start)
    }

    /// An empty log whose first event gets `first_id`.
    pub fn starting_at(first_id: u64) -> EventLog {
        let (tx, _) = broadcast::channel(BUFFER);
        EventLog {
            inner: Mutex::new(Inner {
                buf: VecDeque::with_capacity(BUFFER),
                next_id: first_id,
                first_id,
            }),
            tx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event and broadcasts it. Numbering and sending happen under one lock,
    /// so subscribers see events in id order.
    pub fn push(&self, kind: &'static str, data: Value) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let event = Arc::new(Event { id, kind, data });
        if inner.buf.len() == BUFFER {
            inner.buf.pop_front();
        }
        inner.buf.push_back(Arc::clone(&event));
        // No subscribers is fine.
        let _ = self.tx.send(event);
        id
    }

    /// Subscribes; with `last_seen`, replays what came after it if still buffered.
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let inner = self.lock();
        let live = self.tx.subscribe();
        let oldest = inner.buf.front().map_or(inner.next_id, |e| e.id);
        let (replay, resync) = match last_seen {
            None => (Vec::new(), false),
            // Still covered by the buffer (or nothing happened since).
            Some(seen)
                if seen + 1 >= oldest && seen < inner.next_id && seen + 1 >= inner.first_id =>
            {
                (
                    inner.buf.iter().filter(|e| e.id > seen).cloned().collect(),
                    false,
                )
            }
            Some(_) => (Vec::new(), true),
        };
        Subscription {
            replay,
            resync,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_grow_and_replay_resumes_after_the_last_seen_id() {
        let log = EventLog::starting_at(100);
        for i in 0..5 {
            assert_eq!(log.push("transition", json!({"n": i})), 100 + i);
        }
        let s = log.subscribe(Some(102));
        assert!(!s.resync);
        assert_eq!(
            s.replay.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![103, 104]
        );
        assert!(log.subscribe(Some(104)).replay.is_empty(), "up to date");
        assert!(!log.subscribe(None).resync);
    }

    #[test]
    fn ids_older_than_the_buffer_or_from_another_run_ask_for_a_resync() {
        let log = EventLog::starting_at(1000);
        for _ in 0..(BUFFER + 10) {
            log.push("transition", json!({}));
        }
        assert!(log.subscribe(Some(1000)).resync, "fell out of the buffer");
        assert!(log.subscribe(Some(5)).resync, "id from an earlier run");
        assert!(
            log.subscribe(Some(u64::MAX - 1)).resync,
            "id from the future"
        );
        let ok = log.subscribe(Some(1000 + BUFFER as u64 + 5));
        assert!(!ok.resync);
        assert_eq!(ok.replay.len(), 4);
    }

    #[tokio::test]
    async fn live_subscribers_get_new_events_in_order() {
        let log = EventLog::starting_at(1);
        let mut s = log.subscribe(None);
        log.push("transition", json!({"a": 1}));
        log.push("removed", json!({"a": 2}));
        assert_eq!(s.live.recv().await.unwrap().id, 1);
        let e = s.live.recv().await.unwrap();
        assert_eq!((e.id, e.kind), (2, "removed"));
    }
}
