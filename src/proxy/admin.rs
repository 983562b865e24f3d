//! The admin listener (its own address, `[admin] listen`): `/metrics` in Prometheus text
//! format, `/healthz` (the process serves), `/readyz` (listeners up and the dedupe store
//! answers), and `POST /-/reload` (reload the config file, as SIGHUP does).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::body::{ProxyBody, full};
use super::server::Current;

/// Serves the admin endpoints until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let Some((stream, _)) = crate::net::accept(&listener, &mut shutdown).await else {
            return;
        };
        let current = current.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let current = current.clone();
                async move { Ok::<_, Infallible>(route(&current, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn route(current: &Current, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() == "/-/reload" {
        if req.method() != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "POST to reload\n".into(),
            );
        }
        return match current.request_reload().await {
            Ok(()) => text(StatusCode::OK, "text/plain", "reloaded\n".into()),
            Err(e) => text(
                StatusCode::CONFLICT,
                "text/plain",
                format!("reload refused: {e}\n"),
            ),
        };
    }
    let shared = current.get();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            if let Some(l) = &shared.limiter {
                let (keys, tight) = l.state();
                shared.metrics.limiter_keys.set(keys as i64);
                shared.metrics.limiter_tightened.set(tight as i64);
            }
            text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                shared.metrics.render(),
            )
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match &shared.dedupe {
            Some(d) => match d.store().ping().await {
                Ok(()) => text(StatusCode::OK, "text/plain", "ready\n".into()),
                Err(e) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {e}\n"),
                ),
            },
            None => text(StatusCode::OK, "text/plain", "ready\n".into()),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
