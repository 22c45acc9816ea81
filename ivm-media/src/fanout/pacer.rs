//! Pacing a listener for RTP: when each frame goes out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Frame, Listener};
use crate::codec::FRAME_MS;

/// Paces a listener for sending RTP: one frame per 20 ms in real time; when `catch_up_speed` is
/// above 1.0 and the listener is behind the writer, frames go out that many times faster until it
/// reaches the live edge, never faster than frames exist. Catch-up applies only while the message
/// is still being recorded: once the writer has finished there is no live edge to reach and the
/// rest plays in real time (a retrieval of a complete message is not sped up).
///
/// Frames are scheduled on absolute deadlines (`previous deadline + interval`, on
/// `tokio::time`), so timer lateness never accumulates into drift: a frame that went out late is
/// followed by the next one sooner. The only time the schedule is re-anchored is an underrun,
/// when the next frame did not exist at its deadline: it then goes out as soon as the writer
/// produces it and the 20 ms cadence restarts from there (the listener does not burst to make up
/// for the writer's pause).
///
/// The first frame goes out at once.
pub struct Pacer {
    listener: Listener,
    clock: PaceClock,
    /// Interval while at the live edge.
    real_time: Duration,
    /// Interval while behind (equal to `real_time` without catch-up).
    catch_up: Duration,
    /// When the next frame is due; `None` before the first.
    deadline: Option<Instant>,
}

impl Pacer {
    /// A pacer over `listener`. A `catch_up_speed` that is not a number above 1.0 means no
    /// catch-up (real time only).
    pub fn new(listener: Listener, catch_up_speed: f64) -> Self {
        Pacer::with_clock(listener, catch_up_speed, PaceClock::Tokio)
    }

    fn with_clock(listener: Listener, catch_up_speed: f64, clock: PaceClock) -> Self {
        let real_time = Duration::from_millis(u64::from(FRAME_MS));
        let speed = if catch_up_speed.is_finite() && catch_up_speed > 1.0 {
            catch_up_speed
        } else {
            1.0
        };
        // At least 1 µs so that an absurd speed still yields between frames' deadlines.
        let catch_up_nanos = (real_time.as_nanos() as f64 / speed).round().max(1_000.0) as u64;
        Pacer {
            listener,
            clock,
            real_time,
            catch_up: Duration::from_nanos(catch_up_nanos),
            deadline: None,
        }
    }

    /// The next frame, at its time; `None` once the stream is finished and every frame was sent.
    pub async fn next(&mut self) -> Option<Frame> {
        if let Some(deadline) = self.deadline {
            self.clock.sleep_until(deadline).await;
        }
        // A frame that already exists goes out on its deadline; one we have to wait for restarts
        // the schedule when it comes (underrun).
        let ready = self.listener.lag() > 0;
        let frame = self.listener.next().await?;
        let sent = match self.deadline {
            Some(deadline) if ready => deadline,
            Some(deadline) => deadline.max(self.clock.now()),
            None => self.clock.now(),
        };
        // Catch up only towards a live edge: a finished message plays in real time.
        let recording = !self.listener.shared.finished.load(Ordering::Acquire);
        let interval = if recording && self.listener.lag() > 0 {
            self.catch_up
        } else {
            self.real_time
        };
        self.deadline = Some(sent + interval);
        Some(frame)
    }

    /// Starts the schedule again from now, after the listener was not asked for frames for a
    /// while (a call on hold): the next frame goes out at once and the cadence follows from
    /// there, instead of a burst making up for the pause.
    pub fn restart(&mut self) {
        self.deadline = None;
    }

    /// The paced listener (position, lag, skipped frames).
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Gives the listener back.
    pub fn into_listener(self) -> Listener {
        self.listener
    }
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("listener", &self.listener)
            .field("catch_up", &self.catch_up)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The time a pacer runs on: tokio's, or a virtual clock in tests (the crate does not enable
/// tokio's `test-util`, so `tokio::time::pause` is not available here).
#[derive(Clone)]
enum PaceClock {
    Tokio,
    #[cfg(test)]
    Virtual(std::sync::Arc<virtual_clock::VirtualClock>),
}

impl PaceClock {
    fn now(&self) -> Instant {
        match self {
            PaceClock::Tokio => Instant::now(),
            #[cfg(test)]
            PaceClock::Virtual(clock) => clock.now(),
        }
    }

    async fn sleep_until(&self, deadline: Instant) {
        match self {
            PaceClock::Tokio => tokio::time::sleep_until(deadline).await,
            #[cfg(test)]
            PaceClock::Virtual(clock) => clock.sleep_until(deadline).await,
        }
    }
}

#[cfg(test)]
pub(super) mod virtual_clock {
    //! A discrete-event clock: time stands still until the test driver advances it to the
    //! earliest pending sleep, after letting every task run until it is blocked.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use tokio::time::Instant;

    pub struct VirtualClock {
        start: Instant,
        state: Mutex<State>,
    }

    struct State {
        elapsed: Duration,
        sleepers: Vec<(Instant, Waker)>,
    }

    impl VirtualClock {
        pub fn new() -> Arc<Self> {
            Arc::new(VirtualClock {
                start: Instant::now(),
                state: Mutex::new(State {
                    elapsed: Duration::ZERO,
                    sleepers: Vec::new(),
                }),
            })
        }

        pub fn start(&self) -> Instant {
            self.start
        }

        pub fn now(&self) -> Instant {
            self.start + self.state.lock().unwrap().elapsed
        }

        pub fn elapsed(&self) -> Duration {
            self.state.lock().unwrap().elapsed
        }

        pub fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
            Sleep { clock: self, deadline }
        }

        /// Moves time to the earliest pending deadline and wakes its sleepers; false when nobody
        /// sleeps.
        pub fn advance(&self) -> bool {
            let mut state = self.state.lock().unwrap();
            let Some(earliest) = state.sleepers.iter().map(|(deadline, _)| *deadline).min() else {
                return false;
            };
            let now = self.start + state.elapsed;
            if earliest > now {
                state.elapsed = earliest - self.start;
            }
            let now = self.start + state.elapsed;
            let (due, pending) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition(|(d, _)| *d <= now);
            state.sleepers = pending;
            drop(state);
            for (_, waker) in due {
                waker.wake();
            }
            true
        }

        /// Lets every task run until blocked, then advances time, until `done` holds.
        pub async fn drive(&self, mut done: impl FnMut() -> bool) {
            loop {
                for _ in 0..64 {
                    tokio::task::yield_now().await;
                }
                if done() {
                    return;
                }
                assert!(self.advance(), "virtual time: every task is blocked and nobody sleeps");
            }
        }
    }

    pub struct Sleep<'a> {
        clock: &'a VirtualClock,
        deadline: Instant,
    }

    impl Future for Sleep<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = self.clock.state.lock().unwrap();
            if self.clock.start + state.elapsed >= self.deadline {
                Poll::Ready(())
            } else {
                state.sleepers.push((self.deadline, cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;

    use super::virtual_clock::VirtualClock;
    use super::{PaceClock, Pacer};
    use crate::codec::Codec;
    use crate::fanout::{StreamConfig, StreamWriter, stream};

    fn payload(index: u32) -> Bytes {
        Bytes::copy_from_slice(&index.to_be_bytes())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs a pacer over the message until it ends and returns (index, virtual send time) pairs.
    /// `prefill` frames exist at time 0; then `live` frames are pushed, frame `prefill + k` at
    /// `first_live + k * 20 ms`, and the stream finishes (at once when `live` is 0).
    async fn run(speed: f64, prefill: u32, live: u32, first_live: Duration) -> Vec<(u32, Duration)> {
        let clock = VirtualClock::new();
        let (writer, handle) = stream(1, Codec::Pcmu, StreamConfig { ring_frames: 10_000 }, None);
        for i in 0..prefill {
            writer.push(payload(i));
        }
        if live == 0 {
            writer.finish();
        }
        let sent = Arc::new(Mutex::new(Vec::new()));
        let pacer_task = {
            let (clock, sent) = (clock.clone(), sent.clone());
            let mut pacer = Pacer::with_clock(handle.listen(), speed, PaceClock::Virtual(clock.clone()));
            tokio::spawn(async move {
                while let Some(frame) = pacer.next().await {
                    assert_eq!(frame.payload, payload(frame.index));
                    sent.lock().unwrap().push((frame.index, clock.elapsed()));
                }
            })
        };
        let writer_task = {
            let clock = clock.clone();
            tokio::spawn(async move {
                let writer: StreamWriter = writer;
                for k in 0..live {
                    clock.sleep_until(clock.start() + first_live + ms(20) * k).await;
                    writer.push(payload(prefill + k));
                }
                // Dropping the writer finishes the stream.
            })
        };
        clock
            .drive(|| pacer_task.is_finished() && writer_task.is_finished())
            .await;
        pacer_task.await.unwrap();
        let sent = sent.lock().unwrap().clone();
        let indexes: Vec<u32> = sent.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            indexes,
            (0..prefill + live).collect::<Vec<_>>(),
            "every frame, in order, once"
        );
        sent
    }

    #[tokio::test]
    async fn fanout_pacer_real_time_is_20_ms_per_frame_without_drift() {
        // 200 frames already recorded: real time means 20 ms apart even though all exist.
        let sent = run(1.0, 200, 0, Duration::ZERO).await;
        for (i, at) in &sent {
            assert_eq!(*at, ms(20) * *i, "frame {i}");
        }
        // 100 frames behind a live writer: without catch-up the listener stays 100 frames behind.
        let sent = run(1.0, 100, 50, ms(15)).await;
        for (i, at) in &sent {
            assert_eq!(*at, ms(20) * *i, "frame {i}");
        }
        // Live: frames are pushed 20 ms apart (3 ms after the pacer's tick); the pacer waits for
        // frame 0, then keeps a 20 ms cadence anchored on it.
        let sent = run(1.0, 0, 100, ms(3)).await;
        for (i, at) in &sent {
            assert_eq!(*at, ms(3) + ms(20) * *i, "frame {i}");
        }
    }

    #[tokio::test]
    async fn fanout_pacer_speed_is_clamped_to_real_time() {
        for speed in [0.5, -3.0, f64::NAN, f64::INFINITY, 1.0] {
            let sent = run(speed, 50, 0, Duration::ZERO).await;
            assert_eq!(sent.last().unwrap().1, ms(20) * 49, "speed {speed}");
        }
    }

    #[tokio::test]
    async fn fanout_pacer_catch_up_closes_a_100_frame_lag_then_runs_at_20_ms() {
        // 100 frames (2 s) recorded before the listener starts; the writer then pauses until 1 s
        // and goes on live: at 2x the backlog is played in 1 s (10 ms per frame), then 20 ms.
        let sent = run(2.0, 100, 150, ms(1000)).await;
        for (i, at) in &sent[..100] {
            assert_eq!(*at, ms(10) * *i, "catch-up frame {i}");
        }
        assert_eq!(sent[99].1, ms(990), "lag closed in ~1 s");
        for (i, at) in &sent[100..] {
            assert_eq!(*at, ms(1010) + ms(20) * (*i - 100), "live frame {i}");
        }
    }

    #[tokio::test]
    async fn fanout_pacer_catch_up_against_a_live_writer() {
        // 100 frames behind while the writer keeps recording (frame 100 + k at 15 + 20k ms): at 2x
        // the listener gains 1 frame per 20 ms, so the lag closes after ~2 s, then 20 ms cadence.
        let sent = run(2.0, 100, 300, ms(15)).await;
        let caught_up = sent.windows(2).position(|w| w[1].1 - w[0].1 == ms(20)).unwrap() + 1;
        assert_eq!(caught_up, 198, "frame 197 at 1970 ms is the last one behind");
        for (i, at) in &sent[..caught_up] {
            assert_eq!(*at, ms(10) * *i, "catch-up frame {i}");
        }
        for (i, at) in &sent[caught_up..] {
            assert_eq!(*at, ms(1990) + ms(20) * (*i - 198), "live frame {i}");
        }
    }

    #[tokio::test]
    async fn fanout_pacer_does_not_speed_up_a_finished_message() {
        let sent = run(2.0, 100, 0, Duration::ZERO).await;
        for (i, at) in &sent {
            assert_eq!(*at, ms(20) * *i, "frame {i}");
        }
    }

    #[tokio::test]
    async fn fanout_pacer_on_tokio_time_waits_between_frames() {
        // The real clock: only a lower bound is checked (a sleep never ends early).
        let (writer, handle) = stream(1, Codec::Pcmu, StreamConfig::default(), None);
        for i in 0..5 {
            writer.push(payload(i));
        }
        let mut pacer = Pacer::new(handle.listen(), 1.0);
        let start = std::time::Instant::now();
        for i in 0..5 {
            assert_eq!(pacer.next().await.unwrap().index, i);
        }
        assert!(start.elapsed() >= ms(80));
        assert_eq!(pacer.listener().position(), 5);
        drop(writer);
        assert!(pacer.next().await.is_none());
        assert!(pacer.into_listener().is_done());
    }

    #[tokio::test]
    async fn fanout_pacer_restarts_the_cadence_after_an_underrun() {
        // Frames 0..10 exist; the writer stalls until 500 ms, then goes on 20 ms apart. The pacer
        // does not burst to make up for the stall.
        let sent = run(1.0, 10, 20, ms(500)).await;
        for (i, at) in &sent[..10] {
            assert_eq!(*at, ms(20) * *i);
        }
        for (i, at) in &sent[10..] {
            assert_eq!(*at, ms(500) + ms(20) * (*i - 10), "frame {i}");
        }
    }
}
