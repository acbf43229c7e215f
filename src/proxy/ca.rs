//! gamewire's root certificate authority and the leaf certificates it issues for
//! interception.
//!
//! The CA lives in one directory (`certs/` by default): `ca.pem` and `ca.der` are the root
//! certificate users install; `ca.key` is its private key, readable by the owner only and
//! never exported or recorded. Leaves share one key generated per process (signing is the
//! only per-name cost) and are cached, so a client that reconnects gets the same
//! certificate.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, Duration, Utc};
use parking_lot::{Mutex, RwLock};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const CA_PEM: &str = "ca.pem";
pub const CA_DER: &str = "ca.der";
pub const CA_KEY: &str = "ca.key";

/// Leaves kept in memory; a proxy sees far fewer distinct names than this in practice, and
/// the bound keeps a scan of many names from growing the process without limit.
pub const LEAF_CACHE: usize = 1024;

/// Leaves are short-lived because some platforms reject long-lived server certificates
/// even under a user-installed root.
const LEAF_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("not a DNS name or IP address: {0:?}")]
    InvalidName(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The root CA. Cheap to clone; clones share the leaf cache.
#[derive(Clone)]
pub struct Ca {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_signing: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<LeafCache>,
    default_name: RwLock<String>,
}

#[derive(Default)]
struct LeafCache {
    map: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, creating it (and `dir`) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Ca, CaError> {
        let pem_path = dir.join(CA_PEM);
        let key_path = dir.join(CA_KEY);
        if pem_path.exists() && key_path.exists() {
            let pem = std::fs::read_to_string(&pem_path).map_err(io_err(&pem_path))?;
            let key = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            let key = KeyPair::from_pem(&key)?;
            let issuer = Issuer::from_ca_cert_pem(&pem, key)?;
            let der = pem_to_der(&pem).ok_or_else(|| CaError::Io {
                path: pem_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no CERTIFICATE block",
                ),
            })?;
            // ca.der is derived; rewrite it if someone deleted it.
            let der_path = dir.join(CA_DER);
            if !der_path.exists() {
                std::fs::write(&der_path, &der).map_err(io_err(&der_path))?;
            }
            return Ca::from_parts(dir, pem, CertificateDer::from(der), issuer);
        }
        Ca::create(dir)
    }

    /// Replaces the CA in `dir` with a new one. Clients must trust the new `ca.pem`.
    pub fn regenerate(dir: &Path) -> Result<Ca, CaError> {
        for name in [CA_PEM, CA_DER, CA_KEY] {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ca::create(dir)
    }

    fn create(dir: &Path) -> Result<Ca, CaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gamewire interception CA");
        dn.push(DnType::OrganizationName, "gamewire");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_DAYS);
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        let der = cert.der().clone();

        let key_path = dir.join(CA_KEY);
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        let der_path = dir.join(CA_DER);
        std::fs::write(&der_path, der.as_ref()).map_err(io_err(&der_path))?;
        // The certificate last: its presence is what marks the CA as complete.
        let pem_path = dir.join(CA_PEM);
        std::fs::write(&pem_path, &pem).map_err(io_err(&pem_path))?;

        let issuer = Issuer::new(params, key);
        Ca::from_parts(dir, pem, der, issuer)
    }

    fn from_parts(
        dir: &Path,
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    ) -> Result<Ca, CaError> {
        let leaf_key = KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signing = super::crypto_provider()
            .key_provider
            .load_private_key(der)?;
        Ok(Ca {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                cert_pem,
                cert_der,
                issuer,
                leaf_key,
                leaf_signing,
                cache: Mutex::new(LeafCache::default()),
                default_name: RwLock::new("127.0.0.1".to_string()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.inner.cert_der
    }

    /// The name a leaf is made for when a client sends no SNI (typically the listen IP).
    pub fn set_default_name(&self, name: &str) {
        *self.inner.default_name.write() = name.to_string();
    }

    pub fn default_name(&self) -> String {
        self.inner.default_name.read().clone()
    }

    /// The leaf for a DNS name or an IP address (which gets an IP SAN), from the cache when
    /// it was made before.
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(hit) = self.inner.cache.lock().map.get(&key) {
            return Ok(hit.clone());
        }
        let leaf = Arc::new(self.make_leaf(&key)?);
        let mut cache = self.inner.cache.lock();
        // Two tasks may have made the same leaf at once: keep the first, so every caller
        // sees one certificate per name.
        if let Some(hit) = cache.map.get(&key) {
            return Ok(hit.clone());
        }
        if cache.order.len() >= LEAF_CACHE
            && let Some(old) = cache.order.pop_front()
        {
            cache.map.remove(&old);
        }
        cache.order.push_back(key.clone());
        cache.map.insert(key, leaf.clone());
        Ok(leaf)
    }

    fn make_leaf(&self, name: &str) -> Result<CertifiedKey, CaError> {
        let host = name.trim_start_matches('[').trim_end_matches(']');
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if host.is_empty()
                    || !host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b))
                {
                    return Err(CaError::InvalidName(name.to_string()));
                }
                SanType::DnsName(
                    host.try_into()
                        .map_err(|_| CaError::InvalidName(name.to_string()))?,
                )
            }
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let serial: [u8; 16] = rand::random();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial[..15]));
        set_validity(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&self.inner.leaf_key, &self.inner.issuer)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.inner.cert_der.clone()],
            self.inner.leaf_signing.clone(),
        ))
    }

    /// A server config that presents the leaf for the client's SNI (or the default name),
    /// offering `alpn`.
    pub fn server_config(&self, alpn: &[Vec<u8>]) -> Arc<ServerConfig> {
        self.server_config_for(alpn, None)
    }

    /// Like [`Ca::server_config`], with `fallback` as the name when the client sends no SNI
    /// (the proxy passes the CONNECT host).
    pub fn server_config_for(&self, alpn: &[Vec<u8>], fallback: Option<&str>) -> Arc<ServerConfig> {
        let resolver = SniResolver {
            ca: self.clone(),
            fallback: fallback.map(str::to_string),
        };
        // Only fails for a provider without TLS 1.2/1.3 suites, and ring has both.
        let mut config = ServerConfig::builder_with_provider(super::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.to_vec();
        Arc::new(config)
    }
}

impl Ca {
    /// A TLS 1.3 server config for QUIC taps: leaves by SNI, and a client certificate asked
    /// for and accepted whatever it is (Hytale binds its fingerprint into a token instead).
    pub fn quic_server_config(
        &self,
        alpn: &[Vec<u8>],
        fallback: Option<&str>,
    ) -> Result<Arc<ServerConfig>, CaError> {
        let provider = super::crypto_provider();
        let resolver = SniResolver {
            ca: self.clone(),
            fallback: fallback.map(str::to_string),
        };
        let verifier = super::tls::AcceptAnyClientCert {
            provider: provider.clone(),
            mandatory: false,
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(CaError::Tls)?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.to_vec();
        Ok(Arc::new(config))
    }
}

/// From a day ago (clocks differ) to `days` from now.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let day = |d: chrono::DateTime<Utc>| {
        // Month and day always fit a u8.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = Utc::now();
    params.not_before = day(now - Duration::days(1));
    params.not_after = day(now + Duration::days(days));
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let body: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Writes a file only its owner can read, from the first byte on (no window in which the
/// key is world-readable).
fn write_private(path: &Path, data: &[u8]) -> Result<(), CaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(data).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

#[derive(Debug)]
struct SniResolver {
    ca: Ca,
    fallback: Option<String>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = match (hello.server_name(), &self.fallback) {
            (Some(sni), _) => sni.to_string(),
            (None, Some(fallback)) => fallback.clone(),
            (None, None) => self.ca.default_name(),
        };
        match self.ca.leaf(&name) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                tracing::warn!(name, "no leaf certificate: {e}");
                None
            }
        }
    }
}

/// hudsucker asks the CA for a server config per CONNECT authority; it gets the same
/// leaves from the same cache as gamewire's own TLS termination.
impl hudsucker::certificate_authority::CertificateAuthority for Ca {
    async fn gen_server_config(
        &self,
        authority: &hudsucker::hyper::http::uri::Authority,
    ) -> Arc<ServerConfig> {
        self.server_config_for(
            &[b"h2".to_vec(), b"http/1.1".to_vec()],
            Some(authority.host()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    fn verify(ca: &Ca, leaf: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::proxy::crypto_provider(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier
            .verify_server_cert(
                &leaf.cert[0],
                &leaf.cert[1..],
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn leaf_verifies_against_the_ca_for_its_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let leaf = ca.leaf("game.example.com").unwrap();
        verify(&ca, &leaf, "game.example.com").unwrap();
        assert!(verify(&ca, &leaf, "other.example.com").is_err());
    }

    #[test]
    fn ip_gets_an_ip_san() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let leaf = ca.leaf("127.0.0.1").unwrap();
        verify(&ca, &leaf, "127.0.0.1").unwrap();
        assert!(verify(&ca, &leaf, "127.0.0.2").is_err());
        let v6 = ca.leaf("::1").unwrap();
        verify(&ca, &v6, "::1").unwrap();
    }

    #[test]
    fn cache_hit_returns_the_same_arc() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let a = ca.leaf("Example.COM").unwrap();
        let b = ca.leaf("example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.leaf("example.org").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let first = ca.leaf("n0.test").unwrap();
        for i in 1..=LEAF_CACHE {
            ca.leaf(&format!("n{i}.test")).unwrap();
        }
        assert_eq!(ca.inner.cache.lock().map.len(), LEAF_CACHE);
        let again = ca.leaf("n0.test").unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "the oldest leaf was evicted");
    }

    #[test]
    fn reload_keeps_the_ca_and_regenerate_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let again = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());
        assert_eq!(
            std::fs::read(dir.path().join(CA_DER)).unwrap(),
            ca.cert_der().as_ref()
        );
        // A leaf from the reloaded CA verifies against the original certificate.
        let leaf = again.leaf("reload.test").unwrap();
        verify(&ca, &leaf, "reload.test").unwrap();
        let fresh = Ca::regenerate(dir.path()).unwrap();
        assert_ne!(fresh.cert_pem(), ca.cert_pem());
        assert!(verify(&ca, &fresh.leaf("reload.test").unwrap(), "reload.test").is_err());
    }

    #[test]
    fn rejects_names_that_are_neither_dns_nor_ip() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        assert!(matches!(ca.leaf("bad name/"), Err(CaError::InvalidName(_))));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(dir.path().join(CA_PEM)).unwrap();
        assert!(!pem.contains("PRIVATE KEY"));
    }
}
