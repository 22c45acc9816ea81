//! ivm-sipd: the IVM SIP daemon as a library — the SIP message layer, transport,
//! transactions, the UAS core, registrar, store, configuration and the server that wires them.

pub mod admin;
pub mod b2bua;
pub mod cli;
pub mod config;
pub mod dial_plan;
pub mod dialog;
pub mod notification;
pub mod registrar;
pub mod server;
pub mod sip;
pub mod sip_core;
pub mod store;
pub mod transaction;
pub mod transport;
pub mod trunk;
pub mod uas_core;
