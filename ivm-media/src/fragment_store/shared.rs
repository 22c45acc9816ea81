//! What the store's handles and its writer thread share: the frames not yet indexed, per
//! message, the reader connections and open segment files, and reading one record back.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use rusqlite::Connection;

use super::error::{FragmentStoreError, io_err};
use super::index::{self, IndexRow};
use super::record;
use super::seal::Keyring;
use crate::codec::Codec;

/// Frames not yet durable, over all messages, above which `append` warns (5 minutes of one
/// call's audio; doubles after each warning).
pub(super) const BACKLOG_WARN_FRAMES: usize = 50 * 60 * 5;
/// Seconds of each message's audio waiting for the disk above which `append` warns: many
/// messages at once hold many frames between two commits (2,000 calls: 20,000 frames in a
/// 200 ms window) without anything being late.
pub(super) const BACKLOG_WARN_SECS_PER_MESSAGE: usize = 10;

/// The backlog (frames not yet durable) worth a warning with `messages` being written.
pub(super) fn backlog_limit(messages: usize) -> usize {
    BACKLOG_WARN_FRAMES.max(messages.saturating_mul(50 * BACKLOG_WARN_SECS_PER_MESSAGE))
}
/// A message with nothing pending and no frame for this many commits is forgotten in memory.
pub(super) const EVICT_AFTER_COMMITS: u64 = 3000;

/// Idle reader connections kept for reuse.
pub(super) const MAX_IDLE_READERS: usize = 4;
/// Open segment files kept for readers.
pub(super) const MAX_OPEN_SEGMENTS: usize = 256;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FinishState {
    Open,
    /// `finish` was called; the FINISHED flag is not written yet.
    Requested,
    /// The FINISHED flag is written (durable at the next commit).
    Written,
}

/// The frames of one message that are not yet indexed.
pub(super) struct MessageBuf {
    pub(super) codec: Codec,
    /// Ascending by frame index.
    pub(super) frames: VecDeque<(u32, Bytes)>,
    /// How many of `frames` (a prefix) the writer has written since the last commit.
    pub(super) written: usize,
    pub(super) finish: FinishState,
    pub(super) last_index: Option<u32>,
    /// The commit generation of the last append.
    pub(super) last_generation: u64,
    pub(super) warned_order: bool,
    pub(super) warned_size: bool,
}

impl MessageBuf {
    pub(super) fn new(codec: Codec) -> MessageBuf {
        MessageBuf {
            codec,
            frames: VecDeque::new(),
            written: 0,
            finish: FinishState::Open,
            last_index: None,
            last_generation: 0,
            warned_order: false,
            warned_size: false,
        }
    }
}

pub(super) struct Pending {
    pub(super) messages: HashMap<i64, MessageBuf>,
    /// Frames in `messages`.
    pub(super) frames: usize,
    pub(super) warn_at: usize,
    /// Successful commits so far.
    pub(super) generation: u64,
}

/// What the handles and the writer thread share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) index_db: PathBuf,
    pub(super) frames_per_fragment: u32,
    pub(super) pending: Mutex<Pending>,
    /// The longest record (in frames) the index may hold: how far back a read must look.
    pub(super) max_record_frames: AtomicU32,
    pub(super) readers: Mutex<Vec<Connection>>,
    pub(super) segments: RwLock<HashMap<u32, Arc<File>>>,
    /// The master keys: records are sealed with them and opened with them.
    pub(super) keys: Option<Keyring>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("segment-{segment:06}.log"))
}

impl Shared {
    pub(super) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// After a commit: the written frames are indexed now, drop them from memory.
    pub(super) fn committed(&self) {
        let mut guard = self.lock_pending();
        let p = &mut *guard;
        p.generation += 1;
        let generation = p.generation;
        let mut dropped = 0;
        p.messages.retain(|_, m| {
            dropped += m.written;
            m.frames.drain(..m.written);
            m.written = 0;
            let idle = generation.saturating_sub(m.last_generation) > EVICT_AFTER_COMMITS;
            !(m.frames.is_empty() && (m.finish == FinishState::Written || idle))
        });
        p.frames -= dropped;
        let limit = backlog_limit(p.messages.len());
        if p.frames < limit / 2 {
            p.warn_at = limit;
        }
    }

    /// After a failed write or commit: nothing since the last commit counts as written.
    pub(super) fn rewind_written(&self) {
        let mut p = self.lock_pending();
        for m in p.messages.values_mut() {
            m.written = 0;
            if m.finish == FinishState::Written {
                m.finish = FinishState::Requested;
            }
        }
    }

    pub(super) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, FragmentStoreError>,
    ) -> Result<T, FragmentStoreError> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(c) => c,
            None => index::open_reader(&self.index_db)?,
        };
        let result = f(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    pub(super) fn segment_file(&self, segment: u32, path: &Path) -> Result<Arc<File>, FragmentStoreError> {
        if let Some(f) = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(path).map_err(io_err(path))?);
        let mut open = self.segments.write().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= MAX_OPEN_SEGMENTS {
            open.clear();
        }
        Ok(open.entry(segment).or_insert(file).clone())
    }

    /// Reads and checks one indexed record: its header and its frames' bytes (opened).
    pub(super) fn read_record(&self, row: &IndexRow) -> Result<(record::Header, Bytes), FragmentStoreError> {
        let path = segment_path(&self.dir, row.segment);
        let corrupt = |reason| FragmentStoreError::Corrupt {
            path: path.clone(),
            offset: row.offset,
            reason,
        };
        let file = self.segment_file(row.segment, &path)?;
        let mut buf = vec![0u8; row.length as usize];
        file.read_exact_at(&mut buf, row.offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt("record runs past the end of its segment")
            } else {
                io_err(&path)(e)
            }
        })?;
        let header = record::verify(&buf).map_err(corrupt)?;
        if (header.message_id, header.first_frame, header.frame_count)
            != (row.message_id, row.first_frame, row.frame_count)
        {
            return Err(corrupt("record does not match its index row"));
        }
        let frames = record::frames(Bytes::from(buf), &header, self.keys.as_ref()).map_err(corrupt)?;
        Ok((header, frames))
    }
}
