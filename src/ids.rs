//! Identifiers: random ones (ClientTokens, signature nonces, request ids) and the 128-bit
//! digests used as compact map keys.

/// A random (version 4) UUID from the thread-local CSPRNG (`rand`'s ChaCha, seeded by the OS).
///
/// `uuid::Uuid::new_v4` asks the kernel (`getrandom`) for every id, a system call per token
/// and per attempt on the request path.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// An API-style `RequestId`: an uppercase random UUID.
pub fn request_id() -> String {
    uuid_v4().to_string().to_uppercase()
}

/// The first 128 bits of the SHA-256 of `parts`, concatenated: a key that stands for longer
/// text in a map (a false match would need a 128-bit collision).
pub fn digest128(parts: &[&[u8]]) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_and_distinct() {
        let (a, b) = (uuid_v4(), uuid_v4());
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
