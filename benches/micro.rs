//! Micro benchmarks of the pure hot-path pieces: signing, parsing, classification,
//! fingerprinting, leaf certificates. Run: `cargo bench --bench micro`.

// Benchmarks set up fixed inputs; a failure there is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use idemproxy::api::classify::Classifier;
use idemproxy::api::params::Params;
use idemproxy::api::rpc_client::{Placement, V1Call};
use idemproxy::api::{v1, v3};
use idemproxy::dedupe::fingerprint::{CallIdentity, fingerprint};
use idemproxy::secret::Secret;
use idemproxy::tls::ca::{LocalCa, generate};

/// A legacy-SDK CreateDBInstance query (18 parameters).
fn legacy_query() -> String {
    let call = V1Call::gpdb(
        "CreateDBInstance",
        &[
            ("Engine", "gpdb"),
            ("EngineVersion", "6.0"),
            ("DBInstanceDescription", "bench a b*c~d+e"),
            ("DBInstanceClass", "gpdb.group.segsdx1"),
            ("DBInstanceGroupCount", "2"),
            ("ZoneId", "cn-hangzhou-h"),
            ("PayType", "Postpaid"),
            ("InstanceNetworkType", "VPC"),
            ("VPCId", "vpc-bench"),
            ("VSwitchId", "vsw-bench"),
            ("RegionId", "cn-hangzhou"),
        ],
    );
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    call.sign(
        "testid",
        &Secret::new("testsecret".into()),
        "POST",
        Placement::Query,
        t,
        "0123456789abcdef0123456789abcdef",
    )
    .query
}

fn bench(c: &mut Criterion) {
    let secret = Secret::new("testsecret".into());
    let query = legacy_query();
    let params = Params::parse(Some(&query), None).unwrap();

    c.bench_function("params_parse_legacy_query", |b| {
        b.iter(|| Params::parse(Some(&query), None).unwrap())
    });
    c.bench_function("v1_sign", |b| {
        b.iter(|| v1::sign(&secret, &v1::string_to_sign("POST", params.iter())))
    });
    c.bench_function("v1_verify", |b| {
        b.iter(|| v1::verify_params(&secret, "POST", &params).is_ok())
    });
    c.bench_function("v1_resign_attempt", |b| {
        b.iter(|| {
            let mut p = params.clone();
            v1::resign(
                &mut p,
                "POST",
                &secret,
                "nonce",
                "2024-01-01T00:00:00Z",
                idemproxy::api::params::Place::Query,
            );
            p.encode(idemproxy::api::params::Place::Query)
        })
    });

    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("accept", "application/json"),
        (
            "user-agent",
            "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
        ),
        ("x-acs-action", "CreateDBInstance"),
        ("x-acs-content-sha256", v3::EMPTY_SHA256),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", "2024-01-01T00:00:00Z"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-version", "2016-05-03"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    let signed: Vec<String> = [
        "accept",
        "host",
        "user-agent",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-credentials-provider",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let sign_v3 = || {
        let ch = v3::canonical_headers(&headers, "gpdb.aliyuncs.com", &signed).unwrap();
        let cq = v3::canonical_query(params.iter());
        let sts = v3::Signable {
            method: "POST",
            path: "/",
            canonical_query: &cq,
            canonical_headers: &ch,
            signed_headers: &signed,
            payload_hash: v3::EMPTY_SHA256,
        }
        .string_to_sign();
        (sts.clone(), v3::sign(&secret, &sts))
    };
    c.bench_function("v3_sign", |b| b.iter(sign_v3));
    let (sts, sig) = sign_v3();
    c.bench_function("v3_verify", |b| {
        b.iter(|| {
            let (s, _) = sign_v3();
            v3::verify(&secret, &s, &sig)
        })
    });
    assert!(v3::verify(&secret, &sts, &sig));

    let classifier = Classifier::new(HashMap::new());
    c.bench_function("classify", |b| {
        b.iter(|| {
            (
                classifier.classify("2016-05-03", "DescribeDBInstances"),
                classifier.classify("2016-05-03", "CreateDBInstance"),
            )
        })
    });
    let id = CallIdentity {
        key_id: "testid",
        host: "gpdb.aliyuncs.com",
        action: "CreateDBInstance",
        version: "2016-05-03",
    };
    c.bench_function("fingerprint", |b| b.iter(|| fingerprint(id, &params)));

    let g = generate(&["aliyuncs.com".into()]).unwrap();
    let ca = LocalCa::from_pem(&g.cert_pem, &g.key_pem, 16).unwrap();
    c.bench_function("leaf_cert_mint", |b| {
        b.iter(|| ca.mint("gpdb.aliyuncs.com").unwrap())
    });
    ca.server_config("gpdb.aliyuncs.com").unwrap();
    c.bench_function("leaf_cert_cache_hit", |b| {
        b.iter(|| ca.server_config("gpdb.aliyuncs.com").unwrap())
    });
}

/// The limiter's cost per attempt when a permit is available: key lookup, permit, and the
/// success bookkeeping.
fn bench_limiter(c: &mut Criterion) {
    use idemproxy::retry::limit::{AdaptiveLimiter, LimiterSettings, ScopePart};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let l = AdaptiveLimiter::new(LimiterSettings {
        initial_rate: 1e9,
        max_rate: 1e9,
        min_rate: 1.0,
        decrease: 0.5,
        increase: 10.0,
        decrease_cooldown: Duration::from_millis(50),
        scope: vec![ScopePart::AccessKey, ScopePart::Region, ScopePart::Action],
    });
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    c.bench_function("limiter_per_attempt", |b| {
        b.iter(|| {
            rt.block_on(async {
                let k = l.limiter(&l.key(
                    "testid",
                    "cn-hangzhou",
                    "CreateDBInstance",
                    "gpdb.aliyuncs.com",
                ));
                l.acquire(&k, far).await.unwrap();
                l.on_success(&k);
            })
        })
    });
}

criterion_group!(benches, bench, bench_limiter);
criterion_main!(benches);
