//! Throttling done right and the operator's view: the adaptive limiter against a rate-limited
//! simulator, the retry budget under a full outage, `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::client::{self, Route};

use crate::support::{HOST, create, proxy_toml_with, signer, start_proxy, start_sim};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(Route::Direct(addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).to_string(),
    )
}

/// Sends `n` distinct CreateDBInstance calls, `concurrency` at a time; returns how many got 200.
async fn burst(proxy: SocketAddr, n: usize, concurrency: usize, tag: &str) -> usize {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..n {
        let sem = sem.clone();
        let call = create(&format!("{tag}-{i}"));
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            client::send_v1(
                Route::Proxy(proxy),
                HOST,
                &signer(),
                &call,
                Placement::Query,
                Duration::from_secs(120),
            )
            .await
            .map(|r| r.status.as_u16())
        }));
    }
    let mut ok = 0;
    let mut failures = std::collections::BTreeMap::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(200) => ok += 1,
            other => *failures.entry(format!("{other:?}")).or_insert(0) += 1,
        }
    }
    if !failures.is_empty() {
        eprintln!("{tag}: failures {failures:?}");
    }
    ok
}

fn throttled(sim: &idemproxy::sim::SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.result.starts_with("rejected:Throttling"))
        .count()
}

const BURST_RETRY: &str = "max_attempts = 20\ndeadline = \"120s\"\nbudget_ratio = 100.0";

#[tokio::test]
async fn the_adaptive_limiter_cuts_throttling_under_a_burst() {
    let dedupe = "store = \"memory\"";
    // With the limiter (its defaults, starting at 1000/s) against an API allowing 100/s.
    let sim = start_sim("ratelimit=100").await;
    let proxy = start_proxy(&proxy_toml_with(sim.addr, BURST_RETRY, "", dedupe)).await;
    let ok = burst(proxy.addr, 500, 100, "on").await;
    let with_limiter = throttled(&sim);
    assert_eq!(ok, 500, "every call succeeds through the limiter");
    let ledger = sim.ledger();
    assert_eq!(
        (ledger.executions, ledger.duplicates),
        (500, 0),
        "{:?}",
        (ledger.executions, ledger.duplicates)
    );
    let (_, metrics) = get(proxy.admin_addr.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("idemproxy_limiter_decreases_total"),
        "{metrics}"
    );

    // The same burst with the limiter off.
    let sim_off = start_sim("ratelimit=100").await;
    let off = start_proxy(&proxy_toml_with(
        sim_off.addr,
        &format!("{BURST_RETRY}\n[limiter]\nenabled = false"),
        "",
        dedupe,
    ))
    .await;
    burst(off.addr, 500, 100, "off").await;
    let without_limiter = throttled(&sim_off);
    eprintln!(
        "throttled upstream answers for a burst of 500: with limiter {with_limiter}, without {without_limiter}"
    );
    assert!(
        with_limiter * 10 < without_limiter,
        "throttled answers with the limiter ({with_limiter}) should be far below without it ({without_limiter})"
    );
}

#[tokio::test]
async fn retries_stop_at_the_budget_under_a_full_outage() {
    let sim = start_sim("random=1;kinds=503").await;
    let retry = "max_attempts = 5\nbudget_ratio = 0.2\nbudget_min_per_sec = 0.0";
    let proxy = start_proxy(&proxy_toml_with(sim.addr, retry, "", "store = \"memory\"")).await;
    let mut stopped_by_budget = 0;
    for _ in 0..50 {
        let r = client::send_v1(
            Route::Proxy(proxy.addr),
            HOST,
            &signer(),
            &V1Call::gpdb("DescribeDBInstances", &[]),
            Placement::Query,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 503);
        if r.header("x-idemproxy-retry-stopped") == "retry-budget" {
            stopped_by_budget += 1;
        }
    }
    let sent = sim.requests().len();
    // 50 calls, and retries at most 20 % of them: 10 (without a budget: 200).
    assert!(sent <= 60, "sent {sent}");
    assert!(stopped_by_budget >= 40, "{stopped_by_budget}");
    let (_, metrics) = get(proxy.admin_addr.unwrap(), "/metrics").await;
    let refusals = metric(&metrics, "idemproxy_budget_refusals_total");
    assert!(refusals >= 40.0, "{refusals}");
}

/// Parses the exposition strictly enough to catch a broken format, and returns one sample.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "{line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
        }
        if series == name_and_labels {
            found = Some(v);
        }
    }
    assert!(text.ends_with("# EOF\n"));
    found.unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let sim = start_sim("CreateDBInstance=503,throttle:20").await;
    let proxy = start_proxy(&proxy_toml_with(sim.addr, "", "", "store = \"memory\"")).await;
    let admin = proxy.admin_addr.unwrap();
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200);
    assert_eq!(get(admin, "/nope").await.0, 404);
    let (status, before) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let requests = "idemproxy_requests_total{class=\"token\",outcome=\"2xx\"}";
    assert_eq!(metric(&before, requests), 0.0);

    let r = client::send_v1(
        Route::Proxy(proxy.addr),
        HOST,
        &signer(),
        &create("m"),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let (_, after) = get(admin, "/metrics").await;
    assert_eq!(metric(&after, requests), 1.0);
    assert_eq!(
        metric(&after, "idemproxy_attempts_total{class=\"token\"}"),
        3.0
    );
    assert_eq!(
        metric(&after, "idemproxy_retries_total{reason=\"status\"}"),
        1.0
    );
    assert_eq!(
        metric(&after, "idemproxy_retries_total{reason=\"throttled\"}"),
        1.0
    );
    assert_eq!(
        metric(&after, "idemproxy_tokens_total{source=\"injected\"}"),
        1.0
    );
    assert_eq!(metric(&after, "idemproxy_throttled_total"), 1.0);
    assert!(metric(&after, "idemproxy_backoff_wait_seconds_total") > 0.0);
    assert_eq!(
        metric(&after, "idemproxy_upstream_latency_seconds_count"),
        3.0
    );

    // An unsigned call is forwarded once, untouched, and counted.
    let req = Request::post(format!("http://{HOST}/?Action=DescribeRegions&Format=JSON"))
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap();
    client::send(Route::Proxy(proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    let (_, later) = get(admin, "/metrics").await;
    assert_eq!(
        metric(&later, "idemproxy_passthrough_total{reason=\"unsigned\"}"),
        1.0
    );
}

#[tokio::test]
async fn readiness_fails_while_the_redis_store_is_down() {
    let sim = start_sim("").await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let proxy = start_proxy(&proxy_toml_with(
        sim.addr,
        "",
        "",
        &format!("store = \"redis\"\nredis_url = \"redis://{dead}/0\""),
    ))
    .await;
    let (status, body) = get(proxy.admin_addr.unwrap(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(proxy.admin_addr.unwrap(), "/healthz").await.0, 200);
}
