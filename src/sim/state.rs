//! The simulator's memory and rules: signature checks, the timestamp window, used nonces,
//! ClientToken semantics, a tiny gpdb model, and the execution ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::classify::{ActionClass, Classifier};
use crate::api::params::{NON_BUSINESS, Params};
use crate::api::time::{parse_timestamp, skew};
use crate::api::{v1, v3};
use crate::secret::Secret;

/// A refusal, as the API would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// API error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The action.
    pub action: String,
    /// The AccessKeyId.
    pub key_id: String,
    /// The ClientToken, if any.
    pub token: Option<String>,
    /// The nonce.
    pub nonce: String,
    /// The API version.
    pub version: String,
}

/// The V3 parts of a request the simulator checks.
#[derive(Debug)]
pub struct V3Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path.
    pub path: &'a str,
    /// The host the client signed (Host header or HTTP/2 authority).
    pub host: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

/// One row of the request log.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Arrival order, from 1.
    pub seq: u64,
    /// The action, if one could be read.
    pub action: String,
    /// The AccessKeyId, if any.
    pub access_key_id: String,
    /// The ClientToken, if any.
    pub client_token: Option<String>,
    /// The nonce, if any.
    pub nonce: String,
    /// The fault played, if any.
    pub fault: Option<String>,
    /// `executed`, `replayed`, or `rejected:<Code>`.
    pub result: String,
}

/// How many times each logical mutating operation ran.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Ledger {
    /// Requests received (all of them).
    pub requests: u64,
    /// Executions of mutating operations.
    pub executions: u64,
    /// Requests answered from the ClientToken table without executing.
    pub replays: u64,
    /// Executions beyond the first of the same logical operation.
    pub duplicates: u64,
    /// Per logical operation (action + business parameters).
    pub operations: Vec<LedgerEntry>,
}

/// One logical operation in the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerEntry {
    /// The action.
    pub action: String,
    /// Action and sorted business parameters.
    pub key: String,
    /// How many times it ran.
    pub count: u64,
}

struct TokenEntry {
    fingerprint: String,
    result: Value,
}

#[derive(Default)]
struct Inner {
    nonces: HashMap<String, SystemTime>,
    tokens: HashMap<(String, String), TokenEntry>,
    instances: BTreeMap<String, Value>,
    ops: BTreeMap<String, (String, u64)>,
    records: Vec<RequestRecord>,
    requests: u64,
    replays: u64,
    next_id: u64,
}

/// The simulator's state, shared by all connections.
pub struct SimState {
    keys: HashMap<String, Secret>,
    window: Duration,
    classifier: Classifier,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("keys", &self.keys.len())
            .field("window", &self.window)
            .finish()
    }
}

impl SimState {
    /// A fresh simulator with these keys and timestamp window.
    pub fn new(keys: HashMap<String, Secret>, window: Duration) -> Self {
        SimState {
            keys,
            window,
            classifier: Classifier::default(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a simulator; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks signature, timestamp and nonce as the API does.
    pub fn authenticate(
        &self,
        method: &str,
        params: &Params,
        now: SystemTime,
    ) -> Result<Authenticated, Refusal> {
        for p in [
            "AccessKeyId",
            "Signature",
            "SignatureNonce",
            "Timestamp",
            "SignatureMethod",
            "SignatureVersion",
        ] {
            if params.get(p).is_none() {
                return Err(refuse(
                    400,
                    "MissingParameter",
                    format!(
                        "The input parameter \"{p}\" that is mandatory for processing this request is not supplied."
                    ),
                ));
            }
        }
        let key_id = params.get("AccessKeyId").unwrap_or_default().to_owned();
        let secret = self.keys.get(&key_id).ok_or_else(|| {
            refuse(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        if params.get("SignatureMethod") != Some("HMAC-SHA1")
            || params.get("SignatureVersion") != Some("1.0")
        {
            return Err(refuse(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            ));
        }
        v1::verify_params(secret, method, params).map_err(|sts| {
            refuse(400, "SignatureDoesNotMatch", format!("Specified signature is not matched with our calculation. server string to sign is:{sts}"))
        })?;
        let nonce = params.get("SignatureNonce").unwrap_or_default().to_owned();
        self.check_replay(&key_id, params.get("Timestamp"), &nonce, now)?;
        let Some(action) = params.get("Action") else {
            return Err(refuse(
                400,
                "MissingParameter",
                "The input parameter \"Action\" that is mandatory for processing this request is not supplied.",
            ));
        };
        Ok(Authenticated {
            action: action.to_owned(),
            key_id,
            token: params.get("ClientToken").map(str::to_owned),
            nonce,
            version: params.get("Version").unwrap_or("").to_owned(),
        })
    }

    /// Checks an ACS3-HMAC-SHA256 request as the API does.
    pub fn authenticate_v3(
        &self,
        req: &V3Request<'_>,
        params: &Params,
        now: SystemTime,
    ) -> Result<Authenticated, Refusal> {
        let h = |name: &str| req.headers.get(name).and_then(v3::header_text);
        let authz = h("authorization").unwrap_or("");
        let auth = v3::Authorization::parse(authz)
            .map_err(|e| refuse(400, "IncompleteSignature", e.to_string()))?;
        let secret = self.keys.get(&auth.key_id).ok_or_else(|| {
            refuse(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        let payload_hash = v3::sha256_hex(req.body);
        if h("x-acs-content-sha256").is_some_and(|v| !v.eq_ignore_ascii_case(&payload_hash)) {
            return Err(refuse(
                400,
                "InvalidParameter",
                "x-acs-content-sha256 does not match the body.",
            ));
        }
        for needed in [
            "host",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-action",
            "x-acs-version",
        ] {
            if !auth.signed_headers.iter().any(|s| s == needed) {
                return Err(refuse(
                    400,
                    "IncompleteSignature",
                    format!("the {needed} header must be signed"),
                ));
            }
        }
        let sts = v3::request_string_to_sign(
            req.method,
            req.path,
            req.host,
            req.headers,
            params,
            &auth.signed_headers,
            &payload_hash,
        )
        .map_err(|e| refuse(400, "IncompleteSignature", e.to_string()))?;
        if !v3::verify(secret, &sts, &auth.signature) {
            return Err(refuse(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{sts}"
                ),
            ));
        }
        let nonce = h("x-acs-signature-nonce").unwrap_or("").to_owned();
        self.check_replay(&auth.key_id, h("x-acs-date"), &nonce, now)?;
        Ok(Authenticated {
            action: h("x-acs-action").unwrap_or("").to_owned(),
            key_id: auth.key_id,
            token: params.get("ClientToken").map(str::to_owned),
            nonce,
            version: h("x-acs-version").unwrap_or("").to_owned(),
        })
    }

    /// The timestamp window and nonce reuse rules, shared by V1 and V3.
    fn check_replay(
        &self,
        key_id: &str,
        timestamp: Option<&str>,
        nonce: &str,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let ts = timestamp.and_then(parse_timestamp).ok_or_else(|| {
            refuse(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?;
        if skew(ts, now) > self.window {
            return Err(refuse(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        if nonce.is_empty() {
            return Err(refuse(
                400,
                "MissingParameter",
                "The signature nonce is not supplied.",
            ));
        }
        let mut inner = self.lock();
        if inner.nonces.len() > 200_000 {
            let window = self.window;
            inner
                .nonces
                .retain(|_, seen| skew(*seen, now) <= window * 2);
        }
        if inner
            .nonces
            .insert(format!("{key_id}\n{nonce}"), now)
            .is_some()
        {
            return Err(refuse(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }

    /// Runs the call (or replays it by ClientToken) and returns the result body without
    /// `RequestId`.
    pub fn execute(&self, auth: &Authenticated, params: &Params) -> Result<(Value, bool), Refusal> {
        let fingerprint = fingerprint(&auth.action, params);
        let mut inner = self.lock();
        if let Some(token) = &auth.token {
            if token.len() > 64 || !token.is_ascii() {
                return Err(refuse(
                    400,
                    "InvalidClientToken.Malformed",
                    "The specified ClientToken is not valid.",
                ));
            }
            let key = (auth.key_id.clone(), token.clone());
            if let Some(entry) = inner.tokens.get(&key) {
                if entry.fingerprint != fingerprint {
                    return Err(refuse(
                        400,
                        "IdempotentParameterMismatch",
                        "The specified parameter has changed while using an already used clientToken.",
                    ));
                }
                let result = entry.result.clone();
                inner.replays += 1;
                return Ok((result, true));
            }
        }
        let result = self.act(&mut inner, &auth.action, params)?;
        if self.classifier.classify(&auth.version, &auth.action) != ActionClass::ReadOnly {
            let slot = inner
                .ops
                .entry(fingerprint.clone())
                .or_insert_with(|| (auth.action.clone(), 0));
            slot.1 += 1;
        }
        if let Some(token) = &auth.token {
            inner.tokens.insert(
                (auth.key_id.clone(), token.clone()),
                TokenEntry {
                    fingerprint,
                    result: result.clone(),
                },
            );
        }
        Ok((result, false))
    }

    fn act(&self, inner: &mut Inner, action: &str, params: &Params) -> Result<Value, Refusal> {
        let p = |k: &str| params.get(k).unwrap_or("").to_owned();
        match action {
            "CreateDBInstance" => {
                inner.next_id += 1;
                let id = format!("gp-sim{:08}", inner.next_id);
                let inst = json!({
                    "DBInstanceId": id, "DBInstanceDescription": p("DBInstanceDescription"),
                    "RegionId": p("RegionId"), "ZoneId": p("ZoneId"), "Engine": p("Engine"),
                    "EngineVersion": p("EngineVersion"), "DBInstanceStatus": "Creating",
                });
                inner.instances.insert(id.clone(), inst);
                Ok(json!({
                    "DBInstanceId": id, "OrderId": format!("{}", 100_000 + inner.next_id),
                    "ConnectionString": format!("{id}.gpdb.rds.aliyuncs.com"), "Port": "5432",
                }))
            }
            "DeleteDBInstance" => match inner.instances.remove(&p("DBInstanceId")) {
                Some(_) => Ok(json!({})),
                None => Err(refuse(
                    404,
                    "InvalidDBInstanceId.NotFound",
                    "The specified instance is not found.",
                )),
            },
            "DescribeDBInstanceAttribute" => match inner.instances.get(&p("DBInstanceId")) {
                Some(i) => Ok(json!({"Items": {"DBInstanceAttribute": [i]}})),
                None => Err(refuse(
                    404,
                    "InvalidDBInstanceId.NotFound",
                    "The specified instance is not found.",
                )),
            },
            "DescribeDBInstances" => {
                let items: Vec<Value> = inner.instances.values().cloned().collect();
                Ok(json!({
                    "Items": {"DBInstance": items}, "TotalRecordCount": inner.instances.len(),
                    "PageNumber": 1, "PageRecordCount": inner.instances.len(),
                }))
            }
            _ => Ok(json!({})),
        }
    }

    /// Appends to the request log.
    pub fn record(&self, mut rec: RequestRecord) {
        let mut inner = self.lock();
        inner.requests += 1;
        rec.seq = inner.requests;
        if inner.records.len() < 100_000 {
            inner.records.push(rec);
        }
    }

    /// The request log (the first 100,000 requests).
    pub fn records(&self) -> Vec<RequestRecord> {
        self.lock().records.clone()
    }

    /// The execution ledger.
    pub fn ledger(&self) -> Ledger {
        let inner = self.lock();
        let operations: Vec<LedgerEntry> = inner
            .ops
            .iter()
            .map(|(key, (action, count))| LedgerEntry {
                action: action.clone(),
                key: key.clone(),
                count: *count,
            })
            .collect();
        Ledger {
            requests: inner.requests,
            executions: operations.iter().map(|o| o.count).sum(),
            replays: inner.replays,
            duplicates: operations.iter().map(|o| o.count.saturating_sub(1)).sum(),
            operations,
        }
    }
}

/// Action plus sorted business parameters: what makes two calls "the same operation".
pub fn fingerprint(action: &str, params: &Params) -> String {
    let business = params.iter().filter(|(k, _)| !NON_BUSINESS.contains(k));
    let mut out = action.to_owned();
    out.push('?');
    out.push_str(&v1::canonical_query(business));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rpc_client::{Placement, V1Call};

    fn state() -> SimState {
        SimState::new(
            HashMap::from([("ak".to_owned(), Secret::new("sk".into()))]),
            Duration::from_secs(900),
        )
    }

    fn signed(call: &V1Call, nonce: &str, now: SystemTime) -> Params {
        let s = call.sign(
            "ak",
            &Secret::new("sk".into()),
            "POST",
            Placement::Query,
            now,
            nonce,
        );
        Params::parse(Some(&s.query), None).unwrap()
    }

    #[test]
    fn token_replays_and_mismatches() {
        let st = state();
        let now = SystemTime::now();
        let call = V1Call::gpdb(
            "CreateDBInstance",
            &[("ClientToken", "t1"), ("DBInstanceDescription", "a")],
        );
        let p = signed(&call, "n1", now);
        let a = st.authenticate("POST", &p, now).unwrap();
        let (first, replayed) = st.execute(&a, &p).unwrap();
        assert!(!replayed);
        let p2 = signed(&call, "n2", now);
        let a2 = st.authenticate("POST", &p2, now).unwrap();
        let (second, replayed) = st.execute(&a2, &p2).unwrap();
        assert!(replayed);
        assert_eq!(first, second);
        let other = V1Call::gpdb(
            "CreateDBInstance",
            &[("ClientToken", "t1"), ("DBInstanceDescription", "b")],
        );
        let p3 = signed(&other, "n3", now);
        let a3 = st.authenticate("POST", &p3, now).unwrap();
        assert_eq!(
            st.execute(&a3, &p3).unwrap_err().code,
            "IdempotentParameterMismatch"
        );
        let l = st.ledger();
        assert_eq!((l.executions, l.replays, l.duplicates), (1, 1, 0));
    }

    #[test]
    fn nonce_timestamp_and_signature_rules() {
        let st = state();
        let now = SystemTime::now();
        let call = V1Call::gpdb("DescribeDBInstances", &[]);
        let p = signed(&call, "n1", now);
        st.authenticate("POST", &p, now).unwrap();
        assert_eq!(
            st.authenticate("POST", &p, now).unwrap_err().code,
            "SignatureNonceUsed"
        );
        let old = signed(&call, "n2", now - Duration::from_secs(16 * 60));
        assert_eq!(
            st.authenticate("POST", &old, now).unwrap_err().code,
            "InvalidTimeStamp.Expired"
        );
        let p = signed(&call, "n3", now);
        assert_eq!(
            st.authenticate("GET", &p, now).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        let mut p = signed(&call, "n4", now);
        p.set("AccessKeyId", "nobody", crate::api::params::Place::Query);
        assert_eq!(st.authenticate("POST", &p, now).unwrap_err().status, 404);
    }

    #[test]
    fn executions_without_token_count_as_duplicates() {
        let st = state();
        let now = SystemTime::now();
        let call = V1Call::gpdb("CreateDBInstance", &[("DBInstanceDescription", "x")]);
        for n in ["a", "b"] {
            let p = signed(&call, n, now);
            let a = st.authenticate("POST", &p, now).unwrap();
            st.execute(&a, &p).unwrap();
        }
        assert_eq!(st.ledger().duplicates, 1);
    }
}
