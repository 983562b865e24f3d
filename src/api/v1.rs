//! RPC signature "version 1.0" (HMAC-SHA1; the docs call it the V2 signature).
//!
//! `StringToSign = METHOD & %2F & enc(canonical query)` where the canonical query is every
//! parameter but `Signature`, sorted by name, `enc(k)=enc(v)` joined with `&`. The key is the
//! AccessKey secret followed by `&`. Pure functions: time and nonce come from the caller.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::encode::{encode_twice_into, join_pairs};
use super::params::{Params, Place};
use crate::secret::Secret;

type HmacSha1 = Hmac<Sha1>;

/// Names of the V1 common parameters that carry the signature itself.
pub const SIGNATURE: &str = "Signature";
/// The nonce parameter.
pub const NONCE: &str = "SignatureNonce";
/// The timestamp parameter.
pub const TIMESTAMP: &str = "Timestamp";

/// Builds the canonical query: all pairs except `Signature`, sorted, encoded, `&`-joined.
pub fn canonical_query<'a>(sorted: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    join_pairs(sorted.filter(|(k, _)| *k != SIGNATURE))
}

/// Builds the string to sign from the HTTP method and the sorted parameters:
/// `METHOD&%2F&enc(canonical query)`, written in one pass (the canonical query is encoded
/// twice, so each escaped byte becomes `%25XY`, `=` `%3D` and `&` `%26`).
pub fn string_to_sign<'a>(
    method: &str,
    sorted: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(method);
    out.push_str("&%2F&");
    let mut first = true;
    for (k, v) in sorted.filter(|(k, _)| *k != SIGNATURE) {
        if !first {
            out.push_str("%26");
        }
        first = false;
        encode_twice_into(&mut out, k);
        out.push_str("%3D");
        encode_twice_into(&mut out, v);
    }
    out
}

fn mac(secret: &Secret) -> HmacSha1 {
    let mut key = Vec::with_capacity(secret.expose().len() + 1);
    key.extend_from_slice(secret.expose().as_bytes());
    key.push(b'&');
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha1::new_from_slice(&key).unwrap_or_else(|_| unreachable_hmac())
}

#[cold]
fn unreachable_hmac() -> HmacSha1 {
    // `new_from_slice` only fails for fixed-size keys; HMAC takes any size. Fall back to an
    // empty-key MAC rather than panicking: a wrong signature is refused downstream anyway.
    <HmacSha1 as hmac::digest::KeyInit>::new(&Default::default())
}

/// Signs a string to sign: base64 HMAC-SHA1 with key `secret&`.
pub fn sign(secret: &Secret, string_to_sign: &str) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    B64.encode(m.finalize().into_bytes())
}

/// Checks a caller's base64 signature in constant time.
pub fn verify(secret: &Secret, string_to_sign: &str, signature_b64: &str) -> bool {
    let Ok(given) = B64.decode(signature_b64) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    m.verify_slice(&given).is_ok()
}

/// Verifies the `Signature` parameter of `params` for `method`.
pub fn verify_params(secret: &Secret, method: &str, params: &Params) -> Result<(), String> {
    let sts = string_to_sign(method, params.iter());
    match params.get(SIGNATURE) {
        Some(sig) if verify(secret, &sts, sig) => Ok(()),
        _ => Err(sts),
    }
}

/// Sets a fresh nonce and timestamp and a new `Signature`, each in the place the caller used
/// (or in `default_place` for a parameter the caller did not send).
pub fn resign(
    params: &mut Params,
    method: &str,
    secret: &Secret,
    nonce: &str,
    timestamp: &str,
    default_place: Place,
) {
    params.set(NONCE, nonce, default_place);
    params.set(TIMESTAMP, timestamp, default_place);
    let sts = string_to_sign(method, params.iter());
    let sig = sign(secret, &sts);
    params.set(SIGNATURE, sig, default_place);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::encode::encode;
    use proptest::prelude::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_owned())
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        let q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        Params::parse(Some(&q.join("&")), None).unwrap()
    }

    #[test]
    fn kat_v1_a_describe_regions() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = string_to_sign("GET", p.iter());
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            sign(&secret("testsecret"), &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn kat_v1_a_variant_with_capital_s_timestamp() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("TimeStamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = string_to_sign("GET", p.iter());
        assert_eq!(
            sign(&secret("testsecret"), &sts),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn kat_v1_b_describe_dedicated_hosts() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = string_to_sign("GET", p.iter());
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDedicatedHosts%26Format%3DJSON%26RegionId%3Dcn-beijing%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0%26Timestamp%3D2023-03-13T08%253A34%253A30Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            sign(&secret("testsecret"), &sts),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
    }

    #[test]
    fn kat_v1_c_query_and_body_params_sign_together() {
        let p = Params::parse(Some("query=test"), Some("body=test")).unwrap();
        let sts = string_to_sign("GET", p.iter());
        assert_eq!(sts, "GET&%2F&body%3Dtest%26query%3Dtest");
        assert_eq!(
            sign(&secret("secret"), &sts),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
    }

    #[test]
    fn kat_v1_d_empty_method() {
        let p = params(&[("test", "ok")]);
        let sts = string_to_sign("", p.iter());
        assert_eq!(sts, "&%2F&test%3Dok");
        assert_eq!(
            sign(&secret("accessKeySecret"), &sts),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    #[test]
    fn raw_hmac_vectors_with_the_ampersand_already_in_the_key() {
        // legacy-core test_sha_hmac1: key used as is; our key is `secret&`, so strip it.
        let mut m = <HmacSha1 as Mac>::new_from_slice(b"secret").unwrap();
        m.update("中文unicode".as_bytes());
        assert_eq!(
            B64.encode(m.finalize().into_bytes()),
            "szlfHs3WVaO/HgY3Cg7/uyXDaRw="
        );
    }

    #[test]
    fn signature_param_is_excluded_and_verify_round_trips() {
        let mut p = params(&[("Action", "CreateDBInstance"), ("SignatureType", "")]);
        let s = secret("k");
        resign(
            &mut p,
            "POST",
            &s,
            "n1",
            "2024-01-01T00:00:00Z",
            Place::Query,
        );
        assert!(verify_params(&s, "POST", &p).is_ok());
        assert!(verify_params(&s, "GET", &p).is_err());
        assert!(verify_params(&secret("other"), "POST", &p).is_err());
        p.set("Signature", "not base64!", Place::Query);
        assert!(verify_params(&s, "POST", &p).is_err());
    }

    proptest! {
        #[test]
        fn parameter_order_does_not_matter(
            mut pairs in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9.]{0,8}", "\\PC{0,12}", 1..8)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            seed in any::<u64>(),
        ) {
            let sorted = {
                let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                string_to_sign("POST", params(&refs).iter())
            };
            // Rotate the wire order; the canonical string must not change.
            let n = pairs.len();
            pairs.rotate_left((seed as usize) % n);
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(string_to_sign("POST", params(&refs).iter()), sorted);
        }

        #[test]
        fn resigned_params_always_verify(
            pairs in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9]{0,8}", "\\PC{0,12}", 0..6),
            key in "[ -~]{1,30}",
        ) {
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut p = params(&refs);
            let s = secret(&key);
            resign(&mut p, "POST", &s, "nonce", "2024-01-01T00:00:00Z", Place::Query);
            // Through the wire encoding and back.
            let reparsed = Params::parse(Some(&p.encode(Place::Query)), None).unwrap();
            prop_assert!(verify_params(&s, "POST", &reparsed).is_ok());
        }
    }
}
