//! One API call: buffer, parse, verify the caller's signature, classify, settle the token,
//! then hand over to the attempt loop.
//!
//! Whatever the proxy cannot handle safely (unsigned, V3 for now, unknown AccessKeyId, a
//! body over the replay limit) goes to the upstream once, untouched, and says so in
//! `x-idemproxy-passthrough`.

mod attempts;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::body::{Buffered, ProxyBody, buffer_up_to, full};
use super::ingress::{Shared, Target, strip_hop_by_hop};
use super::response::{self, ProxyError};
use super::upstream::HttpClient;
use crate::api::classify::ActionClass;
use crate::api::error_body::Format;
use crate::api::params::{Params, Place};
use crate::api::v1;
use crate::config::Config;
use crate::retry::decide::Safety;
use crate::secret::Secret;

/// Longest ClientToken the API accepts.
pub const MAX_TOKEN_LEN: usize = 64;

/// Where the call's ClientToken came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Minted by the proxy for this call.
    Injected,
    /// Sent by the caller, kept as is.
    Caller,
    /// The action takes no token.
    None,
}

impl TokenSource {
    /// Header and log label.
    pub fn label(self) -> &'static str {
        match self {
            TokenSource::Injected => "injected",
            TokenSource::Caller => "caller",
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
}

impl Call {
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
pub async fn run(shared: &Shared, target: Target, req: Request<Incoming>) -> Response<ProxyBody> {
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
    match prepare(cfg, &target, scheme, &parts, &body) {
        Ok(Prepared::Call(call)) => attempts::execute(cfg, client, *call).await,
        Ok(Prepared::Passthrough(reason)) => {
            send_once(client, &target, scheme, parts, full(body), reason).await
        }
        Err(e) => e.host(&target.host).into_response(),
    }
}

fn bad_request(code: &'static str, message: impl Into<String>) -> ProxyError {
    ProxyError::new(StatusCode::BAD_REQUEST, code, message)
}

fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

fn prepare(
    cfg: &Config,
    target: &Target,
    scheme: &'static str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Prepared, ProxyError> {
    let body_is_form = is_form(parts);
    let body_str = if body_is_form {
        Some(
            std::str::from_utf8(body)
                .map_err(|_| bad_request("InvalidParameter", "the form body is not UTF-8"))?,
        )
    } else {
        None
    };
    let params = Params::parse(parts.uri.query(), body_str)
        .map_err(|e| bad_request("InvalidParameter", e.to_string()))?;
    let authz = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if authz.starts_with("ACS3-") {
        return Ok(Prepared::Passthrough("v3-signature-not-supported-yet"));
    }
    let (Some(_), Some(key_id)) = (params.get(v1::SIGNATURE), params.get("AccessKeyId")) else {
        return Ok(Prepared::Passthrough("unsigned"));
    };
    if params.get("SignatureMethod") != Some("HMAC-SHA1")
        || params.get("SignatureVersion") != Some("1.0")
    {
        return Ok(Prepared::Passthrough("unsupported-signature-method"));
    }
    let Some(secret) = cfg.credentials.get(key_id) else {
        return Ok(Prepared::Passthrough("unknown-access-key"));
    };
    let format = Format::from_param(params.get("Format"));
    if let Err(sts) = v1::verify_params(secret, parts.method.as_str(), &params) {
        return Err(bad_request(
            "SignatureDoesNotMatch",
            format!("Specified signature is not matched with our calculation. server string to sign is:{sts}"),
        )
        .format(format));
    }
    let Some(action) = params.get("Action").map(str::to_owned) else {
        return Err(bad_request(
            "MissingParameter",
            "the input parameter \"Action\" that is mandatory is not supplied",
        )
        .format(format));
    };
    let class = cfg
        .classifier
        .classify(params.get("Version").unwrap_or(""), &action);
    let mut params = params;
    let (token, token_value) = settle_token(&mut params, class).map_err(|e| e.format(format))?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    Ok(Prepared::Call(Box::new(Call {
        method: parts.method.clone(),
        target: target.clone(),
        scheme,
        path: parts.uri.path().to_owned(),
        headers,
        params,
        body_is_form,
        raw_body: body.clone(),
        secret: secret.clone(),
        action,
        class,
        token,
        token_value,
    })))
}

/// Keeps a valid caller token, injects one where the action supports it, refuses a bad one.
fn settle_token(
    params: &mut Params,
    class: ActionClass,
) -> Result<(TokenSource, Option<String>), ProxyError> {
    let ActionClass::Token(_) = class else {
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
    // V1 signs query and body alike: put the token beside the caller's other parameters.
    let place = if params.any_in(Place::Query) {
        Place::Query
    } else {
        Place::Body
    };
    let token = uuid::Uuid::new_v4().to_string();
    params.set("ClientToken", token.as_str(), place);
    Ok((TokenSource::Injected, Some(token)))
}

/// Sends a request to the API upstream once, untouched, without retries.
async fn send_once(
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
