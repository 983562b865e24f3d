//! V3 (ACS3-HMAC-SHA256) calls: verified, token injected, every attempt re-signed.

use std::time::Duration;

use idemproxy::api::rpc_client::V1Call;
use idemproxy::client::{self, Route, Signer};
use idemproxy::secret::Secret;

use crate::support::{HOST, KEY_ID, code, create, proxy_toml, rig, signer, start_proxy, start_sim};

#[tokio::test]
async fn v3_call_gets_a_token_and_every_attempt_is_re_signed() {
    let rig = rig("CreateDBInstance=reset,503").await;
    let reply = client::send_v3(
        Route::Proxy(rig.proxy.addr),
        HOST,
        &signer(),
        &create("v3"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "3");
    assert_eq!(reply.header("x-idemproxy-token"), "injected");
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0));
    let reqs = rig.sim.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.client_token == reqs[0].client_token && r.client_token.is_some())
    );
    let nonces: std::collections::HashSet<_> = reqs.iter().map(|r| r.nonce.clone()).collect();
    assert_eq!(nonces.len(), 3);
}

#[tokio::test]
async fn v3_bad_signature_is_refused_and_not_sent() {
    let rig = rig("").await;
    let wrong = Signer {
        key_id: KEY_ID.into(),
        secret: Secret::new("wrong".into()),
    };
    let reply = client::send_v3(
        Route::Proxy(rig.proxy.addr),
        HOST,
        &wrong,
        &create("x"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(code(&reply), "SignatureDoesNotMatch");
    assert!(rig.sim.requests().is_empty());
}

#[tokio::test]
async fn v3_token_for_create_model_service_goes_in_the_form_body() {
    let rig = rig("CreateModelService=500").await;
    let call = V1Call::gpdb("CreateModelService", &[("RegionId", "cn-hangzhou")]);
    let reply = client::send_v3(
        Route::Proxy(rig.proxy.addr),
        HOST,
        &signer(),
        &call,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.replays), (1, 1));
}

#[tokio::test]
async fn gateway_re_signs_v3_for_the_upstream_host() {
    // The client's endpoint is the proxy, so it signs `host: 127.0.0.1:PORT`; the simulator
    // only accepts the request if the proxy re-signed it for the API host.
    let sim = start_sim("CreateDBInstance=500").await;
    let proxy = start_proxy(&proxy_toml(
        sim.addr,
        "",
        &format!("gateway_upstream = \"{HOST}\""),
    ))
    .await;
    let host = proxy.addr.to_string();
    let reply = client::send_v3(
        Route::Direct(proxy.addr),
        &host,
        &signer(),
        &create("gw"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    assert_eq!(sim.ledger().executions, 1);
}

#[tokio::test]
async fn v3_read_only_call_without_token() {
    let rig = rig("DescribeDBInstances=503").await;
    let reply = client::send_v3(
        Route::Proxy(rig.proxy.addr),
        HOST,
        &signer(),
        &V1Call::gpdb("DescribeDBInstances", &[("RegionId", "cn-hangzhou")]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-token"), "none");
    assert!(rig.sim.requests().iter().all(|r| r.client_token.is_none()));
}
