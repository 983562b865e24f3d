//! The Redis store: several proxy replicas share the dedupe state. A claim is one atomic
//! `SET key value NX PX ttl`; completing is a compare-and-set script (only the entry that still
//! holds our token is updated). The connection is made lazily and re-made after failures, so
//! a proxy starts even while Redis is down and each call then meets the configured failure mode.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use super::{Claim, Entry, StoreError, now_ms};

/// Time allowed for one Redis round trip (connecting included).
const OP_TIMEOUT: Duration = Duration::from_secs(1);
const KEY_PREFIX: &str = "idemproxy:dedupe:";

const COMPLETE_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e = cjson.decode(v)
if e.token ~= ARGV[1] then return 0 end
e.in_flight = false
e.expires_at_ms = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(e), 'PX', ARGV[3])
return 1
";

/// A Redis-backed store.
pub struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    display: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.display)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// A store for `url` (`redis://[user:password@]host:port[/db]`); connects on first use.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis_url: {e}")))?;
        let info = client.get_connection_info();
        let display = format!("{:?}", info.addr());
        Ok(RedisStore {
            client,
            conn: Mutex::new(None),
            display,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            OP_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| unavailable("connecting to redis timed out"))?
        .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.reset(e.to_string()).await),
            Err(_) => Err(self.reset("redis did not answer in time".into()).await),
        }
    }

    async fn reset(&self, why: String) -> StoreError {
        *self.conn.lock().await = None;
        StoreError::Unavailable(why)
    }

    pub(super) async fn claim(&self, fp: &str, entry: &Entry) -> Result<Claim, StoreError> {
        let key = format!("{KEY_PREFIX}{fp}");
        let value = serde_json::to_string(entry).map_err(unavailable)?;
        for _ in 0..3 {
            let ttl = entry.expires_at_ms.saturating_sub(now_ms()).max(1);
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl),
                )
                .await?;
            if set.is_some() {
                return Ok(Claim::Fresh);
            }
            let current: Option<String> = self.run(redis::cmd("GET").arg(&key)).await?;
            if let Some(v) = current {
                let e: Entry =
                    serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                return Ok(Claim::Existing(e));
            }
            // Expired between SET and GET: try again.
        }
        Err(unavailable("the key kept changing; giving up"))
    }

    /// `SET NX PX` of the nonce key: shared by every proxy on this Redis, as the API's own
    /// nonce check is shared by all its front ends.
    pub(super) async fn remember(&self, key: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(format!("{KEY_PREFIX}{key}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    pub(super) async fn complete(
        &self,
        fp: &str,
        token: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        let key = format!("{KEY_PREFIX}{fp}");
        let ttl = expires_at_ms.saturating_sub(now_ms()).max(1);
        let _: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(COMPLETE_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(token)
                    .arg(expires_at_ms)
                    .arg(ttl),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }
}
