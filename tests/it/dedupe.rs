//! The tool's own re-sends: the dedupe window, the in-flight wait, the embedded store across a
//! `kill -9`, Redis shared by two proxy processes, and the store-failure modes.

use std::net::SocketAddr;
use std::time::Duration;

use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::client::{self, Reply, Route};
use idemproxy::sim::SimHandle;

use crate::support::{
    HOST, ProxyProcess, code, create, embedded_config, proxy_toml_with, signer, start_proxy,
    start_sim, write_config,
};

fn redis_url() -> String {
    std::env::var("IDEMPROXY_TEST_REDIS_URL")
        .expect("IDEMPROXY_TEST_REDIS_URL is not set: run the tests with scripts/test, which starts a redis-server")
}

async fn send(
    proxy: SocketAddr,
    call: &V1Call,
    timeout: Duration,
) -> Result<Reply, client::ClientError> {
    client::send_v1(
        Route::Proxy(proxy),
        HOST,
        &signer(),
        call,
        Placement::Query,
        timeout,
    )
    .await
}

fn instance_id(r: &Reply) -> String {
    r.json()
        .and_then(|v| v["DBInstanceId"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn wait_for_executions(sim: &SimHandle, n: u64) {
    for _ in 0..400 {
        if sim.ledger().executions >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the simulator never reached {n} execution(s): {:?}",
        sim.ledger()
    );
}

async fn memory_proxy(sim: &SimHandle, dedupe: &str) -> idemproxy::proxy::ProxyHandle {
    start_proxy(&proxy_toml_with(sim.addr, "", "", dedupe)).await
}

#[tokio::test]
async fn a_re_send_after_the_client_timed_out_runs_once_and_gets_the_same_result() {
    // Attempt 1 acts and resets; attempt 2 is answered slowly: the proxy is still retrying
    // when the client gives up and re-sends the same call without a token.
    let sim = start_sim("CreateDBInstance=reset,slow:800").await;
    let proxy = memory_proxy(&sim, "store = \"memory\"").await;
    let call = create("resend");
    let first = send(proxy.addr, &call, Duration::from_millis(300)).await;
    assert!(
        matches!(first, Err(client::ClientError::Timeout)),
        "{first:?}"
    );
    let again = send(proxy.addr, &call, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.header("x-idemproxy-token"), "reused");
    let ledger = sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0), "{ledger:?}");
    // Same result for both: the only instance is the one the re-send was told about.
    let describe = send(
        proxy.addr,
        &V1Call::gpdb("DescribeDBInstances", &[]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let items = describe.json().unwrap()["Items"]["DBInstance"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["DBInstanceId"], instance_id(&again).as_str());
    let tokens: std::collections::HashSet<_> = sim
        .requests()
        .iter()
        .filter(|r| r.action == "CreateDBInstance")
        .map(|r| r.client_token.clone())
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "every attempt of both sends carried one token"
    );
}

#[tokio::test]
async fn concurrent_identical_calls_run_once() {
    let sim = start_sim("CreateDBInstance=slow:300").await;
    let proxy = memory_proxy(&sim, "store = \"memory\"").await;
    let call = create("burst");
    let sends = (0..6).map(|_| send(proxy.addr, &call, Duration::from_secs(10)));
    let replies = futures_util::future::join_all(sends).await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| instance_id(r.as_ref().unwrap()))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(!ids.contains(""));
    let ledger = sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0), "{ledger:?}");
    let reused = replies
        .iter()
        .filter(|r| r.as_ref().unwrap().header("x-idemproxy-token") == "reused")
        .count();
    assert_eq!(reused, 5);
}

#[tokio::test]
async fn different_parameters_get_different_tokens() {
    let sim = start_sim("").await;
    let proxy = memory_proxy(&sim, "store = \"memory\"").await;
    let a = send(proxy.addr, &create("a"), Duration::from_secs(10))
        .await
        .unwrap();
    let b = send(proxy.addr, &create("b"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.header("x-idemproxy-token"), "injected");
    assert_eq!(b.header("x-idemproxy-token"), "injected");
    assert_ne!(
        a.header("x-idemproxy-client-token"),
        b.header("x-idemproxy-client-token")
    );
    assert_eq!(sim.ledger().executions, 2);
}

#[tokio::test]
async fn identical_calls_inside_the_window_become_one_and_after_it_two() {
    let sim = start_sim("").await;
    let proxy = memory_proxy(&sim, "store = \"memory\"\nwindow = \"400ms\"").await;
    let call = create("same");
    let a = send(proxy.addr, &call, Duration::from_secs(10))
        .await
        .unwrap();
    let b = send(proxy.addr, &call, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        b.header("x-idemproxy-token"),
        "reused",
        "the documented trade-off"
    );
    assert_eq!(instance_id(&a), instance_id(&b));
    assert_eq!(sim.ledger().executions, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c = send(proxy.addr, &call, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        c.header("x-idemproxy-token"),
        "injected",
        "window expired: a new token"
    );
    assert_ne!(
        c.header("x-idemproxy-client-token"),
        a.header("x-idemproxy-client-token")
    );
    assert_eq!(sim.ledger().executions, 2);
}

#[tokio::test]
async fn a_zero_window_turns_dedupe_off_for_an_action() {
    let sim = start_sim("").await;
    let proxy = memory_proxy(
        &sim,
        "store = \"memory\"\n[dedupe.actions]\nCreateDBInstance = \"0s\"",
    )
    .await;
    let call = create("twice on purpose");
    for _ in 0..2 {
        let r = send(proxy.addr, &call, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.header("x-idemproxy-token"), "injected");
    }
    assert_eq!(sim.ledger().executions, 2);
}

#[tokio::test]
async fn redis_down_fails_closed_by_default() {
    let sim = start_sim("").await;
    let dead = dead_redis();
    let proxy = memory_proxy(&sim, &format!("store = \"redis\"\nredis_url = \"{dead}\"")).await;
    let r = send(proxy.addr, &create("closed"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(code(&r), "Idemproxy.DedupeStoreUnavailable");
    assert!(sim.requests().is_empty(), "nothing was sent");
    // Calls that take no part in dedupe are unaffected.
    let d = send(
        proxy.addr,
        &V1Call::gpdb("DescribeDBInstances", &[]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(d.status, 200);
}

#[tokio::test]
async fn redis_down_fails_open_when_configured() {
    let sim = start_sim("").await;
    let dead = dead_redis();
    let proxy = memory_proxy(
        &sim,
        &format!("store = \"redis\"\nredis_url = \"{dead}\"\non_store_error = \"open\""),
    )
    .await;
    let r = send(proxy.addr, &create("open"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-idemproxy-token"), "injected");
    assert_eq!(r.header("x-idemproxy-dedupe"), "store-unavailable");
    assert_eq!(sim.ledger().executions, 1);
}

fn dead_redis() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("redis://{addr}/0")
}

#[tokio::test]
async fn a_re_send_after_kill_9_and_restart_runs_once_with_the_embedded_store() {
    let sim = start_sim("CreateDBInstance=slow:3000").await;
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), sim.addr);
    let mut first = ProxyProcess::start(&config);
    let call = create("survivor");
    let pending = tokio::spawn({
        let (addr, call) = (first.addr, call.clone());
        async move { send(addr, &call, Duration::from_secs(20)).await }
    });
    wait_for_executions(&sim, 1).await;
    first.kill9();
    assert!(pending.await.unwrap().is_err(), "the client lost its proxy");
    assert!(dir.path().join("state/dedupe.redb").is_file());

    let second = ProxyProcess::start(&config);
    let r = send(second.addr, &call, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-idemproxy-token"), "reused");
    let ledger = sim.ledger();
    assert_eq!(
        (ledger.executions, ledger.replays, ledger.duplicates),
        (1, 1, 0),
        "{ledger:?}"
    );
}

#[tokio::test]
async fn two_proxy_processes_share_the_window_through_redis() {
    let sim = start_sim("CreateDBInstance=slow:1500").await;
    let dir = tempfile::tempdir().unwrap();
    let dedupe = format!("store = \"redis\"\nredis_url = \"{}\"", redis_url());
    let a = ProxyProcess::start(&write_config(dir.path(), "a.toml", sim.addr, &dedupe));
    let b = ProxyProcess::start(&write_config(dir.path(), "b.toml", sim.addr, &dedupe));
    let call = create(&format!("replicas-{}", uuid::Uuid::new_v4()));
    let first = send(a.addr, &call, Duration::from_millis(400)).await;
    assert!(
        matches!(first, Err(client::ClientError::Timeout)),
        "{first:?}"
    );
    // The re-send goes to the other replica while the first call is still in flight there.
    let r = send(b.addr, &call, Duration::from_secs(20)).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-idemproxy-token"), "reused");
    let ledger = sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0), "{ledger:?}");
}
