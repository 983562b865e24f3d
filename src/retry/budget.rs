//! The retry budget, shared per upstream: over a sliding 10-second window, retries may add at
//! most `ratio` of the calls plus `min_per_sec` per second. Past it, a call that wants to retry
//! gets the upstream's answer at once, so an outage does not multiply the load.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::time::Instant;

const WINDOW_SECS: u64 = 10;

/// A retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    start: Instant,
    /// (second, calls, retries), oldest first.
    buckets: Mutex<VecDeque<(u64, u64, u64)>>,
}

impl RetryBudget {
    /// A budget of `ratio` retries per call plus `min_per_sec` retries per second.
    pub fn new(ratio: f64, min_per_sec: f64) -> Self {
        RetryBudget {
            ratio,
            min_per_sec,
            start: Instant::now(),
            buckets: Mutex::new(VecDeque::new()),
        }
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut VecDeque<(u64, u64, u64)>) -> T) -> T {
        let now = self.start.elapsed().as_secs();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        while b.front().is_some_and(|(s, _, _)| s + WINDOW_SECS <= now) {
            b.pop_front();
        }
        if b.back().is_none_or(|(s, _, _)| *s != now) {
            b.push_back((now, 0, 0));
        }
        f(&mut b)
    }

    /// Records a call.
    pub fn deposit(&self) {
        self.with_bucket(|b| {
            if let Some(last) = b.back_mut() {
                last.1 += 1;
            }
        });
    }

    /// Takes one retry from the budget; false if it is spent.
    pub fn try_withdraw(&self) -> bool {
        let (ratio, floor) = (self.ratio, self.min_per_sec * WINDOW_SECS as f64);
        self.with_bucket(|b| {
            let calls: u64 = b.iter().map(|(_, c, _)| c).sum();
            let retries: u64 = b.iter().map(|(_, _, r)| r).sum();
            if (retries + 1) as f64 > floor + ratio * calls as f64 {
                return false;
            }
            if let Some(last) = b.back_mut() {
                last.2 += 1;
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_ratio_plus_floor() {
        let b = RetryBudget::new(0.2, 0.0);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..1000).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_some_retries_without_calls() {
        let b = RetryBudget::new(0.2, 1.0);
        let granted = (0..1000).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 10, "1/s over a 10 s window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let b = RetryBudget::new(0.0, 0.1);
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert!(b.try_withdraw());
    }
}
