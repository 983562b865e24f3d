//! The embedded persistent store (redb): every claim is a durable (fsynced) transaction, so a
//! proxy killed with `kill -9` and restarted still knows the tokens it handed out. One process
//! owns the file at a time.
//!
//! Entries are also indexed by expiry, so pruning never scans the table: each claim removes a
//! few expired entries from the front of the index, and past `max_entries` the entries that
//! expire soonest go first (down to 90 % of the bound).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Claim, Entry, StoreError, now_ms};

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("dedupe");
/// (expires_at_ms, fingerprint) for every entry in `TABLE`.
const EXPIRY: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("dedupe_expiry");
/// Caller nonces (`replay::store_key`) -> expiry (unix ms), and their expiry index.
const NONCES: TableDefinition<'_, &str, u64> = TableDefinition::new("nonces");
const NONCE_EXPIRY: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("nonce_expiry");
/// Expired entries removed per claim at most (amortizes pruning).
const PRUNE_PER_CLAIM: usize = 64;

/// A redb-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    max_entries: u64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

type Tables<'t> = (
    redb::Table<'t, &'static str, &'static [u8]>,
    redb::Table<'t, (u64, &'static str), ()>,
);

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
        {
            let t = tx.open_table(TABLE).map_err(unavailable)?;
            let mut idx = tx.open_table(EXPIRY).map_err(unavailable)?;
            // A file written before the index existed: build it once.
            if idx.len().map_err(unavailable)? == 0 && t.len().map_err(unavailable)? > 0 {
                let mut keys = Vec::new();
                for item in t.iter().map_err(unavailable)? {
                    let (k, v) = item.map_err(unavailable)?;
                    keys.push((
                        decode(v.value()).map(|e| e.expires_at_ms).unwrap_or(0),
                        k.value().to_owned(),
                    ));
                }
                for (exp, fp) in keys {
                    idx.insert((exp, fp.as_str()), ()).map_err(unavailable)?;
                }
            }
        }
        tx.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: path.to_owned(),
            max_entries: max_entries.max(1),
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
        let (fp, entry) = (fp.to_owned(), entry.clone());
        let max = self.max_entries;
        self.blocking(move |db| {
            let now = now_ms();
            let tx = db.begin_write().map_err(unavailable)?;
            let claim = {
                let mut tables: Tables<'_> = (
                    tx.open_table(TABLE).map_err(unavailable)?,
                    tx.open_table(EXPIRY).map_err(unavailable)?,
                );
                match get(&tables.0, &fp)? {
                    Some(e) if e.live(now) => Claim::Existing(e),
                    old => {
                        if let Some(old) = old {
                            tables
                                .1
                                .remove((old.expires_at_ms, fp.as_str()))
                                .map_err(unavailable)?;
                        }
                        prune(&mut tables.0, &mut tables.1, now, max)?;
                        put(&mut tables, &fp, &entry)?;
                        Claim::Fresh
                    }
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(claim)
        })
        .await
    }

    /// Remembers a caller nonce in its own tables (so that a flood of nonces never evicts
    /// dedupe entries), bounded by `max_entries` like them. Every new nonce is a durable
    /// (fsynced) commit, like a claim: only calls that change something come here, and a nonce
    /// lost in a crash would let its request be replayed.
    pub(super) async fn remember(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let max = self.max_entries;
        self.blocking(move |db| {
            let now = now_ms();
            {
                // A replay is answered from a read transaction, without a commit.
                let tx = db.begin_read().map_err(unavailable)?;
                if let Ok(t) = tx.open_table(NONCES) {
                    let seen = t.get(key.as_str()).map_err(unavailable)?;
                    if seen.is_some_and(|v| v.value() > now) {
                        return Ok(false);
                    }
                }
            }
            let tx = db.begin_write().map_err(unavailable)?;
            let fresh = {
                let mut t = tx.open_table(NONCES).map_err(unavailable)?;
                let mut idx = tx.open_table(NONCE_EXPIRY).map_err(unavailable)?;
                let old = t.get(key.as_str()).map_err(unavailable)?.map(|v| v.value());
                match old {
                    Some(expires) if expires > now => false,
                    _ => {
                        if let Some(expires) = old {
                            idx.remove((expires, key.as_str())).map_err(unavailable)?;
                        }
                        prune(&mut t, &mut idx, now, max)?;
                        let expires = now + ttl_ms;
                        t.insert(key.as_str(), expires).map_err(unavailable)?;
                        idx.insert((expires, key.as_str()), ())
                            .map_err(unavailable)?;
                        true
                    }
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(fresh)
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
                let mut tables: Tables<'_> = (
                    tx.open_table(TABLE).map_err(unavailable)?,
                    tx.open_table(EXPIRY).map_err(unavailable)?,
                );
                if let Some(mut e) = get(&tables.0, &fp)?.filter(|e| e.token == token) {
                    tables
                        .1
                        .remove((e.expires_at_ms, fp.as_str()))
                        .map_err(unavailable)?;
                    e.in_flight = false;
                    e.expires_at_ms = expires_at_ms;
                    put(&mut tables, &fp, &e)?;
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

fn get(
    t: &redb::Table<'_, &'static str, &'static [u8]>,
    fp: &str,
) -> Result<Option<Entry>, StoreError> {
    match t.get(fp).map_err(unavailable)? {
        Some(v) => decode(v.value()).map(Some),
        None => Ok(None),
    }
}

fn put(tables: &mut Tables<'_>, fp: &str, e: &Entry) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(e).map_err(unavailable)?;
    tables.0.insert(fp, bytes.as_slice()).map_err(unavailable)?;
    tables
        .1
        .insert((e.expires_at_ms, fp), ())
        .map_err(unavailable)?;
    Ok(())
}

/// Removes up to `PRUNE_PER_CLAIM` expired entries, and past the bound the soonest-expiring
/// ones down to 90 % of it: each found through the front of the expiry index.
fn prune<V: redb::Value + 'static>(
    table: &mut redb::Table<'_, &'static str, V>,
    index: &mut redb::Table<'_, (u64, &'static str), ()>,
    now: u64,
    max: u64,
) -> Result<(), StoreError> {
    let len = table.len().map_err(unavailable)?;
    let over = if len >= max {
        len - (max - max / 10 - 1)
    } else {
        0
    };
    let mut victims: Vec<(u64, String)> = Vec::new();
    for item in index.iter().map_err(unavailable)? {
        let (k, _) = item.map_err(unavailable)?;
        let (expires, fp) = k.value();
        let expired = expires <= now && victims.len() < PRUNE_PER_CLAIM;
        if !expired && victims.len() as u64 >= over {
            break;
        }
        victims.push((expires, fp.to_owned()));
    }
    for (expires, fp) in victims {
        index.remove((expires, fp.as_str())).map_err(unavailable)?;
        table.remove(fp.as_str()).map_err(unavailable)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::store::test_entry as entry;

    #[tokio::test]
    async fn nonces_are_remembered_across_reopening_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.redb");
        {
            let s = EmbeddedStore::open(&path, 3).unwrap();
            assert!(s.remember("nonce:a", 60_000).await.unwrap());
            assert!(!s.remember("nonce:a", 60_000).await.unwrap());
            assert!(s.remember("nonce:short", 1).await.unwrap());
        }
        let s = EmbeddedStore::open(&path, 3).unwrap();
        assert!(
            !s.remember("nonce:a", 60_000).await.unwrap(),
            "kept on disk"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(s.remember("nonce:short", 60_000).await.unwrap(), "expired");
        // Bounded: past max_entries the soonest-expiring nonces go first.
        for i in 0..10 {
            assert!(s.remember(&format!("nonce:{i}"), 60_000 + i).await.unwrap());
        }
        assert!(s.remember("nonce:0", 60_000).await.unwrap(), "evicted");
        // Nonces never count against (or evict) dedupe entries.
        assert!(s.is_empty().unwrap());
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

#[cfg(test)]
mod index_tests {
    use super::*;

    #[tokio::test]
    async fn expired_entries_leave_the_index_too() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("d.redb"), 1000).unwrap();
        let now = now_ms();
        for i in 0..10 {
            let e = Entry {
                token: "t".into(),
                owner: "o".into(),
                in_flight: false,
                lease_until_ms: now,
                expires_at_ms: now.saturating_sub(1),
            };
            s.claim(&format!("old{i}"), &e).await.unwrap();
        }
        let live = Entry {
            token: "t".into(),
            owner: "o".into(),
            in_flight: true,
            lease_until_ms: now + 60_000,
            expires_at_ms: now + 60_000,
        };
        s.claim("new", &live).await.unwrap();
        assert_eq!(
            s.len().unwrap(),
            1,
            "the expired entries were pruned by the next claim"
        );
        let tx = s.db.begin_read().unwrap();
        assert_eq!(tx.open_table(EXPIRY).unwrap().len().unwrap(), 1);
    }
}
