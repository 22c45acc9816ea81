//! Settings of the built-in SMSC: credentials, delays, id formats, limits.

use std::time::Duration;

/// How the SMSC writes the message ids it gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Decimal digits.
    Decimal,
    /// Upper-case hex digits.
    Hex,
}

/// How the id is written inside a receipt (carriers differ; the client must cope with each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptIdFormat {
    /// The same string `submit_sm_resp` gave.
    AsSubmitted,
    /// The id's value in decimal (a hex id becomes its decimal value).
    Decimal,
    /// The same string left-padded with zeros to this width.
    ZeroPadded(usize),
}

/// Settings of the built-in SMSC.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accept only this `system_id` (`None`: any); another gets `ESME_RBINDFAIL`.
    pub system_id: Option<String>,
    /// Accept only this password (`None`: any); another gets `ESME_RINVPASWD`.
    pub password: Option<String>,
    /// `system_id` the SMSC names itself in bind responses.
    pub smsc_system_id: String,
    /// Delay between `submit_sm_resp` and the delivery receipt.
    pub receipt_delay: Duration,
    /// Delay before answering each `submit_sm` (tests use it to see the client's window).
    pub submit_resp_delay: Duration,
    /// Format of message ids.
    pub message_id_format: IdFormat,
    /// Format of ids inside receipts.
    pub receipt_id_format: ReceiptIdFormat,
    /// Destinations starting with this get an `UNDELIV` receipt instead of `DELIVRD`.
    pub undeliverable_prefix: Option<String>,
    /// Messages kept for `ServerHandle::messages`.
    pub keep_messages: usize,
    /// Log each message at info.
    pub log_messages: bool,
    /// Receipts held for `system_id`s with no receiver bound, in total.
    pub max_pending_receipts: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            system_id: None,
            password: None,
            smsc_system_id: "IVM-SMSC".into(),
            receipt_delay: Duration::from_millis(100),
            submit_resp_delay: Duration::ZERO,
            message_id_format: IdFormat::Decimal,
            receipt_id_format: ReceiptIdFormat::AsSubmitted,
            undeliverable_prefix: None,
            keep_messages: 10_000,
            log_messages: true,
            max_pending_receipts: 100_000,
        }
    }
}
