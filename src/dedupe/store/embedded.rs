//! The embedded persistent store (redb): every claim is a durable (fsynced) transaction, so a
//! proxy killed with `kill -9` and restarted still knows the tokens it handed out. One process
//! owns the file at a time. Expired entries are pruned as the table grows, and the table is
//! bounded: past `max_entries` the entries that expire soonest go first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Claim, Entry, StoreError, now_ms};

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("dedupe");
/// Prune expired entries every this many claims, besides when the bound is reached.
const PRUNE_EVERY: u64 = 1024;

/// A redb-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    max_entries: u64,
    claims: Arc<AtomicU64>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its folder.
    pub fn open(path: &Path, max_entries: u64) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let db =
            Database::create(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(TABLE).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: path.to_owned(),
            max_entries: max_entries.max(1),
            claims: Arc::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(unavailable)?
    }

    pub(super) async fn claim(&self, fp: &str, entry: &Entry) -> Result<Claim, StoreError> {
        let (fp, bytes) = (
            fp.to_owned(),
            serde_json::to_vec(entry).map_err(unavailable)?,
        );
        let max = self.max_entries;
        let prune = self.claims.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == 0;
        self.blocking(move |db| {
            let now = now_ms();
            let tx = db.begin_write().map_err(unavailable)?;
            let claim = {
                let mut t = tx.open_table(TABLE).map_err(unavailable)?;
                let existing = match t.get(fp.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                match existing.filter(|e| e.live(now)) {
                    Some(e) => Claim::Existing(e),
                    None => {
                        if prune || t.len().map_err(unavailable)? >= max {
                            prune_table(&mut t, now, max)?;
                        }
                        t.insert(fp.as_str(), bytes.as_slice())
                            .map_err(unavailable)?;
                        Claim::Fresh
                    }
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(claim)
        })
        .await
    }

    pub(super) async fn complete(
        &self,
        fp: &str,
        token: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        let (fp, token) = (fp.to_owned(), token.to_owned());
        self.blocking(move |db| {
            let mut tx = db.begin_write().map_err(unavailable)?;
            // Not fsynced: losing a completion in a crash only makes a re-send treat the entry
            // as left by a dead process, which reuses the token all the same. The next claim's
            // durable commit persists it anyway.
            tx.set_durability(redb::Durability::None);
            {
                let mut t = tx.open_table(TABLE).map_err(unavailable)?;
                let current = match t.get(fp.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                if let Some(mut e) = current.filter(|e| e.token == token) {
                    e.in_flight = false;
                    e.expires_at_ms = expires_at_ms;
                    let bytes = serde_json::to_vec(&e).map_err(unavailable)?;
                    t.insert(fp.as_str(), bytes.as_slice())
                        .map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    /// Entries in the file, live or not yet pruned (for tests and benchmarks).
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(unavailable)?;
        tx.open_table(TABLE)
            .map_err(unavailable)?
            .len()
            .map_err(unavailable)
    }

    /// True if the file holds no entries.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.len().map(|n| n == 0)
    }
}

fn decode(bytes: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Removes expired entries, then the soonest-expiring ones down to 90 % of the bound.
fn prune_table(t: &mut redb::Table<'_, &str, &[u8]>, now: u64, max: u64) -> Result<(), StoreError> {
    t.retain(|_, v| decode(v).map(|e| e.live(now)).unwrap_or(false))
        .map_err(unavailable)?;
    let len = t.len().map_err(unavailable)?;
    if len < max {
        return Ok(());
    }
    let mut by_expiry: Vec<(u64, String)> = Vec::with_capacity(len as usize);
    for item in t.iter().map_err(unavailable)? {
        let (k, v) = item.map_err(unavailable)?;
        let expires = decode(v.value()).map(|e| e.expires_at_ms).unwrap_or(0);
        by_expiry.push((expires, k.value().to_owned()));
    }
    by_expiry.sort_unstable();
    // Down to 90 % of the bound: the scan and sort are paid once per tenth of the bound.
    let keep = max - max / 10 - 1;
    for (_, k) in by_expiry
        .into_iter()
        .take(len.saturating_sub(keep) as usize)
    {
        t.remove(k.as_str()).map_err(unavailable)?;
    }
    Ok(())
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

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/dedupe.redb");
        {
            let s = EmbeddedStore::open(&path, 100).unwrap();
            assert_eq!(
                s.claim("f", &entry("t1", 60_000)).await.unwrap(),
                Claim::Fresh
            );
        }
        let s = EmbeddedStore::open(&path, 100).unwrap();
        let Claim::Existing(e) = s.claim("f", &entry("t2", 60_000)).await.unwrap() else {
            panic!()
        };
        assert_eq!(e.token, "t1");
        s.complete("f", "t1", now_ms() + 60_000).await.unwrap();
        let Claim::Existing(e) = s.claim("f", &entry("t3", 60_000)).await.unwrap() else {
            panic!()
        };
        assert!(!e.in_flight);
    }

    #[tokio::test]
    async fn expired_entries_are_replaced_and_the_table_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("d.redb"), 5).unwrap();
        s.claim("f", &entry("t1", 60_000)).await.unwrap();
        s.complete("f", "t1", now_ms().saturating_sub(1))
            .await
            .unwrap();
        assert_eq!(
            s.claim("f", &entry("t2", 60_000)).await.unwrap(),
            Claim::Fresh
        );
        for i in 0..20 {
            s.claim(&format!("g{i}"), &entry("t", 60_000 + i))
                .await
                .unwrap();
        }
        assert!(s.len().unwrap() <= 5, "{}", s.len().unwrap());
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let err = EmbeddedStore::open(Path::new("/proc/nope/dedupe.redb"), 5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/proc/nope"), "{err}");
    }
}
