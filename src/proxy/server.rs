//! The listener and accept loop. Each connection is served by hyper-util's auto builder
//! (HTTP/1.1 and h2c); the caller owns shutdown through [`ProxyHandle`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
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

/// The dedupe window for `config`, over the previous generation's store when its settings did
/// not change (an embedded store's file cannot be opened twice).
fn dedupe(config: &Config, prev: Option<&Shared>) -> Result<Option<Dedupe>, StoreError> {
    let d = &config.dedupe;
    if d.disabled() {
        return Ok(None);
    }
    let reusable = prev.filter(|p| {
        p.config.dedupe.store == d.store && p.config.dedupe.max_entries == d.max_entries
    });
    let store = match reusable.and_then(|p| p.dedupe.as_ref()) {
        Some(old) => old.store().clone(),
        None => Arc::new(match &d.store {
            StoreKind::Memory => Store::Memory(MemoryStore::new(d.max_entries as usize)),
            StoreKind::Embedded(path) => Store::Embedded(EmbeddedStore::open(path, d.max_entries)?),
            StoreKind::Redis(url) => Store::Redis(RedisStore::new(url.expose())?),
        }),
    };
    Ok(Some(Dedupe::new(
        store,
        d.window,
        d.per_action.clone(),
        d.fail_open,
    )))
}

/// Builds everything a proxy needs from a config, without listening: the upstream clients,
/// the local CA, the dedupe store. `check-config` uses it to report what `run` would fail on.
pub fn prepare(config: Arc<Config>) -> Result<Shared, StartError> {
    prepare_from(config, None)
}

/// Like [`prepare`], carrying over from the previous generation what must outlive a reload:
/// metrics, the count of calls in flight, remembered caller nonces, the dedupe store and the
/// limiter's learned rates (when their settings did not change).
fn prepare_from(config: Arc<Config>, prev: Option<&Shared>) -> Result<Shared, StartError> {
    let upstreams = Upstreams::new(&config.upstreams)?;
    let ca = match &config.tls {
        Some(t) => Some(LocalCa::load(&t.ca_cert, &t.ca_key, t.leaf_cache)?),
        None => None,
    };
    let metrics = prev.map_or_else(|| Arc::new(Metrics::new()), |p| p.metrics.clone());
    let stats = DedupeStats {
        waited: metrics.dedupe_waits.clone(),
        store_errors: metrics.dedupe_store_errors.clone(),
    };
    let dedupe = dedupe(&config, prev)?.map(|d| d.with_stats(stats));
    let limiter = match (prev, &config.limiter) {
        (Some(p), Some(l)) if p.limiter.as_ref().is_some_and(|old| old.settings() == l) => {
            p.limiter.clone()
        }
        (_, l) => l.clone().map(|l| Arc::new(AdaptiveLimiter::new(l))),
    };
    let r = &config.retry;
    let budgets = config
        .upstreams
        .iter()
        .map(|_| RetryBudget::new(r.budget_ratio, r.budget_min_per_sec))
        .collect();
    let p = &config.proxy;
    let replay = match prev {
        Some(old)
            if old.config.proxy.replay_window == p.replay_window
                && old.config.proxy.replay_max_nonces == p.replay_max_nonces =>
        {
            old.replay.clone()
        }
        _ => Arc::new(ReplayGuard::new(p.replay_window, p.replay_max_nonces)),
    };
    let inflight = prev.map_or_else(|| Arc::new(InFlight::default()), |p| p.inflight.clone());
    Ok(Shared {
        config,
        upstreams,
        ca,
        dedupe,
        metrics,
        limiter,
        budgets,
        replay,
        inflight,
    })
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid.
    #[error("{0}")]
    Config(String),
    /// A setting that only a restart can change.
    #[error("{0} cannot change on reload; restart the proxy")]
    NeedsRestart(&'static str),
    /// Building the new generation failed.
    #[error(transparent)]
    Start(#[from] StartError),
}

type ReloadReply = oneshot::Sender<Result<(), String>>;

/// The configuration generation new connections get, and the way to ask for a reload.
#[derive(Debug)]
pub struct Current {
    shared: RwLock<Arc<Shared>>,
    reloads: mpsc::Sender<ReloadReply>,
}

impl Current {
    /// The current generation.
    pub fn get(&self) -> Arc<Shared> {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates `config` against the running one and swaps it in whole, or keeps the old.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let old = self.get();
        let (o, n) = (&old.config.proxy, &config.proxy);
        if o.listen != n.listen {
            return Err(ReloadError::NeedsRestart("proxy.listen"));
        }
        if old.config.admin_listen != config.admin_listen {
            return Err(ReloadError::NeedsRestart("admin.listen"));
        }
        if (
            o.max_connections,
            o.header_read_timeout,
            o.max_header_bytes,
            o.max_headers,
            o.shutdown_grace,
        ) != (
            n.max_connections,
            n.header_read_timeout,
            n.max_header_bytes,
            n.max_headers,
            n.shutdown_grace,
        ) {
            return Err(ReloadError::NeedsRestart(
                "proxy connection limits and shutdown_grace",
            ));
        }
        let next = Arc::new(prepare_from(Arc::new(config), Some(&old))?);
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Asks whoever serves reloads (see [`ProxyHandle::serve_reloads`]) to reload now.
    pub async fn request_reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.reloads
            .try_send(tx)
            .map_err(|_| "a reload is already pending".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(result)) => result,
            _ => Err(
                "reloading is not enabled for this proxy (no config file to reload from)".into(),
            ),
        }
    }
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
    current: Arc<Current>,
    reload_rx: std::sync::Mutex<Option<mpsc::Receiver<ReloadReply>>>,
}

impl ProxyHandle {
    /// Validates `config` and swaps it in for new connections; in-flight calls and open
    /// connections keep the generation they started with. On error the old config stays.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        self.current.reload(config)
    }

    /// Reloads from `path` on SIGHUP and on `POST /-/reload` to the admin listener, logging
    /// the outcome; an invalid file keeps the running configuration and says why.
    pub fn serve_reloads(&self, path: std::path::PathBuf) -> JoinHandle<()> {
        let rx = self
            .reload_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let current = self.current.clone();
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let reply = tokio::select! {
                    r = rx.recv() => match r { Some(r) => Some(r), None => return },
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => None,
                };
                #[cfg(not(unix))]
                let reply = match rx.recv().await {
                    Some(r) => Some(r),
                    None => return,
                };
                let result = match crate::config::load_file(&path) {
                    Ok(c) => current.reload(c).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match &result {
                    Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "reload refused; the running configuration stays")
                    }
                }
                if let Some(r) = reply {
                    let _ = r.send(result);
                }
            }
        })
    }

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
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let current = Arc::new(Current {
        shared: RwLock::new(Arc::new(prepare(config)?)),
        reloads: reload_tx,
    });
    let (tx, rx) = watch::channel(false);
    let admin_addr = match admin {
        Some(l) => {
            let a = l.local_addr().ok();
            tokio::spawn(super::admin::serve(l, current.clone(), rx.clone()));
            tracing::info!(addr = ?a, "admin listening (/metrics, /healthz, /readyz)");
            a
        }
        None => None,
    };
    let task = tokio::spawn(accept_loop(listener, current.clone(), rx));
    tracing::info!(%addr, "idemproxy listening");
    Ok(ProxyHandle {
        addr,
        admin_addr,
        shutdown: tx,
        task,
        current,
        reload_rx: std::sync::Mutex::new(Some(reload_rx)),
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
    current: Arc<Current>,
    mut shutdown: watch::Receiver<bool>,
) {
    let first = current.get();
    let p = &first.config.proxy;
    let slots = Arc::new(Semaphore::new(p.max_connections));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(conn_builder(p));
    loop {
        let Some((stream, peer)) = crate::net::accept(&listener, &mut shutdown).await else {
            break;
        };
        let shared = current.get();
        let allowed = &shared.config.proxy.allow_clients;
        if !allowed.is_empty() && !allowed.iter().any(|c| c.contains(peer.ip())) {
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
    if tokio::time::timeout_at(deadline, first.inflight.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            calls = first.inflight.count(),
            "grace period over with calls still running"
        );
    }
    tracing::info!("stopped");
}
