//! What the transaction layer gives back: the [`Action`]s its caller carries out, and the
//! [`TransactionError`]s of a refused call.

use bytes::Bytes;

use super::key::TsxKey;
use crate::stack::sip::via::MAGIC_COOKIE;
use crate::stack::sip::{Request, Response};
use crate::stack::transport::Peer;

/// What the transaction layer asks of its caller: send bytes, or hand something to the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (a request, response or ACK, serialized once) to this peer.
    Send { to: Peer, data: Bytes },
    /// A new request for the TU, which answers it with `TransactionLayer::respond`.
    Request {
        key: TsxKey,
        request: Request,
        source: Peer,
    },
    /// An ACK for the TU: one for a 2xx (it matched no transaction, or an INVITE server
    /// transaction in Accepted), or one that matched nothing.
    Ack { request: Request, source: Peer },
    /// A CANCEL matched this INVITE server transaction before its final response; the layer
    /// has answered the CANCEL with 200 and the TU should now answer the INVITE with 487.
    Cancelled { invite: TsxKey },
    /// A response for the TU's client transaction (provisional, final, and in Accepted each
    /// retransmitted 2xx).
    Response { key: TsxKey, response: Response },
    /// The transaction failed for lack of an answer: Timer B or F (client), Timer H (INVITE
    /// server without ACK). The transaction is gone.
    Timeout { key: TsxKey },
}

/// Why the TU's call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("no live transaction {0}")]
    Unknown(TsxKey),
    #[error("{0} is a client transaction")]
    NotServer(TsxKey),
    #[error("{key}: a {status} response is not allowed in state {state}")]
    InvalidState {
        key: TsxKey,
        status: u16,
        state: &'static str,
    },
    #[error("{0} is not a SIP status code")]
    InvalidStatus(u16),
    #[error("the request's top Via has no branch starting with {MAGIC_COOKIE}")]
    NoBranch,
    #[error("the request has no CSeq, or its method is not the request's")]
    BadCSeq,
    #[error("an ACK is not sent in a client transaction (send it to the transport directly)")]
    AckNotTransaction,
    #[error("a transaction {0} already exists")]
    Duplicate(TsxKey),
}
