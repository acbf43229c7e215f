//! Interception: the certificate authority, the HTTP(S) forward proxy and protocol taps.
//! Everything here records through [`record::Recorder`]; nothing here knows about the GUI.

pub mod ca;
pub mod http;
pub mod intercept;
pub mod quic;
pub mod record;
pub mod resolve;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(not(target_os = "linux"))]
#[path = "splice_other.rs"]
mod splice;
pub mod tap;
pub mod tls;
pub mod udp;

pub use record::{CaptureEvent, ConnRecorder, Recorder};

/// Every TLS config in gamewire is built with this provider explicitly: two providers are
/// linked (ring, and aws-lc through hudsucker's client), so rustls cannot pick one itself.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
