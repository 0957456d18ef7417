//! Shared data model of a probemesh cluster.
//!
//! This crate holds what every node must agree on byte for byte: worker identity
//! ([`model::WorkerUrl`], [`model::WorkerId`]), the registration and tombstone records
//! that are stored on disk and exchanged between nodes, the versioned [`codec`] that
//! encodes them, and the gossip layer itself: chitchat's key layout ([`keys`]) and what a node publishes
//! ([`publication`]), the decoded [`cluster`] view, the [`source`] interface that both
//! chitchat and the simulator's dissemination model implement, node identity ([`identity`], [`tls`]) and the QUIC
//! [`transport`]. The model and codec have no I/O, so both the daemon and in-process
//! simulations can use them freely.

pub mod cluster;
pub mod codec;
pub mod identity;
pub mod keys;
pub mod model;
pub mod node;
pub mod pace;
pub mod publication;
pub mod source;
pub mod thread;
pub mod tls;
pub mod transport;
