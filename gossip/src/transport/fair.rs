//! Fair delivery of received messages to chitchat: one small bounded queue per peer,
//! served round-robin, and a token bucket per peer in front of it.
//!
//! chitchat handles one message at a time in a single task. With one shared queue a
//! member sending as fast as it can fills it, and everyone else's messages, heartbeats
//! included, are dropped or wait behind the flood. Here a peer (a certificate name, so
//! all of its connections count together) can fill only its own queue: chitchat takes
//! one message from each peer that has any, in turn, so an honest peer's next message
//! waits behind at most one message of every other peer. The bucket caps the messages
//! per second a peer may make this node decode, before any decoding is done.
//!
//! A message may carry a deadline ([`FairQueue::push_expiring`]): one still queued
//! then is dropped, not delivered. The transport gives one to Syns: a Syn that waited
//! a whole gossip round asks for a delta against a digest its sender has since
//! replaced, so answering it late resends what the sender already has, and under
//! overload such answers were most of the traffic. Dropping it sheds the work at its
//! cheapest point (the answer is never computed); SynAcks and Acks, which carry state
//! this node asked for, are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Notify;

/// Messages queued per peer before its new ones are dropped.
pub const PEER_QUEUE_MESSAGES: usize = 16;
/// Estimated bytes (see `Scan::cost`) queued per peer before its new ones are dropped.
pub const PEER_QUEUE_BYTES: usize = 4 << 20;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    /// The peer already has [`PEER_QUEUE_MESSAGES`] queued.
    Messages,
    /// The peer's queued messages already weigh [`PEER_QUEUE_BYTES`].
    Bytes,
}

#[derive(Debug)]
struct PeerQueue<T> {
    /// Message, cost, deadline.
    items: VecDeque<(T, usize, Option<Instant>)>,
    bytes: usize,
}

impl<T> PeerQueue<T> {
    /// Drops the messages whose deadline passed; returns how many.
    fn drop_expired(&mut self, now: Instant) -> u64 {
        let before = self.items.len();
        let mut freed = 0;
        self.items.retain(|(_, cost, deadline)| {
            let keep = deadline.is_none_or(|d| d > now);
            if !keep {
                freed += cost;
            }
            keep
        });
        self.bytes -= freed;
        (before - self.items.len()) as u64
    }
}

#[derive(Debug)]
struct Inner<T> {
    queues: HashMap<String, PeerQueue<T>>,
    /// Peers with something queued, in serving order; each appears once.
    ring: VecDeque<String>,
    closed: bool,
}

/// Per-peer bounded queues served round-robin. One consumer ([`FairQueue::recv`]),
/// any number of producers.
#[derive(Debug)]
pub struct FairQueue<T> {
    inner: Mutex<Inner<T>>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
    expired: AtomicU64,
}

impl<T> FairQueue<T> {
    /// Queues bounded by `max_messages` and `max_bytes` per peer.
    pub fn new(max_messages: usize, max_bytes: usize) -> FairQueue<T> {
        FairQueue {
            inner: Mutex::new(Inner {
                queues: HashMap::new(),
                ring: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes,
            expired: AtomicU64::new(0),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // Every critical section leaves the queues consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` (weighing `cost` bytes) for `peer`, unless that peer's queue is full.
    pub fn push(&self, peer: &str, item: T, cost: usize) -> Result<(), QueueFull> {
        self.push_with(peer, item, cost, None)
    }

    /// Like [`FairQueue::push`], for a message worth delivering only until `deadline`:
    /// still queued then, it is dropped and counted ([`FairQueue::expired`]).
    pub fn push_expiring(
        &self,
        peer: &str,
        item: T,
        cost: usize,
        deadline: Instant,
    ) -> Result<(), QueueFull> {
        self.push_with(peer, item, cost, Some(deadline))
    }

    /// Messages dropped so far because their deadline passed in the queue.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    fn push_with(
        &self,
        peer: &str,
        item: T,
        cost: usize,
        deadline: Option<Instant>,
    ) -> Result<(), QueueFull> {
        let now = Instant::now();
        let mut inner = self.inner();
        let q = inner
            .queues
            .entry(peer.to_string())
            .or_insert_with(|| PeerQueue {
                items: VecDeque::new(),
                bytes: 0,
            });
        // Whether the peer is in the ring, before expired messages are dropped: if that
        // empties its queue, the peer is still in the ring and must not enter twice.
        let was_empty = q.items.is_empty();
        // Expired messages make room before anything new is refused.
        let expired = q.drop_expired(now);
        if expired > 0 {
            self.expired.fetch_add(expired, Ordering::Relaxed);
        }
        if q.items.len() >= self.max_messages {
            return Err(QueueFull::Messages);
        }
        // One message is always accepted, however heavy (the scan bounds it).
        if !q.items.is_empty() && q.bytes + cost > self.max_bytes {
            return Err(QueueFull::Bytes);
        }
        q.items.push_back((item, cost, deadline));
        q.bytes += cost;
        if was_empty {
            inner.ring.push_back(peer.to_string());
        }
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// The next message, taking peers in turn; `None` when nothing is queued.
    pub fn pop(&self) -> Option<T> {
        let now = Instant::now();
        let mut inner = self.inner();
        while let Some(peer) = inner.ring.pop_front() {
            let Some(q) = inner.queues.get_mut(&peer) else {
                continue;
            };
            let Some((item, cost, deadline)) = q.items.pop_front() else {
                inner.queues.remove(&peer);
                continue;
            };
            q.bytes -= cost;
            if deadline.is_some_and(|d| d <= now) {
                self.expired.fetch_add(1, Ordering::Relaxed);
                // This peer keeps its turn: put it back in front.
                if q.items.is_empty() {
                    inner.queues.remove(&peer);
                } else {
                    inner.ring.push_front(peer);
                }
                continue;
            }
            if q.items.is_empty() {
                // Forget idle peers, so the map holds only peers with something queued.
                inner.queues.remove(&peer);
            } else {
                inner.ring.push_back(peer);
            }
            return Some(item);
        }
        None
    }

    /// Waits for the next message; `None` once closed and empty. Cancel-safe: a message
    /// is only taken by a call that returns it.
    pub async fn recv(&self) -> Option<T> {
        loop {
            // Registered before looking, so a push between the look and the wait wakes it.
            let notified = self.ready.notified();
            if let Some(item) = self.pop() {
                return Some(item);
            }
            if self.inner().closed {
                return None;
            }
            notified.await;
        }
    }

    /// Wakes the consumer for good: `recv` returns `None` once the queues are empty.
    pub fn close(&self) {
        self.inner().closed = true;
        self.ready.notify_one();
    }

    /// Messages queued now, over all peers.
    pub fn len(&self) -> usize {
        self.inner().queues.values().map(|q| q.items.len()).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at: now,
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn peers_are_served_in_turn_and_bounded_each() {
        let q = FairQueue::new(3, 1_000);
        for i in 0..10 {
            let r = q.push("flooder", ("flooder", i), 10);
            assert_eq!(r.is_ok(), i < 3, "{i}");
        }
        q.push("a", ("a", 0), 10).unwrap();
        q.push("b", ("b", 0), 10).unwrap();
        q.push("a", ("a", 1), 10).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                ("flooder", 0),
                ("a", 0),
                ("b", 0),
                ("flooder", 1),
                ("a", 1),
                ("flooder", 2)
            ]
        );
        assert!(q.is_empty());
        // The flooder can queue again once served.
        q.push("flooder", ("flooder", 9), 10).unwrap();
    }

    #[test]
    fn messages_past_their_deadline_are_dropped_and_make_room() {
        let q = FairQueue::new(2, 1_000);
        let now = Instant::now();
        let past = now - Duration::from_millis(1);
        let later = now + Duration::from_secs(60);
        q.push_expiring("p", "stale syn", 10, past).unwrap();
        q.push("p", "synack", 10).unwrap();
        // Full by count, but the stale one goes first and makes room.
        q.push_expiring("p", "fresh syn", 10, later).unwrap();
        assert_eq!(q.expired(), 1);
        q.push_expiring("other", "stale", 10, past).unwrap();
        q.push("other", "kept", 10).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["synack", "kept", "fresh syn"]);
        assert_eq!(
            q.expired(),
            2,
            "the one that expired while queued is counted too"
        );
        assert!(q.is_empty());
        // Room and weight are given back.
        for _ in 0..2 {
            q.push("p", "x", 600).unwrap();
            assert_eq!(q.pop(), Some("x"));
        }
    }

    #[test]
    fn heavy_messages_are_bounded_by_weight() {
        let q = FairQueue::new(100, 1_000);
        q.push("p", 1, 2_000).unwrap(); // the first one always fits
        assert_eq!(q.push("p", 2, 1), Err(QueueFull::Bytes));
        assert_eq!(q.pop(), Some(1));
        q.push("p", 3, 600).unwrap();
        q.push("p", 4, 400).unwrap();
        assert_eq!(q.push("p", 5, 1), Err(QueueFull::Bytes));
        q.push("other", 6, 900).unwrap();
        assert_eq!(q.len(), 3);
    }

    #[tokio::test]
    async fn recv_waits_and_is_cancel_safe() {
        let q = std::sync::Arc::new(FairQueue::new(4, 1_000));
        // A cancelled wait loses nothing.
        let r = tokio::time::timeout(Duration::from_millis(20), q.recv()).await;
        assert!(r.is_err());
        let q2 = std::sync::Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.push("p", 7, 1).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(7));
        q.push("p", 8, 1).unwrap();
        q.close();
        assert_eq!(q.recv().await, Some(8));
        assert_eq!(q.recv().await, None);
    }

    #[test]
    fn the_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| b.take(t0)).count(), 5);
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(150)));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| b.take(later)).count(), 5);
    }
}
