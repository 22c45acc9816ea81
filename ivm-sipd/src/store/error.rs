//! The store's errors, and the trunk definition's: each can carry the other (a trunk the store
//! refuses, a store failure while loading trunks), so they live in one file.

use std::path::PathBuf;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("subscriber {0} already exists")]
    SubscriberExists(String),
    #[error("invalid {field} {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{path}, line {line}: {why}")]
    Csv { path: PathBuf, line: u64, why: String },
    #[error("export failed: {0}")]
    Export(String),
    #[error("the store transaction did not commit")]
    CommitFailed,
    #[error("the store writer has stopped")]
    WriterGone,
    #[error("trunk {0} already exists")]
    TrunkExists(String),
    #[error(transparent)]
    Trunk(#[from] TrunkError),
}

/// A trunk definition that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrunkError {
    #[error("trunk name {0:?}: use 1 to 64 letters, digits and . _ -")]
    Name(String),
    #[error("trunk {trunk}: address {address:?} must be IP:PORT, [IPv6]:PORT or host:port")]
    Address { trunk: String, address: String },
    #[error("trunk {trunk}: cannot resolve address {address}: {error}")]
    Resolve {
        trunk: String,
        address: String,
        error: String,
    },
    #[error("trunk {trunk}: route {regex:?} is not a valid regular expression: {error}")]
    Route {
        trunk: String,
        regex: String,
        error: String,
    },
    #[error("trunk {trunk}: trusted {cidr:?} is not a network (192.0.2.0/24, 2001:db8::/32) or an IP address")]
    Trusted { trunk: String, cidr: String },
    #[error("trunk {0} is defined twice")]
    Duplicate(String),
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for TrunkError {
    fn from(e: StoreError) -> TrunkError {
        TrunkError::Store(Box::new(e))
    }
}

impl TrunkError {
    /// The key of a `[[trunk]]` table the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TrunkError::Name(_) | TrunkError::Duplicate(_) => "name",
            TrunkError::Address { .. } | TrunkError::Resolve { .. } => "address",
            TrunkError::Route { .. } => "routes",
            TrunkError::Trusted { .. } => "trusted",
            TrunkError::Store(_) => "",
        }
    }
}
