//! Tokens and retries through the proxy, against the simulator with faults.

use idemproxy::api::rpc_client::{Placement, V1Call};

use crate::support::{code, create, rig, rig_with};

#[tokio::test]
async fn reset_after_acting_is_retried_with_the_same_token_and_runs_once() {
    let rig = rig("CreateDBInstance=reset").await;
    let reply = rig.call(&create("one")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    assert_eq!(reply.header("x-idemproxy-token"), "injected");
    let id = reply.json().unwrap()["DBInstanceId"]
        .as_str()
        .unwrap()
        .to_owned();

    let ledger = rig.sim.ledger();
    assert_eq!(
        (ledger.executions, ledger.replays, ledger.duplicates),
        (1, 1, 0)
    );
    let reqs = rig.sim.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].result, "executed");
    assert_eq!(reqs[0].fault.as_deref(), Some("reset"));
    assert_eq!(reqs[1].result, "replayed");
    let token = reqs[0].client_token.clone().expect("token injected");
    assert_eq!(reqs[1].client_token.as_deref(), Some(token.as_str()));
    assert_eq!(reply.header("x-idemproxy-client-token"), token);
    assert_ne!(reqs[0].nonce, reqs[1].nonce);
    // The client got the original result of the one execution.
    let describe = rig.call(&V1Call::gpdb("DescribeDBInstances", &[])).await;
    let items = describe.json().unwrap()["Items"]["DBInstance"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["DBInstanceId"], id.as_str());
}

#[tokio::test]
async fn every_failure_kind_in_a_row_still_runs_once() {
    let rig = rig("CreateDBInstance=503,500,reset,throttle:30").await;
    let reply = rig.call(&create("storm")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "5");
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0));
    let tokens: std::collections::HashSet<_> = rig
        .sim
        .requests()
        .iter()
        .map(|r| r.client_token.clone())
        .collect();
    assert_eq!(tokens.len(), 1, "one token for every attempt");
}

#[tokio::test]
async fn throttling_with_a_hint_waits_at_least_the_hint() {
    let rig = rig("CreateDBInstance=throttle:200").await;
    let reply = rig.call(&create("t")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    let waited: u64 = reply.header("x-idemproxy-wait-ms").parse().unwrap();
    assert!(waited >= 200, "waited {waited} ms, hint was 200 ms");
    assert_eq!(rig.sim.ledger().executions, 1);
}

#[tokio::test]
async fn throttling_without_a_hint_backs_off_and_succeeds() {
    // Even a mutating call without token support: a throttling refusal means it did not run.
    let rig = rig("CreateAccount=throttle-nohint,throttle-nohint").await;
    let reply = rig
        .call(&V1Call::gpdb("CreateAccount", &[("AccountName", "a")]))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-attempts"), "3");
    assert_eq!(reply.header("x-idemproxy-token"), "none");
    // Full jitter: the wait may round to 0 ms, but it is always reported.
    assert!(reply.header("x-idemproxy-wait-ms").parse::<u64>().is_ok());
    assert_eq!(rig.sim.ledger().executions, 1);
}

#[tokio::test]
async fn mutating_without_token_support_is_not_retried_after_503() {
    let rig = rig("CreateAccount=503").await;
    let reply = rig
        .call(&V1Call::gpdb("CreateAccount", &[("AccountName", "a")]))
        .await;
    assert_eq!(reply.status, 503);
    assert_eq!(code(&reply), "ServiceUnavailable");
    assert_eq!(reply.header("x-idemproxy-attempts"), "1");
    assert_eq!(
        reply.header("x-idemproxy-retry-stopped"),
        "unsafe-to-repeat"
    );
    assert_eq!(rig.sim.requests().len(), 1);
}

#[tokio::test]
async fn mutating_without_token_support_is_not_retried_after_a_reset() {
    let rig = rig("CreateAccount=reset").await;
    let reply = rig
        .call(&V1Call::gpdb("CreateAccount", &[("AccountName", "a")]))
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(code(&reply), "Idemproxy.ResponseLost");
    let msg = reply.json().unwrap()["Message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("may or may not have run"), "{msg}");
    assert_eq!(reply.header("x-idemproxy-attempts"), "1");
    assert_eq!(rig.sim.requests().len(), 1);
    assert_eq!(rig.sim.ledger().executions, 1);
}

#[tokio::test]
async fn read_only_calls_are_retried_on_500() {
    let rig = rig("DescribeDBInstances=500,500").await;
    let reply = rig.call(&V1Call::gpdb("DescribeDBInstances", &[])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-attempts"), "3");
    assert_eq!(reply.header("x-idemproxy-class"), "read-only");
    assert!(rig.sim.requests().iter().all(|r| r.client_token.is_none()));
}

#[tokio::test]
async fn a_callers_own_token_is_kept() {
    let rig = rig("CreateDBInstance=500").await;
    let mut call = create("mine");
    call.params
        .push(("ClientToken".into(), "caller-token-1".into()));
    let reply = rig.call(&call).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-idemproxy-token"), "caller");
    let reqs = rig.sim.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter()
            .all(|r| r.client_token.as_deref() == Some("caller-token-1"))
    );
}

#[tokio::test]
async fn a_bad_caller_token_is_refused() {
    let rig = rig("").await;
    let mut call = create("x");
    call.params.push(("ClientToken".into(), "x".repeat(65)));
    let reply = rig.call(&call).await;
    assert_eq!(reply.status, 400);
    assert_eq!(code(&reply), "InvalidParameter");
    assert!(rig.sim.requests().is_empty());
}

#[tokio::test]
async fn attempts_exhausted_returns_the_last_upstream_response() {
    let rig = rig_with(
        "DescribeDBInstances=503,503,503,503",
        "max_attempts = 3",
        "",
    )
    .await;
    let reply = rig.call(&V1Call::gpdb("DescribeDBInstances", &[])).await;
    assert_eq!(reply.status, 503);
    assert_eq!(code(&reply), "ServiceUnavailable");
    assert_eq!(reply.header("x-idemproxy-attempts"), "3");
    assert_eq!(reply.header("x-idemproxy-retry-stopped"), "max-attempts");
    assert_eq!(rig.sim.requests().len(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_the_retry_replays_by_token() {
    let rig = rig_with(
        "CreateDBInstance=slow:1500",
        "per_try_timeout = \"300ms\"",
        "",
    )
    .await;
    let reply = rig.call(&create("slow")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.replays), (1, 1));
}

#[tokio::test]
async fn no_response_at_all_ends_in_an_api_shaped_504() {
    let rig = rig_with(
        "DescribeDBInstances=slow:1000,slow:1000",
        "per_try_timeout = \"200ms\"\nmax_attempts = 2",
        "",
    )
    .await;
    let reply = rig.call(&V1Call::gpdb("DescribeDBInstances", &[])).await;
    assert_eq!(reply.status, 504);
    assert_eq!(code(&reply), "Idemproxy.UpstreamTimeout");
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
}

#[tokio::test]
async fn a_body_over_the_replay_limit_goes_once() {
    let rig = rig_with("CreateDBInstance=503", "", "max_replay_body = 256").await;
    let big = "x".repeat(1000);
    let call = V1Call::gpdb(
        "CreateDBInstance",
        &[("DBInstanceDescription", big.as_str())],
    );
    let reply = rig.call_placed(&call, Placement::Body).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("x-idemproxy-passthrough"),
        "body-over-replay-limit"
    );
    assert_eq!(reply.header("x-idemproxy-attempts"), "1");
    let reqs = rig.sim.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].client_token, None, "untouched: no token added");
}

#[tokio::test]
async fn form_body_callers_get_the_token_in_the_body_and_a_valid_signature() {
    let rig = rig("CreateDBInstance=500").await;
    let reply = rig
        .call_placed(&create("pop-core style"), Placement::Body)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("x-idemproxy-attempts"), "2");
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.replays), (1, 1));
}

#[tokio::test]
async fn connect_failure_is_retried_for_any_call_then_reported() {
    // Nothing listens on the target: every attempt fails to connect; nothing was sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let proxy =
        crate::support::start_proxy(&crate::support::proxy_toml(addr, "max_attempts = 3", ""))
            .await;
    let reply = idemproxy::client::send_v1(
        idemproxy::client::Route::Proxy(proxy.addr),
        crate::support::HOST,
        &crate::support::signer(),
        &V1Call::gpdb("CreateAccount", &[]),
        Placement::Query,
        std::time::Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(code(&reply), "Idemproxy.UpstreamConnectFailed");
    assert_eq!(reply.header("x-idemproxy-attempts"), "3");
}
