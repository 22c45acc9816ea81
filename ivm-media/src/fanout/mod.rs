//! The live fan-out engine: it owns the in-memory frame ring of one message being recorded and
//! streams it to any number of listeners (target legs, retrieval calls), late ones included.
//!
//! The sender's RTP is written once, by the message's single [`StreamWriter`], into a ring of the
//! last [`StreamConfig::ring_frames`] frames (20 ms of G.711 each, index 0, 1, 2, …). Every
//! [`Listener`] is only a cursor into that ring: it copies frames out (a reference-count bump per
//! frame, never the audio) under a short read lock, so a push is O(1) and never waits for a
//! listener, and a listener that stops reading delays nobody. Frames that fell out of the ring are
//! read back from a [`FrameSource`] (the fragment store) in batches, on tokio's blocking pool and
//! without holding the ring lock. A listener therefore gets every frame from its start index, in
//! order, with no gap and no duplicate, whether it joined at the first frame or minutes later,
//! and then the live tail, until the stream is finished.
//!
//! When a listener's next frame was evicted and there is no source (or the source fails or
//! returns nothing), the frames cannot be recovered: the listener logs a warning, counts them in
//! [`Listener::skipped`] and continues from the oldest frame still in the ring.
//!
//! [`Pacer`] turns a listener into an RTP send schedule: one frame per 20 ms on absolute deadlines,
//! faster while the listener is behind when a catch-up speed is set.
//!
//! Wiring expected from the call layer: the RTP receiver calls [`StreamWriter::push_at`] with the
//! frame index it derived from the RTP timestamp (gaps become silence) and appends the same frame
//! to the fragment store, which is the stream's [`FrameSource`] (both drop late frames and read
//! gaps as silence, so the two agree); target legs and retrievals take a [`Pacer`] around
//! [`StreamHandle::listen`].

mod pacer;
#[cfg(test)]
mod tests;

pub use pacer::Pacer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::codec::Codec;

/// The longest run of missing frames [`StreamWriter::push_at`] fills with silence (60 s). A longer
/// jump of the index (a sender's very long silence suppression, or a bogus RTP timestamp) is
/// shortened to this much silence, and later indexes are shifted by the same amount, so that a
/// bad packet can neither stall the writer nor fill the store with hours of silence.
pub const MAX_GAP_FRAMES: u32 = 3000;

/// Frames a listener copies out of the ring per lock acquisition.
const RING_BATCH: usize = 64;

/// Frames a listener asks the [`FrameSource`] for per read (5 s of audio).
const SOURCE_BATCH: u32 = 250;

/// One 20 ms frame of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's position in the message, from 0.
    pub index: u32,
    /// The codec payload (G.711 bytes in the message's codec).
    pub payload: Bytes,
}

/// Where frames that fell out of the in-memory ring are read from (the fragment store implements
/// this; the call layer wires it).
///
/// `read_range` is called on tokio's blocking pool, so it may do blocking I/O. It returns up to
/// `max` consecutive frames starting at `from`; fewer (but at least one) is fine, the listener
/// asks again for the rest. An empty result or an error means those frames are lost.
pub trait FrameSource: Send + Sync + 'static {
    fn read_range(&self, message_id: i64, from: u32, max: u32) -> Result<Vec<Bytes>, String>;
}

/// How one message's stream is kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Frames kept in memory (3000 = 60 s). At least 1 is kept whatever is configured.
    pub ring_frames: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig { ring_frames: 3000 }
    }
}

/// Why a listener could not read evicted frames back; logged, then the frames are skipped.
#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error("frames fell out of the ring and the stream has no frame source")]
    NoSource,
    #[error("the frame source returned no frames")]
    Empty,
    #[error("the frame source failed: {0}")]
    Source(String),
    #[error("the frame source read panicked or was cancelled: {0}")]
    Task(String),
}

/// The ring: frames `base .. base + frames.len()` of the message.
struct Ring {
    base: u32,
    frames: VecDeque<Bytes>,
    finished: bool,
    /// `push_at` index minus stored index; grows when an over-long gap is shortened.
    shift: u32,
}

impl Ring {
    fn end(&self) -> u32 {
        // `frames.len()` never exceeds the ring capacity, a u32.
        self.base + self.frames.len() as u32
    }
}

/// What the writer and every handle and listener of one message share.
struct Shared {
    message_id: i64,
    codec: Codec,
    capacity: usize,
    ring: RwLock<Ring>,
    /// Woken on every push and on finish.
    notify: Notify,
    /// Mirrors `ring.end()`, readable without the lock.
    frames: AtomicU32,
    /// Mirrors `ring.finished`.
    finished: AtomicBool,
    source: Option<Arc<dyn FrameSource>>,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent (every mutation is a
        // single push/pop), so a poisoned lock is simply taken over.
        self.ring.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one frame under the write lock, evicting the oldest when the ring is full.
    fn append(&self, ring: &mut Ring, payload: Bytes) {
        if ring.frames.len() >= self.capacity {
            ring.frames.pop_front();
            ring.base += 1;
        }
        ring.frames.push_back(payload);
    }

    /// Publishes the new end of the ring and wakes the waiting listeners.
    fn publish(&self, end: u32) {
        self.frames.store(end, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Creates the stream of one message: the writer half (one per message) and a cloneable handle
/// that makes listeners.
pub fn stream(
    message_id: i64,
    codec: Codec,
    cfg: StreamConfig,
    source: Option<Arc<dyn FrameSource>>,
) -> (StreamWriter, StreamHandle) {
    let capacity = cfg.ring_frames.max(1) as usize;
    let shared = Arc::new(Shared {
        message_id,
        codec,
        capacity,
        ring: RwLock::new(Ring {
            base: 0,
            frames: VecDeque::with_capacity(capacity.min(4096)),
            finished: false,
            shift: 0,
        }),
        notify: Notify::new(),
        frames: AtomicU32::new(0),
        finished: AtomicBool::new(false),
        source,
    });
    (StreamWriter { shared: shared.clone() }, StreamHandle { shared })
}

/// The writing half of a message's stream: the only one that adds frames. Dropping it finishes
/// the stream.
pub struct StreamWriter {
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Appends the next frame and returns its index. Never waits for a listener.
    ///
    /// After [`finish`](Self::finish) (or once 2³²−1 frames exist) the frame is dropped with a
    /// warning and the returned value is the current frame count, an index no listener will see.
    pub fn push(&self, payload: Bytes) -> u32 {
        let shared = &self.shared;
        let mut ring = shared.write();
        let index = ring.end();
        if ring.finished || index == u32::MAX {
            drop(ring);
            tracing::warn!(
                message_id = shared.message_id,
                index,
                "frame pushed to a finished or full stream, dropped"
            );
            return index;
        }
        shared.append(&mut ring, payload);
        let end = ring.end();
        drop(ring);
        shared.publish(end);
        index
    }

    /// Writes the frame with a known index (derived from the RTP timestamp). Missing indexes
    /// before it are filled with codec silence of the same length, so listeners stay continuous.
    ///
    /// A frame whose index was already written (a late or duplicate packet) is dropped: frames
    /// are immutable once listeners may have played them. A gap longer than [`MAX_GAP_FRAMES`] is
    /// shortened to that much silence and every later index is shifted by the same amount. Mixing
    /// `push` and `push_at` on one stream is allowed but rarely meaningful.
    pub fn push_at(&self, index: u32, payload: Bytes) {
        let shared = &self.shared;
        let mut ring = shared.write();
        if ring.finished {
            drop(ring);
            tracing::warn!(
                message_id = shared.message_id,
                index,
                "frame pushed to a finished stream, dropped"
            );
            return;
        }
        let next = ring.end();
        let Some(stored) = index.checked_sub(ring.shift).filter(|&stored| stored >= next) else {
            drop(ring);
            tracing::debug!(
                message_id = shared.message_id,
                index,
                next,
                "late or duplicate frame dropped"
            );
            return;
        };
        let gap = (stored - next).min(MAX_GAP_FRAMES);
        // Like `push`, the last possible index is u32::MAX - 1.
        if gap >= u32::MAX - next {
            drop(ring);
            tracing::warn!(
                message_id = shared.message_id,
                index,
                "frame beyond the last possible index, dropped"
            );
            return;
        }
        if stored - next > gap {
            tracing::info!(
                message_id = shared.message_id,
                index,
                missing = stored - next,
                kept = gap,
                "over-long gap shortened"
            );
            ring.shift += stored - next - gap;
        }
        if gap > 0 {
            let silence = Bytes::from(vec![shared.codec.silence(); payload.len()]);
            for _ in 0..gap {
                shared.append(&mut ring, silence.clone());
            }
        }
        shared.append(&mut ring, payload);
        let end = ring.end();
        drop(ring);
        shared.publish(end);
    }

    /// Marks the stream complete: listeners drain what exists, then get `None`. Idempotent.
    pub fn finish(&self) {
        let shared = &self.shared;
        let mut ring = shared.write();
        if ring.finished {
            return;
        }
        ring.finished = true;
        drop(ring);
        shared.finished.store(true, Ordering::Release);
        shared.notify.notify_waiters();
    }

    /// Frames written so far (the index the next `push` gets).
    pub fn frames(&self) -> u32 {
        self.shared.frames.load(Ordering::Acquire)
    }

    /// A handle on the same stream.
    pub fn handle(&self) -> StreamHandle {
        StreamHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("message_id", &self.shared.message_id)
            .field("frames", &self.frames())
            .finish()
    }
}

/// A cloneable handle on a message's stream: makes listeners and reports progress.
#[derive(Clone)]
pub struct StreamHandle {
    shared: Arc<Shared>,
}

impl StreamHandle {
    /// A listener from frame 0.
    pub fn listen(&self) -> Listener {
        self.listen_from(0)
    }

    /// A listener whose first frame is `index` (it waits if that frame does not exist yet).
    pub fn listen_from(&self, index: u32) -> Listener {
        Listener {
            shared: self.shared.clone(),
            pos: index,
            buf: VecDeque::new(),
            skipped: 0,
        }
    }

    /// Frames written so far.
    pub fn frames(&self) -> u32 {
        self.shared.frames.load(Ordering::Acquire)
    }

    /// Whether the writer has finished (no frame will be added).
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    pub fn codec(&self) -> Codec {
        self.shared.codec
    }

    pub fn message_id(&self) -> i64 {
        self.shared.message_id
    }

    /// The oldest frame index still in memory (frames before it are read from the source).
    pub fn oldest_in_memory(&self) -> u32 {
        self.shared.read().base
    }
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("message_id", &self.shared.message_id)
            .field("frames", &self.frames())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// What one look into the ring found.
enum Fill {
    /// Frames were copied into the listener's buffer.
    Got,
    /// The next frame fell out of the ring; `base` is the oldest frame still in it.
    Evicted { base: u32 },
    /// The next frame does not exist yet.
    Wait,
    /// The stream is finished and every frame was delivered.
    End,
}

/// One reader of a message's stream: a cursor plus a small buffer of frames already copied out.
pub struct Listener {
    shared: Arc<Shared>,
    /// Index of the next frame [`next`](Self::next) returns; `buf` holds `pos ..`.
    pos: u32,
    buf: VecDeque<Bytes>,
    skipped: u64,
}

impl Listener {
    /// The next frame in order: immediately if available (from the ring, or from the
    /// [`FrameSource`] when it fell out of the ring), else waits for the writer; `None` once the
    /// stream is finished and every frame was delivered.
    ///
    /// Cancel-safe: dropping the future loses no frame.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(payload) = self.buf.pop_front() {
                let index = self.pos;
                self.pos += 1;
                return Some(Frame { index, payload });
            }
            match fill_from_ring(&self.shared, self.pos, &mut self.buf) {
                Fill::Got => continue,
                Fill::Evicted { base } => {
                    self.fill_from_source(base).await;
                    continue;
                }
                Fill::End => return None,
                Fill::Wait => {}
            }
            // Nothing to read: register for the writer's wake-up, then look again so that a push
            // between the look above and the registration is not missed.
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match fill_from_ring(&self.shared, self.pos, &mut self.buf) {
                Fill::Wait => notified.await,
                Fill::End => return None,
                Fill::Got | Fill::Evicted { .. } => {}
            }
        }
    }

    /// Index of the next frame [`next`](Self::next) returns.
    pub fn position(&self) -> u32 {
        self.pos
    }

    /// Frames behind the writer (written but not yet returned by [`next`](Self::next)).
    pub fn lag(&self) -> u32 {
        self.shared.frames.load(Ordering::Acquire).saturating_sub(self.pos)
    }

    /// Frames this listener had to skip because they fell out of the ring and could not be read
    /// from the source (0 in a healthy system).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the stream is finished and this listener has had every frame.
    pub fn is_done(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire) && self.lag() == 0
    }

    pub fn codec(&self) -> Codec {
        self.shared.codec
    }

    pub fn message_id(&self) -> i64 {
        self.shared.message_id
    }

    /// Reads frames `pos .. base` (at most a batch) from the source into the buffer; on failure
    /// skips to the oldest frame in the ring.
    async fn fill_from_source(&mut self, base: u32) {
        let from = self.pos;
        let max = (base - from).min(SOURCE_BATCH);
        let result = match &self.shared.source {
            None => Err(CatchUpError::NoSource),
            Some(source) => read_source(source.clone(), self.shared.message_id, from, max).await,
        };
        match result {
            Ok(frames) => {
                self.buf.extend(frames.into_iter().take(max as usize));
            }
            Err(error) => {
                let oldest = self.shared.read().base.max(from);
                let lost = oldest - from;
                self.skipped += u64::from(lost);
                self.pos = oldest;
                tracing::warn!(
                    message_id = self.shared.message_id,
                    from,
                    lost,
                    %error,
                    "listener fell behind the ring; skipping to the oldest frame in memory"
                );
            }
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("message_id", &self.shared.message_id)
            .field("position", &self.pos)
            .field("lag", &self.lag())
            .finish()
    }
}

/// Copies the frames from `pos` (at most a batch) out of the ring into `buf`.
fn fill_from_ring(shared: &Shared, pos: u32, buf: &mut VecDeque<Bytes>) -> Fill {
    let ring = shared.read();
    if pos < ring.base {
        return Fill::Evicted { base: ring.base };
    }
    let end = ring.end();
    if pos >= end {
        return if ring.finished { Fill::End } else { Fill::Wait };
    }
    let start = (pos - ring.base) as usize;
    let n = RING_BATCH.min((end - pos) as usize);
    buf.extend(ring.frames.range(start..start + n).cloned());
    Fill::Got
}

/// Calls the source on tokio's blocking pool (inline when not inside a runtime).
async fn read_source(
    source: Arc<dyn FrameSource>,
    message_id: i64,
    from: u32,
    max: u32,
) -> Result<Vec<Bytes>, CatchUpError> {
    let read = move || source.read_range(message_id, from, max);
    let frames = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(read)
            .await
            .map_err(|e| CatchUpError::Task(e.to_string()))?,
        Err(_) => read(),
    }
    .map_err(CatchUpError::Source)?;
    if frames.is_empty() {
        Err(CatchUpError::Empty)
    } else {
        Ok(frames)
    }
}
