//! The in-memory store: for tests and for users who want dedupe without persistence.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Claim, Entry, now_ms};

/// Fingerprint -> entry, in this process, bounded.
#[derive(Debug)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
    max_entries: usize,
}

impl MemoryStore {
    /// A store holding at most `max_entries` live entries.
    pub fn new(max_entries: usize) -> Self {
        MemoryStore {
            map: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn claim(&self, fp: &str, entry: &Entry) -> Claim {
        let now = now_ms();
        let mut map = self.lock();
        if let Some(e) = map.get(fp).filter(|e| e.live(now)) {
            return Claim::Existing(e.clone());
        }
        if map.len() >= self.max_entries {
            map.retain(|_, e| e.live(now));
            evict_oldest(&mut map, self.max_entries);
        }
        map.insert(fp.to_owned(), entry.clone());
        Claim::Fresh
    }

    pub(super) fn complete(&self, fp: &str, token: &str, expires_at_ms: u64) {
        if let Some(e) = self.lock().get_mut(fp).filter(|e| e.token == token) {
            e.in_flight = false;
            e.expires_at_ms = expires_at_ms;
        }
    }

    /// Live entries (for tests).
    pub fn len(&self) -> usize {
        let now = now_ms();
        self.lock().values().filter(|e| e.live(now)).count()
    }

    /// True if there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the entries that expire soonest, down to 90 % of `max`, so that the sort is paid
/// once per tenth of the bound and not on every claim at the bound.
pub(super) fn evict_oldest(map: &mut HashMap<String, Entry>, max: usize) {
    if map.len() < max {
        return;
    }
    let keep = max - max / 10 - 1;
    let mut by_expiry: Vec<(u64, String)> = map
        .iter()
        .map(|(k, e)| (e.expires_at_ms, k.clone()))
        .collect();
    by_expiry.sort_unstable();
    let excess = map.len().saturating_sub(keep);
    for (_, k) in by_expiry.into_iter().take(excess) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, ttl: u64) -> Entry {
        let now = now_ms();
        Entry {
            token: token.into(),
            owner: "me".into(),
            in_flight: true,
            lease_until_ms: now + ttl,
            expires_at_ms: now + ttl,
        }
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
    fn bounded() {
        let s = MemoryStore::new(3);
        for i in 0..10 {
            s.claim(&format!("f{i}"), &entry("t", 60_000 + i));
        }
        assert!(s.len() <= 3);
    }
}
