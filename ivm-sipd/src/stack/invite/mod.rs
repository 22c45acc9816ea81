//! The INVITE session (RFC 3261 §13, §17.1.1.3, §17.2.1; RFC 6026): what lies between an
//! INVITE and a confirmed dialog, both ways, and the dialog's events afterwards. The
//! transactions stop at the first 2xx; the session carries on from there.
//!
//! - [`server`]: an INVITE we received — a CANCEL before our answer (`487`), the 2xx
//!   retransmitted from T1 doubling to T2 until the ACK, given up after 64·T1.
//! - [`client`]: an INVITE we sent — ringing until a timeout, then CANCEL, but only once a
//!   provisional came (§9.1); the ACK for the 2xx and for every retransmission of it; a 2xx
//!   that arrives after we gave up is ACKed and hung up at once, so no phone stays in a silent
//!   call.

pub mod client;
pub mod server;

#[cfg(test)]
mod tests;

use crate::stack::sip::Request;
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;

/// What happens in a session's dialog, for the task that owns it.
#[derive(Debug)]
pub enum SessionEvent {
    /// A request inside the dialog (BYE, re-INVITE, UPDATE, INFO …) in its server
    /// transaction; the owner answers it.
    Request {
        key: TsxKey,
        request: Request,
        source: Peer,
    },
    /// The ACK for our 2xx (server side): it carries the answer when our 2xx held the offer.
    Ack(Request),
    /// Our 2xx was sent for 64·T1 and no ACK came (§13.3.1.4): the session is over and should
    /// be hung up.
    AckTimeout,
    /// The dialog is gone from the dialog table.
    Closed,
}
