//! Pushing the local ready set into a gateway (SPEC section 6).
//!
//! - [`plan`]: pure: what to add and remove so the gateway's managed workers equal the
//!   local ready set, never touching workers the agent did not add;
//! - [`smg`]: the `smg` HTTP client and the reconciliation loop;
//! - [`manifest`]: smg's file-discovery manifest (`--smg-manifest`).

pub mod manifest;
pub mod plan;
pub mod smg;
