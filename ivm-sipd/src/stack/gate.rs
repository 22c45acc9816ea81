//! The gate of the endpoint: what a layer above may say about a request before the stack
//! spends anything on it. The stack asks twice — once for every request as it arrives, before
//! the transaction layer (so a dropped source gets not even a `100 Trying`), and once for each
//! new server transaction (so a refusal such as `503` goes out through the transaction and
//! its retransmissions are absorbed). The policy itself (bans, flood limits) lives above.

use crate::stack::sip::{Request, Response};
use crate::stack::transport::Peer;

/// A policy consulted by the endpoint's core loop. Both calls run on that loop: they must be
/// quick and must not wait.
pub trait Gate: Send + Sync + 'static {
    /// Whether a request that just arrived goes on at all; `false` drops it without an answer.
    fn screen(&self, request: &Request, source: &Peer) -> bool;

    /// For a request that starts a new server transaction: `Some(response)` answers it with
    /// that response instead of handing it to the services.
    fn admit(&self, request: &Request, source: &Peer) -> Option<Response>;
}
