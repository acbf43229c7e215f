//! TLS pieces shared by taps and the proxy: how upstream servers are trusted, and the TLS
//! facts recorded on a connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::capture::TlsInfo;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("no trusted root certificates: the system store is empty and no CA file was given")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How a connection to an upstream server checks the server's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTrust {
    /// The operating system's root store.
    pub system_roots: bool,
    /// Extra PEM file of CA certificates (for example gamewire's own CA, so that a tap can
    /// reach an emulated server that serves a leaf of ours).
    pub extra_ca: Option<PathBuf>,
    /// Accept any certificate. Only when a route says so explicitly; recorded on the
    /// connection.
    pub insecure: bool,
    /// Roots given in memory (gamewire's own CA, so that emulators serving our leaves are
    /// trusted).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

pub fn client_config(
    trust: &UpstreamTrust,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    client_config_with(trust, alpn, None, false)
}

/// `client_cert`: presented when the server asks (QUIC taps towards Hytale servers, which
/// require one). `tls13_only`: QUIC allows nothing else.
pub fn client_config_with(
    trust: &UpstreamTrust,
    alpn: Vec<Vec<u8>>,
    client_cert: Option<Arc<rustls::sign::CertifiedKey>>,
    tls13_only: bool,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = super::crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])?
    } else {
        builder.with_safe_default_protocol_versions()?
    };
    let builder = if trust.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    } else {
        builder.with_root_certificates(root_store(trust)?)
    };
    let mut config = match client_cert {
        Some(key) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Always presents the same certificate.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn root_store(trust: &UpstreamTrust) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if trust.system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("system root store: {e}");
        }
        roots.add_parsable_certificates(found.certs);
    }
    for cert in &trust.extra_roots {
        let _ = roots.add(cert.clone());
    }
    if let Some(path) = &trust.extra_ca {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    Ok(roots)
}

pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let err = |reason: String| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if !certs.is_empty() {
        return Ok(certs);
    }
    // No PEM block: a DER file, as `gamewire ca export --der` writes.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(bytes)]);
    }
    Err(err("no certificate in it (expected PEM or DER)".into()))
}

/// What a TLS session looked like, for the capture.
pub fn tls_info(state: &rustls::CommonState, sni: Option<&str>) -> TlsInfo {
    TlsInfo {
        sni: sni.map(str::to_string),
        alpn: state
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: state.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            other => format!("{other:?}"),
        }),
        cipher: state
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite())),
    }
}

/// Accepts any server certificate (signatures are still checked, so the handshake is sound).
#[derive(Debug)]
pub struct AcceptAnyServerCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks for a client certificate and accepts any (Hytale's servers do the same: the
/// certificate's fingerprint is bound into a token instead of being chain-checked).
#[derive(Debug)]
pub struct AcceptAnyClientCert {
    pub provider: Arc<CryptoProvider>,
    pub mandatory: bool,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
