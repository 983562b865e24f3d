//! Test rig: a simulator with faults and a proxy in front of it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::client::{self, Reply, Route, Signer};
use idemproxy::proxy::{self, ProxyHandle};
use idemproxy::secret::Secret;
use idemproxy::sim::{self, FaultPlan, SimConfig, SimHandle};
use tokio::net::TcpListener;

pub const KEY_ID: &str = "testid";
pub const SECRET: &str = "testsecret";
pub const HOST: &str = "gpdb.aliyuncs.com";

pub struct Rig {
    pub sim: SimHandle,
    pub proxy: ProxyHandle,
}

pub fn signer() -> Signer {
    Signer {
        key_id: KEY_ID.into(),
        secret: Secret::new(SECRET.into()),
    }
}

pub async fn start_sim(faults: &str) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = SimConfig::with_key(KEY_ID, SECRET);
    cfg.faults = FaultPlan::parse(faults).unwrap();
    sim::start(cfg, listener).unwrap()
}

/// Proxy config for a simulator at `sim` with `retry` and `proxy_extra` lines, and an
/// in-memory dedupe store.
pub fn proxy_toml(sim: std::net::SocketAddr, retry: &str, proxy_extra: &str) -> String {
    proxy_toml_with(sim, retry, proxy_extra, "store = \"memory\"")
}

/// Like `proxy_toml` with the given `[dedupe]` lines.
pub fn proxy_toml_with(
    sim: std::net::SocketAddr,
    retry: &str,
    proxy_extra: &str,
    dedupe: &str,
) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_extra}\n\
         [retry]\nbase_delay = \"20ms\"\nthrottle_base_delay = \"20ms\"\nmax_delay = \"1s\"\n{retry}\n\
         [[upstreams]]\nhosts = [\"{HOST}\", \"gpdb.*.aliyuncs.com\"]\nconnect_to = \"{sim}\"\nscheme = \"http\"\n\
         [[credentials]]\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{SECRET}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[dedupe]\n{dedupe}\n"
    )
}

pub async fn start_proxy(toml: &str) -> ProxyHandle {
    let cfg = idemproxy::config::load_str(toml, &HashMap::new(), Path::new(".")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    proxy::start(Arc::new(cfg), listener).await.unwrap()
}

/// A simulator with `faults` and a proxy with `retry` settings in front of it.
pub async fn rig_with(faults: &str, retry: &str, proxy_extra: &str) -> Rig {
    let sim = start_sim(faults).await;
    let proxy = start_proxy(&proxy_toml(sim.addr, retry, proxy_extra)).await;
    Rig { sim, proxy }
}

pub async fn rig(faults: &str) -> Rig {
    rig_with(faults, "", "").await
}

impl Rig {
    /// Sends a legacy-SDK-shaped call through the proxy (forward mode).
    pub async fn call(&self, call: &V1Call) -> Reply {
        self.call_placed(call, Placement::Query).await
    }

    pub async fn call_placed(&self, call: &V1Call, placement: Placement) -> Reply {
        client::send_v1(
            Route::Proxy(self.proxy.addr),
            HOST,
            &signer(),
            call,
            placement,
            Duration::from_secs(20),
        )
        .await
        .unwrap()
    }
}

pub fn create(desc: &str) -> V1Call {
    V1Call::gpdb(
        "CreateDBInstance",
        &[
            ("RegionId", "cn-hangzhou"),
            ("EngineVersion", "6.0"),
            ("DBInstanceDescription", desc),
        ],
    )
}

pub fn code(reply: &Reply) -> String {
    reply
        .json()
        .and_then(|v| v["Code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
