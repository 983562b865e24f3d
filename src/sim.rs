//! The built-in gpdb API simulator: a faithful fake for offline trials and the tests' upstream.
//!
//! It verifies V1 and V3 signatures with its own keys, serves plain HTTP or HTTPS, enforces the timestamp window (15 minutes by
//! default) and refuses reused nonces, honours ClientToken semantics (same token and
//! parameters: the original result, no second execution; other parameters:
//! `IdempotentParameterMismatch`), keeps an execution ledger, answers in JSON or XML by
//! `Format`, and plays scripted or seeded random faults ([`faults`]).
//!
//! HTTP endpoints besides the API: `GET /_sim/ledger`, `GET /_sim/requests`,
//! `PUT /_sim/faults` (body: a fault spec that replaces the current plan).

pub mod faults;
mod server;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultPlan, FaultSpecError};
pub use state::{Ledger, RequestRecord};

use crate::secret::Secret;
use state::SimState;

/// How to run a simulator.
#[derive(Debug)]
pub struct SimConfig {
    /// AccessKeyId -> secret.
    pub keys: HashMap<String, Secret>,
    /// Faults to play.
    pub faults: FaultPlan,
    /// Accepted clock skew of `Timestamp`.
    pub window: Duration,
    /// Serve HTTPS with this config instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer every request at once with a fixed success, checking nothing: a fast upstream
    /// for load benchmarks, where the proxy, not the fake API, should be measured.
    pub static_mode: bool,
}

impl SimConfig {
    /// One key, no faults, the API's 15-minute window.
    pub fn with_key(id: &str, secret: &str) -> Self {
        SimConfig {
            keys: HashMap::from([(id.to_owned(), Secret::new(secret.to_owned()))]),
            faults: FaultPlan::none(),
            window: Duration::from_secs(15 * 60),
            tls: None,
            static_mode: false,
        }
    }
}

/// Parses `AK=SECRET[,AK=SECRET…]`. Errors never repeat a secret.
pub fn parse_keys(s: &str) -> Result<HashMap<String, Secret>, String> {
    let mut keys = HashMap::new();
    for (i, pair) in s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        match pair.split_once('=') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                keys.insert(id.to_owned(), Secret::new(secret.to_owned()));
            }
            _ => return Err(format!("key #{} is not AK=SECRET", i + 1)),
        }
    }
    if keys.is_empty() {
        return Err("no keys given; use AK=SECRET[,AK=SECRET…]".into());
    }
    Ok(keys)
}

pub(crate) struct Shared {
    pub(crate) buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
    pub(crate) state: SimState,
    pub(crate) faults: Mutex<FaultPlan>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) static_mode: bool,
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    /// Its address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish()
    }
}

impl SimHandle {
    /// The execution ledger.
    pub fn ledger(&self) -> Ledger {
        self.shared.state.ledger()
    }

    /// The request log.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.state.records()
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the simulator stops (only on shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

impl Shared {
    fn new(config: SimConfig) -> Self {
        Shared {
            buckets: Mutex::new(HashMap::new()),
            state: SimState::new(config.keys, config.window),
            faults: Mutex::new(config.faults),
            tls: config.tls,
            static_mode: config.static_mode,
        }
    }
}

/// A simulator without a socket, answering in-memory requests (used by the fuzz targets).
#[derive(Debug)]
pub struct InProcess {
    shared: Shared,
}

impl InProcess {
    /// A simulator with `config` (its `tls` is ignored).
    pub fn new(config: SimConfig) -> Self {
        InProcess {
            shared: Shared::new(config),
        }
    }

    /// Answers one request; `None` where a socket would be reset (a fault).
    pub async fn answer(
        &self,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Option<http::Response<http_body_util::Full<bytes::Bytes>>> {
        server::serve(&self.shared, req).await
    }

    /// The execution ledger.
    pub fn ledger(&self) -> Ledger {
        self.shared.state.ledger()
    }
}

/// Starts a simulator on a bound listener.
pub fn start(config: SimConfig, listener: TcpListener) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config));
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(server::accept_loop(listener, shared.clone(), rx));
    Ok(SimHandle {
        addr,
        shared,
        shutdown: tx,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_without_echoing_secrets() {
        let k = parse_keys("a=1,b=2").unwrap();
        assert_eq!(k.len(), 2);
        let e = parse_keys("a=1,bsecret").unwrap_err();
        assert!(!e.contains("bsecret"), "{e}");
        assert!(parse_keys("").is_err());
    }
}
