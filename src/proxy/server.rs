//! The listener and accept loop. Each connection is served by hyper-util's auto builder
//! (HTTP/1.1 and h2c); the caller owns shutdown through [`ProxyHandle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::ingress::{InFlight, Shared, handle};
use super::upstream::{UpstreamError, Upstreams};
use crate::config::{Config, ProxySettings, StoreKind};
use crate::dedupe::store::embedded::EmbeddedStore;
use crate::dedupe::store::memory::MemoryStore;
use crate::dedupe::store::redis::RedisStore;
use crate::dedupe::store::{Store, StoreError};
use crate::dedupe::{Dedupe, DedupeStats};
use crate::replay::ReplayGuard;
use crate::retry::budget::RetryBudget;
use crate::retry::limit::AdaptiveLimiter;
use crate::telemetry::metrics::Metrics;
use crate::tls::ca::{CaError, LocalCa};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The local CA could not be loaded.
    #[error("cannot load the local CA ([tls] ca_cert / ca_key): {0}")]
    Ca(#[from] CaError),
    /// The dedupe store could not be opened.
    #[error("cannot open the dedupe store ([dedupe]): {0}")]
    Store(#[from] StoreError),
}

fn dedupe(config: &Config) -> Result<Option<Dedupe>, StoreError> {
    let d = &config.dedupe;
    if d.disabled() {
        return Ok(None);
    }
    let store = match &d.store {
        StoreKind::Memory => Store::Memory(MemoryStore::new(d.max_entries as usize)),
        StoreKind::Embedded(path) => Store::Embedded(EmbeddedStore::open(path, d.max_entries)?),
        StoreKind::Redis(url) => Store::Redis(RedisStore::new(url.expose())?),
    };
    Ok(Some(Dedupe::new(
        store,
        d.window,
        d.per_action.clone(),
        d.fail_open,
    )))
}

/// Builds everything a proxy needs from a config, without listening: the upstream clients and
/// the local CA. `check-config` uses it to report what `run` would fail on.
pub fn prepare(config: Arc<Config>) -> Result<Shared, StartError> {
    let upstreams = Upstreams::new(&config.upstreams)?;
    let ca = match &config.tls {
        Some(t) => Some(LocalCa::load(&t.ca_cert, &t.ca_key, t.leaf_cache)?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let stats = DedupeStats {
        waited: metrics.dedupe_waits.clone(),
        store_errors: metrics.dedupe_store_errors.clone(),
    };
    let dedupe = dedupe(&config)?.map(|d| d.with_stats(stats));
    let limiter = config.limiter.clone().map(AdaptiveLimiter::new);
    let r = &config.retry;
    let budgets = config
        .upstreams
        .iter()
        .map(|_| RetryBudget::new(r.budget_ratio, r.budget_min_per_sec))
        .collect();
    let replay = ReplayGuard::new(config.proxy.replay_window, config.proxy.replay_max_nonces);
    Ok(Shared {
        config,
        upstreams,
        ca,
        dedupe,
        metrics,
        limiter,
        budgets,
        replay,
        inflight: InFlight::default(),
    })
}

/// A running proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin listener's address, if any.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the accept loop ends (it ends only on shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds `config.proxy.listen` and starts the proxy.
pub async fn bind(config: Arc<Config>) -> Result<ProxyHandle, StartError> {
    let addr = config.proxy.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    start(config, listener).await
}

/// Starts the proxy on an already bound listener (tests bind 127.0.0.1:0), and the admin
/// listener on `[admin] listen` unless it is "off".
pub async fn start(config: Arc<Config>, listener: TcpListener) -> Result<ProxyHandle, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.proxy.listen,
        source,
    })?;
    let admin = match config.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|source| StartError::Bind { addr: a, source })?,
        ),
        None => None,
    };
    let shared = Arc::new(prepare(config)?);
    let (tx, rx) = watch::channel(false);
    let admin_addr = match admin {
        Some(l) => {
            let a = l.local_addr().ok();
            tokio::spawn(super::admin::serve(l, shared.clone(), rx.clone()));
            tracing::info!(addr = ?a, "admin listening (/metrics, /healthz, /readyz)");
            a
        }
        None => None,
    };
    let task = tokio::spawn(accept_loop(listener, shared, rx));
    tracing::info!(%addr, "idemproxy listening");
    Ok(ProxyHandle {
        addr,
        admin_addr,
        shutdown: tx,
        task,
    })
}

/// The HTTP server settings every client connection gets (plain, and inside CONNECT).
pub(crate) fn conn_builder(p: &ProxySettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(p.header_read_timeout)
        .max_buf_size(p.max_header_bytes)
        .max_headers(p.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(p.max_header_bytes).unwrap_or(u32::MAX));
    b
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let p = &shared.config.proxy;
    let slots = Arc::new(Semaphore::new(p.max_connections));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(conn_builder(p));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !p.allow_clients.is_empty() && !p.allow_clients.iter().any(|c| c.contains(peer.ip())) {
            tracing::warn!(%peer, "connection refused: client not in proxy.allow_clients");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = p.max_connections, "connection refused: proxy.max_connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = shared.clone();
        let svc = service_fn(move |req| handle(handler.clone(), req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Stop accepting, let open requests finish (their connections close after the response),
    // then wait for detached calls, all within the grace period.
    let deadline = tokio::time::Instant::now() + p.shutdown_grace;
    let open = graceful.count();
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(open, "grace period over with client connections still open");
    }
    if tokio::time::timeout_at(deadline, shared.inflight.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            calls = shared.inflight.count(),
            "grace period over with calls still running"
        );
    }
    tracing::info!("stopped");
}
