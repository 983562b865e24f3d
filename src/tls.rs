//! TLS: the local CA that mints leaf certificates for intercepted API hosts, and rustls
//! configurations (one crypto provider, `ring`, everywhere).

pub mod ca;

use std::sync::Arc;

/// The crypto provider used for every rustls config.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
