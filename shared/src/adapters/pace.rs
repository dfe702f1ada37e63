//! Throttle-aware pacing: a client-side token bucket per region and action category, sized like
//! EC2's own (API request throttling: DeregisterImage, DeleteSnapshot, ModifyImageAttribute and
//! friends share a bucket of 100 tokens refilled at 5 per second). Sending at the bucket's rate
//! keeps a large run near the refill rate instead of bouncing off `RequestLimitExceeded` and
//! backing off below it.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::ports::Pace;

/// A token bucket that waits for a token before each call.
#[derive(Debug)]
pub struct Pacer {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Pacer {
    /// A bucket of `burst` tokens refilled at `rate` per second, full at the start.
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.001);
        let burst = burst.max(1.0);
        Pacer {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn take_token(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let (tokens, at) = *state;
                let tokens =
                    (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Pace for Pacer {
    async fn take(&self) {
        self.take_token().await
    }

    /// The burst, then the refill over the window.
    fn capacity(&self, window: Duration) -> Option<usize> {
        Some((self.burst + self.rate * window.as_secs_f64()).floor() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_burst_is_free_then_calls_come_at_the_rate() {
        let pacer = Pacer::new(50.0, 5.0);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.take().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(20),
            "the burst does not wait"
        );
        for _ in 0..10 {
            pacer.take().await;
        }
        // 10 more tokens at 50/s: about 200 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_capacity_of_a_window_is_the_burst_and_the_refill() {
        let pacer = Pacer::new(5.0, 100.0);
        assert_eq!(pacer.capacity(Duration::ZERO), Some(100));
        assert_eq!(pacer.capacity(Duration::from_secs(900)), Some(4_600));
    }
}
