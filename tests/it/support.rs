//! Test rig: a simulator with faults and a proxy in front of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
const BIN: &str = env!("CARGO_BIN_EXE_idemproxy");

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

/// A proxy as a real process, killed on drop; its log lines are kept.
pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ProxyProcess {
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let (Some(addr), Some(t)) = (v["fields"]["addr"].as_str(), tx.as_ref()) {
                    if v["fields"]["message"] == "idemproxy listening" {
                        let _ = t.send(addr.to_owned());
                        tx = None;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the proxy did not report its address");
        ProxyProcess {
            child,
            addr: addr.parse().unwrap(),
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit on its own; its exit code, if it exited in time.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(dir: &Path, name: &str, sim: SocketAddr, dedupe: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, proxy_toml_with(sim, "", "", dedupe)).unwrap();
    path
}

/// `write_config` with the embedded store at `dir/state/dedupe.redb`.
pub fn embedded_config(dir: &Path, sim: SocketAddr) -> std::path::PathBuf {
    write_config(
        dir,
        "p.toml",
        sim,
        "store = \"embedded\"\npath = \"state/dedupe.redb\"",
    )
}

/// Runs `idemproxy check-config` on `toml` written to a temporary file.
pub fn check_config(toml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idemproxy.toml");
    std::fs::write(&file, toml).unwrap();
    Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap()
}
