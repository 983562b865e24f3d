//! The dedupe store's cost per call: one claim plus one complete, as the proxy does for every
//! token-capable call without a caller token. Run: `cargo bench --bench store` (the Redis case
//! needs IDEMPROXY_TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/0, and is skipped without it).

// Benchmarks set up fixed inputs; a failure there is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use idemproxy::dedupe::store::embedded::EmbeddedStore;
use idemproxy::dedupe::store::memory::MemoryStore;
use idemproxy::dedupe::store::redis::RedisStore;
use idemproxy::dedupe::store::{Entry, Store, now_ms};

fn entry() -> Entry {
    let now = now_ms();
    Entry {
        token: uuid::Uuid::new_v4().to_string(),
        owner: "bench".into(),
        in_flight: true,
        lease_until_ms: now + 65_000,
        expires_at_ms: now + 300_000,
    }
}

fn bench_store(c: &mut Criterion, name: &str, store: Store) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut i = 0u64;
    c.bench_function(&format!("dedupe_claim_complete_{name}"), |b| {
        b.iter(|| {
            i += 1;
            let fp = format!("{:064x}", i);
            let e = entry();
            rt.block_on(async {
                store.claim(&fp, &e).await.unwrap();
                store
                    .complete(&fp, &e.token, now_ms() + 300_000)
                    .await
                    .unwrap();
            })
        })
    });
}

fn bench(c: &mut Criterion) {
    bench_store(c, "memory", Store::Memory(MemoryStore::new(100_000)));
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(&dir.path().join("bench.redb"), 100_000).unwrap();
    bench_store(c, "embedded", Store::Embedded(embedded));
    match std::env::var("IDEMPROXY_TEST_REDIS_URL") {
        Ok(url) => bench_store(c, "redis", Store::Redis(RedisStore::new(&url).unwrap())),
        Err(_) => eprintln!("dedupe_claim_complete_redis: skipped (set IDEMPROXY_TEST_REDIS_URL)"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
