//! RFC 3986 percent-encoding and strict form decoding, as Alibaba Cloud OpenAPI signs values.
//!
//! Encoding keeps `A-Z a-z 0-9 - _ . ~` literal and writes everything else as `%XY` with
//! uppercase hex (space is `%20`, `*` is `%2A`). Decoding accepts what every official client
//! writes on the wire (`+` or `%20` for space, literal or escaped `*`, `~`, `!`, `(`, `)`) and
//! refuses broken escapes and invalid UTF-8 instead of guessing.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters that are escaped: everything except the RFC 3986 unreserved set.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a form-encoded string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    #[error("broken percent-escape at byte {0}")]
    BadEscape(usize),
    /// The decoded bytes are not UTF-8.
    #[error("decoded value is not valid UTF-8")]
    NotUtf8,
}

/// Appends the OpenAPI percent-encoding of `s` to `out`.
pub fn encode_into(out: &mut String, s: &str) {
    for part in utf8_percent_encode(s, ESCAPED) {
        out.push_str(part);
    }
}

/// Appends `encode(encode(s))` without the intermediate string: an unreserved byte stays, any
/// other becomes `%25XY` (the escape of the escape).
pub fn encode_twice_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str("%25");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Returns the OpenAPI percent-encoding of `s`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    encode_into(&mut out, s);
    out
}

/// Joins pairs as `enc(k)=enc(v)&…` in the order given: the wire form of a query or form
/// body, and the canonical query of both signature versions when the pairs are sorted.
pub fn join_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::with_capacity(512);
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XY` a byte.
pub fn form_decode(s: &str) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(s.len());
    form_decode_into(&mut out, s)?;
    Ok(out)
}

/// Appends the decoding of `s` (see [`form_decode`]) to `out`; on error `out` is unchanged.
pub fn form_decode_into(out: &mut String, s: &str) -> Result<(), DecodeError> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|b| *b == b'%' || *b == b'+') {
        out.push_str(s);
        return Ok(());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_val(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_val(*b));
                match (hi, lo) {
                    (Some(h), Some(l)) => decoded.push(h << 4 | l),
                    _ => return Err(DecodeError::BadEscape(i)),
                }
                i += 2;
            }
            b => decoded.push(b),
        }
        i += 1;
    }
    out.push_str(std::str::from_utf8(&decoded).map_err(|_| DecodeError::NotUtf8)?);
    Ok(())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_like_the_openapi_util_vector() {
        // openapi-util: canonical query of {'test': ' ~/*-+'} is `test=%20~%2F%2A-%2B`.
        assert_eq!(encode(" ~/*-+"), "%20~%2F%2A-%2B");
        assert_eq!(encode("2016-02-23T12:46:24Z"), "2016-02-23T12%3A46%3A24Z");
        assert_eq!(encode("中"), "%E4%B8%AD");
    }

    #[test]
    fn decodes_every_client_spelling_of_the_same_value() {
        for wire in ["a+b%2Ac~d%2Be", "a%20b*c~d%2Be", "a%20b%2Ac%7Ed%2Be"] {
            assert_eq!(form_decode(wire).unwrap(), "a b*c~d+e", "{wire}");
        }
    }

    #[test]
    fn refuses_broken_escapes_and_bad_utf8() {
        assert_eq!(form_decode("a%zz"), Err(DecodeError::BadEscape(1)));
        assert_eq!(form_decode("a%4"), Err(DecodeError::BadEscape(1)));
        assert_eq!(form_decode("%"), Err(DecodeError::BadEscape(0)));
        assert_eq!(form_decode("%FF%FE"), Err(DecodeError::NotUtf8));
    }

    proptest! {
        #[test]
        fn encoding_twice_in_one_pass_matches(s in "\\PC*") {
            let mut once = String::new();
            encode_twice_into(&mut once, &s);
            prop_assert_eq!(once, encode(&encode(&s)));
        }

        #[test]
        fn encoding_round_trips(s in "\\PC*") {
            prop_assert_eq!(form_decode(&encode(&s)).unwrap(), s);
        }

        #[test]
        fn encoding_uses_only_unreserved_and_escapes(s in "\\PC*") {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
        }
    }
}
