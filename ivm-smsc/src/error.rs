//! The crate's error types: [`SmsError`] for the client and its outbox, [`SessionError`] for one
//! SMPP session, [`ServerError`] for the built-in SMSC.

use std::path::PathBuf;

use crate::encoding::EncodingError;

/// Errors of the SMS client and its outbox.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The outbox database could not be opened or set up.
    #[error("cannot open the SMS outbox {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A query on the outbox failed.
    #[error("SMS outbox: {0}")]
    Db(#[from] rusqlite::Error),
    /// The request cannot become an SMS (bad number, empty or too long text, no dedupe key).
    #[error("invalid SMS request: {0}")]
    InvalidRequest(String),
    /// The text cannot be encoded.
    #[error("invalid SMS text: {0}")]
    Encoding(#[from] EncodingError),
    /// The configuration is unusable.
    #[error("invalid SMSC configuration: {0}")]
    InvalidConfig(String),
    /// A transaction on the outbox failed (the operation was not applied).
    #[error("SMS outbox: {0}")]
    Storage(String),
    /// No outbox row has this id.
    #[error("no SMS with outbox id {0}")]
    NotFound(i64),
    /// The client has been shut down.
    #[error("the SMS client is shut down")]
    Closed,
}

/// Errors of one SMPP session (connect, bind, submit).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The SMSC address does not resolve.
    #[error("cannot resolve SMSC address {address}: {reason}")]
    Resolve {
        /// `host:port` as configured.
        address: String,
        /// Why.
        reason: String,
    },
    /// TCP connect failed or timed out.
    #[error("cannot connect to the SMSC at {address}: {reason}")]
    Connect {
        /// `host:port` as configured.
        address: String,
        /// Why.
        reason: String,
    },
    /// The SMSC refused the bind.
    #[error("bind refused by the SMSC: {0}")]
    BindRefused(String),
    /// The SMSC answered a submit with an error status.
    #[error("submit_sm refused: {status} (0x{code:08x})")]
    SubmitRefused {
        /// The status name.
        status: String,
        /// The status code.
        code: u32,
    },
    /// The connection failed or closed (the submit may or may not have reached the SMSC).
    #[error("SMPP connection lost: {0}")]
    Connection(String),
    /// A value does not fit the PDU (address too long, non-ASCII system id…).
    #[error("cannot build the PDU: {0}")]
    Pdu(String),
}

impl SessionError {
    /// Whether retrying the same submit later may succeed (throttling, a full queue, a lost
    /// connection, a system error), as opposed to a refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::SubmitRefused { code, .. } => {
                matches!(*code, 0x08 | 0x14 | 0x45 | 0x58 | 0x64 | 0xFF)
            }
            SessionError::BindRefused(_) | SessionError::Pdu(_) => false,
            _ => true,
        }
    }
}

/// Errors of the built-in SMSC.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket setup failed.
    #[error("SMSC socket: {0}")]
    Io(#[from] std::io::Error),
}
