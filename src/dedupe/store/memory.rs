//! The in-memory store: for tests and for users who want dedupe without persistence.
//!
//! Bounded in O(1) per claim: entries are also kept in claim order, and past `max_entries`
//! the oldest claims are forgotten first (with one window for everyone, the oldest claim is
//! the soonest to expire), so no claim ever pays for a scan or a sort of the whole map.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{Claim, Entry, now_ms};

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u128, Entry>,
    /// Fingerprints in claim order (a fingerprint re-claimed after expiry appears twice; the
    /// stale position is skipped when it reaches the front).
    order: VecDeque<(u64, u128)>,
}

/// The map key of a fingerprint: its first 128 bits (fingerprints are SHA-256 in hex), so that
/// the map neither copies nor hashes 64-character strings. Anything else (tests) is hashed.
fn key(fp: &str) -> u128 {
    match fp.get(..32).map(|h| u128::from_str_radix(h, 16)) {
        Some(Ok(k)) if fp.len() == 64 => k,
        _ => crate::ids::digest128(&[fp.as_bytes()]),
    }
}

/// Fingerprint -> entry, in this process, bounded.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_entries: usize,
}

impl MemoryStore {
    /// A store holding at most `max_entries` entries.
    pub fn new(max_entries: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn claim(&self, fp: &str, entry: &Entry) -> Claim {
        let (now, fp) = (now_ms(), key(fp));
        let mut inner = self.lock();
        if let Some(e) = inner.map.get(&fp).filter(|e| e.live(now)) {
            return Claim::Existing(e.clone());
        }
        // Drop expired entries at the front, and the oldest claims past the bound.
        while let Some((claimed, key)) = inner.order.front().copied() {
            let current = inner.map.get(&key).map(|e| (e.live(now), claimed_at(e)));
            let stale_position = current.is_none_or(|(_, at)| at != claimed);
            if stale_position {
                inner.order.pop_front();
            } else if current.is_some_and(|(live, _)| !live) || inner.map.len() >= self.max_entries
            {
                inner.order.pop_front();
                inner.map.remove(&key);
            } else {
                break;
            }
        }
        inner.order.push_back((claimed_at(entry), fp));
        inner.map.insert(fp, entry.clone());
        Claim::Fresh
    }

    pub(super) fn complete(&self, fp: &str, token: &str, expires_at_ms: u64) {
        if let Some(e) = self
            .lock()
            .map
            .get_mut(&key(fp))
            .filter(|e| e.token == token)
        {
            e.in_flight = false;
            e.expires_at_ms = expires_at_ms;
        }
    }

    /// Live entries (for tests).
    pub fn len(&self) -> usize {
        let now = now_ms();
        self.lock().map.values().filter(|e| e.live(now)).count()
    }

    /// True if there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// When an entry was claimed: its lease starts then (lease_until - lease is not stored, so the
/// lease end identifies the claim; it never changes after the claim).
fn claimed_at(e: &Entry) -> u64 {
    e.lease_until_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::store::test_entry as entry;

    #[test]
    fn keys_are_the_fingerprint_prefix_or_a_hash() {
        let fp = "00000000000000000000000000000abc".to_owned() + &"f".repeat(32);
        assert_eq!(key(&fp), 0xabc);
        assert_ne!(key("f"), key("g"));
        assert_ne!(
            key(&"z".repeat(64)),
            key(&"y".repeat(64)),
            "not hex: hashed"
        );
    }

    #[test]
    fn claim_complete_expire() {
        let s = MemoryStore::new(10);
        assert_eq!(s.claim("f", &entry("t1", 60_000)), Claim::Fresh);
        let Claim::Existing(e) = s.claim("f", &entry("t2", 60_000)) else {
            panic!()
        };
        assert_eq!(e.token, "t1");
        assert!(e.in_flight);
        s.complete("f", "t1", now_ms() + 60_000);
        let Claim::Existing(e) = s.claim("f", &entry("t3", 60_000)) else {
            panic!()
        };
        assert!(!e.in_flight);
        s.complete("f", "t1", now_ms().saturating_sub(1));
        assert_eq!(
            s.claim("f", &entry("t4", 60_000)),
            Claim::Fresh,
            "expired entries are replaced"
        );
    }

    #[test]
    fn completing_with_another_token_changes_nothing() {
        let s = MemoryStore::new(10);
        s.claim("f", &entry("t1", 60_000));
        s.complete("f", "other", now_ms() + 1);
        let Claim::Existing(e) = s.claim("f", &entry("t2", 60_000)) else {
            panic!()
        };
        assert!(e.in_flight);
    }

    #[test]
    fn bounded_oldest_first() {
        let s = MemoryStore::new(3);
        for i in 0..10 {
            s.claim(&format!("f{i}"), &entry("t", 60_000 + i));
        }
        let inner = s.lock();
        assert!(inner.map.len() <= 3, "{}", inner.map.len());
        assert!(inner.order.len() <= 4);
        assert!(inner.map.contains_key(&key("f9")) && !inner.map.contains_key(&key("f0")));
    }

    #[test]
    fn re_claims_after_expiry_do_not_leak_order_slots() {
        let s = MemoryStore::new(100);
        for _ in 0..50 {
            s.claim("f", &entry("t", 0));
        }
        assert!(s.lock().order.len() <= 2);
    }
}
