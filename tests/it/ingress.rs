//! Ways in: forward proxy for API and non-API hosts, gateway mode, CONNECT refusal.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use idemproxy::api::rpc_client::Placement;
use idemproxy::client::{self, Route};

use crate::support::{HOST, create, proxy_toml, rig, signer, start_proxy, start_sim};

#[tokio::test]
async fn non_api_hosts_are_forwarded_untouched() {
    let rig = rig("").await;
    // 127.0.0.1 is not an API host: the proxy forwards the request as is.
    let uri = format!("http://{}/_sim/ledger", rig.sim.addr);
    let req = Request::get(uri)
        .header("host", rig.sim.addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = client::send(Route::Proxy(rig.proxy.addr), req, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().unwrap()["executions"], 0);
    assert_eq!(reply.header("x-idemproxy-attempts"), "");
}

#[tokio::test]
async fn regional_hosts_match_the_wildcard() {
    let rig = rig("CreateDBInstance=503").await;
    let reply = client::send_v1(
        Route::Proxy(rig.proxy.addr),
        "gpdb.cn-beijing.aliyuncs.com",
        &signer(),
        &create("regional"),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
}

#[tokio::test]
async fn gateway_mode_sends_origin_form_requests_to_the_configured_api() {
    let sim = start_sim("CreateDBInstance=reset").await;
    let proxy = start_proxy(&proxy_toml(
        sim.addr,
        "",
        &format!("gateway_upstream = \"{HOST}\""),
    ))
    .await;
    // The tool's endpoint is the proxy itself: origin-form, Host = the proxy's address.
    let reply = client::send_v1(
        Route::Direct(proxy.addr),
        &proxy.addr.to_string(),
        &signer(),
        &create("gw"),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    assert_eq!(sim.ledger().executions, 1);
}

#[tokio::test]
async fn origin_form_without_a_gateway_is_a_clear_error() {
    let rig = rig("").await;
    let reply = client::send_v1(
        Route::Direct(rig.proxy.addr),
        "localhost",
        &signer(),
        &create("x"),
        Placement::Query,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json().unwrap()["Code"], "Idemproxy.NoUpstream");
}
