//! HTTPS through CONNECT: interception with the local CA for API hosts, tunnels for the rest.
//! Driven by curl, as a user would.

use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::secret::Secret;
use idemproxy::sim::{self, FaultPlan, SimConfig, SimHandle};
use idemproxy::tls::ca::{self, LocalCa};
use tokio::net::TcpListener;

use crate::support::{HOST, KEY_ID, SECRET, create, start_proxy};

pub struct TlsRig {
    pub sim: SimHandle,
    pub proxy: idemproxy::proxy::ProxyHandle,
    pub ca_cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// A local CA, a simulator serving HTTPS with a leaf from it, and a proxy intercepting
/// CONNECT with the same CA and trusting it upstream.
pub async fn tls_rig(faults: &str, proxy_extra: &str) -> TlsRig {
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = ca::init_dir(dir.path(), false, &["aliyuncs.com".into()]).unwrap();
    let authority = LocalCa::load(&ca_cert, &ca_key, 4).unwrap();
    let (cert, key) = authority.mint_for(&[HOST]).unwrap();
    let mut cfg = SimConfig::with_key(KEY_ID, SECRET);
    cfg.faults = FaultPlan::parse(faults).unwrap();
    cfg.tls = Some(ca::server_config(cert, key).unwrap());
    let sim = sim::start(cfg, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_extra}\n[retry]\nbase_delay = \"20ms\"\nthrottle_base_delay = \"20ms\"\n\
         [tls]\nca_cert = \"{}\"\nca_key = \"{}\"\n\
         [[upstreams]]\nhosts = [\"{HOST}\"]\nconnect_to = \"{}\"\nca_file = \"{}\"\n\
         [[credentials]]\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{SECRET}\"\n\
         [dedupe]\nstore = \"memory\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        ca_cert.display(),
        ca_key.display(),
        sim.addr,
        ca_cert.display()
    );
    let proxy = start_proxy(&toml).await;
    TlsRig {
        sim,
        proxy,
        ca_cert,
        _dir: dir,
    }
}

pub fn signed_url(call: &V1Call) -> String {
    let s = call.sign(
        KEY_ID,
        &Secret::new(SECRET.into()),
        "POST",
        Placement::Query,
        SystemTime::now(),
        &uuid::Uuid::new_v4().to_string(),
    );
    format!("https://{HOST}/?{}", s.query)
}

pub struct Curl {
    pub code: Option<i32>,
    pub status: String,
    pub http_version: String,
    pub headers: String,
    pub body: String,
    pub stderr: String,
}

/// Runs curl through the proxy; `extra` are more curl arguments.
pub async fn curl(proxy: std::net::SocketAddr, url: &str, extra: &[&str]) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "--max-time",
            "20",
            "-x",
            &format!("http://{proxy}"),
        ])
        .arg("-D")
        .arg(&headers)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(url)
        .output()
        .await
        .expect("curl must be installed (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", ""));
    let mut parts = tail.split(' ');
    Curl {
        code: out.status.code(),
        status: parts.next().unwrap_or("").to_owned(),
        http_version: parts.next().unwrap_or("").to_owned(),
        headers: std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[test]
fn curl_is_available() {
    let out = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    assert!(out.status.success());
}

#[tokio::test]
async fn curl_through_connect_is_intercepted_and_protected() {
    let rig = tls_rig("CreateDBInstance=reset", "").await;
    let ca = rig.ca_cert.display().to_string();
    let r = curl(
        rig.proxy.addr,
        &signed_url(&create("curl")),
        &["--cacert", &ca, "--http1.1"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.status, "200", "{}", r.body);
    assert!(
        r.headers.contains("x-idemproxy-token: injected"),
        "{}",
        r.headers
    );
    assert!(
        r.headers.contains("x-idemproxy-attempts: 2"),
        "{}",
        r.headers
    );
    assert!(r.body.contains("gp-sim"), "{}", r.body);
    let ledger = rig.sim.ledger();
    assert_eq!((ledger.executions, ledger.duplicates), (1, 0));
}

#[tokio::test]
async fn http2_inside_the_tunnel() {
    let rig = tls_rig("DescribeDBInstances=500", "").await;
    let ca = rig.ca_cert.display().to_string();
    let r = curl(
        rig.proxy.addr,
        &signed_url(&V1Call::gpdb("DescribeDBInstances", &[])),
        &["--cacert", &ca, "--http2"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.status, "200", "{}", r.body);
    assert_eq!(r.http_version, "2");
    assert!(
        r.headers.contains("x-idemproxy-attempts: 2"),
        "{}",
        r.headers
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_fails_cleanly_and_the_proxy_keeps_serving() {
    let rig = tls_rig("", "").await;
    let r = curl(rig.proxy.addr, &signed_url(&create("untrusted")), &[]).await;
    assert_eq!(
        r.code,
        Some(60),
        "curl: SSL certificate problem expected: {}",
        r.stderr
    );
    assert!(rig.sim.requests().is_empty());
    let ca = rig.ca_cert.display().to_string();
    let r = curl(
        rig.proxy.addr,
        &signed_url(&create("trusted")),
        &["--cacert", &ca],
    )
    .await;
    assert_eq!(r.status, "200", "{} {}", r.stderr, r.body);
}

#[tokio::test]
async fn other_hosts_get_a_blind_tunnel() {
    // A TLS server for "localhost" with its own, unconstrained test CA: the proxy cannot
    // intercept it (not an API host), so curl sees the server's own certificate.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca::init_dir(dir.path(), false, &[]).unwrap();
    let other_ca = LocalCa::load(&cert, &key, 1).unwrap();
    let (leaf, leaf_key) = other_ca.mint_for(&["localhost"]).unwrap();
    let mut cfg = SimConfig::with_key(KEY_ID, SECRET);
    cfg.tls = Some(ca::server_config(leaf, leaf_key).unwrap());
    let other = sim::start(cfg, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let rig = tls_rig("", "").await;
    let url = format!("https://localhost:{}/_sim/ledger", other.addr.port());
    let r = curl(
        rig.proxy.addr,
        &url,
        &["--cacert", &cert.display().to_string(), "-X", "GET"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.status, "200");
    assert!(r.body.contains("\"executions\":0"), "{}", r.body);
    assert!(
        !r.headers.contains("x-idemproxy"),
        "tunnelled untouched: {}",
        r.headers
    );
}

#[tokio::test]
async fn tunnels_can_be_refused() {
    let rig = tls_rig("", "connect_other = \"refuse\"").await;
    let r = curl(rig.proxy.addr, "https://localhost:1/", &[]).await;
    assert_ne!(r.code, Some(0));
    assert!(r.headers.contains("403"), "{}", r.headers);
}

#[tokio::test]
async fn connect_to_an_api_host_without_a_ca_is_refused_clearly() {
    let rig = crate::support::rig("").await;
    let r = curl(rig.proxy.addr, &format!("https://{HOST}/"), &[]).await;
    assert_ne!(r.code, Some(0));
    assert!(r.headers.contains("403"), "{}", r.headers);
}

#[tokio::test]
async fn non_443_ports_are_intercepted_too() {
    let rig = tls_rig("CreateDBInstance=503", "").await;
    let ca = rig.ca_cert.display().to_string();
    let url = signed_url(&create("port")).replace(HOST, &format!("{HOST}:8443"));
    let r = curl(rig.proxy.addr, &url, &["--cacert", &ca]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.status, "200", "{}", r.body);
    assert!(
        r.headers.contains("x-idemproxy-attempts: 2"),
        "{}",
        r.headers
    );
}
