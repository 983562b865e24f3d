//! The proxy's own responses: API-shaped errors and the `x-idemproxy-*` report headers.
//!
//! The header names are `HeaderName` constants: inserting a `&str` name that is not a standard
//! header allocates a copy of it on every call.

use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use super::body::{ProxyBody, full};
use crate::api::error_body::{ApiError, Format};

/// Header: how many attempts were sent upstream.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-idemproxy-attempts");
/// Header: `injected`, `caller` or `none`.
pub const TOKEN: HeaderName = HeaderName::from_static("x-idemproxy-token");
/// Header: the ClientToken the call carried, when there was one.
pub const CLIENT_TOKEN: HeaderName = HeaderName::from_static("x-idemproxy-client-token");
/// Header: total time spent waiting between attempts, in milliseconds.
pub const WAIT_MS: HeaderName = HeaderName::from_static("x-idemproxy-wait-ms");
/// Header: the action class (`read-only`, `token`, `mutating`).
pub const CLASS: HeaderName = HeaderName::from_static("x-idemproxy-class");
/// Header: why the proxy did not handle a request as a retryable call, if it did not.
pub const PASSTHROUGH: HeaderName = HeaderName::from_static("x-idemproxy-passthrough");
/// Header: set on the proxy's own error responses, naming the error kind.
pub const ERROR: HeaderName = HeaderName::from_static("x-idemproxy-error");
/// Header: why retries stopped early (e.g. `unsafe`), when they did.
pub const RETRY_STOP: HeaderName = HeaderName::from_static("x-idemproxy-retry-stopped");

/// An error produced by the proxy itself.
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// HTTP status.
    pub status: StatusCode,
    /// API-style error code, e.g. `Idemproxy.ResponseLost`.
    pub code: &'static str,
    /// Explanation for a human.
    pub message: String,
    /// Response format.
    pub format: Format,
    /// The API host the call was for (the `HostId` field).
    pub host: String,
}

impl ProxyError {
    /// A JSON error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ProxyError {
            status,
            code,
            message: message.into(),
            format: Format::Json,
            host: String::new(),
        }
    }

    /// Sets the format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets the host.
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// Renders the API-shaped response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let request_id = crate::ids::request_id();
        let body = ApiError {
            request_id: &request_id,
            host_id: &self.host,
            code: self.code,
            message: &self.message,
        }
        .render(self.format);
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.format.content_type()),
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-acs-request-id", v);
        }
        h.insert(ERROR, HeaderValue::from_static(self.code));
        resp
    }
}
