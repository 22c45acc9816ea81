//! The fragment store: the durable audio of every message, and the only place it is read back
//! from once it has left the live ring.
//!
//! A message's audio is a sequence of 20 ms G.711 frames (160 bytes, indexed 0, 1, 2, … per
//! message); a *fragment* is `frames_per_fragment` consecutive indexes (50 = 1 s). All
//! messages share one append-only log of segment files (`segment-000001.log`, …) whose
//! `record`s each hold one run of a message's frames within one fragment, with a CRC. A
//! dedicated writer thread (`writer`) does group commit: a full fragment becomes a record at
//! once, every `commit_interval` the open runs follow, the segment is `fdatasync`ed and only
//! then the new records are entered into the SQLite `index` in one transaction. On start,
//! `recovery` scans the log past the indexed end, indexes whole records and cuts a torn or
//! corrupt tail. A crash therefore loses at most the last commit window of audio and never a
//! frame that was committed. Given a keyring, records are sealed (`seal`: AES-256-GCM, a data
//! key per message wrapped by the master key), so the segment files hold no audio in clear.
//!
//! `append` only touches memory (a short mutex on a map of per-message frame queues), so the
//! RTP path never waits for the disk; frames stay in memory until their index rows are
//! committed, and readers merge the index (positional reads of the segments) with those
//! in-memory frames, so a reader is never behind what was appended and never blocks the writer.
//!
//! Why our own log: no crate offers group commit + CRC-checked records + an index in the
//! SQLite database the rest of the app uses + tail recovery; an embedded KV store would add a
//! second durability mechanism next to SQLite and still need the per-frame layout on top.
//!
//! Reads do blocking file and SQLite I/O: async callers should use `spawn_blocking`.

mod config;
mod error;
mod index;
mod offline;
mod record;
mod recovery;
mod seal;
mod shared;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::codec::Codec;
pub use config::FragmentStoreConfig;
pub use error::FragmentStoreError;
use error::io_err;
pub use offline::read_committed;
pub use record::FRAME_BYTES;
pub use seal::{KEY_BYTES, Keyring, MasterKey, SealError};
use shared::{BACKLOG_WARN_FRAMES, FinishState, MessageBuf, Pending, Shared, backlog_limit, lock};
use writer::{Cmd, Writer};

/// What `open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Every message with audio in the store after recovery (as [`FragmentStore::messages`]);
    /// those with `finished == false` were being recorded when the store last stopped.
    pub messages: Vec<RecoveredMessage>,
    /// Bytes cut off torn or corrupt segment tails.
    pub truncated_bytes: u64,
    /// Records found in the log that the index did not have yet (now indexed).
    pub recovered_records: u64,
}

/// A message's durable audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredMessage {
    pub message_id: i64,
    /// Highest durable frame index + 1.
    pub frames: u32,
    pub codec: Codec,
    /// `finish` was called and is durable.
    pub finished: bool,
}

/// Stops the writer (with a last commit) when the last handle goes.
struct Handle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(Err(_)) = lock(&self.thread).take().map(JoinHandle::join) {
            tracing::warn!("fragment store: the writer thread panicked");
        }
    }
}

/// The durable audio store; cheap to clone, `Send + Sync`. The last clone dropped commits what
/// is pending and stops the writer thread (waiting for it).
#[derive(Clone)]
pub struct FragmentStore {
    inner: Arc<Handle>,
}

impl FragmentStore {
    /// Opens (creating when needed) the store, recovers the log tail and starts the writer.
    pub fn open(cfg: FragmentStoreConfig) -> Result<(FragmentStore, Recovery), FragmentStoreError> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let mut conn = index::open_writer(&cfg.index_db)?;
        let recovered = recovery::recover(&cfg.dir, &mut conn, &cfg.index_db)?;
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            index_db: cfg.index_db.clone(),
            frames_per_fragment: cfg.frames_per_fragment,
            pending: Mutex::new(Pending {
                messages: HashMap::new(),
                frames: 0,
                warn_at: BACKLOG_WARN_FRAMES,
                generation: 0,
            }),
            max_record_frames: AtomicU32::new(recovered.max_frames),
            readers: Mutex::new(Vec::new()),
            segments: RwLock::new(HashMap::new()),
            keys: cfg.keys.clone(),
        });
        let writer = Writer::new(shared.clone(), conn, &cfg, &recovered)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ivm-fragments".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&cfg.dir))?;
        let store = FragmentStore {
            inner: Arc::new(Handle {
                shared,
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        };
        let messages = store.messages()?;
        Ok((
            store,
            Recovery {
                messages,
                truncated_bytes: recovered.truncated_bytes,
                recovered_records: recovered.recovered_records,
            },
        ))
    }

    /// Queues one frame; never waits for the disk. Frames of a message must come with
    /// increasing indexes (a frame at or before the last one is dropped); a gap is stored as
    /// nothing and read as silence. The first frame fixes the message's codec; a frame in the
    /// other law is converted.
    pub fn append(&self, message_id: i64, codec: Codec, frame_index: u32, payload: Bytes) {
        let shared = &self.inner.shared;
        let fpf = shared.frames_per_fragment;
        let frame_bytes = codec.implementation().frame_bytes();
        let wrong_len = (payload.len() != frame_bytes).then_some(payload.len());
        let payload = match wrong_len {
            Some(_) => fit_frame(&payload, codec),
            None => payload,
        };
        let wake = {
            let mut guard = shared.lock_pending();
            let p = &mut *guard;
            let m = p.messages.entry(message_id).or_insert_with(|| MessageBuf::new(codec));
            if let Some(last) = m.last_index.filter(|&last| frame_index <= last) {
                if !m.warned_order {
                    m.warned_order = true;
                    tracing::warn!(
                        message_id,
                        frame_index,
                        last,
                        "fragment store: dropping a frame that does not follow the message's last one \
                         (further ones of this message are dropped silently)"
                    );
                }
                return;
            }
            if let Some(len) = wrong_len.filter(|_| !m.warned_size) {
                m.warned_size = true;
                tracing::warn!(
                    message_id,
                    len,
                    "fragment store: frame is not {frame_bytes} bytes; padded with silence or cut \
                     (warned once per message)"
                );
            }
            let payload = if codec == m.codec {
                payload
            } else {
                Bytes::from(codec.transcode(m.codec, &payload))
            };
            let prev = m.last_index.replace(frame_index);
            m.frames.push_back((frame_index, payload));
            m.last_generation = p.generation;
            // A run closes when this frame fills its fragment, or when it leaves a gap or
            // starts a new fragment after an unwritten run.
            let wake = frame_index % fpf == fpf - 1
                || prev.is_some_and(|prev| {
                    m.written + 1 < m.frames.len()
                        && (prev.checked_add(1) != Some(frame_index) || prev / fpf != frame_index / fpf)
                });
            p.frames += 1;
            if p.frames >= p.warn_at.max(backlog_limit(p.messages.len())) {
                tracing::warn!(
                    frames = p.frames,
                    "fragment store: audio waiting for the disk is piling up (slow or failing disk?)"
                );
                p.warn_at = p.frames.saturating_mul(2);
            }
            wake
        };
        if wake {
            let _ = self.inner.tx.send(Cmd::Wake(message_id));
        }
    }

    /// No more frames for this message: its last run goes out with the next commit, flagged
    /// FINISHED.
    pub fn finish(&self, message_id: i64) {
        let in_memory = {
            let mut p = self.inner.shared.lock_pending();
            match p.messages.get_mut(&message_id) {
                Some(m) => {
                    if m.finish == FinishState::Open {
                        m.finish = FinishState::Requested;
                    }
                    true
                }
                None => false,
            }
        };
        if !in_memory {
            let _ = self.inner.tx.send(Cmd::FinishStored(message_id));
        }
    }

    /// Commits now and waits until everything appended before the call is durable (fsync and
    /// index rows committed).
    pub fn sync(&self) -> Result<(), FragmentStoreError> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .tx
            .send(Cmd::Sync(tx))
            .map_err(|_| FragmentStoreError::WriterGone)?;
        rx.recv().map_err(|_| FragmentStoreError::WriterGone)?
    }

    /// Frames `[from, from + max)` of a message as stored so far (committed and still pending),
    /// in order, gaps filled with silence; fewer when the message ends sooner, none for an
    /// unknown message.
    pub fn read_range(&self, message_id: i64, from: u32, max: u32) -> Result<Vec<Bytes>, FragmentStoreError> {
        let shared = &self.inner.shared;
        if max == 0 {
            return Ok(Vec::new());
        }
        let want_end = from.saturating_add(max);
        // Memory first, then the index: a frame leaves memory only after its index row is
        // committed, so it is in one of the two snapshots.
        let (pending_codec, pending_end, pending) = {
            let p = shared.lock_pending();
            match p.messages.get(&message_id) {
                None => (None, 0, Vec::new()),
                Some(m) => {
                    let start = m.frames.partition_point(|(i, _)| *i < from);
                    let frames: Vec<(u32, Bytes)> = m
                        .frames
                        .range(start..)
                        .take_while(|(i, _)| *i < want_end)
                        .cloned()
                        .collect();
                    let end = m.frames.back().map_or(0, |(i, _)| i.saturating_add(1));
                    (Some(m.codec), end, frames)
                }
            }
        };
        let lookback = shared.max_record_frames.load(Ordering::Acquire);
        let (stored, rows) = shared.with_reader(|conn| {
            let stored = index::message(conn, &shared.index_db, message_id)?;
            let rows = index::rows_starting_in(
                conn,
                &shared.index_db,
                message_id,
                from.saturating_sub(lookback),
                want_end,
            )?;
            Ok((stored, rows))
        })?;
        let Some(codec) = stored.map(|s| s.codec).or(pending_codec) else {
            return Ok(Vec::new());
        };
        let rows_end = rows
            .iter()
            .map(|r| r.first_frame.saturating_add(r.frame_count))
            .max()
            .unwrap_or(0);
        let end = stored
            .map_or(0, |s| s.frames)
            .max(pending_end)
            .max(rows_end)
            .min(want_end);
        if end <= from {
            return Ok(Vec::new());
        }
        let mut out: Vec<Option<Bytes>> = vec![None; (end - from) as usize];
        let mut put = |index: u32, frame: Bytes, frame_codec: Codec| {
            if (from..end).contains(&index) {
                let frame = if frame_codec == codec {
                    frame
                } else {
                    Bytes::from(frame_codec.transcode(codec, &frame))
                };
                out[(index - from) as usize] = Some(frame);
            }
        };
        for row in rows
            .iter()
            .filter(|r| r.first_frame.saturating_add(r.frame_count) > from)
        {
            let (header, frames) = shared.read_record(row)?;
            for k in 0..header.frame_count {
                put(header.first_frame + k, record::frame(&frames, &header, k), header.codec);
            }
        }
        if let Some(pending_codec) = pending_codec {
            for (index, frame) in pending {
                put(index, frame, pending_codec);
            }
        }
        let silence = Bytes::from(vec![codec.silence(); codec.implementation().frame_bytes()]);
        Ok(out.into_iter().map(|f| f.unwrap_or_else(|| silence.clone())).collect())
    }

    /// Frames durable on disk for a message: its highest committed frame index + 1.
    pub fn committed_frames(&self, message_id: i64) -> Result<u32, FragmentStoreError> {
        let shared = &self.inner.shared;
        let stored = shared.with_reader(|conn| index::message(conn, &shared.index_db, message_id))?;
        Ok(stored.map_or(0, |s| s.frames))
    }

    /// The codec a message is stored in (from the index, else from frames still in memory).
    pub fn codec(&self, message_id: i64) -> Result<Option<Codec>, FragmentStoreError> {
        let shared = &self.inner.shared;
        let stored = shared.with_reader(|conn| index::message(conn, &shared.index_db, message_id))?;
        Ok(stored
            .map(|s| s.codec)
            .or_else(|| shared.lock_pending().messages.get(&message_id).map(|m| m.codec)))
    }

    /// Every message with durable audio, by id.
    pub fn messages(&self) -> Result<Vec<RecoveredMessage>, FragmentStoreError> {
        let shared = &self.inner.shared;
        let stored = shared.with_reader(|conn| index::messages(conn, &shared.index_db))?;
        Ok(stored
            .into_iter()
            .map(|s| RecoveredMessage {
                message_id: s.message_id,
                frames: s.frames,
                codec: s.codec,
                finished: s.finished,
            })
            .collect())
    }

    /// Test hook: stops the writer as a crash would (no last commit), then drops the store.
    #[cfg(test)]
    fn crash(self, flush: bool) {
        let _ = self.inner.tx.send(Cmd::Crash { flush });
        if let Some(thread) = lock(&self.inner.thread).take() {
            let _ = thread.join();
        }
    }
}

/// A payload of the wrong size, padded with silence or cut to one frame.
fn fit_frame(payload: &[u8], codec: Codec) -> Bytes {
    let mut frame = vec![codec.silence(); codec.implementation().frame_bytes()];
    let n = payload.len().min(frame.len());
    frame[..n].copy_from_slice(&payload[..n]);
    Bytes::from(frame)
}
