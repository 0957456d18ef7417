//! Shared data model of a probemesh cluster.
//!
//! This crate holds what every node must agree on byte for byte: worker identity
//! ([`model::WorkerUrl`], [`model::WorkerId`]), the registration and tombstone records
//! that are stored on disk and (from the gossip issue on) exchanged between nodes, and
//! the versioned [`codec`] that encodes them. It has no I/O and no async code, so both the
//! daemon and in-process simulations can use it freely.

pub mod cluster;
pub mod codec;
pub mod keys;
pub mod model;
pub mod node;
pub mod tls;
pub mod transport;
