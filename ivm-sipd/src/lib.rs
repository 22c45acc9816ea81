//! ivm-sipd: the IVM SIP daemon as a library, in floors that only look down:
//!
//! - [`stack`]: a SIP stack that knows nothing of IVM — the message layer, transports,
//!   transactions, the core loop, dialogs.
//! - [`services`]: what IVM does with SIP — the registrar, MWI, calls (sender, target and
//!   retrieval legs), notifications, the dial plan and trunks.
//! - [`store`]: the directory and message store (SQLite), below the services.
//! - [`app`]: the wiring — configuration, the server that starts everything, the admin
//!   commands and the CLI.

pub mod app;
pub mod services;
pub mod stack;
pub mod store;
