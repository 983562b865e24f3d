//! Safety and limits: replay protection, no open proxy, target allow-list, request limits,
//! connection limits and graceful shutdown.

use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::client::{self, Route};
use idemproxy::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{HOST, KEY_ID, SECRET, code, create, proxy_toml_with, start_proxy, start_sim};
use crate::support::{ProxyProcess, embedded_config, write_config};

fn signed_request(call: &V1Call, at: SystemTime, nonce: &str) -> Request<Full<Bytes>> {
    let s = call.sign(
        KEY_ID,
        &Secret::new(SECRET.into()),
        "POST",
        Placement::Query,
        at,
        nonce,
    );
    Request::post(format!("http://{HOST}/?{}", s.query))
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn a_replayed_or_stale_caller_request_is_refused_like_the_api_would() {
    let sim = start_sim("").await;
    let proxy = start_proxy(&proxy_toml_with(sim.addr, "", "", "store = \"memory\"")).await;
    let call = V1Call::gpdb("DescribeDBInstances", &[]);
    let now = SystemTime::now();
    let first = client::send(
        Route::Proxy(proxy.addr),
        signed_request(&call, now, "same-nonce"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    let replay = client::send(
        Route::Proxy(proxy.addr),
        signed_request(&call, now, "same-nonce"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(replay.status, 400);
    assert_eq!(code(&replay), "SignatureNonceUsed");
    let stale = now - Duration::from_secs(16 * 60);
    let old = client::send(
        Route::Proxy(proxy.addr),
        signed_request(&call, stale, "fresh-nonce"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(code(&old), "InvalidTimeStamp.Expired");
    assert_eq!(sim.requests().len(), 1, "only the first reached the API");

    // V3: the same rules for x-acs-date and x-acs-signature-nonce.
    let v3 = call.sign_v3(KEY_ID, &Secret::new(SECRET.into()), HOST, now, "v3-nonce");
    for expected in [200, 400] {
        let mut b = Request::post(format!("http://{HOST}/?{}", v3.query));
        for (k, v) in &v3.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let r = client::send(
            Route::Proxy(proxy.addr),
            b.body(Full::new(Bytes::new())).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(r.status.as_u16(), expected);
    }
}

/// Sends the same signed create (one nonce) to `first`, then to `second`: the second must be
/// refused with `SignatureNonceUsed` and never reach the API.
async fn replay_across(
    sim: &idemproxy::sim::SimHandle,
    first: std::net::SocketAddr,
    restart: impl FnOnce() -> std::net::SocketAddr,
) {
    let call = create(&format!("replayed-{}", uuid::Uuid::new_v4()));
    let (now, nonce) = (SystemTime::now(), uuid::Uuid::new_v4().to_string());
    let send = |addr| {
        client::send(
            Route::Proxy(addr),
            signed_request(&call, now, &nonce),
            Duration::from_secs(10),
        )
    };
    let r = send(first).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = restart();
    let replay = send(second).await.unwrap();
    assert_eq!(replay.status, 400, "{:?}", replay.body);
    assert_eq!(code(&replay), "SignatureNonceUsed");
    assert_eq!(sim.requests().len(), 1, "only the first reached the API");
    assert_eq!(sim.ledger().executions, 1);
}

#[tokio::test]
async fn a_replay_after_a_restart_is_refused_with_the_embedded_store() {
    let sim = start_sim("").await;
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), sim.addr);
    let mut first = ProxyProcess::start(&config);
    let mut second = None;
    replay_across(&sim, first.addr, || {
        first.kill9();
        let p = ProxyProcess::start(&config);
        let addr = p.addr;
        second = Some(p);
        addr
    })
    .await;
}

#[tokio::test]
async fn a_replay_to_another_replica_is_refused_with_redis() {
    let sim = start_sim("").await;
    let url = std::env::var("IDEMPROXY_TEST_REDIS_URL").expect(
        "IDEMPROXY_TEST_REDIS_URL is not set: run the tests with scripts/test, which starts a redis-server",
    );
    let dedupe = format!("store = \"redis\"\nredis_url = \"{url}\"");
    let a = start_proxy(&proxy_toml_with(sim.addr, "", "", &dedupe)).await;
    let b = start_proxy(&proxy_toml_with(sim.addr, "", "", &dedupe)).await;
    replay_across(&sim, a.addr, || b.addr).await;
}

#[test]
fn a_non_loopback_listener_needs_auth_or_an_allow_list() {
    let out = crate::support::check_config(
        "[proxy]\nlisten = \"0.0.0.0:8080\"\n[dedupe]\nstore = \"memory\"\n",
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.listen") && err.contains("open proxy"),
        "{err}"
    );
    let out = crate::support::check_config(
        "[proxy]\nlisten = \"0.0.0.0:8080\"\nallow_clients = [\"10.0.0.0/8\"]\n[dedupe]\nstore = \"memory\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn proxy_authorization_is_required_when_configured() {
    let sim = start_sim("").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "tok-123\n").unwrap();
    let extra = format!(
        "auth_token_file = \"{}\"",
        dir.path().join("token").display()
    );
    let proxy = start_proxy(&proxy_toml_with(sim.addr, "", &extra, "store = \"memory\"")).await;
    let call = V1Call::gpdb("DescribeDBInstances", &[]);
    let r = client::send(
        Route::Proxy(proxy.addr),
        signed_request(&call, SystemTime::now(), "a1"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 407);
    assert!(r.header("proxy-authenticate").contains("Basic"));
    let mut req = signed_request(&call, SystemTime::now(), "a2");
    req.headers_mut()
        .insert("proxy-authorization", "Bearer tok-123".parse().unwrap());
    let r = client::send(Route::Proxy(proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // CONNECT needs it too.
    let req = Request::connect(format!("{HOST}:443"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(Route::Proxy(proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 407);
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_dropped() {
    let sim = start_sim("").await;
    let proxy = start_proxy(&proxy_toml_with(
        sim.addr,
        "",
        "allow_clients = [\"10.0.0.0/8\"]",
        "store = \"memory\"",
    ))
    .await;
    let r = client::send(
        Route::Proxy(proxy.addr),
        signed_request(&create("x"), SystemTime::now(), "c1"),
        Duration::from_secs(10),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn forward_targets_can_be_limited() {
    let sim = start_sim("").await;
    let proxy = start_proxy(&proxy_toml_with(
        sim.addr,
        "",
        "allow_targets = [\"example.com\"]",
        "store = \"memory\"",
    ))
    .await;
    let uri = format!("http://{}/_sim/ledger", sim.addr);
    let req = Request::get(uri)
        .header("host", sim.addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(Route::Proxy(proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(code(&r), "Idemproxy.TargetNotAllowed");
}

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).to_string()
}

#[tokio::test]
async fn oversized_heads_and_slow_clients_are_cut_off() {
    let sim = start_sim("").await;
    let extra = "max_header_bytes = 8192\nmax_headers = 20\nheader_read_timeout = \"300ms\"";
    let proxy = start_proxy(&proxy_toml_with(sim.addr, "", extra, "store = \"memory\"")).await;
    let big = format!(
        "GET http://{HOST}/ HTTP/1.1\r\nhost: {HOST}\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw_exchange(proxy.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..50).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw_exchange(
        proxy.addr,
        format!("GET http://{HOST}/ HTTP/1.1\r\nhost: {HOST}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A client that never finishes its headers is disconnected after the timeout.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the proxy kept a slow client's connection open"
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let sim = start_sim("").await;
    let proxy = start_proxy(&proxy_toml_with(
        sim.addr,
        "",
        "max_connections = 2",
        "store = \"memory\"",
    ))
    .await;
    let _a = TcpStream::connect(proxy.addr).await.unwrap();
    let _b = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = raw_exchange(
        proxy.addr,
        format!("GET http://{HOST}/ HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        answer, "",
        "the third connection is closed without an answer"
    );
}

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish_then_exits_0() {
    let sim = start_sim("CreateDBInstance=slow:1500").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "p.toml", sim.addr, "store = \"memory\"");
    let mut proxy = ProxyProcess::start(&config);
    let addr = proxy.addr;
    let call = tokio::spawn(async move {
        client::send_v1(
            Route::Proxy(addr),
            HOST,
            &crate::support::signer(),
            &create("drain"),
            Placement::Query,
            Duration::from_secs(20),
        )
        .await
    });
    for _ in 0..200 {
        if sim.ledger().executions == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.ledger().executions, 1);
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status();
    let reply = call.await.unwrap().unwrap();
    assert_eq!(
        reply.status, 200,
        "the call in flight finished during the drain"
    );
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert_eq!(status, Some(0));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

async fn describe(proxy: std::net::SocketAddr) -> client::Reply {
    client::send_v1(
        Route::Proxy(proxy),
        HOST,
        &crate::support::signer(),
        &V1Call::gpdb("DescribeDBInstances", &[]),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn reload_swaps_the_config_in_whole_or_keeps_the_old_one() {
    let sim = start_sim("DescribeDBInstances=503,503,503").await;
    let toml = |retry: &str| proxy_toml_with(sim.addr, retry, "", "store = \"memory\"");
    let proxy = start_proxy(&toml("max_attempts = 1")).await;
    let r = describe(proxy.addr).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-idemproxy-attempts")),
        (503, "1")
    );
    let load = |t: &str| {
        idemproxy::config::load_str(t, &Default::default(), std::path::Path::new(".")).unwrap()
    };
    proxy.reload(load(&toml("max_attempts = 5"))).unwrap();
    let r = describe(proxy.addr).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-idemproxy-attempts")),
        (200, "3")
    );
    // A change only a restart can make is refused, and the running config stays.
    let moved =
        toml("max_attempts = 1").replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"");
    let err = proxy.reload(load(&moved)).unwrap_err().to_string();
    assert!(err.contains("proxy.listen"), "{err}");
}

#[tokio::test]
async fn sighup_and_the_admin_endpoint_reload_the_file() {
    let sim = start_sim("DescribeDBInstances=503,503,503,503,503,503").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    let toml = |retry: &str| proxy_toml_with(sim.addr, retry, "", "store = \"memory\"");
    std::fs::write(&config, toml("max_attempts = 1")).unwrap();
    let proxy = ProxyProcess::start(&config);
    assert_eq!(
        describe(proxy.addr).await.header("x-idemproxy-attempts"),
        "1"
    );

    std::fs::write(&config, toml("max_attempts = 3")).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status();
    let mut reloaded = false;
    for _ in 0..100 {
        if proxy
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("configuration reloaded"))
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "no reload logged");
    assert_eq!(
        describe(proxy.addr).await.header("x-idemproxy-attempts"),
        "3"
    );

    // An invalid file: the admin endpoint says why, and the running config stays.
    std::fs::write(&config, toml("max_attempts = \"many\"")).unwrap();
    let admin = proxy
        .logs
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let a = v["fields"]["addr"].as_str()?;
            (v["fields"]["message"]
                .as_str()?
                .starts_with("admin listening"))
            .then(|| {
                a.trim_start_matches("Some(")
                    .trim_end_matches(')')
                    .to_owned()
            })
        })
        .unwrap();
    let admin: std::net::SocketAddr = admin.parse().unwrap();
    let req = Request::post("/-/reload")
        .header("host", admin.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(Route::Direct(admin), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    assert!(
        String::from_utf8_lossy(&r.body).contains("retry.max_attempts"),
        "{:?}",
        r.body
    );
    assert_eq!(
        describe(proxy.addr).await.status,
        200,
        "still the reloaded config: 3 attempts get through"
    );
}
