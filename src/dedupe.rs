//! The tool's own re-sends: inside a window, a call with the same fingerprint gets the token
//! the first one got, so the API answers the original result instead of acting twice; a
//! re-send that arrives while the first is still running waits for it first.
//!
//! Only calls of token-capable actions that arrive without a `ClientToken` take part. The
//! trade-off: two intentionally identical calls inside the window become one (set the window
//! of that action to 0 to opt out).

pub mod fingerprint;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use std::time::Duration;

use tokio::time::Instant;

use store::{Claim, Entry, Store, StoreError, now_ms};

use crate::replay::NonceKey;

/// This process's owner id for in-flight markers: one per process, so a config reload (a new
/// `Dedupe` over the same store) still recognises its own calls in flight.
fn process_owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// How often a waiting re-send looks at the store again.
const POLL: Duration = Duration::from_millis(25);

/// The outcome of acquiring a token for a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// First call in the window: the proposed token is now the fingerprint's token.
    Fresh,
    /// A call with this fingerprint came first: use its token.
    Reused(String),
}

/// Counters, shared with the metrics registry (clones of a counter count together).
#[derive(Debug, Default, Clone)]
pub struct DedupeStats {
    /// Re-sends that waited for a call in flight.
    pub waited: Counter,
    /// Store failures.
    pub store_errors: Counter,
}

/// The dedupe window and its store.
#[derive(Debug)]
pub struct Dedupe {
    store: Arc<Store>,
    owner: String,
    window: Duration,
    per_action: HashMap<String, Duration>,
    fail_open: bool,
    /// Counters.
    pub stats: DedupeStats,
}

impl Dedupe {
    /// A dedupe over `store` with a global window and per-action overrides.
    pub fn new(
        store: Arc<Store>,
        window: Duration,
        per_action: HashMap<String, Duration>,
        fail_open: bool,
    ) -> Self {
        Dedupe {
            store,
            owner: process_owner().to_owned(),
            window,
            per_action,
            fail_open,
            stats: DedupeStats::default(),
        }
    }

    /// Counts into these counters (e.g. the metrics registry's).
    pub fn with_stats(mut self, stats: DedupeStats) -> Self {
        self.stats = stats;
        self
    }

    /// The window for `action` (zero: no dedupe for it).
    pub fn window_for(&self, action: &str) -> Duration {
        self.per_action.get(action).copied().unwrap_or(self.window)
    }

    /// True if a store failure should let the call go on with a fresh token.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Claims `fp` for `token`, or returns the token of the call that came first, waiting (up
    /// to `wait_until`) while that call is still running. `lease` bounds how long an
    /// in-flight marker holds if its owner dies.
    pub async fn acquire(
        &self,
        fp: &str,
        token: &str,
        window: Duration,
        lease: Duration,
        wait_until: Instant,
    ) -> Result<Acquired, StoreError> {
        let mut waited = false;
        loop {
            let now = now_ms();
            let lease_until_ms = now + lease.as_millis() as u64;
            let entry = Entry {
                token: token.to_owned(),
                owner: self.owner.clone(),
                in_flight: true,
                lease_until_ms,
                expires_at_ms: now + window.max(lease).as_millis() as u64,
            };
            let existing = match self.store.claim(fp, &entry).await {
                Ok(Claim::Fresh) => {
                    return Ok(Acquired::Fresh);
                }
                Ok(Claim::Existing(e)) => e,
                Err(e) => {
                    self.stats.store_errors.inc();
                    return Err(e);
                }
            };
            // A process-local store's foreign in-flight entry was left by a dead process.
            let alive = existing.owner == self.owner || self.store.shared();
            let running = existing.in_flight && existing.lease_until_ms > now && alive;
            if !running || Instant::now() >= wait_until {
                return Ok(Acquired::Reused(existing.token));
            }
            if !waited {
                waited = true;
                self.stats.waited.inc();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Remembers a caller's nonce for `ttl` (see [`Store::remember`]): `false` for a replay.
    pub async fn remember_nonce(&self, key: NonceKey, ttl: Duration) -> Result<bool, StoreError> {
        let r = self.store.remember(key, ttl.as_millis() as u64).await;
        if r.is_err() {
            self.stats.store_errors.inc();
        }
        r
    }

    /// Marks the call done: its token stays for `window` from now.
    pub async fn release(&self, fp: &str, token: &str, window: Duration) {
        let expires = now_ms() + window.as_millis() as u64;
        if let Err(e) = self.store.complete(fp, token, expires).await {
            self.stats.store_errors.inc();
            tracing::warn!(error = %e, store = self.store.kind(),
                "could not mark a call done; a re-send waits until its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::memory::MemoryStore;

    fn dedupe() -> Arc<Dedupe> {
        Arc::new(Dedupe::new(
            Arc::new(Store::Memory(MemoryStore::new(100))),
            Duration::from_secs(60),
            HashMap::new(),
            false,
        ))
    }

    #[tokio::test]
    async fn a_re_send_reuses_the_token() {
        let d = dedupe();
        let far = Instant::now() + Duration::from_secs(5);
        let w = Duration::from_secs(60);
        assert_eq!(
            d.acquire("f", "t1", w, w, far).await.unwrap(),
            Acquired::Fresh
        );
        d.release("f", "t1", w).await;
        assert_eq!(
            d.acquire("f", "t2", w, w, far).await.unwrap(),
            Acquired::Reused("t1".into())
        );
    }

    #[tokio::test]
    async fn a_re_send_waits_for_the_call_in_flight() {
        let d = dedupe();
        let w = Duration::from_secs(60);
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            d.acquire("f", "t1", w, w, far).await.unwrap(),
            Acquired::Fresh
        );
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.acquire("f", "t2", w, w, far).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "must wait while the first call runs");
        d.release("f", "t1", w).await;
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            Acquired::Reused("t1".into())
        );
        assert_eq!(d.stats.waited.get(), 1);
    }

    #[tokio::test]
    async fn waiting_is_bounded() {
        let d = dedupe();
        let w = Duration::from_secs(60);
        d.acquire("f", "t1", w, w, Instant::now()).await.unwrap();
        let got = d
            .acquire("f", "t2", w, w, Instant::now() + Duration::from_millis(60))
            .await
            .unwrap();
        assert_eq!(
            got,
            Acquired::Reused("t1".into()),
            "after the wait, go on with the same token"
        );
    }

    #[test]
    fn per_action_windows() {
        let d = Dedupe::new(
            Arc::new(Store::Memory(MemoryStore::new(1))),
            Duration::from_secs(60),
            HashMap::from([("CreateDBInstance".to_owned(), Duration::ZERO)]),
            false,
        );
        assert_eq!(d.window_for("CreateDBInstance"), Duration::ZERO);
        assert_eq!(d.window_for("DeleteDBInstance"), Duration::from_secs(60));
    }
}
