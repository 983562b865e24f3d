//! A small HTTP/1.1 client for the offline demo and the tests: one connection per request,
//! absolute-form through a forward proxy, or origin-form straight to a server. It plays the
//! legacy SDK (V1, everything in the query, POST with an empty body) or Node pop-core (POST
//! with every parameter in a form body).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::api::rpc_client::{Placement, V1Call};
use crate::secret::Secret;

/// How to reach the API.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// Absolute-form request to this forward proxy.
    Proxy(SocketAddr),
    /// Origin-form request straight to this server (the API, or the proxy as a gateway).
    Direct(SocketAddr),
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header as text (empty if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A client error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// HTTP failed (reset, EOF…).
    #[error("http failed: {0}")]
    Http(#[from] hyper::Error),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The request could not be built.
    #[error("bad request: {0}")]
    Build(#[from] http::Error),
}

/// Identity used to sign.
#[derive(Debug, Clone)]
pub struct Signer {
    /// AccessKeyId.
    pub key_id: String,
    /// Secret.
    pub secret: Secret,
}

/// A POST to `/?query`: absolute-form through a proxy, origin-form straight to a server.
fn post(route: Route, host: &str, query: &str) -> http::request::Builder {
    let pq = if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{query}")
    };
    Request::post(match route {
        Route::Proxy(_) => format!("http://{host}{pq}"),
        Route::Direct(_) => pq,
    })
}

/// Signs `call` like the legacy SDK (or pop-core with `Placement::Body`) and sends it.
pub async fn send_v1(
    route: Route,
    host: &str,
    signer: &Signer,
    call: &V1Call,
    placement: Placement,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let nonce = crate::ids::uuid_v4().simple().to_string();
    let signed = call.sign(
        &signer.key_id,
        &signer.secret,
        "POST",
        placement,
        SystemTime::now(),
        &nonce,
    );
    let mut b = post(route, host, &signed.query).header(header::HOST, host);
    let body = match signed.body {
        Some(form) => {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Bytes::from(form)
        }
        None => Bytes::new(),
    };
    send(route, b.body(Full::new(body))?, timeout).await
}

/// Signs `call` with V3 like the Tea SDK (signing `host` as `host`) and sends it.
pub async fn send_v3(
    route: Route,
    host: &str,
    signer: &Signer,
    call: &V1Call,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let nonce = crate::ids::uuid_v4().simple().to_string();
    let signed = call.sign_v3(
        &signer.key_id,
        &signer.secret,
        host,
        SystemTime::now(),
        &nonce,
    );
    let mut b = post(route, host, &signed.query);
    for (k, v) in &signed.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    send(route, b.body(Full::new(Bytes::new()))?, timeout).await
}

/// Sends a prepared request over a new connection.
pub async fn send(
    route: Route,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let addr = match route {
        Route::Proxy(a) | Route::Direct(a) => a,
    };
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ClientError::Timeout)?
}
