//! ACS3-HMAC-SHA256 (the V3 signature).
//!
//! ```text
//! CanonicalRequest = METHOD \n URI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest))
//! Signature        = hex(hmac_sha256(secret, StringToSign))
//! ```
//! The canonical query holds only query parameters (a form body is covered by the payload
//! hash). Canonical headers are `name:trimmed value\n` for each signed header, sorted; repeated
//! headers have their values sorted and joined with `,`. Pure functions over plain data.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::encode::join_pairs;
use super::params::{Params, Place};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name in `Authorization`.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// SHA-256 of the empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why an `Authorization` header or a signed header set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V3Error {
    /// Not `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
    #[error("malformed ACS3-HMAC-SHA256 Authorization header: {0}")]
    Malformed(&'static str),
    /// A header listed in `SignedHeaders` is not in the request.
    #[error("signed header {0:?} is missing from the request")]
    MissingHeader(String),
    /// A signed header's value is not UTF-8 text.
    #[error("signed header {0:?} has a value that is not UTF-8")]
    NotText(String),
}

/// A header value as text: any UTF-8, not only the visible ASCII of `HeaderValue::to_str`
/// (clients sign the UTF-8 string they send, non-ASCII included).
pub fn header_text(v: &http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(v.as_bytes()).ok()
}

/// A parsed `Authorization: ACS3-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The AccessKeyId (`Credential`).
    pub key_id: String,
    /// Lowercase signed header names, sorted, without duplicates.
    pub signed_headers: Vec<String>,
    /// Lowercase hex signature.
    pub signature: String,
}

impl Authorization {
    /// Parses the header value.
    pub fn parse(value: &str) -> Result<Self, V3Error> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or(V3Error::Malformed(
                "it does not start with \"ACS3-HMAC-SHA256 \"",
            ))?;
        let (mut key_id, mut signed, mut signature) = (None, None, None);
        for part in rest.trim().split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(V3Error::Malformed("a field is not NAME=VALUE"))?;
            let slot = match k {
                "Credential" => &mut key_id,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(V3Error::Malformed("unknown field")),
            };
            if slot.replace(v.to_owned()).is_some() {
                return Err(V3Error::Malformed("a field is repeated"));
            }
        }
        let key_id = key_id
            .filter(|k| !k.is_empty())
            .ok_or(V3Error::Malformed("no Credential"))?;
        let signature = signature
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(V3Error::Malformed("no hex Signature"))?
            .to_ascii_lowercase();
        let mut signed_headers: Vec<String> = signed
            .ok_or(V3Error::Malformed("no SignedHeaders"))?
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        signed_headers.sort();
        signed_headers.dedup();
        Ok(Authorization {
            key_id,
            signed_headers,
            signature,
        })
    }

    /// Renders the header value.
    pub fn render(&self) -> String {
        format!(
            "{ALGORITHM} Credential={},SignedHeaders={},Signature={}",
            self.key_id,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `name:value\n` lines for the signed headers, taking `host` from `host` (the Host header
/// or the HTTP/2 authority) and every other one from `headers`.
pub fn canonical_headers(
    headers: &HeaderMap,
    host: &str,
    signed: &[String],
) -> Result<String, V3Error> {
    let mut out = String::with_capacity(signed.len() * 48);
    for name in signed {
        let mut values: Vec<&str> = if name == "host" {
            vec![host]
        } else {
            headers
                .get_all(name.as_str())
                .iter()
                .map(|v| header_text(v).map(str::trim))
                .collect::<Option<_>>()
                .ok_or_else(|| V3Error::NotText(name.clone()))?
        };
        if values.is_empty() {
            return Err(V3Error::MissingHeader(name.clone()));
        }
        values.sort_unstable();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The canonical query: sorted query parameters, RFC 3986-encoded, `&`-joined.
pub fn canonical_query<'a>(sorted: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    join_pairs(sorted)
}

/// The parts of a request that V3 signs.
#[derive(Debug, Clone, Copy)]
pub struct Signable<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path (empty means `/`).
    pub path: &'a str,
    /// The canonical query.
    pub canonical_query: &'a str,
    /// The canonical headers block.
    pub canonical_headers: &'a str,
    /// Sorted lowercase signed header names.
    pub signed_headers: &'a [String],
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
}

impl Signable<'_> {
    /// The canonical request.
    pub fn canonical_request(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path };
        format!(
            "{}\n{path}\n{}\n{}\n{}\n{}",
            self.method,
            self.canonical_query,
            self.canonical_headers,
            self.signed_headers.join(";"),
            self.payload_hash
        )
    }

    /// The string to sign.
    pub fn string_to_sign(&self) -> String {
        format!(
            "{ALGORITHM}\n{}",
            sha256_hex(self.canonical_request().as_bytes())
        )
    }
}

/// The host a client signed: the `Host` header, or the HTTP/2 `:authority`.
pub fn signed_host(headers: &HeaderMap, uri: &http::Uri) -> String {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}

/// The string to sign of a request: `signed` headers from `headers` (with `host` as the host),
/// the query parameters of `params`, and the body hash.
pub fn request_string_to_sign(
    method: &str,
    path: &str,
    host: &str,
    headers: &HeaderMap,
    params: &Params,
    signed: &[String],
    payload_hash: &str,
) -> Result<String, V3Error> {
    let canonical_headers = canonical_headers(headers, host, signed)?;
    let canonical_query = canonical_query(params.iter_in(Place::Query));
    Ok(Signable {
        method,
        path,
        canonical_query: &canonical_query,
        canonical_headers: &canonical_headers,
        signed_headers: signed,
        payload_hash,
    }
    .string_to_sign())
}

fn mac(secret: &Secret) -> HmacSha256 {
    // HMAC takes keys of any length; the fallback is unreachable and still panic-free.
    HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Hex HMAC-SHA256 of the string to sign.
pub fn sign(secret: &Secret, string_to_sign: &str) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    hex(&m.finalize().into_bytes())
}

/// Checks a hex signature in constant time.
pub fn verify(secret: &Secret, string_to_sign: &str, signature_hex: &str) -> bool {
    let Some(given) = unhex(signature_hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    m.verify_slice(&given).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            let d = |b: u8| (b as char).to_digit(16);
            Some((d(c[0])? * 16 + d(c[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests;
