//! Fuzz entry points. `fuzz/` runs them under libFuzzer (`cargo fuzz run <target>`); the
//! `fuzz_corpus` integration test replays the stored corpus (`fuzz/corpus/<target>/`) through
//! them on every CI run, so whatever a fuzzing session found stays fixed.
//!
//! Each entry takes arbitrary bytes and panics only on a finding: a panic inside the code under
//! test, or a broken invariant named in the entry's docs. Not part of the proxy's API.

// A fuzz harness reports findings (and its own broken setup) by panicking.
#![allow(clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, header};
use http_body_util::{BodyExt, Full};

use crate::api::error_body::extract_code;
use crate::api::params::{Params, Place, is_form};
use crate::api::rpc_client::{Placement, V1Call};
use crate::api::v3::Authorization;
use crate::config::{Config, load_str};
use crate::replay::ReplayGuard;
use crate::secret::Secret;
use crate::sim::{InProcess, SimConfig};

const HOST: &str = "gpdb.aliyuncs.com";
const KEY_ID: &str = "fuzzid";
const SECRET: &str = "fuzzsecret";

/// Signature errors: a request the proxy re-signed must never get one of these.
const SIGNATURE_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp.Expired",
    "InvalidTimeStamp.Format",
    "SignatureNonceUsed",
];

/// `Params::parse` on `query \0 body`. Invariant: what it accepts, re-encoded and parsed
/// again, is the same parameter set in the same places (the re-signing round trip).
pub fn params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (query, body) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(p) = Params::parse(Some(query), Some(body)) else {
        return;
    };
    let again = Params::parse(Some(&p.encode(Place::Query)), Some(&p.encode(Place::Body)));
    assert_eq!(again.as_ref(), Ok(&p), "re-encoding changed the parameters");
}

/// `Authorization::parse` on a V3 header value. Invariant: what it accepts renders back to a
/// value that parses to the same thing.
pub fn v3_authorization(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(a) = Authorization::parse(&text) else {
        return;
    };
    let again = Authorization::parse(&a.render());
    assert_eq!(again.as_ref(), Ok(&a), "render/parse changed the header");
}

/// Config loading from TOML text (no environment, every path under a missing directory).
pub fn config(data: &[u8]) {
    // Absolute paths become relative: `*_file = "/dev/stdin"` would make the run depend on the
    // machine or block; relative ones resolve under the missing base directory.
    let text = String::from_utf8_lossy(data)
        .replace("\"/", "\"./")
        .replace("'/", "'./");
    let _ = load_str(&text, &HashMap::new(), Path::new("/nonexistent-fuzz-base"));
}

/// A request built from fuzz bytes.
struct Built {
    parts: Parts,
    body: Bytes,
    /// Signed correctly by the fuzz harness (V1 in the query or a form body, or V3).
    signed: bool,
}

/// The first byte picks the shape: `& 3` = 0 V1 in the query, 1 V1 in a form body, 2 V3, 3 raw
/// (the rest is `[METHOD ]path?query \n headers \n\n body`, sent as is); `& 4` = GET instead of POST
/// for V1. For the signed shapes the rest is the action on the first line, then `name=value`
/// lines (raw, unencoded): the harness encodes and signs them as an official client would.
fn build(data: &[u8]) -> Option<Built> {
    let (&flags, rest) = data.split_first()?;
    let text = String::from_utf8_lossy(rest);
    if flags & 3 == 3 {
        return raw(&text);
    }
    let mut lines = text.split('\n');
    let action = lines.next().unwrap_or_default();
    let call = V1Call {
        action: action.to_owned(),
        version: crate::api::classify::GPDB_VERSION.to_owned(),
        params: lines
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
    };
    let secret = Secret::new(SECRET.to_owned());
    let nonce = crate::ids::uuid_v4().to_string();
    let now = SystemTime::now();
    let mut b = Request::builder();
    let body = if flags & 3 == 2 {
        let s = call.sign_v3(KEY_ID, &secret, HOST, now, &nonce);
        b = b.method("POST").uri(format!("/?{}", s.query));
        for (k, v) in &s.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        Bytes::new()
    } else {
        let method = if flags & 4 != 0 { "GET" } else { "POST" };
        let placement = if flags & 3 == 1 {
            Placement::Body
        } else {
            Placement::Query
        };
        let s = call.sign(KEY_ID, &secret, method, placement, now, &nonce);
        let sep = if s.query.is_empty() { "" } else { "?" };
        b = b
            .method(method)
            .uri(format!("/{sep}{}", s.query))
            .header(header::HOST, HOST);
        match s.body {
            Some(form) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        }
    };
    let (parts, ()) = b.body(()).ok()?.into_parts();
    Some(Built {
        parts,
        body,
        signed: true,
    })
}

fn raw(text: &str) -> Option<Built> {
    let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let (method, target) = line.split_once(' ').unwrap_or(("POST", line));
    let (head, body) = rest.split_once("\n\n").unwrap_or((rest, ""));
    let mut b = Request::builder().method(method).uri(target);
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            b = b.header(k.trim(), v.trim());
        }
    }
    if let Some(h) = b.headers_mut() {
        h.entry(header::HOST)
            .or_insert(http::HeaderValue::from_static(HOST));
    }
    let (parts, ()) = b.body(()).ok()?.into_parts();
    Some(Built {
        parts,
        body: Bytes::copy_from_slice(body.as_bytes()),
        signed: false,
    })
}

fn proxy_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let toml = format!(
            "[[upstreams]]\nhosts = [\"{HOST}\"]\nconnect_to = \"127.0.0.1:9\"\nscheme = \"http\"\n\
             [[credentials]]\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{SECRET}\"\n"
        );
        load_str(&toml, &HashMap::new(), Path::new("."))
            .unwrap_or_else(|e| panic!("the fuzz harness's own config is invalid: {e}"))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("no tokio runtime for the fuzz harness: {e}"))
    })
}

/// A fresh simulator with the harness's key and the API's 15-minute window.
fn simulator() -> InProcess {
    InProcess::new(SimConfig::with_key(KEY_ID, SECRET))
}

/// Sends `req` to `sim`; the status and API error code of its answer (`None`: a reset).
fn answer(sim: &InProcess, req: Request<Bytes>) -> Option<(u16, Option<String>)> {
    runtime().block_on(async {
        let resp = sim.answer(req.map(Full::new)).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|c| c.to_bytes());
        Some((status, extract_code(&body.unwrap_or_default())))
    })
}

/// The proxy's request checks and re-signing (`proxy::call::check_and_resign`), with the
/// simulator as the API. Invariants: a request the harness signed correctly is never refused
/// for its signature; every attempt the proxy re-signs passes the simulator's signature,
/// timestamp and nonce checks; attempts of a call that carries a ClientToken never execute
/// twice.
pub fn proxy_request(data: &[u8]) {
    let Some(built) = build(data) else {
        return;
    };
    let replay = ReplayGuard::new(Duration::from_secs(15 * 60), 1000);
    let result = crate::proxy::call::check_and_resign(
        proxy_config(),
        &replay,
        HOST,
        &built.parts,
        &built.body,
        2,
    );
    let attempts = match result {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            assert!(
                !(built.signed && SIGNATURE_CODES.contains(&e.code)),
                "the proxy refused a correctly signed request: {} {}",
                e.code,
                e.message
            );
            return;
        }
    };
    let sim = simulator();
    let mut tokens = Vec::new();
    for (i, attempt) in attempts.into_iter().enumerate() {
        let token = attempt_token(&attempt);
        if i > 0 && token.is_none() {
            // Without a token the proxy never sends a second attempt of a mutating call.
            break;
        }
        tokens.push(token);
        let Some((status, code)) = answer(&sim, attempt) else {
            continue;
        };
        if let Some(code) = code.as_deref() {
            assert!(
                !SIGNATURE_CODES.contains(&code),
                "the simulator refused the proxy's re-signed attempt {}: {status} {code}",
                i + 1
            );
        }
    }
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "attempts carried different ClientTokens: {tokens:?}"
    );
    assert_eq!(
        sim.ledger().duplicates,
        0,
        "re-signed attempts executed twice"
    );
}

/// The ClientToken an attempt carries (query or form body; V3 may put it in either).
fn attempt_token(req: &Request<Bytes>) -> Option<String> {
    let body = if is_form(req.headers()) {
        std::str::from_utf8(req.body()).ok()
    } else {
        None
    };
    Params::parse(req.uri().query(), body)
        .ok()?
        .get("ClientToken")
        .map(str::to_owned)
}

/// The simulator's request handling (parsing, V1/V3 verification, replay checks, the gpdb
/// actions, the ledger). Invariant: no panic.
pub fn sim_request(data: &[u8]) {
    let Some(built) = build(data) else {
        return;
    };
    let sim = simulator();
    let req = Request::from_parts(built.parts, built.body);
    let _ = answer(&sim, req);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_create_is_accepted_resigned_and_runs_once() {
        let mut input = vec![0u8];
        input.extend_from_slice(
            b"CreateDBInstance\nRegionId=cn-hangzhou\nEngineVersion=6.0\nDBInstanceDescription=a b",
        );
        let built = build(&input).unwrap();
        assert!(built.signed);
        let replay = ReplayGuard::new(Duration::from_secs(900), 10);
        let attempts = crate::proxy::call::check_and_resign(
            proxy_config(),
            &replay,
            HOST,
            &built.parts,
            &built.body,
            2,
        )
        .unwrap()
        .unwrap();
        assert_eq!(attempts.len(), 2);
        let t0 = attempt_token(&attempts[0]).unwrap();
        assert_eq!(attempt_token(&attempts[1]).as_deref(), Some(t0.as_str()));
        proxy_request(&input);
    }

    #[test]
    fn every_shape_runs_without_a_finding() {
        for flags in 0u8..8 {
            let mut input = vec![flags];
            input.extend_from_slice(b"DescribeDBInstances\nRegionId=cn-hangzhou");
            proxy_request(&input);
            sim_request(&input);
        }
        proxy_request(
            b"\x03/?Action=X&a=%zz\ncontent-type: application/x-www-form-urlencoded\n\nb=1",
        );
        sim_request(b"\x03/_sim/ledger\n\n");
        params(b"a=1&b=%20\0c=+");
        v3_authorization(
            b"ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-date,Signature=ab",
        );
        config(b"[proxy]\nlisten = \"x\"");
    }
}
