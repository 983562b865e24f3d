//! One API call: buffer, parse, verify the caller's signature, classify, settle the token,
//! then hand over to the attempt loop.
//!
//! Whatever the proxy cannot handle safely (unsigned, unknown AccessKeyId, a
//! body over the replay limit) goes to the upstream once, untouched, and says so in
//! `x-idemproxy-passthrough`.

mod attempts;
mod signature;
mod window;

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{Buffered, ProxyBody, buffer_up_to, full};
use super::detach::Detach;
use super::ingress::{Shared, Target, strip_hop_by_hop};
use super::response::{self, ProxyError};
use super::upstream::HttpClient;
use crate::api::classify::ActionClass;
use crate::api::error_body::Format;
use crate::api::params::{Params, Place, is_form};
use crate::config::Config;
use crate::replay::{NonceKey, ReplayGuard};
use crate::retry::decide::Safety;
use crate::secret::Secret;
use crate::telemetry::metrics::Metrics;
use signature::{Identity, Signing};

/// Longest ClientToken the API accepts.
pub const MAX_TOKEN_LEN: usize = 64;

/// Where the call's ClientToken came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Minted by the proxy for this call.
    Injected,
    /// Sent by the caller, kept as is.
    Caller,
    /// Reused from the dedupe window: a re-send of a call the proxy already gave a token.
    Reused,
    /// The action takes no token.
    None,
}

impl TokenSource {
    /// Header and log label.
    pub fn label(self) -> &'static str {
        match self {
            TokenSource::Injected => "injected",
            TokenSource::Caller => "caller",
            TokenSource::Reused => "reused",
            TokenSource::None => "none",
        }
    }
}

/// A verified V1 call, ready to be re-signed for each attempt.
#[derive(Debug)]
pub struct Call {
    method: Method,
    target: Target,
    scheme: &'static str,
    path: String,
    headers: http::HeaderMap,
    params: Params,
    body_is_form: bool,
    raw_body: Bytes,
    secret: Secret,
    action: String,
    class: ActionClass,
    token: TokenSource,
    token_value: Option<String>,
    signing: Signing,
    key_id: String,
    version: String,
    format: Format,
    nonce_key: Option<NonceKey>,
}

impl Call {
    /// Uses the token of an earlier call with the same fingerprint instead of the minted one.
    fn reuse_token(&mut self, token: String) {
        let place = self.params.place_of("ClientToken").unwrap_or(Place::Query);
        self.params.set("ClientToken", token.as_str(), place);
        self.token_value = Some(token);
        self.token = TokenSource::Reused;
    }

    fn safety(&self) -> Safety {
        match self.class {
            ActionClass::ReadOnly => Safety::ReadOnly,
            ActionClass::Token(_) => Safety::TokenProtected,
            ActionClass::Mutating => Safety::Unsafe,
        }
    }
}

enum Prepared {
    Call(Box<Call>),
    Passthrough(&'static str),
}

/// Runs one API call end to end.
pub async fn run(
    shared: &Arc<Shared>,
    target: Target,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let cfg = &shared.config;
    let Some(client) = shared.upstreams.api(target.upstream) else {
        return ProxyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Idemproxy.Internal",
            "no client for upstream",
        )
        .into_response();
    };
    let scheme = cfg
        .upstreams
        .get(target.upstream)
        .map_or("https", |u| u.scheme.as_str());
    let (parts, body) = req.into_parts();
    let body = match buffer_up_to(body, cfg.proxy.max_replay_body).await {
        Ok(Buffered::Complete(b)) => b,
        Ok(Buffered::TooLarge(stream)) => {
            return send_once(
                &shared.metrics,
                client,
                &target,
                scheme,
                parts,
                stream,
                "body-over-replay-limit",
            )
            .await;
        }
        Err(e) => {
            return ProxyError::new(
                StatusCode::BAD_REQUEST,
                "Idemproxy.BadRequestBody",
                format!("reading the request body failed: {e}"),
            )
            .into_response();
        }
    };
    match prepare(cfg, &shared.replay, &target, scheme, &parts, &body) {
        Ok(Prepared::Call(call)) => {
            // Runs on this connection's task, and moves to a task of its own if the client
            // gives up (times out): the retries still finish and the dedupe entry is released
            // for its re-send.
            let shared = shared.clone();
            Detach::new(async move {
                let _running = shared.inflight.enter();
                window::run(&shared, *call).await
            })
            .await
            .unwrap_or_else(|e| {
                ProxyError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Idemproxy.Internal",
                    format!("the call failed unexpectedly: {e}"),
                )
                .into_response()
            })
        }
        Ok(Prepared::Passthrough(reason)) => {
            send_once(
                &shared.metrics,
                client,
                &target,
                scheme,
                parts,
                full(body),
                reason,
            )
            .await
        }
        Err(e) => e.host(&target.host).into_response(),
    }
}

fn bad_request(code: &'static str, message: impl Into<String>) -> ProxyError {
    ProxyError::new(StatusCode::BAD_REQUEST, code, message)
}

fn prepare(
    cfg: &Config,
    replay: &ReplayGuard,
    target: &Target,
    scheme: &'static str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Prepared, ProxyError> {
    let body_is_form = is_form(&parts.headers);
    let body_str = if body_is_form {
        Some(
            std::str::from_utf8(body)
                .map_err(|_| bad_request("InvalidParameter", "the form body is not UTF-8"))?,
        )
    } else {
        None
    };
    let mut params = Params::parse(parts.uri.query(), body_str)
        .map_err(|e| bad_request("InvalidParameter", e.to_string()))?;
    let v = match signature::identify(cfg, replay, parts, &mut params, body)? {
        Identity::Verified(v) => v,
        Identity::Passthrough(reason) => return Ok(Prepared::Passthrough(reason)),
    };
    let class = cfg.classifier.classify(&v.version, &v.action);
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    let body_usable = body_is_form || body.is_empty();
    let (token, token_value) = settle_token(&mut params, class, &v.signing, body_usable)
        .map_err(|e| e.format(v.format))?;
    // A token placed in a body that was empty makes it a form body.
    let body_is_form = body_is_form || params.any_in(Place::Body);
    if body_is_form && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    Ok(Prepared::Call(Box::new(Call {
        method: parts.method.clone(),
        target: target.clone(),
        scheme,
        path: parts.uri.path().to_owned(),
        headers,
        params,
        body_is_form,
        raw_body: body.clone(),
        secret: v.secret,
        action: v.action,
        class,
        token,
        token_value,
        signing: v.signing,
        key_id: v.key_id,
        version: v.version,
        format: v.format,
        nonce_key: v.nonce_key,
    })))
}

/// Keeps a valid caller token, injects one where the action supports it, refuses a bad one.
fn settle_token(
    params: &mut Params,
    class: ActionClass,
    signing: &Signing,
    body_usable: bool,
) -> Result<(TokenSource, Option<String>), ProxyError> {
    let ActionClass::Token(sdk_place) = class else {
        return Ok((
            TokenSource::None,
            params.get("ClientToken").map(str::to_owned),
        ));
    };
    if let Some(t) = params.get("ClientToken") {
        if t.is_empty() || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad_request(
                "InvalidParameter",
                format!("ClientToken must be 1 to {MAX_TOKEN_LEN} printable ASCII characters"),
            ));
        }
        return Ok((TokenSource::Caller, Some(t.to_owned())));
    }
    let place = match signing {
        // V1 signs query and body alike: put the token beside the caller's other parameters.
        Signing::V1 if params.any_in(Place::Query) => Place::Query,
        Signing::V1 => Place::Body,
        // V3: where the SDK puts it for this action, if the body can take form parameters.
        Signing::V3 { .. } if sdk_place == Place::Body && body_usable => Place::Body,
        Signing::V3 { .. } => Place::Query,
    };
    let token = crate::ids::uuid_v4().to_string();
    params.set("ClientToken", token.as_str(), place);
    Ok((TokenSource::Injected, Some(token)))
}

/// Sends a request to the API upstream once, untouched, without retries.
async fn send_once(
    metrics: &Metrics,
    client: &HttpClient,
    target: &Target,
    scheme: &str,
    mut parts: Parts,
    body: ProxyBody,
    reason: &'static str,
) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut parts.headers);
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = match format!("{scheme}://{}{pq}", target.authority).parse() {
        Ok(u) => u,
        Err(_) => {
            return bad_request("Idemproxy.BadUri", "the request URI cannot be forwarded")
                .into_response();
        }
    };
    parts.uri = uri;
    if let Ok(v) = HeaderValue::from_str(&target.authority) {
        parts.headers.insert(header::HOST, v);
    }
    tracing::info!(host = %target.host, passthrough = reason, "forwarded once without retries");
    metrics
        .passthrough
        .get_or_create(&[("reason", reason)])
        .inc();
    let mut resp = match client.request(Request::from_parts(parts, body)).await {
        Ok(r) => {
            let (mut p, b) = r.into_parts();
            strip_hop_by_hop(&mut p.headers);
            Response::from_parts(p, super::body::boxed(b))
        }
        Err(e) => ProxyError::new(
            StatusCode::BAD_GATEWAY,
            "Idemproxy.UpstreamFailed",
            format!("the request was forwarded once without retries ({reason}) and failed: {e}"),
        )
        .host(&target.host)
        .into_response(),
    };
    let h = resp.headers_mut();
    h.insert(response::PASSTHROUGH, HeaderValue::from_static(reason));
    h.insert(response::ATTEMPTS, HeaderValue::from_static("1"));
    h.insert(response::TOKEN, HeaderValue::from_static("none"));
    resp
}

/// The proxy's checks of one buffered request for the API host `host` (parse, verify, replay
/// guard, classify, token) and, when it accepts the call, `attempts` re-signed attempts as they
/// would be sent. `Ok(None)`: the request would be forwarded once, untouched. For the fuzz
/// targets and their corpus regression test (`idemproxy::fuzzing`); not used by the proxy.
#[doc(hidden)]
pub fn check_and_resign(
    cfg: &Config,
    replay: &ReplayGuard,
    host: &str,
    parts: &Parts,
    body: &Bytes,
    attempts: usize,
) -> Result<Option<Vec<Request<Bytes>>>, ProxyError> {
    let Some((upstream, _)) = cfg.upstream_for(host) else {
        return Err(ProxyError::new(
            StatusCode::BAD_REQUEST,
            "Idemproxy.NoUpstream",
            "not an API host",
        ));
    };
    let target = super::ingress::target(upstream, host.to_owned(), None);
    let mut call = match prepare(cfg, replay, &target, "http", parts, body)? {
        Prepared::Call(call) => call,
        Prepared::Passthrough(_) => return Ok(None),
    };
    let now = std::time::SystemTime::now();
    Ok(Some(
        (0..attempts)
            .map(|_| attempts::build_attempt(&mut call, now))
            .collect(),
    ))
}
