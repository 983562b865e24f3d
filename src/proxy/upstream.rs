//! Pooled upstream clients: hyper-util's client over rustls, one per `[[upstreams]]` entry
//! (its own roots, CA file and `connect_to`) plus one for traffic to other hosts.
//!
//! TLS to the upstream is always verified; there is no "insecure" switch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use tokio::net::TcpStream;

use super::body::{BoxError, ProxyBody};
use crate::config::{Roots, Upstream};

/// A pooled client.
pub type HttpClient = Client<HttpsConnector<ConnectTo>, ProxyBody>;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The CA file could not be read or holds no certificate.
    #[error("cannot load CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// A TCP connector that dials `connect_to` instead of the request's host when set, so that
/// SNI, certificate checks and the `Host` header still use the real API host.
#[derive(Debug, Clone)]
pub struct ConnectTo {
    inner: HttpConnector,
    target: Option<Uri>,
}

impl ConnectTo {
    fn new(connect_to: Option<&str>) -> Result<Self, BoxError> {
        let mut inner = HttpConnector::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(Duration::from_secs(10)));
        let target = match connect_to {
            Some(addr) => Some(format!("http://{addr}").parse::<Uri>()?),
            None => None,
        };
        Ok(ConnectTo { inner, target })
    }
}

impl tower_service::Service<Uri> for ConnectTo {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(self.target.clone().unwrap_or(uri));
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

fn roots(kind: Roots, ca_file: Option<&std::path::Path>) -> Result<RootCertStore, UpstreamError> {
    let mut store = RootCertStore::empty();
    match kind {
        Roots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::Native => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    if let Some(path) = ca_file {
        let ca_err = |message: String| UpstreamError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no PEM certificate in it".into()));
        }
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ca_err("no usable certificate in it".into()));
        }
    }
    Ok(store)
}

fn tls_config(store: RootCertStore) -> Result<rustls::ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth())
}

fn client(
    tls: rustls::ClientConfig,
    connect_to: Option<&str>,
) -> Result<HttpClient, UpstreamError> {
    let inner = ConnectTo::new(connect_to).map_err(|e| UpstreamError::CaFile {
        path: "connect_to".into(),
        message: e.to_string(),
    })?;
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(inner);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector))
}

/// The clients of one proxy.
#[derive(Debug, Clone)]
pub struct Upstreams {
    api: Vec<HttpClient>,
    other: HttpClient,
}

impl Upstreams {
    /// Builds one client per configured upstream plus one for other hosts.
    pub fn new(upstreams: &[Upstream]) -> Result<Self, UpstreamError> {
        let api = upstreams
            .iter()
            .map(|u| {
                client(
                    tls_config(roots(u.roots, u.ca_file.as_deref())?)?,
                    u.connect_to.as_deref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let other = client(tls_config(roots(Roots::Webpki, None)?)?, None)?;
        Ok(Upstreams { api, other })
    }

    /// The client for upstream `index` (as returned by `Config::upstream_for`).
    pub fn api(&self, index: usize) -> Option<&HttpClient> {
        self.api.get(index)
    }

    /// The client for hosts that are not API hosts.
    pub fn other(&self) -> &HttpClient {
        &self.other
    }
}
