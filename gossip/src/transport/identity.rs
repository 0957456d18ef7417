//! Who a connection speaks for.
//!
//! Every connection is bound to the node name in its peer's certificate (the CN, see
//! [`crate::tls::name`]). One endpoint per node both serves and dials, so a
//! connection's remote address is the sender's own gossip address. Two things follow:
//!
//! - [`SpeakerBook`] refuses messages in which a sender speaks as another node: a
//!   digest entry or a node delta at the connection's remote address under a node id
//!   other than the certificate's. Honest senders do relay such state in one case, a
//!   dead predecessor that had the same address (an IP reused after a pod moved), so
//!   that is allowed while the sender also lists its own entry and the other instance's
//!   heartbeat stands still. The rules, each with its refusal reason:
//!   - `no_own_entry`: a digest lists an instance at the sender's address under another
//!     id and nothing under the sender's own name (chitchat always lists itself: this
//!     is a node running under a borrowed id);
//!   - `kept_alive`: such an instance's heartbeat advanced [`KEPT_ALIVE_AFTER`] times in
//!     the sender's digests (a dead predecessor's heartbeat does not move: the sender
//!     is running it);
//!   - `unlisted`: a node delta for such an instance that the sender's digests never
//!     listed;
//!   - `too_many_others`: more than [`MAX_OTHERS_PER_PEER`] such instances.
//! - [`PeerIdentities`] keeps the bounded set of *attested* member instances: a node id
//!   and gossip address seen first-hand, as the certificate name of a connection to or
//!   from that address, or as the sender's own name in a digest it sent. A member id
//!   nobody attested (an id invented in a relayed delta) is ignored by the cluster view
//!   for adoption and eviction; see `ClusterSnapshot`.

use super::scan::{Scan, WireId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Heartbeat advances after which another instance at the sender's address counts as
/// run by the sender (a dead predecessor's heartbeat moves at most once or twice, when
/// the sender hears the last value from a peer that had it).
pub const KEPT_ALIVE_AFTER: u32 = 3;
/// Other instances tracked per sender; more is refused (an honest node has a handful
/// of predecessors at its address at most).
pub const MAX_OTHERS_PER_PEER: usize = 16;
/// Senders (certificate name and address) tracked; the least recently seen is forgotten.
pub const MAX_SPEAKERS: usize = 4_096;
/// Member instances remembered as attested or refuted; the least recently used is
/// forgotten (and attested again when it is next seen).
pub const MAX_ATTESTATIONS: usize = 4_096;
/// A refuted instance is checked again after this long.
pub const REFUTED_RETRY: Duration = Duration::from_secs(30);

/// Why a message was refused as spoken for another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// See the module documentation.
    NoOwnEntry {
        /// The id the sender claimed.
        claimed: String,
    },
    /// See the module documentation.
    KeptAlive {
        /// The id the sender claimed.
        claimed: String,
    },
    /// See the module documentation.
    Unlisted {
        /// The id the sender claimed.
        claimed: String,
    },
    /// See the module documentation.
    TooManyOthers,
}

impl Refusal {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoOwnEntry { .. } => "no_own_entry",
            Refusal::KeptAlive { .. } => "kept_alive",
            Refusal::Unlisted { .. } => "unlisted",
            Refusal::TooManyOthers => "too_many_others",
        }
    }

    /// The id claimed, if one.
    pub fn claimed(&self) -> &str {
        match self {
            Refusal::NoOwnEntry { claimed }
            | Refusal::KeptAlive { claimed }
            | Refusal::Unlisted { claimed } => claimed,
            Refusal::TooManyOthers => "",
        }
    }
}

#[derive(Debug, Default)]
struct Speaker {
    /// Other instances at the sender's address: last heartbeat seen, advances.
    others: HashMap<WireId, (u64, u32)>,
    last_used: u64,
}

/// What each sender (certificate name, remote address) has shown of other instances at
/// its own address. Shared by the connections of a node.
#[derive(Debug, Default)]
pub struct SpeakerBook {
    speakers: HashMap<(String, SocketAddr), Speaker>,
    tick: u64,
}

impl SpeakerBook {
    /// Checks one scanned message from `remote` over a connection whose certificate
    /// names `name`.
    pub fn check(&mut self, name: &str, remote: SocketAddr, scan: &Scan) -> Result<(), Refusal> {
        let foreign = |id: &WireId| id.addr == remote && id.node_id != name;
        let digest_foreign = scan.digest.iter().any(|(id, _)| foreign(id));
        let delta_foreign = scan.delta_nodes.iter().any(foreign);
        if !digest_foreign && !delta_foreign {
            return Ok(());
        }
        self.tick += 1;
        let tick = self.tick;
        let key = (name.to_string(), remote);
        if !self.speakers.contains_key(&key) && self.speakers.len() >= MAX_SPEAKERS {
            self.forget_oldest();
        }
        let speaker = self.speakers.entry(key).or_default();
        speaker.last_used = tick;
        if digest_foreign {
            let has_own = scan.digest.iter().any(|(id, _)| id.node_id == name);
            for (id, heartbeat) in scan.digest.iter().filter(|(id, _)| foreign(id)) {
                if !has_own {
                    return Err(Refusal::NoOwnEntry {
                        claimed: id.node_id.clone(),
                    });
                }
                let full = speaker.others.len() >= MAX_OTHERS_PER_PEER;
                match speaker.others.get_mut(id) {
                    Some((last, advances)) => {
                        if heartbeat > last {
                            *last = *heartbeat;
                            *advances += 1;
                        }
                        if *advances >= KEPT_ALIVE_AFTER {
                            return Err(Refusal::KeptAlive {
                                claimed: id.node_id.clone(),
                            });
                        }
                    }
                    None if full => return Err(Refusal::TooManyOthers),
                    None => {
                        speaker.others.insert(id.clone(), (*heartbeat, 0));
                    }
                }
            }
        }
        for id in scan.delta_nodes.iter().filter(|id| foreign(id)) {
            match speaker.others.get(id) {
                None => {
                    return Err(Refusal::Unlisted {
                        claimed: id.node_id.clone(),
                    });
                }
                Some((_, advances)) if *advances >= KEPT_ALIVE_AFTER => {
                    return Err(Refusal::KeptAlive {
                        claimed: id.node_id.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn forget_oldest(&mut self) {
        if let Some(key) = self
            .speakers
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(k, _)| k.clone())
        {
            self.speakers.remove(&key);
        }
    }
}

/// Whether a member instance (node id at a gossip address) was seen first-hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// A connection with that certificate name to or from that address, or that name's
    /// own digest, listed it.
    Attested,
    /// Not known yet; a check (a dial of the address) is under way.
    Pending,
    /// The address did not answer with a certificate for that name.
    Refuted,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Attested,
    Pending,
    Refuted { at: Instant, retrying: bool },
}

#[derive(Debug, Default)]
struct Book {
    entries: HashMap<(String, SocketAddr), (State, u64)>,
    tick: u64,
}

impl Book {
    fn touch(&mut self, key: &(String, SocketAddr)) -> Option<&mut (State, u64)> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(key)?;
        e.1 = tick;
        Some(e)
    }

    fn insert(&mut self, key: (String, SocketAddr), state: State) {
        if !self.entries.contains_key(&key)
            && self.entries.len() >= MAX_ATTESTATIONS
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.tick += 1;
        self.entries.insert(key, (state, self.tick));
    }
}

/// The bounded set of attested member instances, filled by the transport and read by
/// the cluster view. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct PeerIdentities {
    book: Mutex<Book>,
    /// Where check requests go: the transport's dialer, once the endpoint is open.
    dialer: OnceLock<mpsc::Sender<(String, SocketAddr)>>,
}

impl PeerIdentities {
    /// A new, empty set.
    pub fn new() -> Arc<PeerIdentities> {
        Arc::new(PeerIdentities::default())
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // Only whole-entry inserts and updates happen under the lock.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `node_id` at `addr` was seen first-hand. An instance not known yet is
    /// checked by dialing `addr` (at most one check at a time per instance), and is
    /// [`Attestation::Pending`] meanwhile.
    pub fn attestation(&self, node_id: &str, addr: SocketAddr) -> Attestation {
        let key = (node_id.to_string(), addr);
        let mut book = self.book();
        let (answer, dial) = match book.touch(&key) {
            Some((State::Attested, _)) => (Attestation::Attested, false),
            Some((State::Pending, _)) => (Attestation::Pending, false),
            Some((State::Refuted { at, retrying }, _)) => {
                let again = !*retrying && at.elapsed() >= REFUTED_RETRY;
                *retrying |= again;
                (Attestation::Refuted, again)
            }
            None => {
                book.insert(key.clone(), State::Pending);
                (Attestation::Pending, true)
            }
        };
        drop(book);
        if dial && !self.request_check(key.clone()) {
            // The dialer is busy or absent: the next call asks again.
            let mut book = self.book();
            match book.entries.get_mut(&key) {
                Some((State::Refuted { retrying, .. }, _)) => *retrying = false,
                Some((State::Pending, _)) => {
                    book.entries.remove(&key);
                }
                _ => {}
            }
        }
        answer
    }

    fn request_check(&self, key: (String, SocketAddr)) -> bool {
        self.dialer.get().is_some_and(|tx| tx.try_send(key).is_ok())
    }

    /// Records `name` at `addr` as seen first-hand.
    pub(crate) fn attest(&self, name: &str, addr: SocketAddr) {
        let key = (name.to_string(), addr);
        let mut book = self.book();
        match book.touch(&key) {
            Some(e) => e.0 = State::Attested,
            None => book.insert(key, State::Attested),
        }
    }

    /// A check of `node_id` at `addr` ended: unless the dial attested it, it is refuted.
    pub(crate) fn check_done(&self, node_id: &str, addr: SocketAddr) {
        let key = (node_id.to_string(), addr);
        let mut book = self.book();
        if let Some(e) = book.entries.get_mut(&key)
            && !matches!(e.0, State::Attested)
        {
            e.0 = State::Refuted {
                at: Instant::now(),
                retrying: false,
            };
        }
    }

    /// Connects the dialer that checks pending instances (once, at endpoint open).
    pub(crate) fn set_dialer(&self, tx: mpsc::Sender<(String, SocketAddr)>) {
        let _ = self.dialer.set(tx);
    }

    /// How many instances are attested now.
    pub fn attested_count(&self) -> usize {
        self.book()
            .entries
            .values()
            .filter(|(s, _)| matches!(s, State::Attested))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::MessageKind;
    use super::*;

    const R: &str = "10.0.0.2:7800";

    fn id(node: &str, generation: u64, addr: &str) -> WireId {
        WireId {
            node_id: node.into(),
            generation,
            addr: addr.parse().unwrap(),
        }
    }

    fn digest(entries: &[(WireId, u64)]) -> Scan {
        Scan {
            kind: MessageKind::Syn,
            digest: entries.to_vec(),
            delta_nodes: vec![],
            decoded_len: 0,
            ops: 0,
        }
    }

    fn delta(nodes: &[WireId]) -> Scan {
        Scan {
            kind: MessageKind::Ack,
            digest: vec![],
            delta_nodes: nodes.to_vec(),
            decoded_len: 0,
            ops: 0,
        }
    }

    fn remote() -> SocketAddr {
        R.parse().unwrap()
    }

    #[test]
    fn a_node_speaking_under_a_borrowed_id_is_refused_at_once() {
        let mut book = SpeakerBook::default();
        // Certificate "beta", running chitchat as "alpha" from its own address.
        let spoof = digest(&[(id("alpha", 1, R), 5), (id("gamma", 1, "10.0.0.3:7800"), 9)]);
        let err = book.check("beta", remote(), &spoof).unwrap_err();
        assert_eq!(err.reason(), "no_own_entry");
        assert_eq!(err.claimed(), "alpha");
        // Its deltas about that instance are refused too.
        let d = delta(&[id("alpha", 1, R)]);
        assert_eq!(
            book.check("beta", remote(), &d).unwrap_err().reason(),
            "unlisted"
        );
    }

    #[test]
    fn honest_senders_pass_relays_included() {
        let mut book = SpeakerBook::default();
        // Its own state, and relayed state about nodes elsewhere.
        let own = digest(&[(id("beta", 1, R), 5), (id("alpha", 1, "10.0.0.1:7800"), 9)]);
        book.check("beta", remote(), &own).unwrap();
        book.check(
            "beta",
            remote(),
            &delta(&[id("alpha", 1, "10.0.0.1:7800"), id("beta", 1, R)]),
        )
        .unwrap();
        // A dead predecessor at the same address (the IP was reused), heartbeat frozen,
        // is listed and relayed round after round.
        let old = id("old-node", 1, R);
        for hb in [5, 6, 7, 8] {
            let d = digest(&[(id("beta", 2, R), hb), (old.clone(), 40)]);
            book.check("beta", remote(), &d).unwrap();
            book.check("beta", remote(), &delta(std::slice::from_ref(&old)))
                .unwrap();
        }
        // The predecessor's last heartbeat may still arrive once from a slower peer.
        let d = digest(&[(id("beta", 2, R), 9), (old.clone(), 41)]);
        book.check("beta", remote(), &d).unwrap();
    }

    #[test]
    fn another_instance_kept_alive_by_the_sender_is_refused() {
        let mut book = SpeakerBook::default();
        let fake = id("alpha", 3, R);
        let mut refused = None;
        for round in 0..10u64 {
            let d = digest(&[(id("beta", 1, R), round), (fake.clone(), 100 + round)]);
            if let Err(e) = book.check("beta", remote(), &d) {
                refused = Some((round, e));
                break;
            }
        }
        let (round, e) = refused.expect("refused");
        assert_eq!(e.reason(), "kept_alive");
        assert_eq!(round, u64::from(KEPT_ALIVE_AFTER));
        assert_eq!(
            book.check("beta", remote(), &delta(&[fake]))
                .unwrap_err()
                .reason(),
            "kept_alive"
        );
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = SpeakerBook::default();
        let mut entries = vec![(id("beta", 1, R), 1)];
        for i in 0..MAX_OTHERS_PER_PEER {
            entries.push((id(&format!("x{i}"), 1, R), 1));
        }
        book.check(
            "beta",
            remote(),
            &digest(&entries[..MAX_OTHERS_PER_PEER + 1]),
        )
        .unwrap();
        entries.push((id("one-more", 1, R), 1));
        assert_eq!(
            book.check("beta", remote(), &digest(&entries))
                .unwrap_err()
                .reason(),
            "too_many_others"
        );
        for i in 0..(MAX_SPEAKERS + 10) {
            let addr: SocketAddr = format!("10.1.{}.{}:7800", i / 250, i % 250)
                .parse()
                .unwrap();
            let d = digest(&[
                (id("n", 1, &addr.to_string()), 1),
                (id("z", 1, &addr.to_string()), 1),
            ]);
            book.check("n", addr, &d).unwrap();
        }
        assert!(book.speakers.len() <= MAX_SPEAKERS);
    }

    #[test]
    fn attestations_come_from_first_hand_sightings_and_checks() {
        let ids = PeerIdentities::new();
        let a: SocketAddr = "10.0.0.1:7800".parse().unwrap();
        // No dialer: a new instance is pending, and stays so until seen.
        assert_eq!(ids.attestation("alpha", a), Attestation::Pending);
        ids.attest("alpha", a);
        assert_eq!(ids.attestation("alpha", a), Attestation::Attested);
        assert_eq!(ids.attested_count(), 1);
        // With a dialer: a check is requested once; a failed check refutes.
        let (tx, mut rx) = mpsc::channel(4);
        ids.set_dialer(tx);
        let fake: SocketAddr = "10.0.0.9:7800".parse().unwrap();
        assert_eq!(ids.attestation("0", fake), Attestation::Pending);
        assert_eq!(ids.attestation("0", fake), Attestation::Pending);
        assert_eq!(rx.try_recv().unwrap(), ("0".to_string(), fake));
        assert!(rx.try_recv().is_err(), "one check at a time");
        ids.check_done("0", fake);
        assert_eq!(ids.attestation("0", fake), Attestation::Refuted);
        assert!(rx.try_recv().is_err(), "no retry before REFUTED_RETRY");
        // A check that attested wins over its own end.
        assert_eq!(ids.attestation("beta", fake), Attestation::Pending);
        ids.attest("beta", fake);
        ids.check_done("beta", fake);
        assert_eq!(ids.attestation("beta", fake), Attestation::Attested);
    }

    #[test]
    fn attestations_are_bounded() {
        let ids = PeerIdentities::new();
        for i in 0..(MAX_ATTESTATIONS + 100) {
            let addr: SocketAddr = format!("10.2.{}.{}:7800", i / 250, i % 250)
                .parse()
                .unwrap();
            ids.attest(&format!("n{i}"), addr);
        }
        assert_eq!(ids.book().entries.len(), MAX_ATTESTATIONS);
    }
}
