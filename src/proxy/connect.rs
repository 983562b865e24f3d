//! `CONNECT`: TLS interception for API hosts, a blind tunnel (or a refusal) for the rest.
//!
//! For an API host the proxy answers 200, accepts the client's TLS with a leaf minted for the
//! host by the local CA (HTTP/2 or HTTP/1.1 by ALPN), and serves the inner requests exactly
//! like plain-HTTP ones. A client that does not trust the CA fails its handshake; that is
//! logged and the proxy keeps serving.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::body::{ProxyBody, full};
use super::ingress::{Shared, Target, normalize_host, target};
use super::response::ProxyError;
use super::{access, call};
use crate::config::ConnectOther;

/// Answers a `CONNECT` request and starts the tunnel task.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(auth) = req.uri().authority().cloned() else {
        return ProxyError::new(
            StatusCode::BAD_REQUEST,
            "Idemproxy.BadConnect",
            "CONNECT needs host:port",
        )
        .into_response();
    };
    let host = normalize_host(auth.host());
    let port = auth.port_u16().unwrap_or(443);
    match shared.config.upstream_for(&host) {
        Some((upstream, _)) => intercept(shared, req, target(upstream, host, Some(port).filter(|p| *p != 443))),
        None => match shared.config.proxy.connect_other {
            ConnectOther::Tunnel if !access::target_allowed(&shared.config.proxy, &host) => access::target_refused(&host),
            ConnectOther::Tunnel => tunnel(req, host, port).await,
            ConnectOther::Refuse => ProxyError::new(
                StatusCode::FORBIDDEN,
                "Idemproxy.TunnelRefused",
                format!("CONNECT to {host}:{port} refused: not an API host and [proxy] connect_other = \"refuse\""),
            )
            .into_response(),
        },
    }
}

fn ok() -> Response<ProxyBody> {
    Response::new(full(""))
}

fn intercept(shared: Arc<Shared>, req: Request<Incoming>, target: Target) -> Response<ProxyBody> {
    let Some(ca) = shared.ca.as_ref() else {
        return ProxyError::new(
            StatusCode::FORBIDDEN,
            "Idemproxy.InterceptionNotConfigured",
            format!(
                "CONNECT to API host {} needs TLS interception: run `idemproxy ca init` and set [tls] \
                 ca_cert and ca_key (or send plain http:// requests through the proxy)",
                target.host
            ),
        )
        .into_response();
    };
    let tls = match ca.server_config(&target.host) {
        Ok(c) => c,
        Err(e) => {
            return ProxyError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Idemproxy.CertificateFailed",
                e.to_string(),
            )
            .into_response();
        }
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
        };
        let stream = match TlsAcceptor::from(tls).accept(TokioIo::new(upgraded)).await {
            Ok(s) => s,
            Err(e) => {
                return tracing::warn!(host = %target.host, error = %e,
                    "client TLS handshake failed (does the client trust the idemproxy CA?)");
            }
        };
        let builder = super::server::conn_builder(&shared.config.proxy);
        let svc = service_fn(move |req| {
            let (shared, target) = (shared.clone(), target.clone());
            async move { Ok::<_, std::convert::Infallible>(call::run(&shared, target, req).await) }
        });
        if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
            tracing::debug!(error = %e, "intercepted connection ended with an error");
        }
    });
    ok()
}

async fn tunnel(req: Request<Incoming>, host: String, port: u16) -> Response<ProxyBody> {
    let mut upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => {
            return ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "Idemproxy.TunnelConnectFailed",
                format!("cannot connect to {host}:{port}: {e}"),
            )
            .into_response();
        }
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    ok()
}
