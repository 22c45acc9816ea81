//! `ivm-smsc`: SMS notifications for IVM over SMPP 3.4.
//!
//! - [`SmsClient`] — the ESME: a persistent SQLite [`Outbox`], one bound transceiver session with
//!   a send window and a rate limit, delivery receipts matched back to notifications, reconnect
//!   with backoff. Nothing in the outbox is lost across a restart or an SMSC outage.
//! - [`server`] — a small built-in SMSC for the zero-setup default and for tests: accepts binds,
//!   answers submits, sends delivery receipts, logs each message.
//! - [`encoding`] — GSM 7-bit / UCS-2 text and concatenated parts; [`receipt`] — receipt texts
//!   and message-id matching; [`address`] — TON/NPI of numbers and sender names.
//! - [`bench`](mod@bench) — the load generator behind `ivm-smsc bench`.
//!
//! # Delivery guarantees
//!
//! [`SmsClient::enqueue`] returns once the notification is committed to the outbox. A part is
//! sent only while its row is `queued` and the part has no SMSC id yet, and the id is recorded
//! when `submit_sm_resp` says OK; so under normal operation — SMSC outages and client restarts
//! included — every notification reaches the SMSC exactly once. A crash or a lost connection
//! between the SMSC accepting a part and the client committing its id makes that part go again
//! (at-least-once); the `dedupe_key` makes an application-level re-enqueue a no-op. A delivery
//! receipt is committed before its `deliver_sm_resp` is sent, so the SMSC repeats a receipt the
//! client did not record.
//!
//! # SMPP library
//!
//! The session runs on rusmppc 0.4 (`disable_interface_version_check()` for SMPP 3.4). Its
//! connection task stalls when more than 5 requests are queued at once (a lost wake-up, see
//! `client::kick`); the socket wrapper there works around it. The built-in SMSC frames PDUs itself
//! and decodes/encodes them with rusmpp, so a malformed PDU gets `generic_nack` instead of
//! closing the connection.

pub mod address;
pub mod bench;
pub mod client;
pub mod config;
pub mod encoding;
pub mod error;
pub mod outbox;
pub mod receipt;
pub mod server;

pub use client::SmsClient;
pub use config::SmscConfig;
pub use error::{ServerError, SessionError, SmsError};
pub use outbox::{Outbox, OutboxCounts, SmsEvent, SmsRequest, SmsStatus};
