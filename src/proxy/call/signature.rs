//! Which signature a call carries, checking it, and re-signing each attempt the same way.
//!
//! V1: `Signature` and friends are parameters (query and/or form body). V3: an
//! `Authorization: ACS3-HMAC-SHA256 …` header over the signed headers, the query and the body
//! hash. A re-signed V3 attempt signs exactly the headers the caller signed, plus `host`,
//! `x-acs-date`, `x-acs-signature-nonce` and `x-acs-content-sha256`, which the proxy sets.

use std::time::SystemTime;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::api::error_body::Format;
use crate::api::params::{Params, Place};
use crate::api::{v1, v3};
use crate::config::Config;
use crate::proxy::response::ProxyError;
use crate::replay::{NonceKey, ReplayGuard};
use crate::secret::Secret;

/// Headers the proxy sets on every V3 attempt, so they are always signed.
const V3_SET: [&str; 4] = [
    "host",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
];

const X_ACS_DATE: HeaderName = HeaderName::from_static("x-acs-date");
const X_ACS_NONCE: HeaderName = HeaderName::from_static("x-acs-signature-nonce");
const X_ACS_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-acs-content-sha256");

/// How a call is signed.
#[derive(Debug, Clone)]
pub(super) enum Signing {
    /// RPC HMAC-SHA1 in parameters.
    V1,
    /// ACS3-HMAC-SHA256 in `Authorization`.
    V3 {
        /// AccessKeyId.
        key_id: String,
        /// What the re-signed attempts sign (sorted).
        signed_headers: Vec<String>,
    },
}

/// A verified caller.
#[derive(Debug)]
pub(super) struct Verified {
    pub signing: Signing,
    pub key_id: String,
    pub secret: Secret,
    pub action: String,
    pub version: String,
    pub format: Format,
    /// The caller's nonce as the replay guard keyed it; `None` when the proxy signed the call
    /// itself.
    pub nonce_key: Option<NonceKey>,
}

/// What the proxy makes of a request's signature.
pub(super) enum Identity {
    /// Verified: the proxy may change and re-sign the call.
    Verified(Verified),
    /// Not one the proxy can re-sign: forward once, untouched, for this reason.
    Passthrough(&'static str),
}

fn bad(code: &'static str, message: impl Into<String>) -> ProxyError {
    ProxyError::new(StatusCode::BAD_REQUEST, code, message)
}

fn mismatch(sts: &str) -> String {
    format!(
        "Specified signature is not matched with our calculation. server string to sign is:{sts}"
    )
}

/// Identifies and verifies the caller's signature.
pub(super) fn identify(
    cfg: &Config,
    replay: &ReplayGuard,
    parts: &Parts,
    params: &mut Params,
    body: &Bytes,
) -> Result<Identity, ProxyError> {
    let authz = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if authz.starts_with("ACS3-") {
        return identify_v3(cfg, replay, parts, params, body, authz);
    }
    let (Some(_), Some(key_id)) = (params.get(v1::SIGNATURE), params.get("AccessKeyId")) else {
        return Ok(sign_unsigned(cfg, params));
    };
    if params.get("SignatureMethod") != Some("HMAC-SHA1")
        || params.get("SignatureVersion") != Some("1.0")
    {
        return Ok(Identity::Passthrough("unsupported-signature-method"));
    }
    let Some(secret) = cfg.credentials.get(key_id) else {
        return Ok(Identity::Passthrough("unknown-access-key"));
    };
    let format = Format::from_param(params.get("Format"));
    if let Err(sts) = v1::verify_params(secret, parts.method.as_str(), params) {
        return Err(bad("SignatureDoesNotMatch", mismatch(&sts)).format(format));
    }
    let nonce_key = replay
        .check(
            key_id,
            params.get(v1::TIMESTAMP),
            params.get(v1::NONCE),
            SystemTime::now(),
        )
        .map_err(|e| bad(e.code(), e.to_string()).format(format))?;
    let Some(action) = params.get("Action") else {
        return Err(bad(
            "MissingParameter",
            "the input parameter \"Action\" that is mandatory is not supplied",
        )
        .format(format));
    };
    Ok(Identity::Verified(Verified {
        signing: Signing::V1,
        key_id: key_id.to_owned(),
        secret: secret.clone(),
        action: action.to_owned(),
        version: params.get("Version").unwrap_or("").to_owned(),
        format,
        nonce_key: Some(nonce_key),
    }))
}

/// The opt-in mode (`[signing] sign_unsigned`): an unsigned V1-shaped call (it has `Action`)
/// gets the proxy's own AccessKeyId, the signature parameters and, for STS credentials, the
/// security token; every attempt is then signed like any other. Off: forwarded untouched.
fn sign_unsigned(cfg: &Config, params: &mut Params) -> Identity {
    let Some(key_id) = cfg.signing.sign_unsigned_as.as_deref() else {
        return Identity::Passthrough("unsigned");
    };
    let (Some(secret), Some(action)) = (
        cfg.credentials.get(key_id),
        params.get("Action").map(str::to_owned),
    ) else {
        return Identity::Passthrough("unsigned");
    };
    let place = if params.any_in(Place::Query) || !params.any_in(Place::Body) {
        Place::Query
    } else {
        Place::Body
    };
    params.set("AccessKeyId", key_id, place);
    params.set("SignatureMethod", "HMAC-SHA1", place);
    params.set("SignatureVersion", "1.0", place);
    if let Some(token) = cfg.security_tokens.get(key_id) {
        if params.get("SecurityToken").is_none() {
            params.set("SecurityToken", token.expose(), place);
        }
    }
    // Placeholders: every attempt sets its own nonce, timestamp and signature.
    params.set(v1::NONCE, "", place);
    params.set(v1::TIMESTAMP, "", place);
    params.set(v1::SIGNATURE, "", place);
    Identity::Verified(Verified {
        signing: Signing::V1,
        key_id: key_id.to_owned(),
        secret: secret.clone(),
        version: params.get("Version").unwrap_or("").to_owned(),
        format: Format::from_param(params.get("Format")),
        action,
        nonce_key: None,
    })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(v3::header_text)
}

fn identify_v3(
    cfg: &Config,
    replay: &ReplayGuard,
    parts: &Parts,
    params: &Params,
    body: &Bytes,
    authz: &str,
) -> Result<Identity, ProxyError> {
    let auth =
        v3::Authorization::parse(authz).map_err(|e| bad("IncompleteSignature", e.to_string()))?;
    let Some(secret) = cfg.credentials.get(&auth.key_id) else {
        return Ok(Identity::Passthrough("unknown-access-key"));
    };
    let payload_hash = v3::sha256_hex(body);
    if let Some(h) = header_str(&parts.headers, "x-acs-content-sha256") {
        if !h.eq_ignore_ascii_case(&payload_hash) {
            return Err(bad(
                "InvalidParameter",
                "x-acs-content-sha256 does not match the request body",
            ));
        }
    }
    let host = v3::signed_host(&parts.headers, &parts.uri);
    let sts = v3::request_string_to_sign(
        parts.method.as_str(),
        parts.uri.path(),
        &host,
        &parts.headers,
        params,
        &auth.signed_headers,
        &payload_hash,
    )
    .map_err(|e| bad("IncompleteSignature", e.to_string()))?;
    if !v3::verify(secret, &sts, &auth.signature) {
        return Err(bad("SignatureDoesNotMatch", mismatch(&sts)));
    }
    let (date, nonce) = (
        header_str(&parts.headers, "x-acs-date"),
        header_str(&parts.headers, "x-acs-signature-nonce"),
    );
    let nonce_key = replay
        .check(&auth.key_id, date, nonce, SystemTime::now())
        .map_err(|e| bad(e.code(), e.to_string()))?;
    let Some(action) = header_str(&parts.headers, "x-acs-action") else {
        return Err(bad(
            "MissingParameter",
            "the x-acs-action header that is mandatory is not supplied",
        ));
    };
    let mut signed_headers = auth.signed_headers.clone();
    signed_headers.extend(V3_SET.iter().map(|s| (*s).to_owned()));
    signed_headers.sort();
    signed_headers.dedup();
    Ok(Identity::Verified(Verified {
        key_id: auth.key_id.clone(),
        signing: Signing::V3 {
            key_id: auth.key_id,
            signed_headers,
        },
        secret: secret.clone(),
        action: action.to_owned(),
        version: header_str(&parts.headers, "x-acs-version")
            .unwrap_or("")
            .to_owned(),
        format: Format::Json,
        nonce_key: Some(nonce_key),
    }))
}

/// One attempt's signing inputs.
pub(super) struct Attempt<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
}

impl Signing {
    /// Re-signs an attempt: V1 rewrites the parameters (before they are encoded), V3 the
    /// headers (after the body is final). Call `params` first, then `headers`.
    pub(super) fn params(&self, params: &mut Params, secret: &Secret, a: &Attempt<'_>) {
        if let Signing::V1 = self {
            let place = params.place_of(v1::SIGNATURE).unwrap_or(Place::Query);
            v1::resign(params, a.method, secret, a.nonce, a.timestamp, place);
        }
    }

    /// See [`Signing::params`].
    pub(super) fn headers(
        &self,
        headers: &mut HeaderMap,
        params: &Params,
        body: &[u8],
        secret: &Secret,
        a: &Attempt<'_>,
    ) {
        let Signing::V3 {
            key_id,
            signed_headers,
        } = self
        else {
            return;
        };
        let hash = v3::sha256_hex(body);
        for (name, value) in [
            (X_ACS_DATE, a.timestamp),
            (X_ACS_NONCE, a.nonce),
            (X_ACS_CONTENT_SHA256, hash.as_str()),
            (header::HOST, a.authority),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        // Every signed header is present: the caller's were verified, ours were just set.
        let sts = v3::request_string_to_sign(
            a.method,
            a.path,
            a.authority,
            headers,
            params,
            signed_headers,
            &hash,
        )
        .unwrap_or_default();
        let auth = v3::Authorization {
            key_id: key_id.clone(),
            signed_headers: signed_headers.clone(),
            signature: v3::sign(secret, &sts),
        };
        if let Ok(v) = HeaderValue::from_str(&auth.render()) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
}
