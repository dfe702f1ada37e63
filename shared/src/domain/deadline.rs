//! When a run must stop starting work, so that it answers before Lambda ends it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// When a run must stop to finish cleanly before Lambda ends it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    stop_at: Option<Instant>,
}

impl Deadline {
    /// From the invocation's deadline (milliseconds since the epoch), less `margin`. A deadline
    /// already past when the invocation starts can only come from an emulator (`cargo lambda
    /// watch` sends a constant in 1970): it means "no deadline", bounded by `budget` when set.
    pub fn from_lambda(deadline_ms: u64, margin: Duration, budget: Option<Duration>) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let from_lambda = (deadline_ms > now_ms)
            .then(|| Duration::from_millis(deadline_ms - now_ms).saturating_sub(margin));
        let left = match (from_lambda, budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Deadline {
            stop_at: left.map(|d| Instant::now() + d),
        }
    }

    /// No deadline at all.
    pub fn none() -> Self {
        Deadline { stop_at: None }
    }

    /// A deadline that has already passed (a run that may start nothing).
    pub fn passed_already() -> Self {
        Deadline {
            stop_at: Some(Instant::now()),
        }
    }

    /// The time left before the run must stop (`None`: no deadline).
    pub fn left(&self) -> Option<Duration> {
        self.stop_at
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Whether the run must stop now.
    pub fn passed(&self) -> bool {
        self.stop_at.is_some_and(|t| Instant::now() >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Duration = Duration::from_millis(1000);

    #[test]
    fn a_deadline_in_1970_means_no_deadline() {
        assert!(!Deadline::from_lambda(600_000, MARGIN, None).passed());
    }

    #[test]
    fn a_deadline_in_1970_with_a_budget_of_zero_stops_at_once() {
        assert!(Deadline::from_lambda(600_000, MARGIN, Some(Duration::ZERO)).passed());
    }

    #[test]
    fn a_real_deadline_inside_the_margin_stops_at_once() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        assert!(Deadline::from_lambda(now + 500, MARGIN, None).passed());
        assert!(!Deadline::from_lambda(now + 60_000, MARGIN, None).passed());
    }
}
