//! Ingress: decide what a request is.
//!
//! - absolute-form (`POST http://gpdb.aliyuncs.com/?…`, sent by clients with `HTTP_PROXY`):
//!   an API call if the host matches an `[[upstreams]]` entry, else forwarded untouched;
//! - origin-form (`POST /?…`, the client's endpoint is the proxy): an API call for the host in
//!   the `Host` header if it is an API host, else for `[proxy] gateway_upstream` (gateway mode);
//! - `CONNECT`: see `connect` (TLS interception for API hosts, a tunnel for the rest).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{ProxyBody, boxed};
use super::response::ProxyError;
use super::upstream::Upstreams;
use super::{access, call, connect};
use crate::config::Config;
use crate::dedupe::Dedupe;
use crate::replay::ReplayGuard;
use crate::retry::budget::RetryBudget;
use crate::retry::limit::AdaptiveLimiter;
use crate::telemetry::metrics::Metrics;
use crate::tls::ca::LocalCa;

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// The upstream clients.
    pub upstreams: Upstreams,
    /// The local CA, when `[tls]` is configured.
    pub ca: Option<LocalCa>,
    /// The dedupe window, unless disabled.
    pub dedupe: Option<Dedupe>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The adaptive rate limiter, unless disabled.
    pub limiter: Option<Arc<AdaptiveLimiter>>,
    /// One retry budget per `[[upstreams]]` entry.
    pub budgets: Vec<RetryBudget>,
    /// Caller timestamps and nonces.
    pub replay: Arc<ReplayGuard>,
    /// API calls running (they outlive their client connection).
    pub inflight: Arc<InFlight>,
}

/// Counts running calls so that shutdown can wait for them.
#[derive(Debug, Default)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a running call.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    /// Registers a running call until the guard drops.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Calls running now.
    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no call runs.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// An API host a request is for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// The API host, lowercase, without port (`HostId` of errors).
    pub host: String,
    /// `host[:port]` for the upstream URI and `Host` header.
    pub authority: String,
}

enum Route {
    Api(Target),
    Other,
}

/// Handles one request from a client. Never fails: errors become API-shaped responses.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if !access::authorized(&shared.config.proxy, req.headers()) {
        return Ok(access::challenge());
    }
    if req.method() == Method::CONNECT {
        return Ok(connect::handle(shared, req).await);
    }
    let resp = match route(&shared.config, &req) {
        Err(e) => e.into_response(),
        Ok(Route::Other) => {
            let host = req.uri().host().map(normalize_host).unwrap_or_default();
            if access::target_allowed(&shared.config.proxy, &host) {
                forward_other(&shared, req).await
            } else {
                access::target_refused(&host)
            }
        }
        Ok(Route::Api(target)) => call::run(&shared, target, req).await,
    };
    Ok(resp)
}

fn route(config: &Config, req: &Request<Incoming>) -> Result<Route, ProxyError> {
    if let Some(auth) = req.uri().authority() {
        let host = normalize_host(auth.host());
        let default_port = if req.uri().scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = auth.port_u16().filter(|p| *p != default_port);
        return Ok(match config.upstream_for(&host) {
            Some((upstream, _)) => Route::Api(target(upstream, host, port)),
            None => Route::Other,
        });
    }
    let host_header = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Some(h) = host_header {
        let (name, port) = split_host_port(h);
        let name = normalize_host(name);
        if let Some((upstream, _)) = config.upstream_for(&name) {
            return Ok(Route::Api(target(
                upstream,
                name,
                port.filter(|p| *p != 80),
            )));
        }
    }
    match &config.proxy.gateway_upstream {
        Some(g) => {
            let host = normalize_host(g);
            match config.upstream_for(&host) {
                Some((upstream, _)) => Ok(Route::Api(target(upstream, host, None))),
                None => Err(no_upstream()),
            }
        }
        None => Err(no_upstream()),
    }
}

fn no_upstream() -> ProxyError {
    ProxyError::new(
        StatusCode::BAD_REQUEST,
        "Idemproxy.NoUpstream",
        "origin-form request for a host that is not an API host, and no [proxy] gateway_upstream \
         is configured; use the proxy as HTTP_PROXY or configure gateway mode",
    )
}

pub(super) fn target(upstream: usize, host: String, port: Option<u16>) -> Target {
    let authority = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    Target {
        upstream,
        host,
        authority,
    }
}

pub(super) fn normalize_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn split_host_port(h: &str) -> (&str, Option<u16>) {
    match h.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (h, None),
        },
        _ => (h, None),
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), as `HeaderName`s so that removing them hashes no
/// string.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for name in named {
            headers.remove(name.as_str());
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Forwards a request for a non-API host untouched (plain forward proxy).
async fn forward_other(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let req = Request::from_parts(parts, boxed(body));
    match shared.upstreams.other().request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, boxed(body))
        }
        Err(e) => ProxyError::new(
            StatusCode::BAD_GATEWAY,
            "Idemproxy.UpstreamFailed",
            format!("forwarding to a non-API host failed: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("a.b:8080"), ("a.b", Some(8080)));
        assert_eq!(split_host_port("a.b"), ("a.b", None));
        assert_eq!(split_host_port("a.b:x"), ("a.b:x", None));
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("x-acs-action", "A".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-acs-action"));
    }
}
