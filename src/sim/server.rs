//! The simulator's HTTP side: connections, request parsing, faults and rendering.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::faults::{Fault, FaultPlan};
use super::state::{Refusal, RequestRecord, V3Request};
use crate::api::error_body::{ApiError, Format, render_value};
use crate::api::params::{Params, is_form};
use crate::api::v3;

const MAX_BODY: usize = 1024 * 1024;

/// Returned by the service to make hyper drop the connection (a reset, with zero linger).
#[derive(Debug, thiserror::Error)]
#[error("simulated connection reset")]
struct Reset;

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let Some((stream, _)) = crate::net::accept(&listener, &mut shutdown).await else {
            return;
        };
        let shared = shared.clone();
        let tls = shared.tls.clone();
        tokio::spawn(async move {
            let Ok((stream, dup)) = split_for_reset(stream) else {
                return;
            };
            let dup = Arc::new(dup);
            let svc = service_fn(move |req| {
                let (shared, dup) = (shared.clone(), dup.clone());
                async move {
                    let resp = serve(&shared, req).await;
                    if resp.is_none() {
                        // Zero linger: closing the socket sends RST instead of FIN.
                        let _ = socket2::SockRef::from(&*dup).set_linger(Some(Duration::ZERO));
                        return Err(Reset);
                    }
                    Ok::<_, Reset>(resp.unwrap_or_default())
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(cfg) => match TlsAcceptor::from(cfg).accept(stream).await {
                    Ok(s) => {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "simulator: TLS handshake failed"),
                },
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// Keeps a second handle on the socket so a fault can set `SO_LINGER` on it.
fn split_for_reset(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let dup = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, dup))
}

type SimResponse = Response<Full<Bytes>>;

/// A request body the simulator can read: hyper's, or an in-memory one (fuzzing).
pub(super) trait SimBody:
    http_body::Body<Data = Bytes, Error = Self::E> + Send + 'static
{
    /// The body's error type.
    type E: std::error::Error + Send + Sync + 'static;
}

impl<B> SimBody for B
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type E = B::Error;
}

/// Serves one request; `None` means "reset the connection".
pub(super) async fn serve<B: SimBody>(shared: &Shared, req: Request<B>) -> Option<SimResponse> {
    if shared.static_mode {
        let _ = req.into_body().collect().await;
        let body =
            r#"{"RequestId":"00000000-0000-0000-0000-000000000000","DBInstanceId":"gp-static"}"#;
        return Some(respond(
            200,
            Format::Json,
            body.to_owned(),
            "00000000-0000-0000-0000-000000000000",
        ));
    }
    match req.uri().path() {
        "/_sim/ledger" => return Some(json_response(&shared.state.ledger())),
        "/_sim/requests" => return Some(json_response(&shared.state.records())),
        "/_sim/faults" if req.method() == Method::PUT => {
            return Some(set_faults(shared, req).await);
        }
        _ => {}
    }
    let method = req.method().as_str().to_owned();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Some(error(
                Format::Json,
                &refusal(413, "RequestBodyTooLarge", "the body is over 1 MiB"),
            ));
        }
    };
    let is_form = is_form(&parts.headers);
    let body_str = if is_form {
        std::str::from_utf8(&body).ok()
    } else {
        None
    };
    let params = match Params::parse(parts.uri.query(), body_str) {
        Ok(p) => p,
        Err(e) => {
            let r = refusal(400, "InvalidParameter", &e.to_string());
            shared.state.record(record("", "", None, "", None, &r));
            return Some(error(Format::Json, &r));
        }
    };
    let is_v3 = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("ACS3-"));
    let format = if is_v3 {
        Format::Json
    } else {
        Format::from_param(params.get("Format"))
    };
    let now = SystemTime::now();
    let authenticated = if is_v3 {
        let host = v3::signed_host(&parts.headers, &parts.uri);
        let req = V3Request {
            method: &method,
            path: parts.uri.path(),
            host: &host,
            headers: &parts.headers,
            body: &body,
        };
        shared.state.authenticate_v3(&req, &params, now)
    } else {
        shared.state.authenticate(&method, &params, now)
    };
    let auth = match authenticated {
        Ok(a) => a,
        Err(r) => {
            let p = |k| params.get(k).unwrap_or("");
            let h = |k| {
                parts
                    .headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            let (action, nonce) = if is_v3 {
                (h("x-acs-action"), h("x-acs-signature-nonce"))
            } else {
                (p("Action"), p("SignatureNonce"))
            };
            shared.state.record(record(
                action,
                p("AccessKeyId"),
                params.get("ClientToken"),
                nonce,
                None,
                &r,
            ));
            return Some(error(format, &r));
        }
    };
    let fault = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .next(&auth.action);
    let rec = |result: String| RequestRecord {
        seq: 0,
        action: auth.action.clone(),
        access_key_id: auth.key_id.clone(),
        client_token: auth.token.clone(),
        nonce: auth.nonce.clone(),
        fault: (fault != Fault::Ok).then(|| fault.to_string()),
        result,
    };
    if let Some(wait_ms) = rate_limited(shared, &auth.key_id, &auth.action) {
        shared.state.record(rec("rejected:Throttling.User".into()));
        let r = refusal(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        );
        let mut resp = error(format, &r);
        resp.headers_mut()
            .insert("x-acs-retry-after", HeaderValue::from(wait_ms));
        return Some(resp);
    }
    // Faults that refuse before acting.
    let before = match fault {
        Fault::Unavailable => Some(refusal(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )),
        Fault::Throttle(_) => Some(refusal(
            400,
            "Throttling",
            "Request was denied due to flow control.",
        )),
        Fault::ThrottleNoHint => Some(refusal(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )),
        _ => None,
    };
    if let Some(r) = before {
        shared.state.record(rec(format!("rejected:{}", r.code)));
        let mut resp = error(format, &r);
        if let Fault::Throttle(ms) = fault {
            resp.headers_mut()
                .insert("x-acs-retry-after", HeaderValue::from(ms));
        }
        return Some(resp);
    }
    let (result, replayed) = match shared.state.execute(&auth, &params) {
        Ok(x) => x,
        Err(r) => {
            shared.state.record(rec(format!("rejected:{}", r.code)));
            return Some(error(format, &r));
        }
    };
    shared.state.record(rec(if replayed {
        "replayed".into()
    } else {
        "executed".into()
    }));
    match fault {
        Fault::ResetAfter => None,
        Fault::InternalAfter => Some(error(
            format,
            &refusal(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error.",
            ),
        )),
        Fault::SlowAfter(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Some(success(&auth.action, result, format))
        }
        _ => Some(success(&auth.action, result, format)),
    }
}

/// The per-key token bucket of `ratelimit=N`: `Some(ms until a token)` when empty.
fn rate_limited(shared: &Shared, key_id: &str, action: &str) -> Option<u64> {
    let rate = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rate_limit?;
    let now = std::time::Instant::now();
    let mut buckets = shared.buckets.lock().unwrap_or_else(|p| p.into_inner());
    let (tokens, last) = buckets
        .entry(format!("{key_id}\n{action}"))
        .or_insert((rate, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        return None;
    }
    Some((((1.0 - *tokens) / rate) * 1000.0).ceil().max(1.0) as u64)
}

async fn set_faults<B: SimBody>(shared: &Shared, req: Request<B>) -> SimResponse {
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                Format::Json,
                &refusal(413, "RequestBodyTooLarge", "fault spec over 64 KiB"),
            );
        }
    };
    let spec = String::from_utf8_lossy(&body);
    match FaultPlan::parse(&spec) {
        Ok(plan) => {
            *shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = plan;
            json_response(&serde_json::json!({"ok": true}))
        }
        Err(e) => error(
            Format::Json,
            &refusal(400, "InvalidFaultSpec", &e.to_string()),
        ),
    }
}

fn refusal(status: u16, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_owned(),
    }
}

fn record(
    action: &str,
    key: &str,
    token: Option<&str>,
    nonce: &str,
    fault: Option<String>,
    r: &Refusal,
) -> RequestRecord {
    RequestRecord {
        seq: 0,
        action: action.to_owned(),
        access_key_id: key.to_owned(),
        client_token: token.map(str::to_owned),
        nonce: nonce.to_owned(),
        fault,
        result: format!("rejected:{}", r.code),
    }
}

fn respond(status: u16, format: Format, body: String, request_id: &str) -> SimResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-acs-request-id", v);
    }
    resp
}

fn error(format: Format, r: &Refusal) -> SimResponse {
    let id = crate::ids::request_id();
    let body = ApiError {
        request_id: &id,
        host_id: "gpdb.aliyuncs.com",
        code: r.code,
        message: &r.message,
    }
    .render(format);
    respond(r.status, format, body, &id)
}

fn success(action: &str, mut result: Value, format: Format) -> SimResponse {
    let id = crate::ids::request_id();
    if let Value::Object(m) = &mut result {
        m.insert("RequestId".into(), Value::String(id.clone()));
    }
    respond(
        200,
        format,
        render_value(&format!("{action}Response"), &result, format),
        &id,
    )
}

fn json_response<T: serde::Serialize>(v: &T) -> SimResponse {
    let body = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    respond(200, Format::Json, body, &crate::ids::request_id())
}
