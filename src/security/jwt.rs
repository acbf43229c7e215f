//! Session tokens the emulated servers issue and check: ES256 JWTs signed with a P-256 key
//! made at first start and kept (owner-only) beside the CA, published as a JWKS.
//!
//! Every rejection names its reason (`alg none`, wrong key, expired, wrong issuer...), as
//! the login server's `/verify` and the gRPC servers report it to the client.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The signing key's file in the certificates directory (PKCS#8 DER).
pub const KEY_FILE: &str = "jwt-es256.pk8";
/// The issuer the Star Citizen client expects.
pub const DEFAULT_ISSUER: &str = "https://robertsspaceindustries.com";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{}: not a P-256 PKCS#8 key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("generating the signing key: {0}")]
    Generate(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsigned token (alg none) refused")]
    AlgNone,
    #[error("algorithm {0} refused: only ES256 is accepted")]
    WrongAlgorithm(String),
    #[error("bad signature (signed with another key?)")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong issuer {found:?} (expected {expected:?})")]
    WrongIssuer { found: String, expected: String },
    #[error("missing claim {0}")]
    MissingClaim(String),
}

/// The claims of a session token (the seed's, plus `sub`, `iat`, `exp`, `jti`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The account's email.
    pub sub: String,
    pub account_id: String,
    pub citizen_id: String,
    pub displayname: String,
    pub scope: Vec<String>,
    pub roles: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    /// Session id, so a logout can end one session.
    pub jti: String,
}

/// An ES256 key pair with its key id.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public point's coordinates, base64url.
    x: String,
    y: String,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// Loads `dir/jwt-es256.pk8`, or makes it (mode 0600) when absent. Two servers starting
    /// at once end up with the same key: the file appears whole or not at all.
    pub fn load_or_create(dir: &Path, issuer: &str) -> Result<Signer, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |reason: String| KeyError::Io {
            path: path.clone(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(der) => return Signer::from_pkcs8(&der, issuer, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e.to_string())),
        }
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = key.serialize_der();
        let tmp = dir.join(format!(
            ".{KEY_FILE}.{}.{}",
            std::process::id(),
            super::random_token(8)
        ));
        write_private(&tmp, &der).map_err(|e| io(e.to_string()))?;
        // A hard link fails when the name exists, unlike rename: the first writer wins.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Signer::from_pkcs8(&der, issuer, &path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let der = std::fs::read(&path).map_err(|e| io(e.to_string()))?;
                Signer::from_pkcs8(&der, issuer, &path)
            }
            Err(e) => Err(io(e.to_string())),
        }
    }

    /// The key in `dir` if one was made; never makes one (decoders only verify with it).
    pub fn load_existing(dir: &Path) -> Result<Option<Signer>, KeyError> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(der) => Signer::from_pkcs8(&der, DEFAULT_ISSUER, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Io {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// A key pair kept in memory only (tests, benches).
    pub fn ephemeral(issuer: &str) -> Result<Signer, KeyError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Signer::from_pkcs8(&key.serialize_der(), issuer, Path::new("(memory)"))
    }

    fn from_pkcs8(der: &[u8], issuer: &str, path: &Path) -> Result<Signer, KeyError> {
        let bad = |reason: String| KeyError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let pk8 = rustls_pki_types::PrivateKeyDer::Pkcs8(der.to_vec().into());
        let key = rcgen::KeyPair::from_der_and_sign_algo(&pk8, &rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| bad(e.to_string()))?;
        let point = key.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err(bad("public key is not an uncompressed P-256 point".into()));
        }
        let x = b64url(&point[1..33]);
        let y = b64url(&point[33..65]);
        let kid = {
            use sha2::Digest;
            b64url(&sha2::Sha256::digest(point)[..12])
        };
        Ok(Signer {
            encoding: EncodingKey::from_ec_der(der),
            decoding: DecodingKey::from_ec_der(point),
            x,
            y,
            kid,
            issuer: issuer.to_owned(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": self.x,
                "y": self.y,
                "use": "sig",
                "alg": "ES256",
                "kid": self.kid,
            }]
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Checks a token's algorithm, signature, issuer and times; `now` is unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        // The header is read by hand first: jsonwebtoken cannot even parse `alg: none`, and
        // the client deserves to hear that this, not "malformed", is why.
        let header_b64 = token
            .split('.')
            .next()
            .ok_or_else(|| TokenError::Malformed("no header".into()))?;
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64.trim_end_matches('='))
            .map_err(|e| TokenError::Malformed(format!("header is not base64url: {e}")))?;
        let header: serde_json::Value = serde_json::from_slice(&header_json)
            .map_err(|e| TokenError::Malformed(format!("header is not JSON: {e}")))?;
        match header.get("alg").and_then(|a| a.as_str()) {
            None => return Err(TokenError::Malformed("header has no alg".into())),
            Some(a) if a.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
            Some("ES256") => {}
            Some(other) => return Err(TokenError::WrongAlgorithm(other.to_owned())),
        }
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed(
                "not three dot-separated parts".into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        // Times and issuer are checked below against `now`, so that the caller's clock (and
        // tests' fixed clocks) decide and each failure keeps its own reason.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })?;
        let claims = data.claims;
        let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        if iss != self.issuer {
            return Err(TokenError::WrongIssuer {
                found: iss.to_owned(),
                expected: self.issuer.clone(),
            });
        }
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if exp <= now {
            return Err(TokenError::Expired);
        }
        if claims
            .get("nbf")
            .and_then(|v| v.as_i64())
            .is_some_and(|nbf| nbf > now + 60)
        {
            return Err(TokenError::NotYetValid);
        }
        serde_json::from_value(claims).map_err(|e| TokenError::MissingClaim(e.to_string()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iss: &str, exp: i64) -> Claims {
        Claims {
            iss: iss.into(),
            sub: "a@b.c".into(),
            account_id: "1000001".into(),
            citizen_id: "2001462951".into(),
            displayname: "TestPilot".into(),
            scope: vec!["game:access".into()],
            roles: vec!["citizen".into()],
            iat: 100,
            exp,
            jti: "s1".into(),
        }
    }

    #[test]
    fn each_bad_token_names_its_reason() {
        let s = Signer::ephemeral(DEFAULT_ISSUER).unwrap();
        let good = s.sign(&claims(DEFAULT_ISSUER, 1000)).unwrap();
        assert_eq!(s.verify(&good, 500).unwrap().displayname, "TestPilot");
        assert_eq!(s.verify(&good, 1000), Err(TokenError::Expired));
        let other = Signer::ephemeral(DEFAULT_ISSUER).unwrap();
        assert_eq!(other.verify(&good, 500), Err(TokenError::BadSignature));
        let wrong_iss = s.sign(&claims("https://evil", 1000)).unwrap();
        assert!(matches!(
            s.verify(&wrong_iss, 500),
            Err(TokenError::WrongIssuer { .. })
        ));
        let body = good.split('.').nth(1).unwrap();
        let none = format!("{}.{body}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(s.verify(&none, 500), Err(TokenError::AlgNone));
        let hs = format!("{}.{body}.AAAA", b64url(br#"{"alg":"HS256"}"#));
        assert_eq!(
            s.verify(&hs, 500),
            Err(TokenError::WrongAlgorithm("HS256".into()))
        );
        assert!(matches!(
            s.verify("garbage", 500),
            Err(TokenError::Malformed(_))
        ));
        assert_eq!(s.verify("", 500), Err(TokenError::Missing));
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path(), DEFAULT_ISSUER).unwrap();
        let b = Signer::load_or_create(dir.path(), DEFAULT_ISSUER).unwrap();
        assert_eq!(a.kid(), b.kid());
        let token = a.sign(&claims(DEFAULT_ISSUER, 1000)).unwrap();
        assert!(b.verify(&token, 10).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
