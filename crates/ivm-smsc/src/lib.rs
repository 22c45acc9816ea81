//! `ivm-smsc`: SMS notifications for IVM over SMPP 3.4.
//!
//! - [`SmsClient`] — the ESME: a persistent SQLite [`Outbox`], one bound transceiver session with
//!   a send window and a rate limit, delivery receipts matched back to notifications, reconnect
//!   with backoff. Nothing in the outbox is lost across a restart or an SMSC outage.
//! - [`server`] — a small built-in SMSC for the zero-setup default and for tests: accepts binds,
//!   answers submits, sends delivery receipts, logs each message.
//! - [`encoding`] — GSM 7-bit / UCS-2 text and concatenated parts; [`receipt`] — receipt texts
//!   and message-id matching; [`address`] — TON/NPI of numbers and sender names.
//! - [`bench`] — the load generator behind `ivm-smsc bench`.

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
