//! The offline demo: a simulator with faults, idemproxy in front of it, and a scripted
//! legacy-style workload, once through the proxy and once by a naive client that retries
//! without a token, straight to a second simulator with the same faults.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::rpc_client::{Placement, V1Call};
use crate::client::{self, Reply, Route, Signer};
use crate::config;
use crate::proxy;
use crate::secret::Secret;
use crate::sim::{self, FaultPlan, SimConfig};

const KEY_ID: &str = "demo-key";
const SECRET: &str = "demo-secret";
const HOST: &str = "gpdb.aliyuncs.com";
/// Scripted faults: every kind the simulator plays, on the creates and the describe.
pub const FAULTS: &str = "CreateDBInstance=reset,503,ok,500,throttle:150,ok,throttle-nohint,reset,slow:300;\
                          DescribeDBInstances=500";

/// A demo failure.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setup failed.
    #[error("demo setup failed: {0}")]
    Setup(String),
    /// The proxy let a duplicate through (this is a bug; please report it).
    #[error("idemproxy let {0} duplicate execution(s) through")]
    Duplicates(u64),
}

fn setup<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Setup(e.to_string())
}

async fn simulator() -> Result<sim::SimHandle, DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(setup)?;
    let mut cfg = SimConfig::with_key(KEY_ID, SECRET);
    cfg.faults = FaultPlan::parse(FAULTS).map_err(setup)?;
    sim::start(cfg, listener).map_err(setup)
}

fn workload() -> Vec<V1Call> {
    let mut calls: Vec<V1Call> = (1..=5)
        .map(|i| {
            V1Call::gpdb(
                "CreateDBInstance",
                &[
                    ("RegionId", "cn-hangzhou"),
                    ("ZoneId", "cn-hangzhou-h"),
                    ("Engine", "gpdb"),
                    ("EngineVersion", "6.0"),
                    ("DBInstanceDescription", &format!("demo-{i}")),
                    ("PayType", "Postpaid"),
                ],
            )
        })
        .collect();
    calls.push(V1Call::gpdb(
        "DescribeDBInstances",
        &[("RegionId", "cn-hangzhou")],
    ));
    calls
}

/// Runs the demo and returns its report; fails if the proxy let a duplicate through.
pub async fn run() -> Result<String, DemoError> {
    let upstream = simulator().await?;
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[retry]\nbase_delay = \"50ms\"\nthrottle_base_delay = \"100ms\"\nmax_delay = \"2s\"\n\
         [[upstreams]]\nhosts = [\"{HOST}\"]\nconnect_to = \"{}\"\nscheme = \"http\"\n\
         [[credentials]]\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{SECRET}\"\n\
         [dedupe]\nstore = \"memory\"\n[admin]\nlisten = \"off\"\n",
        upstream.addr
    );
    let cfg = config::load_str(&toml, &HashMap::new(), Path::new(".")).map_err(setup)?;
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(setup)?;
    let proxy = proxy::start(Arc::new(cfg), listener).await.map_err(setup)?;
    let signer = Signer {
        key_id: KEY_ID.into(),
        secret: Secret::new(SECRET.into()),
    };

    let mut out = String::new();
    let _ = writeln!(out, "idemproxy offline demo");
    let _ = writeln!(
        out,
        "  simulator (gpdb 2016-05-03) on {}, faults: {FAULTS}",
        upstream.addr
    );
    let _ = writeln!(
        out,
        "  idemproxy on {} (HTTP_PROXY mode), upstream {HOST} -> {}\n",
        proxy.addr, upstream.addr
    );
    let _ = writeln!(
        out,
        "{:<38} {:>6} {:>8} {:>9} {:>7}  result",
        "call (through idemproxy)", "status", "attempts", "token", "waited"
    );
    let mut attempts = 0u64;
    let calls = workload();
    for call in &calls {
        let label = match call
            .params
            .iter()
            .find(|(k, _)| k == "DBInstanceDescription")
        {
            Some((_, d)) => format!("{} {d:?}", call.action),
            None => call.action.clone(),
        };
        let r = client::send_v1(
            Route::Proxy(proxy.addr),
            HOST,
            &signer,
            call,
            Placement::Query,
            Duration::from_secs(30),
        )
        .await;
        match r {
            Ok(reply) => {
                attempts += reply
                    .header("x-idemproxy-attempts")
                    .parse::<u64>()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{label:<38} {:>6} {:>8} {:>9} {:>5}ms  {}",
                    reply.status.as_u16(),
                    reply.header("x-idemproxy-attempts"),
                    reply.header("x-idemproxy-token"),
                    reply.header("x-idemproxy-wait-ms"),
                    summary(&reply)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{label:<38} client error: {e}");
            }
        }
    }
    let ledger = upstream.ledger();
    let _ = writeln!(
        out,
        "\nthrough idemproxy: {} calls, {attempts} upstream attempts, {} executions, {} answered from the ClientToken, duplicates = {}",
        calls.len(),
        ledger.executions,
        ledger.replays,
        ledger.duplicates
    );

    let naive = naive_run(&signer, &calls).await?;
    let _ = writeln!(
        out,
        "same workload, naive client retrying without a token, straight to the API: {} requests, {} executions, duplicates = {}",
        naive.requests, naive.executions, naive.duplicates
    );
    proxy.shutdown().await;
    upstream.shutdown().await;
    if ledger.duplicates > 0 {
        return Err(DemoError::Duplicates(ledger.duplicates));
    }
    Ok(out)
}

fn summary(reply: &Reply) -> String {
    let Some(v) = reply.json() else {
        return String::new();
    };
    if let Some(id) = v.get("DBInstanceId").and_then(|x| x.as_str()) {
        return id.to_owned();
    }
    if let Some(n) = v.get("TotalRecordCount") {
        return format!("{n} instances");
    }
    v.get("Code")
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_owned()
}

/// The same calls, re-sent blindly (fresh nonce, no token) up to 3 times on 5xx or a lost
/// response, as many scripts do.
async fn naive_run(signer: &Signer, calls: &[V1Call]) -> Result<sim::Ledger, DemoError> {
    let upstream = simulator().await?;
    for call in calls {
        for _ in 0..4 {
            let r = client::send_v1(
                Route::Direct(upstream.addr),
                HOST,
                signer,
                call,
                Placement::Query,
                Duration::from_secs(30),
            )
            .await;
            match r {
                Ok(reply)
                    if reply.status.is_server_error()
                        || reply.status.as_u16() == 400 && throttled(&reply) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let ledger = upstream.ledger();
    upstream.shutdown().await;
    Ok(ledger)
}

fn throttled(reply: &Reply) -> bool {
    reply
        .json()
        .and_then(|v| {
            v.get("Code")
                .and_then(|c| c.as_str())
                .map(|c| c.starts_with("Throttling"))
        })
        .unwrap_or(false)
}
