//! What a leg plays, one 20 ms frame at a time and on time: a message while it is being
//! recorded (the live stream through a `Pacer`, with catch-up), a stored message (read from
//! the fragment store a second at a time, off the async threads), and prompts before either.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use ivm_media::codec::Codec;
use ivm_media::fanout::{Pacer, StreamHandle};
use ivm_media::fragment_store::FragmentStore;

/// Frames read from the store at a time (1 s).
const WINDOW: u32 = 50;

/// The audio of one message.
#[derive(Clone)]
pub enum Audio {
    /// Still being recorded (or just finished): the live stream.
    Live(StreamHandle),
    /// Complete and in the store.
    Stored { message_id: i64, codec: Codec, frames: u32 },
}

impl Audio {
    pub fn codec(&self) -> Codec {
        match self {
            Audio::Live(s) => s.codec(),
            Audio::Stored { codec, .. } => *codec,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, Audio::Live(s) if !s.is_finished())
    }
}

enum Source {
    Live {
        stream: StreamHandle,
        pacer: Pacer,
    },
    Stored {
        store: FragmentStore,
        message_id: i64,
        frames: u32,
        next: u32,
        buffer: VecDeque<Bytes>,
        /// A store read in flight; kept here so that a dropped `next` resumes it.
        pending: Option<ReadTask>,
    },
}

type ReadTask = tokio::task::JoinHandle<Result<Vec<Bytes>, ivm_media::fragment_store::FragmentStoreError>>;

/// Plays prompts, then a message, paced in real time.
pub struct Player {
    prompts: VecDeque<Bytes>,
    source: Source,
    codec: Codec,
    catch_up_speed: f64,
    tick: tokio::time::Interval,
    played: u32,
    /// Message frames passed over by [`Player::jump_to_live`] (never heard by this listener).
    skipped: u32,
}

impl Player {
    pub fn new(audio: Audio, store: FragmentStore, catch_up_speed: f64) -> Player {
        let codec = audio.codec();
        let source = match audio {
            Audio::Live(stream) => {
                let pacer = Pacer::new(stream.listen(), catch_up_speed);
                Source::Live { stream, pacer }
            }
            Audio::Stored { message_id, frames, .. } => Source::Stored {
                store,
                message_id,
                frames,
                next: 0,
                buffer: VecDeque::new(),
                pending: None,
            },
        };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Player {
            prompts: VecDeque::new(),
            source,
            codec,
            catch_up_speed,
            tick,
            played: 0,
            skipped: 0,
        }
    }

    /// Frames (in the message codec) to play before the message.
    pub fn with_prompts(mut self, frames: Vec<Bytes>) -> Player {
        self.prompts.extend(frames);
        self
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Message frames played so far.
    pub fn position(&self) -> u32 {
        self.played
    }

    /// Playback continues after a pause (the call was on hold): the cadence restarts from now.
    pub fn resume(&mut self) {
        if let Source::Live { pacer, .. } = &mut self.source {
            pacer.restart();
        }
        self.tick.reset();
    }

    /// Message frames passed over by a jump to live.
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// Skips to what is being recorded now (DTMF 1 joins the sender); false for a stored message.
    pub fn jump_to_live(&mut self) -> bool {
        match &mut self.source {
            Source::Live { stream, pacer } if !stream.is_finished() => {
                self.skipped += stream.frames().saturating_sub(self.played + self.skipped);
                *pacer = Pacer::new(stream.listen_from(stream.frames()), self.catch_up_speed);
                self.prompts.clear();
                true
            }
            _ => false,
        }
    }

    /// The next frame, when it is due; `None` at the end of the message.
    ///
    /// Cancel-safe: legs call this inside `select!` with RTP receive, so the future is dropped
    /// whenever the phone sends a packet (every 20 ms for a real phone). No frame is taken out of
    /// a queue before the last await: each await here (the tick, a store read, the pacer) loses
    /// nothing when dropped, and the frame is popped only once it is due.
    pub async fn next(&mut self) -> Option<Bytes> {
        if !self.prompts.is_empty() {
            self.tick.tick().await;
            return self.prompts.pop_front();
        }
        let frame = match &mut self.source {
            Source::Live { pacer, .. } => pacer.next().await.map(|f| f.payload),
            Source::Stored {
                store,
                message_id,
                frames,
                next,
                buffer,
                pending,
            } => {
                if buffer.is_empty() && *next < *frames {
                    let id = *message_id;
                    let task = pending.get_or_insert_with(|| {
                        let (store, from, max) = (store.clone(), *next, WINDOW.min(*frames - *next));
                        tokio::task::spawn_blocking(move || store.read_range(id, from, max))
                    });
                    let result = task.await;
                    *pending = None;
                    match result {
                        Ok(Ok(window)) if !window.is_empty() => {
                            *next += window.len() as u32;
                            buffer.extend(window);
                        }
                        Ok(Err(e)) => tracing::error!(message_id = id, error = %e, "playback: store read failed"),
                        _ => {}
                    }
                    if buffer.is_empty() {
                        *next = *frames; // nothing more can be read
                    }
                }
                if buffer.is_empty() {
                    None
                } else {
                    self.tick.tick().await;
                    buffer.pop_front()
                }
            }
        };
        if frame.is_some() {
            self.played += 1;
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use ivm_media::codec::Codec;
    use ivm_media::fragment_store::{FragmentStore, FragmentStoreConfig};

    use super::{Audio, Player};

    /// Frame `i` of the test message: every byte says which frame it is.
    fn frame(i: u32) -> Bytes {
        Bytes::from(vec![(i % 251) as u8; 160])
    }

    /// A leg awaits the next frame inside `select!` with RTP receive, and a real phone sends a
    /// packet every 20 ms: here an "RTP packet" arrives every 3 ms, dropping the pending
    /// `next()` each time. Every frame must still be played, once, in order.
    #[tokio::test]
    async fn a_stored_message_plays_whole_while_the_phone_sends_rtp() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = FragmentStoreConfig::new(dir.path().join("fragments"), dir.path().join("index.sqlite"));
        let (store, _) = FragmentStore::open(cfg).unwrap_or_else(|e| panic!("{e}"));
        const FRAMES: u32 = 60;
        for i in 0..FRAMES {
            store.append(7, Codec::Pcmu, i, frame(i));
        }
        store.finish(7);
        store.sync().unwrap_or_else(|e| panic!("{e}"));
        let audio = Audio::Stored {
            message_id: 7,
            codec: Codec::Pcmu,
            frames: FRAMES,
        };
        let prompt = vec![Bytes::from(vec![0xFFu8; 160]); 3];
        let mut player = Player::new(audio, store.clone(), 1.0).with_prompts(prompt.clone());
        let mut rtp = tokio::time::interval(Duration::from_millis(3));
        let (mut heard, mut interrupted) = (Vec::new(), 0u32);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                f = player.next() => match f {
                    Some(f) => heard.push(f),
                    None => break,
                },
                _ = rtp.tick() => interrupted += 1,
                _ = tokio::time::sleep_until(deadline) => panic!("playback did not end"),
            }
        }
        let mut want = prompt;
        want.extend((0..FRAMES).map(frame));
        assert_eq!(heard.len(), want.len(), "every frame played once");
        assert!(heard == want, "the frames in order, byte for byte");
        assert_eq!(player.position(), FRAMES);
        assert!(
            interrupted > FRAMES,
            "the phone's packets interrupted playback ({interrupted} times)"
        );
    }
}
