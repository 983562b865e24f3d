//! Where the dedupe state lives: fingerprint -> token, with an in-flight marker.
//!
//! Three stores behind one interface (an enum: the set is closed and it keeps the async
//! methods free of boxing): in-memory (tests), embedded persistent (redb; the default, survives
//! `kill -9`), and Redis (shared by replicas; the claim is an atomic `SET NX PX`).

pub mod embedded;
pub mod memory;
pub mod redis;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::replay::NonceKey;

/// One fingerprint's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The ClientToken every call with this fingerprint uses inside the window.
    pub token: String,
    /// The proxy process that claimed it.
    pub owner: String,
    /// True while the claiming call is still running.
    pub in_flight: bool,
    /// Until when the in-flight marker holds (unix ms), even if its owner died.
    pub lease_until_ms: u64,
    /// When the entry is forgotten (unix ms).
    pub expires_at_ms: u64,
}

impl Entry {
    /// True if the entry still counts at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }
}

/// The result of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No live entry: ours is stored.
    Fresh,
    /// A live entry exists.
    Existing(Entry),
}

/// A store failure. Messages never include credentials from a Redis URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered an error.
    #[error("dedupe store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read.
    #[error("dedupe store holds a bad entry: {0}")]
    Corrupt(String),
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A dedupe store.
#[derive(Debug)]
pub enum Store {
    /// In memory, this process only.
    Memory(memory::MemoryStore),
    /// redb file, this process only, durable.
    Embedded(embedded::EmbeddedStore),
    /// Redis, shared by every proxy using it.
    Redis(redis::RedisStore),
}

impl Store {
    /// Stores `entry` unless a live one exists (atomically), and says which happened.
    pub async fn claim(&self, fp: &str, entry: &Entry) -> Result<Claim, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.claim(fp, entry)),
            Store::Embedded(s) => s.claim(fp, entry).await,
            Store::Redis(s) => s.claim(fp, entry).await,
        }
    }

    /// Marks the call done: the entry stays until `expires_at_ms` (only if it still holds
    /// `token`).
    pub async fn complete(
        &self,
        fp: &str,
        token: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => {
                s.complete(fp, token, expires_at_ms);
                Ok(())
            }
            Store::Embedded(s) => s.complete(fp, token, expires_at_ms).await,
            Store::Redis(s) => s.complete(fp, token, expires_at_ms).await,
        }
    }

    /// Remembers a caller's nonce for `ttl`: `true` if it was new, `false` if it was seen
    /// inside `ttl` (a replay). The memory store answers `true` at once, without work: in one
    /// process the replay guard already remembers every nonce.
    pub async fn remember(&self, key: NonceKey, ttl_ms: u64) -> Result<bool, StoreError> {
        match self {
            Store::Memory(_) => Ok(true),
            Store::Embedded(s) => s.remember(&key.store_key(), ttl_ms).await,
            Store::Redis(s) => s.remember(&key.store_key(), ttl_ms).await,
        }
    }

    /// True if other live processes may hold in-flight entries (so a foreign in-flight entry
    /// must be waited for). For the process-local stores, a foreign owner is a dead process.
    pub fn shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// A short name for logs and headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// Checks that the store answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Redis(s) => s.ping().await,
            _ => Ok(()),
        }
    }
}

/// An in-flight entry living `ttl_ms`, for the stores' tests.
#[cfg(test)]
pub(crate) fn test_entry(token: &str, ttl_ms: u64) -> Entry {
    let now = now_ms();
    Entry {
        token: token.into(),
        owner: "me".into(),
        in_flight: true,
        lease_until_ms: now + ttl_ms,
        expires_at_ms: now + ttl_ms,
    }
}
