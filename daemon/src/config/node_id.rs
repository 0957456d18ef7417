//! The node id: `--node-id` when given (already checked against the node-id rule by its
//! parser), else the host name.
//!
//! Kept apart, and given the TLS source, because the id is tied to the node's
//! certificate (SPEC S10): this is the one function that decides it.

use super::{Resolver, Source, TlsSource, default_node_id};

/// The node id from the value given for `node_id` (if any) and the TLS source.
pub(super) fn resolve(
    _r: &mut Resolver<'_>,
    picked: Option<(String, Source)>,
    _tls: &TlsSource,
) -> String {
    picked.map_or_else(default_node_id, |(id, _)| id)
}
