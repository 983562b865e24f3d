//! Replay protection for callers. The proxy re-signs every attempt with its own fresh nonce and
//! timestamp, so the API can no longer see a replayed caller request: the proxy refuses, as the
//! API would, a caller `Timestamp`/`x-acs-date` outside the window and a caller nonce it has
//! seen inside it. Memory is bounded: past `max_entries`, the oldest nonces are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::api::time::{parse_timestamp, skew};

/// Why a caller request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The timestamp is missing or not `yyyy-MM-ddTHH:mm:ssZ`.
    #[error("Specified time stamp or date value is not well formatted.")]
    BadTimestamp,
    /// The timestamp is outside the window.
    #[error("Specified time stamp or date value is expired.")]
    Expired,
    /// The nonce was seen inside the window.
    #[error("Specified signature nonce was used already.")]
    NonceUsed,
    /// No nonce.
    #[error("The signature nonce is not supplied.")]
    MissingNonce,
}

impl ReplayError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::BadTimestamp => "InvalidTimeStamp.Format",
            ReplayError::Expired => "InvalidTimeStamp.Expired",
            ReplayError::NonceUsed => "SignatureNonceUsed",
            ReplayError::MissingNonce => "MissingParameter",
        }
    }
}

/// Nonces are remembered as 128-bit hashes (SHA-256, truncated): 200,000 of them take a few
/// MiB instead of tens, and a false "seen" would need a 128-bit collision.
#[derive(Debug, Default)]
struct Seen {
    at: HashMap<u128, SystemTime>,
    order: VecDeque<(SystemTime, u128)>,
}

/// A caller's nonce as the guard remembers it (per AccessKeyId): a 128-bit hash, never the
/// nonce itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceKey(u128);

impl NonceKey {
    /// The key under which the dedupe store remembers it (shared by replicas, or persistent
    /// across restarts).
    pub fn store_key(self) -> String {
        format!("nonce:{:032x}", self.0)
    }
}

fn key(key_id: &str, nonce: &str) -> u128 {
    crate::ids::digest128(&[key_id.as_bytes(), &[0], nonce.as_bytes()])
}

/// The nonces seen inside the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    max_entries: usize,
    seen: Mutex<Seen>,
}

impl ReplayGuard {
    /// A guard with this window and memory bound.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        ReplayGuard {
            window,
            max_entries: max_entries.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// How long a nonce must be remembered: a timestamp may be off by the window either way.
    pub fn retention(&self) -> Duration {
        self.window * 2
    }

    /// Checks a caller's timestamp and nonce at `now`, remembering the nonce; returns its key
    /// for checks beyond this process.
    pub fn check(
        &self,
        key_id: &str,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<NonceKey, ReplayError> {
        let ts = timestamp
            .and_then(parse_timestamp)
            .ok_or(ReplayError::BadTimestamp)?;
        if skew(ts, now) > self.window {
            return Err(ReplayError::Expired);
        }
        let nonce = nonce
            .filter(|n| !n.is_empty())
            .ok_or(ReplayError::MissingNonce)?;
        let key = key(key_id, nonce);
        let mut s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Forget nonces older than the window (their requests would be refused as expired), and
        // the oldest ones past the bound.
        while let Some((t, k)) = s.order.front().copied() {
            if skew(t, now) > self.window * 2 || s.order.len() >= self.max_entries {
                s.order.pop_front();
                if s.at.get(&k) == Some(&t) {
                    s.at.remove(&k);
                }
            } else {
                break;
            }
        }
        if s.at.contains_key(&key) {
            return Err(ReplayError::NonceUsed);
        }
        s.at.insert(key, now);
        s.order.push_back((now, key));
        Ok(NonceKey(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::time::format_timestamp;

    #[test]
    fn refuses_reuse_expiry_and_garbage() {
        let g = ReplayGuard::new(Duration::from_secs(900), 100);
        let now = SystemTime::now();
        let ts = format_timestamp(now);
        let first = NonceKey(key("ak", "n1"));
        assert_eq!(g.check("ak", Some(&ts), Some("n1"), now), Ok(first));
        assert_eq!(
            g.check("ak", Some(&ts), Some("n1"), now),
            Err(ReplayError::NonceUsed)
        );
        assert_eq!(
            g.check("other", Some(&ts), Some("n1"), now),
            Ok(NonceKey(key("other", "n1"))),
            "nonces are per key"
        );
        assert_ne!(NonceKey(key("other", "n1")), first);
        let old = format_timestamp(now - Duration::from_secs(16 * 60));
        assert_eq!(
            g.check("ak", Some(&old), Some("n2"), now),
            Err(ReplayError::Expired)
        );
        let future = format_timestamp(now + Duration::from_secs(16 * 60));
        assert_eq!(
            g.check("ak", Some(&future), Some("n3"), now),
            Err(ReplayError::Expired)
        );
        assert_eq!(
            g.check("ak", Some("yesterday"), Some("n4"), now),
            Err(ReplayError::BadTimestamp)
        );
        assert_eq!(
            g.check("ak", None, Some("n5"), now),
            Err(ReplayError::BadTimestamp)
        );
        assert_eq!(
            g.check("ak", Some(&ts), None, now),
            Err(ReplayError::MissingNonce)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let g = ReplayGuard::new(Duration::from_secs(900), 10);
        let now = SystemTime::now();
        let ts = format_timestamp(now);
        for i in 0..100 {
            g.check("ak", Some(&ts), Some(&i.to_string()), now).unwrap();
        }
        let s = g.seen.lock().unwrap();
        assert!(s.at.len() <= 10 && s.order.len() <= 10);
    }
}
