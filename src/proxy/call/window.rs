//! The dedupe step around the attempt loop: a call whose token the proxy minted takes the
//! token of an earlier call with the same fingerprint inside the window (waiting while that
//! call is still running), and releases its entry when done.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use super::{Call, TokenSource, attempts};
use crate::api::classify::ActionClass;
use crate::dedupe::Acquired;
use crate::dedupe::fingerprint::{CallIdentity, fingerprint};
use crate::dedupe::store::StoreError;
use crate::proxy::body::ProxyBody;
use crate::proxy::ingress::Shared;
use crate::proxy::response::ProxyError;
use crate::replay::ReplayError;

/// An in-flight marker outlives the call's deadline by this much before others ignore it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Header: set when the dedupe store failed and the call went on with a fresh token.
pub const DEDUPE: http::HeaderName = http::HeaderName::from_static("x-idemproxy-dedupe");

/// Runs `call` with dedupe when it applies, else straight through the attempt loop.
pub(super) async fn run(shared: &Shared, mut call: Call) -> Response<ProxyBody> {
    let cfg = &shared.config;
    let Some(client) = shared.upstreams.api(call.target.upstream) else {
        return ProxyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Idemproxy.Internal",
            "no client for upstream",
        )
        .into_response();
    };
    if let Some(refused) = check_nonce(shared, &call).await {
        return refused;
    }
    let dedupe = shared
        .dedupe
        .as_ref()
        .filter(|_| call.token == TokenSource::Injected)
        .map(|d| (d, d.window_for(&call.action)))
        .filter(|(_, w)| !w.is_zero());
    let Some((d, window)) = dedupe else {
        return attempts::execute(shared, client, call).await;
    };
    let id = CallIdentity {
        key_id: &call.key_id,
        host: &call.target.host,
        action: &call.action,
        version: &call.version,
    };
    let fp = fingerprint(id, &call.params);
    let proposed = call.token_value.clone().unwrap_or_default();
    let lease = cfg.retry.deadline + LEASE_MARGIN;
    match d
        .acquire(
            &fp,
            &proposed,
            window,
            lease,
            Instant::now() + cfg.retry.deadline,
        )
        .await
    {
        Ok(Acquired::Fresh) => {}
        Ok(Acquired::Reused(token)) => call.reuse_token(token),
        Err(e) if d.fail_open() => {
            tracing::warn!(error = %e, action = %call.action, "dedupe store failed; going on with a fresh token (fail open)");
            let mut resp = attempts::execute(shared, client, call).await;
            resp.headers_mut()
                .insert(DEDUPE, HeaderValue::from_static("store-unavailable"));
            return resp;
        }
        Err(e) => return store_unavailable(&call, &e),
    }
    let token = call.token_value.clone().unwrap_or_default();
    let resp = attempts::execute(shared, client, call).await;
    d.release(&fp, &token, window).await;
    resp
}

fn store_unavailable(call: &Call, e: &StoreError) -> Response<ProxyBody> {
    tracing::warn!(error = %e, action = %call.action, "dedupe store failed; refusing the call (fail closed)");
    ProxyError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Idemproxy.DedupeStoreUnavailable",
        format!("{e}; nothing was sent (on_store_error = \"closed\"). Retry later."),
    )
    .host(&call.target.host)
    .into_response()
}

/// The caller's nonce of a call that changes something must be new to the dedupe store too,
/// not only to this process's replay guard: with Redis the check is shared by every replica (as
/// the API's is by its front ends), with the embedded store it survives a restart. A replay
/// gets the API's own answer. Read-only calls, harmless to repeat, keep the per-process check
/// and never wait for (or fail with) the store.
async fn check_nonce(shared: &Shared, call: &Call) -> Option<Response<ProxyBody>> {
    if call.class == ActionClass::ReadOnly {
        return None;
    }
    let (d, key) = (shared.dedupe.as_ref()?, call.nonce_key?);
    match d.remember_nonce(key, shared.replay.retention()).await {
        Ok(true) => None,
        Ok(false) => Some(
            ProxyError::new(
                StatusCode::BAD_REQUEST,
                ReplayError::NonceUsed.code(),
                ReplayError::NonceUsed.to_string(),
            )
            .format(call.format)
            .host(&call.target.host)
            .into_response(),
        ),
        Err(e) if d.fail_open() => {
            tracing::warn!(error = %e, action = %call.action,
                "dedupe store failed; the caller's nonce was checked by this process only (fail open)");
            None
        }
        Err(e) => Some(store_unavailable(call, &e)),
    }
}
