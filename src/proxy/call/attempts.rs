//! The attempt loop: re-sign, send, decide, wait; and the final response with its report
//! headers. Every attempt carries the same ClientToken and a fresh nonce and timestamp.

use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use md5::{Digest, Md5};
use tokio::time::Instant;

use super::{Call, TokenSource, signature};
use crate::api::error_body::extract_code;
use crate::api::params::Place;
use crate::api::time::format_timestamp;
use crate::proxy::body::{Buffered, ProxyBody, boxed, buffer_up_to, full};
use crate::proxy::ingress::Shared;
use crate::proxy::ingress::strip_hop_by_hop;
use crate::proxy::response::{self, ProxyError};
use crate::proxy::upstream::HttpClient;
use crate::retry::decide::{Decision, Outcome, RetryReason, Safety, decide};
use crate::retry::hint;
use crate::retry::limit::NoPermit;

/// Error bodies are read up to this size to find the API error `Code`.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

const CONTENT_MD5: http::HeaderName = http::HeaderName::from_static("content-md5");

/// What one attempt produced.
enum Attempt {
    Response {
        resp: Response<ProxyBody>,
        code: Option<String>,
    },
    NotSent(String),
    Lost(String),
    TimedOut,
}

/// What the client is told about the call.
struct Report {
    attempts: u32,
    waited: Duration,
    stopped: Option<&'static str>,
}

/// Runs the attempts of `call` until a final outcome, within the configured bounds: the
/// deadline, max attempts, the rate limiter (a permit per attempt, taken before signing) and
/// the upstream's retry budget.
pub(super) async fn execute(
    shared: &Shared,
    client: &HttpClient,
    mut call: Call,
) -> Response<ProxyBody> {
    let r = &shared.config.retry;
    let m = &shared.metrics;
    let deadline = Instant::now() + r.deadline;
    let safety = call.safety();
    let budget = shared.budgets.get(call.target.upstream);
    if let Some(b) = budget {
        b.deposit();
    }
    let limiter = shared.limiter.as_ref().map(|l| {
        let region = call.params.get("RegionId").unwrap_or(&call.target.host);
        (
            l,
            l.limiter(&l.key(&call.key_id, region, &call.action, &call.target.host)),
        )
    });
    let mut report = Report {
        attempts: 0,
        waited: Duration::ZERO,
        stopped: None,
    };
    let (mut throttles, mut others) = (0u32, 0u32);
    let mut last: Option<Attempt> = None;
    loop {
        if let Some((l, key)) = &limiter {
            match l.acquire(key, deadline).await {
                Ok(w) => {
                    m.limiter_wait.inc_by(w.as_secs_f64());
                    report.waited += w;
                }
                Err(NoPermit) => {
                    report.stopped = Some("deadline");
                    return match last {
                        Some(a) => finish(shared, &call, a, report),
                        None => rate_limited(shared, &call, report),
                    };
                }
            }
        }
        report.attempts += 1;
        m.attempts
            .get_or_create(&[("class", call.class.label())])
            .inc();
        let per_try = r
            .per_try_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let req = build_attempt(&mut call, SystemTime::now()).map(full);
        let sent_at = Instant::now();
        let attempt = match tokio::time::timeout(per_try, send(client, req)).await {
            Ok(a) => a,
            Err(_) => Attempt::TimedOut,
        };
        m.upstream_latency.observe(sent_at.elapsed().as_secs_f64());
        let (decision, hint) = judge(&attempt, safety, &r.retry_statuses);
        let throttled = matches!(decision, Decision::Retry(RetryReason::Throttled));
        if let Some((l, key)) = &limiter {
            if throttled && l.on_throttle(key) {
                m.limiter_decreases.inc();
            } else if matches!(&attempt, Attempt::Response { resp, .. } if resp.status().is_success())
            {
                l.on_success(key);
            }
        }
        if throttled {
            m.throttled.inc();
        }
        let reason = match decision {
            Decision::Done => return finish(shared, &call, attempt, report),
            Decision::Withheld(_) => {
                report.stopped = Some("unsafe-to-repeat");
                return finish(shared, &call, attempt, report);
            }
            Decision::Retry(reason) => reason,
        };
        if report.attempts >= r.max_attempts {
            report.stopped = Some("max-attempts");
            return finish(shared, &call, attempt, report);
        }
        let wait = match hint {
            Some(h) => r.backoff.clamp_hint(h),
            None if reason.is_throttle() => r.throttle_backoff.delay(throttles, rand::random()),
            None => r.backoff.delay(others, rand::random()),
        };
        if reason.is_throttle() {
            throttles += 1
        } else {
            others += 1
        }
        if Instant::now() + wait >= deadline {
            report.stopped = Some("deadline");
            return finish(shared, &call, attempt, report);
        }
        if budget.is_some_and(|b| !b.try_withdraw()) {
            m.budget_refusals.inc();
            report.stopped = Some("retry-budget");
            return finish(shared, &call, attempt, report);
        }
        m.retries.get_or_create(&[("reason", reason.label())]).inc();
        tracing::debug!(action = %call.action, attempt = report.attempts, reason = reason.label(),
            wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
        m.backoff_wait.inc_by(wait.as_secs_f64());
        report.waited += wait;
        last = Some(attempt);
    }
}

/// No permit before the deadline and nothing sent yet.
fn rate_limited(shared: &Shared, call: &Call, report: Report) -> Response<ProxyBody> {
    let resp = no_response(
        call,
        StatusCode::SERVICE_UNAVAILABLE,
        "Idemproxy.RateLimited",
        "the API throttled this AccessKey and action; no rate-limiter permit came before the call's \
         deadline, and nothing was sent"
            .into(),
    );
    decorate(shared, call, resp, "rate-limited", report)
}

fn judge(attempt: &Attempt, safety: Safety, statuses: &[u16]) -> (Decision, Option<Duration>) {
    let (outcome, hint) = match attempt {
        Attempt::Response { resp, code } => (
            Outcome::Response {
                status: resp.status().as_u16(),
                code: code.as_deref(),
                retry_after_hint: hint::has_acs_hint(resp.headers()),
            },
            hint::retry_after(resp.headers(), SystemTime::now()),
        ),
        Attempt::NotSent(_) => (Outcome::NotSent, None),
        Attempt::Lost(_) => (Outcome::Lost, None),
        Attempt::TimedOut => (Outcome::TimedOut, None),
    };
    (decide(outcome, safety, statuses), hint)
}

/// Builds one attempt: fresh nonce and timestamp, new signature, the caller's placement.
///
/// The call's parameters are re-signed in place (no copy per attempt): each attempt overwrites
/// the nonce, the timestamp and the signature, and the signature never covers itself.
pub(super) fn build_attempt(call: &mut Call, now: SystemTime) -> Request<Bytes> {
    let nonce = crate::ids::uuid_v4().to_string();
    let timestamp = format_timestamp(now);
    let a = signature::Attempt {
        method: call.method.as_str(),
        path: &call.path,
        authority: &call.target.authority,
        timestamp: &timestamp,
        nonce: &nonce,
    };
    call.signing.params(&mut call.params, &call.secret, &a);
    let query = call.params.encode(Place::Query);
    let body = if call.body_is_form {
        Bytes::from(call.params.encode(Place::Body))
    } else {
        call.raw_body.clone()
    };
    let sep = if query.is_empty() { "" } else { "?" };
    let uri = format!(
        "{}://{}{}{sep}{query}",
        call.scheme, call.target.authority, call.path
    );
    let mut headers = call.headers.clone();
    if let Ok(v) = HeaderValue::from_str(&call.target.authority) {
        headers.insert(header::HOST, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if call.body_is_form && headers.contains_key("content-md5") {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        if let Ok(v) = HeaderValue::from_str(&md5) {
            headers.insert(CONTENT_MD5, v);
        }
    }
    call.signing
        .headers(&mut headers, &call.params, &body, &call.secret, &a);
    let mut req = Request::new(body);
    *req.method_mut() = call.method.clone();
    *req.headers_mut() = headers;
    if let Ok(u) = uri.parse() {
        *req.uri_mut() = u;
    }
    req
}

/// Sends one attempt; for an error status, reads the body to find the API error `Code`.
async fn send(client: &HttpClient, req: Request<ProxyBody>) -> Attempt {
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Attempt::NotSent(error_chain(&e)),
        Err(e) => return Attempt::Lost(error_chain(&e)),
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if parts.status.as_u16() < 400 {
        return Attempt::Response {
            resp: Response::from_parts(parts, boxed(body)),
            code: None,
        };
    }
    match buffer_up_to(body, ERROR_BODY_LIMIT).await {
        Ok(Buffered::Complete(bytes)) => {
            let code = extract_code(&bytes);
            Attempt::Response {
                resp: Response::from_parts(parts, full(bytes)),
                code,
            }
        }
        Ok(Buffered::TooLarge(rest)) => Attempt::Response {
            resp: Response::from_parts(parts, rest),
            code: None,
        },
        Err(e) => Attempt::Lost(e.to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Turns the last attempt into the client's response and adds the report headers.
fn finish(shared: &Shared, call: &Call, attempt: Attempt, report: Report) -> Response<ProxyBody> {
    let (resp, outcome) = match attempt {
        Attempt::Response { resp, .. } => {
            let s = resp.status().as_u16().to_string();
            (resp, s)
        }
        Attempt::NotSent(e) => (
            no_response(
                call,
                StatusCode::BAD_GATEWAY,
                "Idemproxy.UpstreamConnectFailed",
                format!(
                    "could not connect to the API after {} attempt(s); nothing was sent: {e}",
                    report.attempts
                ),
            ),
            "connect-failed".into(),
        ),
        Attempt::Lost(e) => (lost(call, &report, &e), "lost".into()),
        Attempt::TimedOut => (
            no_response(
                call,
                StatusCode::GATEWAY_TIMEOUT,
                "Idemproxy.UpstreamTimeout",
                format!(
                    "no response from the API within the time allowed, after {} attempt(s){}",
                    report.attempts,
                    may_have_run(call)
                ),
            ),
            "timeout".into(),
        ),
    };
    decorate(shared, call, resp, &outcome, report)
}

/// Logs the call, counts it, and adds the report headers.
fn decorate(
    shared: &Shared,
    call: &Call,
    mut resp: Response<ProxyBody>,
    outcome: &str,
    report: Report,
) -> Response<ProxyBody> {
    let m = &shared.metrics;
    let outcome_class = match resp.status().as_u16() {
        _ if report.stopped == Some("rate-limited") => "rate-limited",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ if resp.headers().contains_key(response::ERROR) => "proxy-error",
        _ => "5xx",
    };
    m.requests
        .get_or_create(&[("class", call.class.label()), ("outcome", outcome_class)])
        .inc();
    if call.token != TokenSource::None {
        m.tokens
            .get_or_create(&[("source", call.token.label())])
            .inc();
    }
    tracing::info!(
        action = %call.action,
        class = call.class.label(),
        attempts = report.attempts,
        outcome = %outcome,
        token = call.token.label(),
        wait_ms = report.waited.as_millis() as u64,
        stopped = report.stopped.unwrap_or(""),
        "api call"
    );
    let h = resp.headers_mut();
    h.insert(response::ATTEMPTS, HeaderValue::from(report.attempts));
    h.insert(
        response::TOKEN,
        HeaderValue::from_static(call.token.label()),
    );
    h.insert(
        response::WAIT_MS,
        HeaderValue::from(report.waited.as_millis() as u64),
    );
    h.insert(
        response::CLASS,
        HeaderValue::from_static(call.class.label()),
    );
    if let Some(t) = call
        .token_value
        .as_deref()
        .filter(|_| call.token != TokenSource::None)
    {
        if let Ok(v) = HeaderValue::from_str(t) {
            h.insert(response::CLIENT_TOKEN, v);
        }
    }
    if let Some(s) = report.stopped {
        h.insert(response::RETRY_STOP, HeaderValue::from_static(s));
    }
    resp
}

fn may_have_run(call: &Call) -> &'static str {
    match call.safety() {
        Safety::Unsafe => {
            "; the action has no ClientToken support, so it was not retried and may or may not have run"
        }
        Safety::TokenProtected => {
            "; the call carried a ClientToken, so re-sending it with the same token cannot run it twice"
        }
        Safety::ReadOnly => "",
    }
}

fn lost(call: &Call, report: &Report, e: &str) -> Response<ProxyBody> {
    no_response(
        call,
        StatusCode::BAD_GATEWAY,
        "Idemproxy.ResponseLost",
        format!(
            "the connection failed after the request was sent, after {} attempt(s): {e}{}",
            report.attempts,
            may_have_run(call)
        ),
    )
}

fn no_response(
    call: &Call,
    status: StatusCode,
    code: &'static str,
    message: String,
) -> Response<ProxyBody> {
    ProxyError::new(status, code, message)
        .host(&call.target.host)
        .into_response()
}
