//! Where and how the fragment store keeps its audio: directory, index database, commit
//! interval, fragment and segment sizes, and the master keys that seal it.

use std::path::PathBuf;
use std::time::Duration;

use super::error::FragmentStoreError;
use super::record;
use super::seal::Keyring;

/// Where and how the store keeps its audio.
#[derive(Debug, Clone)]
pub struct FragmentStoreConfig {
    /// The directory of the segment files.
    pub dir: PathBuf,
    /// The SQLite file for the index (may be shared with other tables of the app).
    pub index_db: PathBuf,
    /// Group commit interval: at most this much audio is lost in a crash.
    pub commit_interval: Duration,
    /// Frames per fragment (the largest record).
    pub frames_per_fragment: u32,
    /// A new segment file is started before one would grow past this.
    pub segment_bytes: u64,
    /// With keys, every new record is sealed (encryption at rest) and sealed records open;
    /// without, records are written in clear and a sealed one does not open.
    pub keys: Option<Keyring>,
}

impl FragmentStoreConfig {
    pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
    pub const DEFAULT_FRAMES_PER_FRAGMENT: u32 = 50;
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

    /// The defaults: 200 ms commits, 1 s fragments, 64 MiB segments, in clear.
    pub fn new(dir: impl Into<PathBuf>, index_db: impl Into<PathBuf>) -> FragmentStoreConfig {
        FragmentStoreConfig {
            dir: dir.into(),
            index_db: index_db.into(),
            commit_interval: Self::DEFAULT_COMMIT_INTERVAL,
            frames_per_fragment: Self::DEFAULT_FRAMES_PER_FRAGMENT,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            keys: None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), FragmentStoreError> {
        if self.commit_interval.is_zero() {
            return Err(FragmentStoreError::Config("commit_interval must be above zero"));
        }
        if self.frames_per_fragment == 0 || self.frames_per_fragment > record::MAX_FRAMES {
            return Err(FragmentStoreError::Config("frames_per_fragment must be 1 to 4096"));
        }
        if self.segment_bytes == 0 {
            return Err(FragmentStoreError::Config("segment_bytes must be above zero"));
        }
        Ok(())
    }
}
