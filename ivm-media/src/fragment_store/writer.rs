//! The writer thread: the only code that writes the segment log and the index. It turns the
//! frames `append` queued in memory into records (a closed fragment at once, into a buffer;
//! every open run at each group commit), then per commit: write, `fdatasync`, and only then
//! one SQLite transaction with the new index rows and the new indexed end of the log. The
//! frames leave memory only after that transaction, so readers always find them somewhere.
//!
//! A failed write, fsync or index commit drops everything not yet indexed: the segment is cut
//! back to its indexed end (or, when that fails, the writer moves on to a new segment), and
//! the frames, still in memory, are written again at the next commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;

use super::config::FragmentStoreConfig;
use super::error::{FragmentStoreError, io_err};
use super::index::{self, IndexRow, LogPosition};
use super::record::{self, FLAG_FINISHED};
use super::recovery::Recovered;
use super::seal::DataKey;
use super::shared::{FinishState, MessageBuf, Shared, segment_path};
use crate::codec::Codec;

/// Buffered record bytes are handed to the OS once they pass this.
const FLUSH_AT: usize = 1 << 20;
/// Data keys kept for messages being written (one per message; beyond, all are forgotten).
const MAX_DATA_KEYS: usize = 100_000;

/// What the store handles ask of the writer.
pub(super) enum Cmd {
    /// A run of this message's frames closed (a full fragment, or a gap): write it now.
    Wake(i64),
    /// `finish` for a message with nothing in memory: mark it finished if the index has it.
    FinishStored(i64),
    /// Commit now and answer when durable.
    Sync(mpsc::Sender<Result<(), FragmentStoreError>>),
    /// Commit and stop.
    Shutdown,
    /// Test hook: stop at once as a crash would, optionally handing buffered records to the OS
    /// (as a process crash leaves them: written but neither synced nor indexed).
    #[cfg(test)]
    Crash { flush: bool },
}

/// A record about to be written.
struct OutRecord {
    message_id: i64,
    codec: Codec,
    first_frame: u32,
    flags: u8,
    frames: Vec<Bytes>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    conn: Connection,
    dir: PathBuf,
    index_db: PathBuf,
    interval: Duration,
    segment_bytes: u64,
    /// The segment being appended to, its length as far as written to the OS, and the end of
    /// its last indexed record.
    segment: u32,
    file: File,
    file_len: u64,
    indexed_end: u64,
    /// After a failure the current segment's tail is unknown: start a new one first.
    need_roll: bool,
    /// Record bytes not yet handed to the OS.
    buf: Vec<u8>,
    /// Rows of records written since the last commit.
    rows: Vec<IndexRow>,
    /// Messages to mark finished from the index (see [`Cmd::FinishStored`]).
    stored_finishes: Vec<i64>,
    failures: u32,
    /// The data key of each message being written, when records are sealed.
    data_keys: HashMap<i64, DataKey>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        conn: Connection,
        cfg: &FragmentStoreConfig,
        recovered: &Recovered,
    ) -> Result<Writer, FragmentStoreError> {
        let (segment, file, file_len) = match recovered.tail {
            Some((segment, len)) => {
                let path = segment_path(&cfg.dir, segment);
                let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
                (segment, file, len)
            }
            None => (
                recovered.next_segment,
                create_segment(&cfg.dir, recovered.next_segment)?,
                0,
            ),
        };
        Ok(Writer {
            shared,
            conn,
            dir: cfg.dir.clone(),
            index_db: cfg.index_db.clone(),
            interval: cfg.commit_interval,
            segment_bytes: cfg.segment_bytes,
            segment,
            file,
            file_len,
            indexed_end: file_len,
            need_roll: false,
            buf: Vec::with_capacity(64 * 1024),
            rows: Vec::new(),
            stored_finishes: Vec::new(),
            failures: 0,
            data_keys: HashMap::new(),
        })
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut next_commit = Instant::now() + self.interval;
        loop {
            let now = Instant::now();
            if now >= next_commit {
                let _ = self.commit();
                next_commit = Instant::now() + self.interval;
                continue;
            }
            match rx.recv_timeout(next_commit - now) {
                Ok(Cmd::Wake(id)) => self.write_closed(id),
                Ok(Cmd::FinishStored(id)) => {
                    if !self.stored_finishes.contains(&id) {
                        self.stored_finishes.push(id);
                    }
                }
                Ok(Cmd::Sync(reply)) => {
                    let _ = reply.send(self.commit());
                }
                Ok(Cmd::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.commit();
                    return;
                }
                #[cfg(test)]
                Ok(Cmd::Crash { flush }) => {
                    if flush {
                        let _ = self.flush_buf();
                    }
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn segment_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }

    /// Writes the closed runs of one message.
    fn write_closed(&mut self, id: i64) {
        let fpf = self.shared.frames_per_fragment;
        let mut records = Vec::new();
        {
            let mut pending = self.shared.lock_pending();
            if let Some(m) = pending.messages.get_mut(&id) {
                collect_message(id, m, fpf, false, &mut records);
            }
        }
        if let Err(e) = self.write_records(records) {
            self.failed(&e);
        }
    }

    /// One group commit; warns about failures (rate-limited) and slow disks.
    fn commit(&mut self) -> Result<(), FragmentStoreError> {
        let started = Instant::now();
        let result = self.try_commit();
        match &result {
            Ok(()) if self.failures > 0 => {
                tracing::warn!(failures = self.failures, "fragment store: group commit succeeds again");
                self.failures = 0;
            }
            Ok(()) => {}
            Err(e) => self.failed(e),
        }
        let took = started.elapsed();
        if took > (self.interval * 5).max(Duration::from_secs(1)) {
            tracing::warn!(
                ms = took.as_millis() as u64,
                "fragment store: a group commit was slow (disk busy or failing?)"
            );
        }
        result
    }

    fn try_commit(&mut self) -> Result<(), FragmentStoreError> {
        let mut records = {
            let fpf = self.shared.frames_per_fragment;
            let mut pending = self.shared.lock_pending();
            let mut out = Vec::new();
            for (&id, m) in pending.messages.iter_mut() {
                collect_message(id, m, fpf, true, &mut out);
            }
            out
        };
        for &id in &self.stored_finishes {
            if let Some(m) = index::message(&self.conn, &self.index_db, id)?.filter(|m| !m.finished) {
                records.push(OutRecord {
                    message_id: id,
                    codec: m.codec,
                    first_frame: m.frames,
                    flags: FLAG_FINISHED,
                    frames: Vec::new(),
                });
            }
        }
        self.write_records(records)?;
        if self.rows.is_empty() {
            self.stored_finishes.clear();
            return Ok(());
        }
        self.flush_buf()?;
        self.file.sync_data().map_err(io_err(&self.segment_path()))?;
        let longest = self.rows.iter().map(|r| r.frame_count).max().unwrap_or(0);
        // Readers must know the longest record before they can meet it in the index.
        self.shared.max_record_frames.fetch_max(longest, Ordering::AcqRel);
        let end = LogPosition {
            segment: self.segment,
            offset: self.file_len,
        };
        index::commit_rows(&mut self.conn, &self.index_db, &self.rows, end)?;
        self.indexed_end = self.file_len;
        self.rows.clear();
        self.stored_finishes.clear();
        self.shared.committed();
        Ok(())
    }

    /// Encodes records into the buffer (rolling segments as needed) and remembers their rows.
    fn write_records(&mut self, records: Vec<OutRecord>) -> Result<(), FragmentStoreError> {
        for r in records {
            // Each record says how long its frames are: the codec's frame length.
            let frame_bytes = r.codec.implementation().frame_bytes();
            let sealed = self.shared.keys.as_ref().is_some_and(|k| k.seals());
            let len = record::encoded_len(r.frames.len(), frame_bytes, sealed) as u64;
            let used = self.file_len + self.buf.len() as u64;
            if self.need_roll || (used > 0 && used + len > self.segment_bytes) {
                self.roll()?;
            }
            let offset = self.file_len + self.buf.len() as u64;
            let key = match self.shared.keys.as_ref().filter(|k| k.seals()) {
                None => None,
                Some(keys) => {
                    if self.data_keys.len() >= MAX_DATA_KEYS {
                        // Each record carries its wrapped key: forgetting costs only a new key.
                        self.data_keys.clear();
                    }
                    Some(&*match self.data_keys.entry(r.message_id) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(v) => v.insert(keys.data_key(r.message_id)?),
                    })
                }
            };
            let length = record::encode(
                &mut self.buf,
                r.message_id,
                r.codec,
                r.first_frame,
                r.flags,
                u16::try_from(frame_bytes).unwrap_or(record::MAX_FRAME_BYTES),
                &r.frames,
                key,
            )?;
            if r.flags & FLAG_FINISHED != 0 {
                self.data_keys.remove(&r.message_id);
            }
            self.rows.push(IndexRow {
                message_id: r.message_id,
                first_frame: r.first_frame,
                frame_count: r.frames.len() as u32,
                segment: self.segment,
                offset,
                length,
                codec: r.codec,
                finished: r.flags & FLAG_FINISHED != 0,
            });
            if self.buf.len() >= FLUSH_AT {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), FragmentStoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(io_err(&self.segment_path()))?;
        self.file_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Moves on to a new segment; the old one is made durable first (its records may be indexed
    /// by the next commit), unless it is being abandoned after a failure.
    fn roll(&mut self) -> Result<(), FragmentStoreError> {
        if !self.need_roll {
            self.flush_buf()?;
            self.file.sync_data().map_err(io_err(&self.segment_path()))?;
        }
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        self.file_len = 0;
        self.indexed_end = 0;
        self.need_roll = false;
        Ok(())
    }

    /// Drops everything written since the last commit; the frames are still in memory and go
    /// out again with the next commit.
    fn failed(&mut self, error: &FragmentStoreError) {
        self.failures = self.failures.saturating_add(1);
        // Warn at the 1st, 2nd, 4th, 8th, … failure in a row.
        if self.failures.count_ones() == 1 {
            tracing::warn!(
                %error,
                failures = self.failures,
                "fragment store: writing audio failed; it stays in memory and is retried"
            );
        }
        self.buf.clear();
        self.rows.clear();
        if !self.need_roll {
            match self.file.set_len(self.indexed_end) {
                Ok(()) => self.file_len = self.indexed_end,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        segment = %self.segment_path().display(),
                        "fragment store: cannot cut back a failed write; moving on to a new segment"
                    );
                    self.need_roll = true;
                }
            }
        }
        self.shared.rewind_written();
    }
}

/// Takes the not yet written frames of one message as records, a run of consecutive frames
/// within one fragment each. The last run is taken only when it is closed (its fragment is
/// full), or `all` is set (a commit), or the message is finishing.
fn collect_message(id: i64, m: &mut MessageBuf, fpf: u32, all: bool, out: &mut Vec<OutRecord>) {
    let first_out = out.len();
    let take_open_run = all || m.finish != FinishState::Open;
    let n = m.frames.len();
    let mut i = m.written;
    while i < n {
        let first = m.frames[i].0;
        let mut j = i + 1;
        while j < n && m.frames[j - 1].0.checked_add(1) == Some(m.frames[j].0) && m.frames[j].0 / fpf == first / fpf {
            j += 1;
        }
        let last = m.frames[j - 1].0;
        if j == n && !take_open_run && last % fpf != fpf - 1 {
            break;
        }
        out.push(OutRecord {
            message_id: id,
            codec: m.codec,
            first_frame: first,
            flags: 0,
            frames: m.frames.range(i..j).map(|(_, f)| f.clone()).collect(),
        });
        i = j;
    }
    m.written = i;
    if m.finish == FinishState::Requested && m.written == n {
        if out.len() > first_out {
            if let Some(last) = out.last_mut() {
                last.flags |= FLAG_FINISHED;
            }
        } else {
            out.push(OutRecord {
                message_id: id,
                codec: m.codec,
                first_frame: m.last_index.map_or(0, |l| l.saturating_add(1)),
                flags: FLAG_FINISHED,
                frames: Vec::new(),
            });
        }
        m.finish = FinishState::Written;
    }
}

/// Creates a new, empty segment and makes its directory entry durable.
fn create_segment(dir: &Path, segment: u32) -> Result<File, FragmentStoreError> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(file)
}
