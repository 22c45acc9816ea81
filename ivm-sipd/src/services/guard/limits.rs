//! The two counters the guard is made of, on a clock given by the caller (milliseconds): a
//! token bucket for request rates and a sliding window of recent events for failures.
//! Hand-written rather than `governor`: the guard keeps every counter of one source in one
//! map entry (four buckets, two windows) so that one lookup, one lock and one pruning pass
//! cover them all; a keyed `governor` limiter would be one map per counter with its own
//! clock, which the virtual-clock tests could not share.

use std::collections::VecDeque;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now_ms: u64) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at_ms: now_ms,
        }
    }

    /// Takes a token: `Ok` when there was one, else how many ms until there is.
    pub fn take(&mut self, rate: u32, burst: u32, now_ms: u64) -> Result<(), u64> {
        let rate = f64::from(rate.max(1));
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst.max(1)));
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / rate * 1000.0).ceil() as u64)
        }
    }
}

/// The times of the latest events, at most `limit` of them: enough to tell whether `limit`
/// happened within a window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    times: VecDeque<u64>,
}

impl Window {
    /// Records an event; returns how many fell within `window_ms` (up to `limit`).
    pub fn record(&mut self, now_ms: u64, window_ms: u64, limit: u32) -> u32 {
        self.forget_before(now_ms.saturating_sub(window_ms));
        self.times.push_back(now_ms);
        while self.times.len() > limit as usize {
            self.times.pop_front();
        }
        self.times.len() as u32
    }

    /// Drops the events before `t`.
    pub fn forget_before(&mut self, t: u64) {
        while self.times.front().is_some_and(|&e| e < t) {
            self.times.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate_and_says_when_to_come_back() {
        let mut b = Bucket::full(4, 0);
        for _ in 0..4 {
            assert_eq!(b.take(2, 4, 0), Ok(()));
        }
        assert_eq!(b.take(2, 4, 0), Err(500), "2 per second: the next token in 500 ms");
        assert_eq!(b.take(2, 4, 250), Err(250));
        assert_eq!(b.take(2, 4, 500), Ok(()));
        // A long pause refills up to the burst, not beyond.
        let taken = (0..10).filter(|_| b.take(2, 4, 60_000).is_ok()).count();
        assert_eq!(taken, 4);
    }

    #[test]
    fn a_window_counts_only_recent_events_and_keeps_at_most_its_limit() {
        let mut w = Window::default();
        assert_eq!(w.record(0, 1000, 3), 1);
        assert_eq!(w.record(400, 1000, 3), 2);
        assert_eq!(w.record(1200, 1000, 3), 2, "the event at 0 has left the window");
        assert_eq!(w.record(1300, 1000, 3), 3);
        assert_eq!(w.record(1301, 1000, 3), 3, "never more than the limit kept");
        w.forget_before(5000);
        assert!(w.is_empty());
    }
}
