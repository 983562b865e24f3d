//! Jittered exponential backoff, bounded by a maximum single wait.

use std::time::Duration;

/// Why a backoff could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBackoff {
    /// The base delay is zero.
    #[error("base delay must be greater than zero")]
    ZeroBase,
    /// The maximum is below the base.
    #[error("max delay must be at least the base delay")]
    MaxBelowBase,
}

/// "Full jitter" exponential backoff (as AWS's architecture blog measured it: the least total
/// work for a storm of clients): retry `n` (0-based) waits a uniform random time in `[0, d]`
/// where `d = min(max, base * 2^n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Validates and builds a backoff.
    pub fn try_new(base: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if base.is_zero() {
            return Err(InvalidBackoff::ZeroBase);
        }
        if max < base {
            return Err(InvalidBackoff::MaxBelowBase);
        }
        Ok(Backoff { base, max })
    }

    /// The maximum single wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The wait before retry `n` (0-based), with `unit` a random number in `[0, 1)`.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let factor = 1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX);
        let d = self.base.saturating_mul(factor).min(self.max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        d.mul_f64(unit)
    }

    /// A server hint clamped to the maximum single wait.
    pub fn clamp_hint(&self, hint: Duration) -> Duration {
        hint.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validates() {
        assert_eq!(
            Backoff::try_new(Duration::ZERO, Duration::from_secs(1)),
            Err(InvalidBackoff::ZeroBase)
        );
        assert_eq!(
            Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(InvalidBackoff::MaxBelowBase)
        );
    }

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::try_new(Duration::from_millis(100), Duration::from_millis(1000)).unwrap();
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(50));
        assert_eq!(b.delay(0, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(4, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_millis(1000));
        assert_eq!(
            b.clamp_hint(Duration::from_secs(60)),
            Duration::from_millis(1000)
        );
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(base_ms in 1u64..10_000, extra in 0u64..100_000, n in any::<u32>(), unit in any::<f64>()) {
            let b = Backoff::try_new(Duration::from_millis(base_ms), Duration::from_millis(base_ms + extra)).unwrap();
            let d = b.delay(n, unit);
            prop_assert!(d <= b.max());
            let cap = Duration::from_millis(base_ms).saturating_mul(1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX));
            prop_assert!(d <= cap);
        }
    }
}
