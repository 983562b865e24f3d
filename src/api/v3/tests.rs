use super::*;
use crate::api::params::{Params, Place};
use proptest::prelude::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().unwrap());
    }
    h
}

#[test]
fn kat_v3_a_run_instances() {
    let h = headers(&[
        ("x-acs-action", "RunInstances"),
        ("x-acs-content-sha256", EMPTY_SHA256),
        ("x-acs-date", "2023-10-26T10:22:32Z"),
        ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
        ("x-acs-version", "2014-05-26"),
    ]);
    let signed: Vec<String> = [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let p = Params::parse(
        Some("ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"),
        None,
    )
    .unwrap();
    let cq = canonical_query(p.iter());
    let ch = canonical_headers(&h, "ecs.cn-shanghai.aliyuncs.com", &signed).unwrap();
    let s = Signable {
        method: "POST",
        path: "/",
        canonical_query: &cq,
        canonical_headers: &ch,
        signed_headers: &signed,
        payload_hash: EMPTY_SHA256,
    };
    let cr = s.canonical_request();
    assert_eq!(
        cr,
        "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\nhost:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\nx-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-acs-date:2023-10-26T10:22:32Z\nx-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\nhost;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(cr.as_bytes()),
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    );
    let secret = Secret::new("YourAccessKeySecret".into());
    let sig = sign(&secret, &s.string_to_sign());
    assert_eq!(
        sig,
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
    let sts = s.string_to_sign();
    let auth = Authorization {
        key_id: "YourAccessKeyId".into(),
        signed_headers: signed.clone(),
        signature: sig,
    };
    assert_eq!(
        auth.render(),
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    );
    assert_eq!(Authorization::parse(&auth.render()).unwrap(), auth);
    assert!(verify(&secret, &sts, &auth.signature));
    assert!(!verify(&Secret::new("x".into()), &sts, &auth.signature));
}

#[test]
fn kat_v3_b_sdk_unit_test_with_repeated_header() {
    // Python openapi-util value: values of a repeated header are sorted and comma-joined.
    let h = headers(&[("x-acs-test", "http"), ("x-acs-test", "https")]);
    let signed = vec!["x-acs-test".to_owned()];
    let p = Params::parse(Some("test=ok&empty="), None).unwrap();
    let cq = canonical_query(p.iter());
    assert_eq!(cq, "empty=&test=ok");
    let ch = canonical_headers(&h, "", &signed).unwrap();
    assert_eq!(ch, "x-acs-test:http,https\n");
    let s = Signable {
        method: "GET",
        path: "",
        canonical_query: &cq,
        canonical_headers: &ch,
        signed_headers: &signed,
        payload_hash: "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
    };
    assert_eq!(
        sign(&Secret::new("secret".into()), &s.string_to_sign()),
        "d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
    );
}

#[test]
fn authorization_parse_errors_are_clear() {
    for bad in [
        "",
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256X Credential=a,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=zz",
        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a,Credential=b,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a,Nope=1,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a;SignedHeaders=host;Signature=00",
    ] {
        assert!(Authorization::parse(bad).is_err(), "{bad:?}");
    }
    let a = Authorization::parse(
        "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=X-Acs-Date;host;host,Signature=AB",
    )
    .unwrap();
    assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
    assert_eq!(a.signature, "ab");
    // Found by fuzzing: a whitespace-only entry used to survive as an empty header name.
    let a = Authorization::parse(
        "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host;\n\t ;x-acs-date,Signature=ab",
    )
    .unwrap();
    assert_eq!(a.signed_headers, vec!["host", "x-acs-date"]);
}

#[test]
fn a_missing_signed_header_is_reported() {
    let err = canonical_headers(&HeaderMap::new(), "h", &["x-acs-date".to_owned()]).unwrap_err();
    assert_eq!(err, V3Error::MissingHeader("x-acs-date".into()));
}

proptest! {
    #[test]
    fn canonical_query_ignores_wire_order_and_spelling(
        pairs in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9]{0,8}", "\\PC{0,10}", 0..6),
        rot in any::<usize>(),
    ) {
        let expected = {
            let p = Params::parse(None, None).map(|mut p| { for (k, v) in &pairs { p.set(k, v.as_str(), Place::Query); } p }).unwrap();
            canonical_query(p.iter())
        };
        // The same values written with `+` for spaces, in another order.
        let mut wire: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", crate::api::encode::encode(v).replace("%20", "+"))).collect();
        if !wire.is_empty() { let n = wire.len(); wire.rotate_left(rot % n); }
        let p = Params::parse(Some(&wire.join("&")), None).unwrap();
        prop_assert_eq!(canonical_query(p.iter()), expected);
    }
}
