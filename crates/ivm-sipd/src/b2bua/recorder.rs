//! Recording a message: every RTP frame from the speaker goes once into the message's live
//! fan-out stream and once into the fragment store, placed by its RTP timestamp so lost packets
//! become silence and every listener stays aligned.

use std::sync::Arc;

use bytes::Bytes;
use ivm_media::codec::{Codec, FRAME_MS, SAMPLES_PER_FRAME};
use ivm_media::fanout::{self, StreamConfig, StreamHandle, StreamWriter};

use super::{Calls, StoreFrames};

/// A timestamp jump beyond this many frames (a minute) is not our stream.
const MAX_JUMP_FRAMES: u32 = 50 * 60;

/// One message being recorded.
pub struct Recorder {
    message_id: i64,
    codec: Codec,
    writer: StreamWriter,
    handle: StreamHandle,
    first_ts: Option<u32>,
    frames: u32,
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
            first_ts: None,
            frames: 0,
        }
    }

    pub fn handle(&self) -> StreamHandle {
        self.handle.clone()
    }

    /// One RTP payload with its timestamp.
    pub fn on_audio(&mut self, calls: &Calls, ts: u32, payload: Bytes) {
        let base = *self.first_ts.get_or_insert(ts);
        let index = ts.wrapping_sub(base) / SAMPLES_PER_FRAME as u32;
        if index > self.frames.saturating_add(MAX_JUMP_FRAMES) {
            return;
        }
        self.writer.push_at(index, payload.clone());
        calls.fragments.append(self.message_id, self.codec, index, payload);
        self.frames = self.frames.max(index + 1);
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Ends the recording: listeners get the rest, the store flushes the tail. Returns the
    /// duration in milliseconds.
    pub fn finish(self, calls: &Calls) -> i64 {
        self.writer.finish();
        calls.fragments.finish(self.message_id);
        calls.set_live(self.message_id, None);
        i64::from(self.frames) * i64::from(FRAME_MS)
    }
}
