//! The local certificate authority.
//!
//! `idemproxy ca init` creates a CA certificate whose X.509 Name Constraints permit only the
//! API host suffixes (default `aliyuncs.com`): even a stolen CA key cannot vouch for any other
//! site. Leaf certificates are minted on demand per host (ECDSA P-256, backdated one day,
//! valid 30 days, re-minted after 7), live in memory only, and are cached with a bound.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// The CA file names inside the `ca init` folder.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key file name (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";

const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const LEAF_REMINT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// CA errors. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// The certificate or key could not be parsed or used.
    #[error("{what}: {message}")]
    Invalid {
        /// Which input.
        what: String,
        /// Why.
        message: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the minted certificate.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A freshly generated CA, as PEM.
#[derive(Debug)]
pub struct GeneratedCa {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8). Keep it secret.
    pub key_pem: String,
}

fn now_minus(d: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() - d
}

/// Generates a CA limited to `permitted` DNS suffixes (leading dots are ignored).
pub fn generate(permitted: &[String]) -> Result<GeneratedCa, CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "idemproxy local CA");
    dn.push(DnType::OrganizationName, "idemproxy");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now_minus(BACKDATE);
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(10 * 365 * 24 * 3600);
    if !permitted.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted
                .iter()
                .map(|s| GeneralSubtree::DnsName(s.trim_start_matches('.').to_ascii_lowercase()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    let cert = params.self_signed(&key)?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a new CA into `dir` (`ca.pem`, and `ca-key.pem` with mode 0600).
pub fn init_dir(
    dir: &Path,
    force: bool,
    permitted: &[String],
) -> Result<(PathBuf, PathBuf), CaError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    for p in [&cert_path, &key_path] {
        if p.exists() && !force {
            return Err(CaError::Exists(p.clone()));
        }
    }
    let ca = generate(permitted)?;
    write_file(&key_path, ca.key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(mode);
        // An existing file keeps its mode on open: tighten it before writing the secret.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(path))?;
        }
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

struct Cached {
    config: Arc<ServerConfig>,
    minted: Instant,
}

/// A loaded CA that mints and caches leaf certificates.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cache: Mutex<HashMap<String, Cached>>,
    bound: usize,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads a CA from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str, bound: usize) -> Result<Self, CaError> {
        let invalid = |what: &str, e: rcgen::Error| CaError::Invalid {
            what: what.into(),
            message: e.to_string(),
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid("CA key", e))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| invalid("CA certificate", e))?;
        Ok(LocalCa {
            issuer,
            cache: Mutex::new(HashMap::new()),
            bound: bound.max(1),
        })
    }

    /// Loads a CA from files.
    pub fn load(cert: &Path, key: &Path, bound: usize) -> Result<Self, CaError> {
        let cert_pem = std::fs::read_to_string(cert).map_err(io_err(cert))?;
        let key_pem = std::fs::read_to_string(key).map_err(io_err(key))?;
        Self::from_pem(&cert_pem, &key_pem, bound)
    }

    /// Mints a leaf certificate and key for `host`.
    pub fn mint(
        &self,
        host: &str,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
        self.mint_for(&[host])
    }

    /// Mints a leaf certificate and key valid for every name in `hosts` (DNS names or IPs).
    pub fn mint_for(
        &self,
        hosts: &[&str],
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("idemproxy"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*h).to_owned().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now_minus(BACKDATE);
        params.not_after = OffsetDateTime::now_utc() + LEAF_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key_der))
    }

    /// A TLS server config for `host` (HTTP/2 and HTTP/1.1 by ALPN), from the cache or minted.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = host.to_ascii_lowercase();
        if let Some(c) = self
            .lock()
            .get(&host)
            .filter(|c| c.minted.elapsed() < LEAF_REMINT_AFTER)
        {
            return Ok(c.config.clone());
        }
        let (cert, key) = self.mint(&host)?;
        let config = server_config(cert, key)?;
        let mut cache = self.lock();
        if cache.len() >= self.bound {
            // Simple bound: drop everything; hosts are few (API endpoints) and re-minting is cheap.
            cache.clear();
        }
        cache.insert(
            host,
            Cached {
                config: config.clone(),
                minted: Instant::now(),
            },
        );
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of cached leaf configs.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }
}

/// A TLS server config (HTTP/2 and HTTP/1.1 by ALPN) for one certificate.
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, CaError> {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(ca_pem: &str, leaf: &CertificateDer<'_>, host: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        let ca: Vec<_> = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        roots.add_parsable_certificates(ca);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        verifier
            .verify_server_cert(leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn minted_leaves_verify_for_permitted_hosts_only() {
        let g = generate(&[".aliyuncs.com".into()]).unwrap();
        let ca = LocalCa::from_pem(&g.cert_pem, &g.key_pem, 8).unwrap();
        let (leaf, _) = ca.mint("gpdb.aliyuncs.com").unwrap();
        verify(&g.cert_pem, &leaf, "gpdb.aliyuncs.com").unwrap();
        assert!(
            verify(&g.cert_pem, &leaf, "other.aliyuncs.com").is_err(),
            "SAN is the host only"
        );
        // The name constraint: a leaf for another domain does not verify even if minted.
        let (evil, _) = ca.mint("bank.example.com").unwrap();
        let err = verify(&g.cert_pem, &evil, "bank.example.com").unwrap_err();
        assert!(
            format!("{err:?}").contains("NameConstraint") || format!("{err:?}").contains("Name"),
            "{err:?}"
        );
    }

    #[test]
    fn server_configs_are_cached_with_a_bound() {
        let g = generate(&["aliyuncs.com".into()]).unwrap();
        let ca = LocalCa::from_pem(&g.cert_pem, &g.key_pem, 2).unwrap();
        let a = ca.server_config("gpdb.aliyuncs.com").unwrap();
        let b = ca.server_config("GPDB.aliyuncs.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        ca.server_config("x.aliyuncs.com").unwrap();
        ca.server_config("y.aliyuncs.com").unwrap();
        assert!(ca.cached() <= 2);
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn init_dir_writes_a_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init_dir(dir.path(), false, &["aliyuncs.com".into()]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            init_dir(dir.path(), false, &[]),
            Err(CaError::Exists(_))
        ));
        init_dir(dir.path(), true, &[]).unwrap();
        LocalCa::load(&cert, &key, 4).unwrap();
    }

    #[test]
    fn bad_pem_is_a_clear_error_without_key_material() {
        let err = LocalCa::from_pem("not a cert", "not a key", 4)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("CA key"), "{err}");
        let g = generate(&[]).unwrap();
        let err = LocalCa::from_pem("garbage", &g.key_pem, 4)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("CA certificate"), "{err}");
        assert!(!err.contains("PRIVATE KEY"));
    }
}
