//! ivm-sipd: the IVM SIP daemon as a library — the SIP message layer, transport,
//! transactions, registrar, store, configuration and the server that wires them.

pub mod sip;
