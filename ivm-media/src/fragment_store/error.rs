//! Fragment store failures, and the helper that names the file an I/O error was about.

use std::path::{Path, PathBuf};

/// Fragment store failures.
#[derive(Debug, thiserror::Error)]
pub enum FragmentStoreError {
    #[error("invalid fragment store configuration: {0}")]
    Config(&'static str),
    #[error("fragment store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("fragment index {path}: {source}")]
    Index { path: PathBuf, source: rusqlite::Error },
    #[error("fragment index {path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("corrupt fragment record in {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    #[error("the fragment store writer has stopped")]
    WriterGone,
    #[error("sealing a fragment record: {0}")]
    Seal(#[from] super::seal::SealError),
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> FragmentStoreError + '_ {
    move |source| FragmentStoreError::Io {
        path: path.to_owned(),
        source,
    }
}
