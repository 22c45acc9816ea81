//! ivm-sipd: the IVM SIP daemon as a library, in floors that only look down:
//!
//! - [`stack`]: a SIP stack that knows nothing of IVM — the message layer, transports,
//!   transactions, the core loop, dialogs.
//! - [`services`]: what IVM does with SIP — the registrar, MWI, calls (sender, target and
//!   retrieval legs), notifications, the dial plan and trunks.
//! - [`store`]: the directory and message store (SQLite), below the services.
//! - [`config`]: the configuration file, read by the floors above the stack.
//! - [`app`]: the wiring — the server that starts everything, the admin commands and the CLI.
//!
//! Each floor uses only the floors listed before it (`.ci/import-cycles.py` checks that no
//! file imports upwards and that no import circle exists).

pub mod app;
pub mod config;
pub mod services;
pub mod stack;
pub mod store;
