//! Pacing of the SMS client: the submit rate limit and the reconnect backoff.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces `submit_sm`s at most `rate` per second. Idle time does not build up a burst; a late
/// wake-up is caught up so the average holds even when the timer is coarser than the interval.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Instant,
}

impl RateLimiter {
    /// `rate_per_sec` 0 means no limit.
    pub fn new(rate_per_sec: u32) -> RateLimiter {
        let interval = (rate_per_sec > 0).then(|| Duration::from_secs(1) / rate_per_sec);
        RateLimiter {
            interval,
            next: Instant::now(),
        }
    }

    /// Waits for the next send slot.
    pub async fn acquire(&mut self) {
        let Some(interval) = self.interval else { return };
        let now = Instant::now();
        let slot = self.next.max(now);
        self.next = slot + interval;
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }
}

/// Exponential reconnect delay from `min` doubling to `max`, each wait drawn from its upper half
/// so that many clients do not reconnect in step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let max = max.max(min);
        Backoff { min, max, current: min }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter: f64 = rand::random_range(0.5..=1.0);
        base.mul_f64(jitter).max(self.min.min(base))
    }

    /// Back to `min` (after a successful bind).
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(100));
        assert!(d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200));
        assert!(d[2] >= Duration::from_millis(200) && d[2] <= Duration::from_millis(400));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_millis(1000));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_sends() {
        let mut r = RateLimiter::new(100);
        let start = Instant::now();
        for _ in 0..50 {
            r.acquire().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(490) && took <= Duration::from_millis(510),
            "{took:?}"
        );
        let mut unlimited = RateLimiter::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            unlimited.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
