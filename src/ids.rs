//! Random identifiers: ClientTokens, signature nonces and request ids.

/// A random (version 4) UUID from the thread-local CSPRNG (`rand`'s ChaCha, seeded by the OS).
///
/// `uuid::Uuid::new_v4` asks the kernel (`getrandom`) for every id, a system call per token
/// and per attempt on the request path.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
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
