//! The table of open connections: at most one per remote address and direction, at most
//! [`MAX_CONNS_PER_NAME`] per certificate name, and each name's message budget.
//!
//! Two nodes that dial each other at the same moment end up with two connections, one
//! dialed by each; closing either one would race with the other side closing the other,
//! so both are kept (one per direction). A newer connection in the same direction from
//! the same address replaces the older one, which is closed: that is a peer that
//! restarted, or one opening connections to hold resources. A member that opens
//! connections from many source ports is bounded by its certificate name instead.

use super::super::fair::Bucket;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Connections one certificate name may hold to this node at once; past it the oldest
/// is closed. Four covers both directions to a restarted peer's old and new address.
pub const MAX_CONNS_PER_NAME: usize = 4;

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This node dialed it.
    Dialed,
    /// The peer dialed this node.
    Accepted,
}

#[derive(Debug)]
struct Entry {
    conn: quinn::Connection,
    name: Arc<str>,
    seq: u64,
}

#[derive(Debug)]
struct NameState {
    connections: usize,
    bucket: Bucket,
}

/// Why a connection was closed by the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// A newer connection from the same address and direction replaced it.
    Replaced,
    /// Its name had too many connections; it was the oldest.
    TooManyForName,
}

/// The connection table.
#[derive(Debug)]
pub struct Conns {
    /// Per remote address: the dialed and the accepted connection.
    slots: HashMap<SocketAddr, [Option<Entry>; 2]>,
    names: HashMap<Arc<str>, NameState>,
    seq: u64,
    rate: u32,
    burst: u32,
}

fn index(side: Side) -> usize {
    match side {
        Side::Dialed => 0,
        Side::Accepted => 1,
    }
}

impl Conns {
    /// An empty table whose names may send `rate` messages a second (bursts of `burst`).
    pub fn new(rate: u32, burst: u32) -> Conns {
        Conns {
            slots: HashMap::new(),
            names: HashMap::new(),
            seq: 0,
            rate,
            burst,
        }
    }

    /// Adds `conn` (its certificate names `name`) and returns the connections it pushed
    /// out, to be closed by the caller.
    pub fn insert(
        &mut self,
        conn: quinn::Connection,
        name: Arc<str>,
        side: Side,
    ) -> Vec<(quinn::Connection, Closed)> {
        let mut out = Vec::new();
        self.seq += 1;
        let remote = conn.remote_address();
        let entry = Entry {
            conn,
            name: Arc::clone(&name),
            seq: self.seq,
        };
        let slot = self.slots.entry(remote).or_insert([None, None]);
        if let Some(old) = slot[index(side)].replace(entry) {
            self.release(&old.name);
            out.push((old.conn, Closed::Replaced));
        }
        let (rate, burst) = (self.rate, self.burst);
        self.names
            .entry(name.clone())
            .or_insert_with(|| NameState {
                connections: 0,
                bucket: Bucket::new(rate, burst, Instant::now()),
            })
            .connections += 1;
        while self
            .names
            .get(&name)
            .is_some_and(|n| n.connections > MAX_CONNS_PER_NAME)
        {
            let Some(oldest) = self.oldest_of(&name) else {
                break;
            };
            if let Some(e) = self.take(oldest) {
                out.push((e.conn, Closed::TooManyForName));
            }
        }
        out
    }

    fn oldest_of(&self, name: &str) -> Option<(SocketAddr, usize)> {
        self.slots
            .iter()
            .flat_map(|(addr, slot)| {
                slot.iter()
                    .enumerate()
                    .filter_map(move |(i, e)| e.as_ref().map(|e| (*addr, i, e)))
            })
            .filter(|(_, _, e)| &*e.name == name)
            .min_by_key(|(_, _, e)| e.seq)
            .map(|(addr, i, _)| (addr, i))
    }

    fn take(&mut self, (addr, i): (SocketAddr, usize)) -> Option<Entry> {
        let slot = self.slots.get_mut(&addr)?;
        let e = slot[i].take()?;
        if slot.iter().all(Option::is_none) {
            self.slots.remove(&addr);
        }
        self.release(&e.name);
        Some(e)
    }

    fn release(&mut self, name: &Arc<str>) {
        if let Some(n) = self.names.get_mut(name) {
            n.connections = n.connections.saturating_sub(1);
            if n.connections == 0 {
                self.names.remove(name);
            }
        }
    }

    /// Removes `conn` if it is still in the table (its reader ended).
    pub fn remove(&mut self, conn: &quinn::Connection) {
        let addr = conn.remote_address();
        let found = self.slots.get(&addr).and_then(|slot| {
            slot.iter().position(|e| {
                e.as_ref()
                    .is_some_and(|e| e.conn.stable_id() == conn.stable_id())
            })
        });
        if let Some(i) = found {
            self.take((addr, i));
        }
    }

    /// The newest open connection to `addr`, either direction.
    pub fn best(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        self.slots
            .get(&addr)?
            .iter()
            .flatten()
            .filter(|e| e.conn.close_reason().is_none())
            .max_by_key(|e| e.seq)
            .map(|e| e.conn.clone())
    }

    /// Takes one message token of `name`; `false` when it sends too fast.
    pub fn take_token(&mut self, name: &str, now: Instant) -> bool {
        // A name without an entry has no connection left: its reader is ending anyway.
        self.names.get_mut(name).is_none_or(|n| n.bucket.take(now))
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.slots.values().flatten().flatten().count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections held by `name`.
    pub fn count_for(&self, name: &str) -> usize {
        self.names.get(name).map_or(0, |n| n.connections)
    }
}
