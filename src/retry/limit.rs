//! The adaptive rate limiter in front of the upstream: every attempt takes a permit from the
//! limiter of its key (default: AccessKeyId + region + action, the API's throttling scope).
//!
//! The rule is AIMD, as TCP and AWS's adaptive retry mode use it:
//! - on a throttling answer, the key's rate is multiplied by `decrease` (default 0.5), down to
//!   `min_rate` (default 1/s: the docs' advice is to probe a throttled API at 1 QPS), at most
//!   once per `decrease_cooldown` (default 50 ms); when the key really sent fewer attempts in
//!   the last second than its limit, the cut starts from that measured rate instead (as AWS's
//!   adaptive retry mode does), so a limit far above the API's comes down in one or two cuts;
//! - while calls succeed, the rate grows by `increase` permits/s per second (default 10), up to
//!   `max_rate` (default 1000/s: gpdb's documented per-account limit for most actions).
//!
//! The permit is taken before the attempt is signed, so a wait never makes a signature stale,
//! and a wait never goes past the call's deadline. governor does the metering; since a governor
//! quota is fixed, a rate change swaps in a new limiter for that key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Limiter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterSettings {
    /// Starting rate per key (permits/s).
    pub initial_rate: f64,
    /// Highest rate per key.
    pub max_rate: f64,
    /// Lowest rate per key.
    pub min_rate: f64,
    /// Factor applied on throttling, in (0, 1).
    pub decrease: f64,
    /// Permits/s added per second of successful calls.
    pub increase: f64,
    /// At most one cut per this period: a burst of throttling answers to requests that were
    /// all sent at the old rate is one signal, not many (as TCP cuts once per round trip).
    pub decrease_cooldown: Duration,
    /// Which parts of a call make its key.
    pub scope: Vec<ScopePart>,
}

/// A part of the limiter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopePart {
    /// The AccessKeyId.
    AccessKey,
    /// The `RegionId` parameter (or the host when absent).
    Region,
    /// The action.
    Action,
    /// The API host.
    Host,
}

/// The next rate after a throttling answer.
pub fn decreased(rate: f64, s: &LimiterSettings) -> f64 {
    (rate * s.decrease).max(s.min_rate)
}

/// The rate after `elapsed` of successful calls (at most one second counts at a time, so a
/// key idle for an hour does not jump back to full speed on its first success).
pub fn increased(rate: f64, s: &LimiterSettings, elapsed: Duration) -> f64 {
    (rate + s.increase * elapsed.as_secs_f64().min(1.0)).min(s.max_rate)
}

fn governor_for(rate: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    // Allow a tenth of a second's worth of permits at once (at least one).
    let burst =
        NonZeroU32::new((rate / 10.0).ceil().clamp(1.0, 1e6) as u32).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period).map_or_else(
        || Quota::per_second(NonZeroU32::MIN),
        |q| q.allow_burst(burst),
    );
    RateLimiter::direct(quota)
}

/// One key's limiter.
#[derive(Debug)]
pub struct KeyLimiter {
    state: Mutex<Metered>,
    last_cut: Mutex<Option<Instant>>,
    last_raise: Mutex<Instant>,
    sent: Mutex<SendRate>,
}

/// A key's AIMD rate and the governor limiter metering it.
#[derive(Debug)]
struct Metered {
    /// The AIMD rate.
    rate: f64,
    /// The rate `limiter` was built for. A new governor limiter starts with a full burst, so
    /// it is rebuilt only on a cut or once the rate has grown by 10 %, not on every success.
    metered: f64,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// Attempts sent in the last second, in ten 100 ms slots.
#[derive(Debug)]
struct SendRate {
    origin: Instant,
    slots: [(u64, u32); 10],
}

impl SendRate {
    fn slot(&self, now: Instant) -> u64 {
        (now.duration_since(self.origin).as_millis() / 100) as u64
    }

    fn record(&mut self, now: Instant) {
        let id = self.slot(now);
        let s = &mut self.slots[(id % 10) as usize];
        if s.0 != id {
            *s = (id, 0);
        }
        s.1 += 1;
    }

    /// Attempts in the last second: the sending rate actually reached, per second.
    fn per_second(&self, now: Instant) -> f64 {
        let id = self.slot(now);
        self.slots
            .iter()
            .filter(|(s, _)| *s <= id && s.saturating_add(10) > id)
            .map(|(_, n)| f64::from(*n))
            .sum()
    }
}

impl KeyLimiter {
    fn new(rate: f64) -> Self {
        KeyLimiter {
            state: Mutex::new(Metered {
                rate,
                metered: rate,
                limiter: Arc::new(governor_for(rate)),
            }),
            last_cut: Mutex::new(None),
            last_raise: Mutex::new(Instant::now()),
            sent: Mutex::new(SendRate {
                origin: Instant::now(),
                slots: [(u64::MAX, 0); 10],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Metered> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    fn set(&self, rate: f64) {
        let mut s = self.lock();
        s.rate = rate;
        if rate < s.metered || rate >= s.metered * 1.1 {
            s.metered = rate;
            s.limiter = Arc::new(governor_for(rate));
        }
    }
}

/// Why no permit was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no rate-limiter permit before the call's deadline")]
pub struct NoPermit;

/// The limiters of every key.
#[derive(Debug)]
pub struct AdaptiveLimiter {
    settings: LimiterSettings,
    keys: Mutex<HashMap<String, Arc<KeyLimiter>>>,
}

/// Upper bound on tracked keys; idle keys at full rate are dropped past it.
const MAX_KEYS: usize = 10_000;

impl AdaptiveLimiter {
    /// A limiter with these settings.
    pub fn new(settings: LimiterSettings) -> Self {
        AdaptiveLimiter {
            settings,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    /// The key for a call.
    pub fn key(&self, key_id: &str, region: &str, action: &str, host: &str) -> String {
        let mut k = String::with_capacity(64);
        for part in &self.settings.scope {
            k.push_str(match part {
                ScopePart::AccessKey => key_id,
                ScopePart::Region => region,
                ScopePart::Action => action,
                ScopePart::Host => host,
            });
            k.push('\n');
        }
        k
    }

    /// The limiter for `key`.
    pub fn limiter(&self, key: &str) -> Arc<KeyLimiter> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = keys.get(key) {
            return l.clone();
        }
        if keys.len() >= MAX_KEYS {
            let max = self.settings.max_rate;
            keys.retain(|_, l| Arc::strong_count(l) > 1 || l.rate() < max);
        }
        let l = Arc::new(KeyLimiter::new(self.settings.initial_rate));
        keys.insert(key.to_owned(), l.clone());
        l
    }

    /// Waits for a permit until `deadline`; returns how long it waited.
    pub async fn acquire(&self, l: &KeyLimiter, deadline: Instant) -> Result<Duration, NoPermit> {
        let start = Instant::now();
        let g = l.lock().limiter.clone();
        let waited = if g.check().is_ok() {
            Duration::ZERO
        } else {
            tokio::time::timeout_at(deadline, g.until_ready())
                .await
                .map_err(|_| NoPermit)?;
            start.elapsed()
        };
        l.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(Instant::now());
        Ok(waited)
    }

    /// A throttling answer for `l`: cut its rate (at most once per cooldown). True if cut.
    pub fn on_throttle(&self, l: &KeyLimiter) -> bool {
        let now = Instant::now();
        let mut last = l.last_cut.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < self.settings.decrease_cooldown) {
            return false;
        }
        *last = Some(now);
        // Cut from what was really sent when that is below the limit (a limit far above the
        // API's would otherwise take many cuts to come down: AWS's adaptive mode does the same).
        let measured = l
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .per_second(now);
        let base = if measured >= 1.0 {
            l.rate().min(measured)
        } else {
            l.rate()
        };
        l.set(decreased(base, &self.settings));
        *l.last_raise.lock().unwrap_or_else(|p| p.into_inner()) = now;
        true
    }

    /// A success for `l`: raise its rate by `increase` per second since the last raise.
    pub fn on_success(&self, l: &KeyLimiter) {
        let r = l.rate();
        if r < self.settings.max_rate {
            let now = Instant::now();
            let mut last = l.last_raise.lock().unwrap_or_else(|p| p.into_inner());
            l.set(increased(r, &self.settings, now.duration_since(*last)));
            *last = now;
        }
    }

    /// (keys tracked, keys below the maximum rate).
    pub fn state(&self) -> (usize, usize) {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let tight = keys
            .values()
            .filter(|l| l.rate() < self.settings.max_rate)
            .count();
        (keys.len(), tight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> LimiterSettings {
        LimiterSettings {
            initial_rate: 100.0,
            max_rate: 100.0,
            min_rate: 1.0,
            decrease: 0.5,
            increase: 1.0,
            decrease_cooldown: Duration::ZERO,
            scope: vec![ScopePart::AccessKey, ScopePart::Region, ScopePart::Action],
        }
    }

    #[test]
    fn aimd() {
        let s = settings();
        assert_eq!(decreased(100.0, &s), 50.0);
        assert_eq!(decreased(1.5, &s), 1.0);
        assert_eq!(increased(50.0, &s, Duration::from_millis(500)), 50.5);
        assert_eq!(increased(99.5, &s, Duration::from_secs(1)), 100.0);
        assert_eq!(
            increased(50.0, &s, Duration::from_secs(3600)),
            51.0,
            "one second at most"
        );
    }

    #[test]
    fn keys_follow_the_scope() {
        let l = AdaptiveLimiter::new(settings());
        assert_eq!(
            l.key("ak", "cn-hangzhou", "CreateDBInstance", "h"),
            "ak\ncn-hangzhou\nCreateDBInstance\n"
        );
        let a = l.limiter("x");
        l.on_throttle(&a);
        assert_eq!(l.limiter("x").rate(), 50.0);
        assert_eq!(l.limiter("y").rate(), 100.0);
        assert_eq!(l.state(), (2, 1));
        l.on_success(&a);
        assert!(a.rate() > 50.0 && a.rate() <= 51.0);
    }

    #[tokio::test]
    async fn waits_for_a_permit_but_not_past_the_deadline() {
        let l = AdaptiveLimiter::new(LimiterSettings {
            initial_rate: 2.0,
            max_rate: 2.0,
            ..settings()
        });
        let k = l.limiter("k");
        assert_eq!(
            l.acquire(&k, Instant::now() + Duration::from_secs(5)).await,
            Ok(Duration::ZERO)
        );
        // The next permit comes in 500 ms: a 50 ms deadline is not enough.
        assert_eq!(
            l.acquire(&k, Instant::now() + Duration::from_millis(50))
                .await,
            Err(NoPermit)
        );
    }

    proptest! {
        #[test]
        fn rates_stay_within_bounds(events in proptest::collection::vec(any::<bool>(), 0..200)) {
            let s = settings();
            let mut r = s.initial_rate;
            for throttled in events {
                r = if throttled { decreased(r, &s) } else { increased(r, &s, Duration::from_millis(300)) };
                prop_assert!(r >= s.min_rate && r <= s.max_rate);
            }
        }
    }
}

#[cfg(test)]
mod cooldown_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_cut_per_cooldown() {
        let l = AdaptiveLimiter::new(LimiterSettings {
            initial_rate: 100.0,
            max_rate: 100.0,
            min_rate: 1.0,
            decrease: 0.5,
            increase: 1.0,
            decrease_cooldown: Duration::from_millis(200),
            scope: vec![ScopePart::Action],
        });
        let k = l.limiter("k");
        assert!(l.on_throttle(&k));
        assert!(!l.on_throttle(&k));
        assert_eq!(k.rate(), 50.0);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(l.on_throttle(&k));
        assert_eq!(k.rate(), 25.0);
    }
}
