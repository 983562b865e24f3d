//! A minimal V1 RPC request builder, shaped like the official SDKs' requests. Used by the
//! offline demo and the tests to play a legacy client; not on the proxy's request path.

use std::time::SystemTime;

use super::params::{Params, Place};
use super::time::format_timestamp;
use super::v1;
use crate::secret::Secret;

/// Where the client puts its parameters, as the official clients differ (PROTOCOL.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Everything in the query, empty body (Python legacy SDK).
    Query,
    /// Everything, `Signature` included, in a form body, no query (Node pop-core POST).
    Body,
}

/// One V1 call to be signed.
#[derive(Debug, Clone)]
pub struct V1Call {
    /// The API action.
    pub action: String,
    /// API version, `2016-05-03` for gpdb.
    pub version: String,
    /// Business parameters.
    pub params: Vec<(String, String)>,
}

/// The wire parts of a signed V1 request.
#[derive(Debug, Clone)]
pub struct SignedV1 {
    /// The encoded query string (possibly empty).
    pub query: String,
    /// The encoded form body, if the placement uses one.
    pub body: Option<String>,
}

impl V1Call {
    /// A gpdb call with the given business parameters.
    pub fn gpdb(action: &str, params: &[(&str, &str)]) -> Self {
        V1Call {
            action: action.to_owned(),
            version: super::classify::GPDB_VERSION.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Signs the call for `method` with the common parameters the legacy SDK sends.
    pub fn sign(
        &self,
        key_id: &str,
        secret: &Secret,
        method: &str,
        placement: Placement,
        now: SystemTime,
        nonce: &str,
    ) -> SignedV1 {
        let place = match placement {
            Placement::Query => Place::Query,
            Placement::Body => Place::Body,
        };
        let mut p = Params::default();
        for (k, v) in &self.params {
            p.set(k, v.as_str(), place);
        }
        for (k, v) in [
            ("Action", self.action.as_str()),
            ("Version", self.version.as_str()),
            ("Format", "JSON"),
            ("AccessKeyId", key_id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureType", ""),
        ] {
            p.set(k, v, place);
        }
        v1::resign(&mut p, method, secret, nonce, &format_timestamp(now), place);
        SignedV1 {
            query: p.encode(Place::Query),
            body: (placement == Placement::Body).then(|| p.encode(Place::Body)),
        }
    }
}

/// The wire parts of a signed V3 request (business parameters in the query, empty body).
#[derive(Debug, Clone)]
pub struct SignedV3 {
    /// The encoded query string.
    pub query: String,
    /// Headers to send, `Authorization` included (names lowercase).
    pub headers: Vec<(String, String)>,
}

impl V1Call {
    /// Signs the call with ACS3-HMAC-SHA256 like the Tea SDK: POST, business parameters in
    /// the query, `host` and the `x-acs-*` headers signed.
    pub fn sign_v3(
        &self,
        key_id: &str,
        secret: &Secret,
        host: &str,
        now: SystemTime,
        nonce: &str,
    ) -> SignedV3 {
        let mut p = Params::default();
        for (k, v) in &self.params {
            p.set(k, v.as_str(), Place::Query);
        }
        let query = p.encode(Place::Query);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.into()),
            ("x-acs-action".into(), self.action.clone()),
            (
                "x-acs-content-sha256".into(),
                super::v3::EMPTY_SHA256.into(),
            ),
            ("x-acs-date".into(), format_timestamp(now)),
            ("x-acs-signature-nonce".into(), nonce.into()),
            ("x-acs-version".into(), self.version.clone()),
        ];
        let mut map = http::HeaderMap::new();
        for (k, v) in &headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                map.insert(k, v);
            }
        }
        let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
        let sts = super::v3::request_string_to_sign(
            "POST",
            "/",
            host,
            &map,
            &p,
            &signed,
            super::v3::EMPTY_SHA256,
        )
        .unwrap_or_default();
        let auth = super::v3::Authorization {
            key_id: key_id.to_owned(),
            signed_headers: signed,
            signature: super::v3::sign(secret, &sts),
        };
        headers.push(("authorization".into(), auth.render()));
        SignedV3 { query, headers }
    }
}
