use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

/// A distinct payload per index (160 bytes like a real frame, the index in the first four).
fn payload(index: u32) -> Bytes {
    let mut data = vec![0x55u8; 160];
    data[..4].copy_from_slice(&index.to_be_bytes());
    Bytes::from(data)
}

fn cfg(ring_frames: u32) -> StreamConfig {
    StreamConfig { ring_frames }
}

/// Polls a future once: `Some` if it completed without waiting.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Reads a listener to the end and checks it got `range`, in order, with the right payloads.
async fn drain_and_check(mut listener: Listener, range: std::ops::Range<u32>) {
    let mut expected = range.start;
    while let Some(frame) = listener.next().await {
        assert_eq!(frame.index, expected, "in order, no gap, no duplicate");
        assert_eq!(frame.payload, payload(frame.index));
        expected += 1;
    }
    assert_eq!(expected, range.end, "every frame delivered");
    assert!(listener.next().await.is_none(), "None stays None");
}

/// A fake fragment store: what the flusher wrote, readable by range.
#[derive(Default)]
struct Store {
    frames: Mutex<Vec<Bytes>>,
    reads: AtomicUsize,
    /// Answer at most this many frames per read (0 = as asked).
    max_per_read: u32,
    fail: bool,
}

impl Store {
    fn append(&self, payload: Bytes) {
        self.frames.lock().unwrap().push(payload);
    }
}

impl FrameSource for Store {
    fn read_range(&self, message_id: i64, from: u32, max: u32) -> Result<Vec<Bytes>, String> {
        assert_eq!(message_id, 7);
        assert!(max > 0);
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err("segment log unreadable".into());
        }
        let max = if self.max_per_read > 0 {
            max.min(self.max_per_read)
        } else {
            max
        };
        let frames = self.frames.lock().unwrap();
        let from = (from as usize).min(frames.len());
        let to = (from + max as usize).min(frames.len());
        Ok(frames[from..to].to_vec())
    }
}

/// Pushes `range` into the store (as the flusher would) and then the ring.
fn record(writer: &StreamWriter, store: &Store, range: std::ops::Range<u32>) {
    for i in range {
        store.append(payload(i));
        assert_eq!(writer.push(payload(i)), i);
    }
}

#[tokio::test]
async fn fanout_listener_from_the_start_gets_every_frame_in_order() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), None);
    assert_eq!(
        (handle.message_id(), handle.codec(), handle.frames()),
        (7, Codec::Pcmu, 0)
    );
    let listener = tokio::spawn(drain_and_check(handle.listen(), 0..1000));
    for i in 0..1000 {
        assert_eq!(writer.push(payload(i)), i);
        if i % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!((writer.frames(), handle.frames()), (1000, 1000));
    assert!(!handle.is_finished());
    writer.finish();
    assert!(handle.is_finished());
    listener.await.unwrap();
}

#[tokio::test]
async fn fanout_late_listener_gets_the_backlog_at_once_then_the_live_tail() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), None);
    for i in 0..150 {
        writer.push(payload(i));
    }
    let mut listener = handle.listen();
    assert_eq!((listener.position(), listener.lag()), (0, 150));
    for i in 0..150 {
        let frame = poll_once(listener.next())
            .expect("backlog frames are ready at once")
            .unwrap();
        assert_eq!((frame.index, frame.payload), (i, payload(i)));
    }
    assert_eq!((listener.position(), listener.lag()), (150, 0));
    assert!(
        poll_once(listener.next()).is_none(),
        "at the live edge the listener waits"
    );
    let live = tokio::spawn(drain_and_check_from(listener, 150..400));
    for i in 150..400 {
        writer.push(payload(i));
        tokio::task::yield_now().await;
    }
    drop(writer); // finishes the stream
    live.await.unwrap();
}

async fn drain_and_check_from(listener: Listener, range: std::ops::Range<u32>) {
    assert_eq!(listener.position(), range.start);
    drain_and_check(listener, range).await;
}

#[tokio::test]
async fn fanout_listen_from_an_index_waits_for_it_and_ends_if_it_never_comes() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), None);
    for i in 0..10 {
        writer.push(payload(i));
    }
    let mut middle = handle.listen_from(4);
    let got: Vec<u32> = std::iter::from_fn(|| poll_once(middle.next()).flatten().map(|f| f.index)).collect();
    assert_eq!(got, (4..10).collect::<Vec<_>>());
    let mut ahead = handle.listen_from(20);
    assert_eq!(ahead.lag(), 0);
    assert!(poll_once(ahead.next()).is_none());
    for i in 10..21 {
        writer.push(payload(i));
    }
    assert_eq!(ahead.next().await.unwrap().index, 20);
    let mut beyond = handle.listen_from(100);
    writer.finish();
    assert!(beyond.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_hundred_listeners_one_never_polled_writer_never_blocks() {
    let store = Arc::new(Store::default());
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), Some(store.clone()));
    let stuck = handle.listen(); // never polled
    let listeners: Vec<_> = (0..99)
        .map(|_| tokio::spawn(drain_and_check(handle.listen(), 0..10_000)))
        .collect();
    let writer_thread = {
        let store = store.clone();
        std::thread::spawn(move || {
            record(&writer, &store, 0..10_000);
            writer.finish();
        })
    };
    writer_thread.join().unwrap();
    for listener in listeners {
        listener.await.unwrap();
    }
    assert_eq!((stuck.position(), stuck.lag()), (0, 10_000));
}

#[tokio::test]
async fn fanout_writer_completes_before_any_listener_runs() {
    // On a single-threaded runtime the listener tasks cannot run while the test body pushes:
    // the writer finishing all 10,000 frames proves it never waits for a listener.
    let store = Arc::new(Store::default());
    let (writer, handle) = stream(7, Codec::Pcma, cfg(3000), Some(store.clone()));
    let listeners: Vec<_> = (0..100)
        .map(|_| tokio::spawn(drain_and_check(handle.listen(), 0..10_000)))
        .collect();
    record(&writer, &store, 0..10_000);
    writer.finish();
    assert_eq!(handle.oldest_in_memory(), 7000);
    for listener in listeners {
        listener.await.unwrap();
    }
    // The 7000 evicted frames came from the store, in 250-frame reads shared by nobody.
    assert_eq!(store.reads.load(Ordering::Relaxed), 100 * 7000 / 250);
}

#[tokio::test]
async fn fanout_evicted_frames_come_from_the_source() {
    let store = Arc::new(Store {
        max_per_read: 7,
        ..Store::default()
    });
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(100), Some(store.clone()));
    record(&writer, &store, 0..1000);
    assert_eq!(handle.oldest_in_memory(), 900);
    let mut listener = handle.listen();
    for i in 0..500 {
        let frame = listener.next().await.unwrap();
        assert_eq!((frame.index, frame.payload), (i, payload(i)));
    }
    // Meanwhile the writer goes on (the ring moves past frames the listener was about to read).
    record(&writer, &store, 1000..1500);
    writer.finish();
    drain_and_check_from(listener, 500..1500).await;
    // Partial answers (7 frames) are fine: the listener asks again for the rest.
    assert!(store.reads.load(Ordering::Relaxed) >= 1400 / 7);
}

#[tokio::test]
async fn fanout_without_source_a_late_listener_skips_to_the_oldest_frame_in_memory() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(100), None);
    for i in 0..500 {
        writer.push(payload(i));
    }
    writer.finish();
    let mut listener = handle.listen();
    let first = listener.next().await.unwrap();
    assert_eq!((first.index, listener.skipped()), (400, 400));
    let mut count = 1;
    while let Some(frame) = listener.next().await {
        assert_eq!(frame.index, 400 + count);
        count += 1;
    }
    assert_eq!(count, 100);
}

#[tokio::test]
async fn fanout_a_failing_source_is_a_skip_not_a_hang() {
    let store = Arc::new(Store {
        fail: true,
        ..Store::default()
    });
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(10), Some(store.clone()));
    record(&writer, &store, 0..50);
    let mut listener = handle.listen_from(5);
    assert_eq!(listener.next().await.unwrap().index, 40);
    assert_eq!(listener.skipped(), 35);
    assert_eq!(store.reads.load(Ordering::Relaxed), 1);

    // A source that has nothing (the flusher was behind) is the same.
    let empty = Arc::new(Store::default());
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(10), Some(empty.clone()));
    for i in 0..50 {
        writer.push(payload(i));
    }
    let mut listener = handle.listen();
    assert_eq!(listener.next().await.unwrap().index, 40);
    assert_eq!(listener.skipped(), 40);
}

#[tokio::test]
async fn fanout_finish_lets_listeners_drain_then_ends_them() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), None);
    let waiting = tokio::spawn(drain_and_check(handle.listen(), 0..30));
    tokio::task::yield_now().await; // the task is now waiting for the first frame
    let mut behind = handle.listen();
    for i in 0..30 {
        writer.push(payload(i));
    }
    writer.finish();
    writer.finish(); // idempotent
    assert_eq!(writer.push(payload(99)), 30, "a push after finish is dropped");
    writer.push_at(31, payload(31));
    assert_eq!(handle.frames(), 30);
    assert!(!behind.is_done());
    for i in 0..30 {
        assert_eq!(behind.next().await.unwrap().index, i);
    }
    assert!(behind.is_done());
    assert!(behind.next().await.is_none());
    waiting.await.unwrap();
}

#[tokio::test]
async fn fanout_a_waiting_listener_wakes_on_finish() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(3000), None);
    let mut listener = handle.listen();
    let waiting = tokio::spawn(async move { listener.next().await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    drop(writer);
    assert_eq!(waiting.await.unwrap(), None);
}

#[tokio::test]
async fn fanout_push_at_fills_gaps_with_silence() {
    let (writer, handle) = stream(7, Codec::Pcma, cfg(10_000), None);
    writer.push_at(0, payload(0));
    writer.push_at(3, payload(3));
    writer.push_at(2, payload(2)); // late: already filled with silence, dropped
    writer.push_at(3, payload(3)); // duplicate, dropped
    writer.push_at(4, Bytes::from_static(&[1, 2, 3]));
    assert_eq!(writer.frames(), 5);
    let mut listener = handle.listen();
    let silence = Bytes::from(vec![Codec::Pcma.silence(); 160]);
    let got: Vec<Frame> = std::iter::from_fn(|| poll_once(listener.next()).flatten()).collect();
    let expected = [
        payload(0),
        silence.clone(),
        silence,
        payload(3),
        Bytes::from_static(&[1, 2, 3]),
    ];
    assert_eq!(got.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(got.into_iter().map(|f| f.payload).collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn fanout_push_at_shortens_an_over_long_gap() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(10_000), None);
    writer.push_at(0, payload(0));
    // A jump of 1,000,000 frames (a bogus timestamp) becomes MAX_GAP_FRAMES of silence…
    writer.push_at(1_000_000, payload(1));
    assert_eq!(writer.frames(), MAX_GAP_FRAMES + 2);
    // …and the indexes after it stay continuous.
    writer.push_at(1_000_001, payload(2));
    writer.push_at(1_000_000, payload(9)); // duplicate under the new mapping
    writer.push_at(5, payload(9)); // far in the past
    assert_eq!(writer.frames(), MAX_GAP_FRAMES + 3);
    writer.finish();
    let mut listener = handle.listen();
    let mut last = None;
    while let Some(frame) = listener.next().await {
        last = Some(frame);
    }
    assert_eq!(
        last,
        Some(Frame {
            index: MAX_GAP_FRAMES + 2,
            payload: payload(2)
        })
    );
    // Near the end of the index space frames are dropped rather than wrapped.
    let (writer, _handle) = stream(7, Codec::Pcmu, cfg(10), None);
    writer.push_at(u32::MAX, payload(0));
    writer.push_at(u32::MAX - 1, payload(0));
    assert_eq!(writer.frames(), MAX_GAP_FRAMES + 1);
}

#[test]
fn fanout_ring_of_zero_keeps_one_frame_and_futures_are_send() {
    let (writer, handle) = stream(7, Codec::Pcmu, cfg(0), None);
    writer.push(payload(0));
    writer.push(payload(1));
    assert_eq!(handle.oldest_in_memory(), 1);
    let mut listener = handle.listen_from(1);
    assert_eq!(poll_once(listener.next()).flatten().map(|f| f.index), Some(1));

    fn is_send<T: Send>(_: &T) {}
    is_send(&listener.next());
    let mut pacer = Pacer::new(handle.listen(), 2.0);
    is_send(&pacer.next());
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<StreamWriter>();
    is_send_sync::<StreamHandle>();
    is_send_sync::<Listener>();
    is_send_sync::<Pacer>();
}

/// Push throughput with listeners: `cargo test -p ivm-media --release --lib fanout_bench -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints figures"]
fn fanout_bench_push_rate() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frame = Bytes::from(vec![0xFFu8; 160]);
    for (label, listeners, polled, frames) in [
        ("no listener", 0, false, 1_000_000u32),
        ("100 listeners, never polled", 100, false, 1_000_000),
        ("100 listeners, live", 100, true, 200_000),
    ] {
        let (writer, handle) = stream(1, Codec::Pcmu, cfg(frames), None);
        let idle: Vec<Listener> = if polled {
            Vec::new()
        } else {
            (0..listeners).map(|_| handle.listen()).collect()
        };
        let delivered = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = if polled {
            (0..listeners)
                .map(|_| {
                    let (mut listener, delivered) = (handle.listen(), delivered.clone());
                    runtime.spawn(async move {
                        while listener.next().await.is_some() {
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let start = Instant::now();
        for _ in 0..frames {
            writer.push(frame.clone());
        }
        let push_time = start.elapsed();
        writer.finish();
        runtime.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        let all_time = start.elapsed();
        let pushes = f64::from(frames) / push_time.as_secs_f64();
        println!(
            "{label}: {frames} pushes in {push_time:?} = {pushes:.0} pushes/s ({:.0} ns/push, {:.0}x the 50/s of one live message); \
             {} frames delivered in {all_time:?} = {:.0} deliveries/s",
            push_time.as_nanos() as f64 / f64::from(frames),
            pushes / 50.0,
            delivered.load(Ordering::Relaxed),
            delivered.load(Ordering::Relaxed) as f64 / all_time.as_secs_f64().max(1e-9),
        );
        drop(idle);
    }

    // The live case: 100 listeners all waiting at the live edge, so every push wakes 100 tasks.
    // Each push is timed alone, then the writer waits until all 100 have the frame.
    let frames = 20_000u32;
    let (writer, handle) = stream(1, Codec::Pcmu, cfg(3000), None);
    let delivered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (mut listener, delivered) = (handle.listen(), delivered.clone());
            runtime.spawn(async move {
                while listener.next().await.is_some() {
                    delivered.fetch_add(1, Ordering::Release);
                }
            })
        })
        .collect();
    let (mut in_push, mut fan_out) = (Duration::ZERO, Duration::ZERO);
    for k in 1..=frames as usize {
        let start = Instant::now();
        writer.push(frame.clone());
        in_push += start.elapsed();
        while delivered.load(Ordering::Acquire) < 100 * k {
            std::thread::yield_now();
        }
        fan_out += start.elapsed();
    }
    writer.finish();
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    println!(
        "100 listeners waiting at the live edge: {:.0} ns per push (the writer's cost, waking 100 tasks) = {:.0} pushes/s; \
         {:.1} µs from push until all 100 listeners have the frame",
        in_push.as_nanos() as f64 / f64::from(frames),
        f64::from(frames) / in_push.as_secs_f64(),
        fan_out.as_secs_f64() * 1e6 / f64::from(frames),
    );
}
