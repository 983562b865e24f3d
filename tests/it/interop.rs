//! Interop: the official legacy Python SDK (aliyun-python-sdk-core + aliyun-python-sdk-gpdb),
//! unmodified, through the proxy, against the simulator with faults on.
//!
//! `scripts/test` creates the venv and sets `IDEMPROXY_TEST_PYTHON`; without it these tests
//! fail (they never skip).

use std::process::Command;

use serde_json::Value;

use crate::connect::tls_rig;
use crate::support::{HOST, KEY_ID, SECRET, proxy_toml, rig, start_proxy, start_sim};

fn python() -> String {
    std::env::var("IDEMPROXY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "IDEMPROXY_TEST_PYTHON is not set: run the tests with scripts/test, which installs the \
             official legacy Python SDK into a venv (tests/interop/requirements.txt)"
        )
    })
}

async fn drive(proxy: std::net::SocketAddr, mode: &str, creates: u32) -> Value {
    let proxy = format!("http://{proxy}");
    run_script(
        "legacy_sdk.py",
        &["--proxy-mode", mode, "--proxy", &proxy],
        creates,
    )
    .await
}

async fn run_script(script: &str, args: &[&str], creates: u32) -> Value {
    let script = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).args(args);
    cmd.args([
        "--ak",
        KEY_ID,
        "--secret",
        SECRET,
        "--creates",
        &creates.to_string(),
        "--describe",
    ]);
    let out = cmd.output().await.expect("run the interop script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "script failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad JSON from the script ({e}): {stdout}"))
}

fn check(result: &Value, creates: usize, sim: &idemproxy::sim::SimHandle) {
    let list = result["creates"].as_array().unwrap();
    assert_eq!(list.len(), creates);
    for c in list {
        assert_eq!(c["ok"], true, "{c}");
        assert!(
            c["DBInstanceId"].as_str().unwrap().starts_with("gp-sim"),
            "{c}"
        );
    }
    let ledger = sim.ledger();
    assert_eq!(ledger.executions, creates as u64, "{ledger:?}");
    assert_eq!(ledger.duplicates, 0, "{ledger:?}");
    let describe = &result["describe"];
    assert_eq!(describe["ok"], true, "{describe}");
    assert_eq!(describe["response"]["TotalRecordCount"], creates);
    // Every request reached the simulator through the proxy with a token it injected.
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.action == "CreateDBInstance")
    {
        assert!(r.client_token.is_some(), "{r:?}");
    }
}

#[test]
fn python_is_available() {
    let out = Command::new(python())
        .args(["-c", "import aliyunsdkcore, aliyunsdkgpdb"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn legacy_sdk_via_http_proxy_env_creates_each_instance_once() {
    let rig = rig("CreateDBInstance=reset,503,ok,throttle:50,500,ok,throttle-nohint,reset;DescribeDBInstances=500").await;
    let result = drive(rig.proxy.addr, "env", 3).await;
    check(&result, 3, &rig.sim);
    assert!(
        rig.sim.ledger().replays >= 2,
        "the faults after acting were answered by token"
    );
}

#[tokio::test]
async fn legacy_sdk_via_proxy_argument_creates_each_instance_once() {
    let rig = rig("random=0.4;seed=11").await;
    let result = drive(rig.proxy.addr, "arg", 4).await;
    check(&result, 4, &rig.sim);
}

#[tokio::test]
async fn tea_sdk_v3_through_https_proxy_with_only_the_ca_trusted() {
    let rig = tls_rig(
        "CreateDBInstance=reset,503,ok,500,throttle:50;DescribeDBInstances=500",
        "",
    )
    .await;
    let proxy = format!("http://{}", rig.proxy.addr);
    let ca = rig.ca_cert.display().to_string();
    let args = [
        "--proxy-mode",
        "env",
        "--proxy",
        &proxy,
        "--protocol",
        "https",
        "--signature",
        "v3",
        "--ca",
        &ca,
    ];
    let result = run_script("tea_sdk.py", &args, 3).await;
    check(&result, 3, &rig.sim);
}

#[tokio::test]
async fn tea_sdk_v1_signature_through_https_proxy_config() {
    let rig = tls_rig("random=0.4;seed=5", "").await;
    let proxy = format!("http://{}", rig.proxy.addr);
    let ca = rig.ca_cert.display().to_string();
    let args = [
        "--proxy-mode",
        "config",
        "--proxy",
        &proxy,
        "--protocol",
        "https",
        "--signature",
        "v2",
        "--ca",
        &ca,
    ];
    let result = run_script("tea_sdk.py", &args, 3).await;
    check(&result, 3, &rig.sim);
}

#[tokio::test]
async fn tea_sdk_v3_through_the_gateway() {
    // The Node Tea SDK cannot use a forward proxy; the gateway is its way in. The Python Tea
    // SDK configured the same way (endpoint = the proxy, plain http) plays it here.
    let sim = start_sim("CreateDBInstance=reset,500").await;
    let proxy = start_proxy(&proxy_toml(
        sim.addr,
        "",
        &format!("gateway_upstream = \"{HOST}\""),
    ))
    .await;
    let endpoint = proxy.addr.to_string();
    let args = [
        "--proxy-mode",
        "none",
        "--protocol",
        "http",
        "--signature",
        "v3",
        "--endpoint",
        &endpoint,
    ];
    let result = run_script("tea_sdk.py", &args, 2).await;
    check(&result, 2, &sim);
}
