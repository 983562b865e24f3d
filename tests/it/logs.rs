//! Logs: one line per call with what an operator needs, and never a secret, a signature, an
//! Authorization value or a security token.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use idemproxy::api::params::Params;
use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::client::{self, Route, Signer};
use idemproxy::secret::Secret;

use crate::support::{HOST, KEY_ID, SECRET, create, start_sim};
use crate::support::{ProxyProcess, write_config};

const STS: &str = "sts-token-must-not-leak-8c1f";

#[tokio::test]
async fn logs_never_show_secrets_signatures_or_tokens() {
    let sim = start_sim("CreateDBInstance=reset;DescribeDBInstances=500").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "p.toml", sim.addr, "store = \"memory\"");
    let proxy = ProxyProcess::start_with_env(&config, &[("RUST_LOG", "debug")]);
    let mut leaks: Vec<String> = vec![SECRET.to_owned(), STS.to_owned()];

    // V1 with a security token, retried once (the simulator resets after acting).
    let mut call = create("logs");
    call.params.push(("SecurityToken".into(), STS.into()));
    let signed = call.sign(
        KEY_ID,
        &Secret::new(SECRET.into()),
        "POST",
        Placement::Query,
        SystemTime::now(),
        "nonce-logs-1",
    );
    let params = Params::parse(Some(&signed.query), None).unwrap();
    leaks.push(params.get("Signature").unwrap().to_owned());
    let req = Request::post(format!("http://{HOST}/?{}", signed.query))
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = client::send(Route::Proxy(proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A bad V1 signature.
    let wrong = Signer {
        key_id: KEY_ID.into(),
        secret: Secret::new("wrong-secret-9d2".into()),
    };
    leaks.push("wrong-secret-9d2".into());
    let r = client::send_v1(
        Route::Proxy(proxy.addr),
        HOST,
        &wrong,
        &create("x"),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);

    // V3 with a security token header, retried once.
    let describe = V1Call::gpdb("DescribeDBInstances", &[("RegionId", "cn-hangzhou")]);
    let signed = describe.sign_v3(
        KEY_ID,
        &Secret::new(SECRET.into()),
        HOST,
        SystemTime::now(),
        "nonce-logs-2",
    );
    let mut b = Request::post(format!("http://{HOST}/?{}", signed.query));
    for (k, v) in &signed.headers {
        b = b.header(k.as_str(), v.as_str());
        if k == "authorization" {
            leaks.push(v.clone());
            leaks.push(v.rsplit('=').next().unwrap().to_owned());
        }
    }
    let r = client::send(
        Route::Proxy(proxy.addr),
        b.body(Full::new(Bytes::new())).unwrap(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = proxy.logs.lock().unwrap().join("\n");
    for leak in &leaks {
        assert!(
            !logs.contains(leak.as_str()),
            "the logs contain {leak:?}:\n{logs}"
        );
    }
    assert!(!logs.contains("ACS3-HMAC-SHA256 Credential"), "{logs}");
    // One line per call, with what an operator needs.
    let calls: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "api call")
        .collect();
    assert_eq!(calls.len(), 2, "{logs}");
    let create_line = calls
        .iter()
        .find(|v| v["fields"]["action"] == "CreateDBInstance")
        .unwrap();
    assert_eq!(create_line["fields"]["attempts"], 2);
    assert_eq!(create_line["fields"]["token"], "injected");
    assert_eq!(create_line["fields"]["class"], "token");
    assert!(create_line["fields"]["wait_ms"].is_u64());
}
