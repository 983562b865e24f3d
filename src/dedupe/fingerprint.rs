//! The fingerprint of a logical call: what makes a tool's re-send "the same call".
//!
//! SHA-256 over the AccessKeyId, API host, action, version and the business parameters
//! (query and form body alike, sorted, RFC 3986-encoded), leaving out everything that changes
//! between re-sends of the same call: nonce, timestamp, signature, security token, the
//! signature's own parameters, `Format` and `ClientToken`.

use crate::api::params::{NON_BUSINESS, Params};
use crate::api::v1;
use crate::api::v3::sha256_hex;

/// What identifies a logical call besides its parameters.
#[derive(Debug, Clone, Copy)]
pub struct CallIdentity<'a> {
    /// The caller's AccessKeyId.
    pub key_id: &'a str,
    /// The API host (lowercase, no port).
    pub host: &'a str,
    /// The action.
    pub action: &'a str,
    /// The API version.
    pub version: &'a str,
}

/// The hex fingerprint of a call.
pub fn fingerprint(id: CallIdentity<'_>, params: &Params) -> String {
    let business = v1::canonical_query(params.iter().filter(|(k, _)| !NON_BUSINESS.contains(k)));
    let text = format!(
        "idemproxy-fp-1\n{}\n{}\n{}\n{}\n{business}",
        id.key_id, id.host, id.action, id.version
    );
    sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Place;
    use proptest::prelude::*;

    const ID: CallIdentity<'static> = CallIdentity {
        key_id: "ak",
        host: "gpdb.aliyuncs.com",
        action: "CreateDBInstance",
        version: "2016-05-03",
    };

    fn params(q: &str, body: Option<&str>) -> Params {
        Params::parse(Some(q), body).unwrap()
    }

    #[test]
    fn re_sends_share_a_fingerprint() {
        let a = params(
            "A=1&B=x+y&SignatureNonce=n1&Timestamp=t1&Signature=s1&ClientToken=c1&Format=JSON",
            None,
        );
        let b = params(
            "B=x%20y&Signature=s2&Timestamp=t2&SignatureNonce=n2&A=1&Format=json",
            None,
        );
        assert_eq!(fingerprint(ID, &a), fingerprint(ID, &b));
        // Query or body placement does not matter either.
        let c = params("A=1", Some("B=x+y"));
        assert_eq!(fingerprint(ID, &a), fingerprint(ID, &c));
    }

    #[test]
    fn different_calls_differ() {
        let base = fingerprint(ID, &params("A=1", None));
        assert_ne!(base, fingerprint(ID, &params("A=2", None)));
        assert_ne!(base, fingerprint(ID, &params("A=1&B=", None)));
        assert_ne!(
            base,
            fingerprint(
                CallIdentity {
                    key_id: "other",
                    ..ID
                },
                &params("A=1", None)
            )
        );
        assert_ne!(
            base,
            fingerprint(
                CallIdentity {
                    host: "gpdb.cn-beijing.aliyuncs.com",
                    ..ID
                },
                &params("A=1", None)
            )
        );
        assert_ne!(
            base,
            fingerprint(
                CallIdentity {
                    action: "DeleteDBInstance",
                    ..ID
                },
                &params("A=1", None)
            )
        );
        // No ambiguity from joining: a value containing the separator is encoded.
        assert_ne!(
            fingerprint(ID, &params("A=1%26B%3D2", None)),
            fingerprint(ID, &params("A=1&B=2", None))
        );
    }

    proptest! {
        #[test]
        fn excluded_parameters_never_matter(nonce in "\\PC{0,20}", token in "[ -~]{0,64}", sig in "[A-Za-z0-9+/=]{0,30}") {
            let mut p = params("A=1", None);
            let base = fingerprint(ID, &p);
            p.set("SignatureNonce", nonce.as_str(), Place::Query);
            p.set("ClientToken", token.as_str(), Place::Query);
            p.set("Signature", sig.as_str(), Place::Body);
            prop_assert_eq!(fingerprint(ID, &p), base);
        }
    }
}
