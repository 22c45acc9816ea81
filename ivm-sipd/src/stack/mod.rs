//! The SIP stack (RFC 3261), knowing nothing of IVM: the message layer, the UDP/TCP
//! transports, client and server transactions, the endpoint (core loop) that hands requests to a
//! dispatcher, and dialogs.

pub mod dialog;
pub mod endpoint;
pub mod sip; // the message layer
pub mod transaction;
pub mod transport;
