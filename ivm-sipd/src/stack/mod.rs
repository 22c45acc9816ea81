//! The SIP stack (RFC 3261), knowing nothing of IVM: the message layer, the UDP/TCP
//! transports, client and server transactions, the endpoint (core loop), the §8.2 checks, the
//! router that offers each request to the services registered above, the gate through which a
//! policy above may drop or refuse requests, dialogs and the INVITE session on both sides.

pub mod dialog;
pub mod digest;
pub mod endpoint;
pub mod gate;
pub mod inspect;
pub mod invite;
pub mod request;
pub mod router;
pub mod sip; // the message layer
pub mod transaction;
pub mod transport;
