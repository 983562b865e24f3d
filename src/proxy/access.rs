//! Who may use the proxy and where to: `Proxy-Authorization` and the non-API target allow-list.

use base64::Engine;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::body::ProxyBody;
use super::response::ProxyError;
use crate::config::ProxySettings;

/// True if the request may use the proxy: no token configured, or a matching
/// `Proxy-Authorization: Bearer TOKEN` / `Basic base64(any-user:TOKEN)`.
pub fn authorized(p: &ProxySettings, headers: &HeaderMap) -> bool {
    let Some(token) = &p.auth_token else {
        return true;
    };
    let Some(value) = headers
        .get(header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or(("", ""));
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        match decoded.iter().position(|b| *b == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    constant_time_eq(&given, token.expose().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 407 answer that asks for credentials.
pub fn challenge() -> Response<ProxyBody> {
    let mut r = ProxyError::new(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "Idemproxy.ProxyAuthenticationRequired",
        "this proxy needs Proxy-Authorization (Bearer TOKEN, or Basic with TOKEN as the password)",
    )
    .into_response();
    r.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"idemproxy\", Bearer realm=\"idemproxy\""),
    );
    r
}

/// True if a non-API `host` may be forwarded or tunnelled to.
pub fn target_allowed(p: &ProxySettings, host: &str) -> bool {
    p.allow_targets.is_empty() || p.allow_targets.iter().any(|h| h.matches(host))
}

/// The 403 answer for a target outside `allow_targets`.
pub fn target_refused(host: &str) -> Response<ProxyBody> {
    ProxyError::new(
        StatusCode::FORBIDDEN,
        "Idemproxy.TargetNotAllowed",
        format!("{host} is not an API host and not in proxy.allow_targets"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn settings(token: Option<&str>) -> ProxySettings {
        let mut p = crate::config::load_str("", &Default::default(), std::path::Path::new("."))
            .unwrap()
            .proxy;
        p.auth_token = token.map(|t| Secret::new(t.into()));
        p
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::PROXY_AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let p = settings(Some("s3cret"));
        assert!(authorized(&p, &headers("Bearer s3cret")));
        assert!(authorized(&p, &headers("bearer s3cret")));
        let basic = base64::engine::general_purpose::STANDARD.encode("tool:s3cret");
        assert!(authorized(&p, &headers(&format!("Basic {basic}"))));
        assert!(!authorized(&p, &headers("Bearer wrong")));
        assert!(!authorized(&p, &headers("Basic !!!")));
        assert!(!authorized(&p, &headers("Digest x")));
        assert!(!authorized(&p, &HeaderMap::new()));
        assert!(authorized(&settings(None), &HeaderMap::new()));
    }
}
