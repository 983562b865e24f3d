//! Chaos proof, sized for CI: naive re-sending clients (they time out after 1 s and send the
//! same call again, without a token, until they get a definite answer) and the official legacy
//! SDK, through a proxy process, against the simulator playing every fault kind at random, with
//! the proxy killed (`kill -9`) and restarted mid-run. Zero duplicate executions; every call
//! ends with a definite answer. The longer run is `CHAOS_CALLS=… CHAOS_CLIENTS=…` (see
//! docs/chaos.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idemproxy::api::rpc_client::Placement;
use idemproxy::client::{self, Route};
use idemproxy::retry::decide::is_throttling_code;

use crate::support::{HOST, code, create, signer, start_sim};
use crate::support::{ProxyProcess, write_config};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One logical call, re-sent like a naive script until it gets a definite answer.
async fn naive_call(
    proxy: SocketAddr,
    desc: String,
    resends: &AtomicUsize,
) -> Result<String, String> {
    let call = create(&desc);
    for _ in 0..60 {
        match client::send_v1(
            Route::Proxy(proxy),
            HOST,
            &signer(),
            &call,
            Placement::Query,
            Duration::from_secs(1),
        )
        .await
        {
            Ok(r) if r.status == 200 => {
                return r
                    .json()
                    .and_then(|v| v["DBInstanceId"].as_str().map(str::to_owned))
                    .ok_or_else(|| "no id".into());
            }
            Ok(r)
                if r.status.is_client_error()
                    && r.status != 429
                    && !is_throttling_code(&code(&r)) =>
            {
                return Err(format!("definite refusal {}: {:?}", r.status, r.json()));
            }
            // A 5xx, throttling (when the proxy's own retries ran out: it answers with the
            // API's last response), a lost connection, a timeout, the proxy restarting: send
            // it again.
            _ => {
                resends.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(format!("{desc}: no definite answer after 60 sends"))
}

#[tokio::test]
async fn chaos_with_a_restart_has_no_duplicates() {
    let calls = env_usize("CHAOS_CALLS", 40);
    let clients = env_usize("CHAOS_CLIENTS", 8);
    let sim =
        start_sim("random=0.35;seed=42;kinds=503|500|reset|throttle:50|throttle-nohint|slow:1500")
            .await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = write_config(
        dir.path(),
        "p.toml",
        sim.addr,
        "store = \"embedded\"\npath = \"state/dedupe.redb\"",
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut proxy = ProxyProcess::start(&config);
    let addr = proxy.addr;

    let resends = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (resends, next) = (resends.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return results;
                }
                results.push((i, naive_call(addr, format!("chaos-{i}"), &resends).await));
            }
        }));
    }
    // Mid-run: kill -9 and restart on the same port.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = ProxyProcess::start(&config);
    assert_eq!(restarted.addr, addr);

    let mut ids = std::collections::HashMap::new();
    for t in tasks {
        for (i, r) in t.await.unwrap() {
            let id = r.unwrap_or_else(|e| panic!("call {i} ended without a definite answer: {e}"));
            ids.insert(i, id);
        }
    }
    assert_eq!(ids.len(), calls);

    // The official legacy SDK through the restarted proxy, faults still on.
    let python =
        std::env::var("IDEMPROXY_TEST_PYTHON").expect("IDEMPROXY_TEST_PYTHON: run scripts/test");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/legacy_sdk.py");
    let out = tokio::process::Command::new(python)
        .args([
            script,
            "--proxy-mode",
            "env",
            "--proxy",
            &format!("http://{addr}"),
            "--creates",
            "3",
        ])
        .output()
        .await
        .unwrap();
    let sdk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sdk_ok = sdk["creates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == true)
        .count();

    let ledger = sim.ledger();
    eprintln!(
        "chaos: {calls} naive calls by {clients} clients, {} re-sends, 1 kill -9 + restart; SDK {sdk_ok}/3 ok; \
         simulator: {} requests, {} executions, {} replays, {} duplicates",
        resends.load(Ordering::Relaxed),
        ledger.requests,
        ledger.executions,
        ledger.replays,
        ledger.duplicates
    );
    assert_eq!(ledger.duplicates, 0, "{ledger:?}");
    let distinct: std::collections::HashSet<_> = ids.values().collect();
    assert_eq!(
        distinct.len(),
        calls,
        "every logical call got its own instance"
    );
    assert_eq!(
        ledger.executions as usize,
        calls + sdk_ok,
        "one execution per logical call that succeeded"
    );
}
