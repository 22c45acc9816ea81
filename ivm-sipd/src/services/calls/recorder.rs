//! Recording a message: every RTP frame from the speaker goes once into the message's live
//! fan-out stream and once into the fragment store, placed by its RTP timestamp so lost packets
//! become silence and every listener stays aligned. A small reorder buffer puts packets that
//! arrive out of order back in sequence; a new SSRC (the far end restarted its stream) continues
//! the message where it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ivm_media::codec::{Codec, FRAME_MS, SAMPLES_PER_FRAME};
use ivm_media::fanout::{self, StreamConfig, StreamHandle, StreamWriter};

use super::{Calls, StoreFrames};

/// A timestamp jump beyond this many frames (a minute) is not our stream.
const MAX_JUMP_FRAMES: u32 = 50 * 60;
/// Frames held back waiting for a late packet (60 ms): the reorder window.
const REORDER_FRAMES: usize = 3;

/// One message being recorded.
pub struct Recorder {
    message_id: i64,
    codec: Codec,
    writer: StreamWriter,
    handle: StreamHandle,
    /// The SSRC being recorded and the RTP timestamp that maps to frame 0 for it.
    origin: Option<(u32, u32)>,
    /// Frames received but not yet written, by index.
    pending: BTreeMap<u32, Bytes>,
    /// The next index to write.
    next: u32,
}

impl Recorder {
    /// Opens the live stream of `message_id` and makes it findable by retrieval.
    pub fn start(calls: &Calls, message_id: i64, codec: Codec) -> Recorder {
        let cfg = StreamConfig {
            ring_frames: calls.settings.ring_frames,
        };
        let source = Arc::new(StoreFrames(calls.fragments.clone()));
        let (writer, handle) = fanout::stream(message_id, codec, cfg, Some(source));
        calls.set_live(message_id, Some(handle.clone()));
        Recorder {
            message_id,
            codec,
            writer,
            handle,
            origin: None,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    pub fn handle(&self) -> StreamHandle {
        self.handle.clone()
    }

    /// One RTP payload with its SSRC and timestamp.
    pub fn on_audio(&mut self, calls: &Calls, ssrc: u32, ts: u32, payload: Bytes) {
        let highest = self
            .pending
            .keys()
            .next_back()
            .map_or(self.next, |i| (i + 1).max(self.next));
        let (stream, base) = *self.origin.get_or_insert((ssrc, ts));
        let base = if stream == ssrc {
            base
        } else {
            // A new stream continues after everything received so far.
            let base = ts.wrapping_sub(highest.wrapping_mul(SAMPLES_PER_FRAME as u32));
            self.origin = Some((ssrc, base));
            base
        };
        let index = ts.wrapping_sub(base) / SAMPLES_PER_FRAME as u32;
        if index < self.next || index > highest.saturating_add(MAX_JUMP_FRAMES) {
            return; // too late (already written) or not plausibly ours
        }
        self.pending.insert(index, payload);
        self.release(calls, false);
    }

    /// Writes pending frames in order: all that follow on, and, when more than the reorder
    /// window is waiting (or at the end), past a gap too.
    fn release(&mut self, calls: &Calls, all: bool) {
        while let Some((&index, _)) = self.pending.first_key_value() {
            if index != self.next && !all && self.pending.len() <= REORDER_FRAMES {
                break;
            }
            let Some((index, payload)) = self.pending.pop_first() else {
                break;
            };
            self.writer.push_at(index, payload.clone());
            calls.fragments.append(self.message_id, self.codec, index, payload);
            self.next = index + 1;
        }
    }

    /// Frames recorded so far.
    pub fn frames(&self) -> u32 {
        self.next
    }

    /// Ends the recording: listeners get the rest, the store flushes the tail. Returns the
    /// duration in milliseconds.
    pub fn finish(mut self, calls: &Calls) -> i64 {
        self.release(calls, true);
        self.writer.finish();
        calls.fragments.finish(self.message_id);
        calls.set_live(self.message_id, None);
        i64::from(self.next) * i64::from(FRAME_MS)
    }
}
