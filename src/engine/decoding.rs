//! The one decode context every part of gamewire decodes with (taps, the live log, the
//! workbench, `inspect`), so a message looks the same everywhere: the protobuf schemas built
//! into gamewire (the files its Star Citizen servers were generated from) plus `./proto` and
//! the user's directories, and the public key of gamewire's own JWT issuer, so the tokens
//! its login server hands out show as verified.

use std::path::{Path, PathBuf};

use crate::dissect::Context;
use crate::dissect::jwt::{JwtKey, JwtKeys};
use crate::dissect::protobuf::{load_schemas, schema_dirs};
use crate::security::jwt::Signer;

use super::config::Config;

/// The context of a configuration: its schema directories, JWKS files and Hytale referral
/// secret, plus `signer` (the engine's issuer key) or, without one, the issuer key found in
/// its `certs_dir`. What cannot be loaded is logged and left out.
pub fn decode_context_for(config: &Config, signer: Option<&Signer>) -> Context {
    let found;
    let signer = match signer {
        Some(s) => Some(s),
        None => {
            found = match Signer::load_existing(&config.certs_dir) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("JWT issuer key: {e}; tokens are shown unverified");
                    None
                }
            };
            found.as_ref()
        }
    };
    let mut context = decode_context_with(&config.decode.proto_dirs, signer);
    for path in &config.decode.jwks_files {
        match std::fs::read_to_string(path) {
            Ok(text) => context.jwt_keys.keys.push(JwtKey::Jwks(text)),
            Err(e) => tracing::warn!("JWKS file {}: {e}; left out", path.display()),
        }
    }
    let secret = &config.decode.hytale_referral_secret;
    if !secret.is_empty() {
        context.hytale_referral_secret = Some(secret.as_bytes().to_vec());
    }
    context
}

/// The schemas of `extra_proto` (besides the built-in ones and `./proto`) and `signer`'s key.
fn decode_context_with(extra_proto: &[PathBuf], signer: Option<&Signer>) -> Context {
    Context {
        schemas: schemas(extra_proto),
        jwt_keys: signer.map_or_else(JwtKeys::default, |s| JwtKeys {
            keys: vec![JwtKey::Jwks(s.jwks().to_string())],
            ..JwtKeys::default()
        }),
        ..Context::default()
    }
}

/// The engine, every workbench window and `inspect` ask for the same schemas: compile
/// `./proto` once per process unless the caller names more directories.
fn schemas(extra_proto: &[PathBuf]) -> Option<prost_reflect::DescriptorPool> {
    static DEFAULT: std::sync::OnceLock<Option<prost_reflect::DescriptorPool>> =
        std::sync::OnceLock::new();
    if extra_proto.is_empty() {
        return DEFAULT.get_or_init(|| load(&[])).clone();
    }
    load(extra_proto)
}

fn load(extra_proto: &[PathBuf]) -> Option<prost_reflect::DescriptorPool> {
    let mut pool = match crate::servers::sc::descriptor_pool() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("built-in schemas: {e}");
            return None;
        }
    };
    let dirs = schema_dirs(Path::new("."), extra_proto);
    if dirs.is_empty() {
        return Some(pool);
    }
    match load_schemas(&dirs) {
        Ok(disk) => {
            // The built-in files win over copies of them on disk (an old checkout's proto/).
            let extra: Vec<_> = disk
                .file_descriptor_protos()
                .filter(|f| pool.get_file_by_name(f.name()).is_none())
                .cloned()
                .collect();
            if let Err(e) = pool.add_file_descriptor_protos(extra) {
                tracing::warn!(
                    "{}: {e}; decoding with the built-in schemas only",
                    show(&dirs)
                );
            }
        }
        Err(e) => tracing::warn!(
            "{}: {e}; decoding with the built-in schemas only",
            show(&dirs)
        ),
    }
    Some(pool)
}

fn show(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_schemas_and_our_issuer_key_are_in_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            certs_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let empty = decode_context_for(&config, None);
        assert!(empty.jwt_keys.keys.is_empty(), "no key made by decoding");
        let pool = empty.schemas.expect("built-in schemas");
        assert!(
            pool.get_service_by_name("sc.external.services.login.v1.LoginService")
                .is_some()
        );
        let signer =
            Signer::load_or_create(dir.path(), crate::security::jwt::DEFAULT_ISSUER).unwrap();
        let context = decode_context_for(&config, None);
        let [JwtKey::Jwks(jwks)] = context.jwt_keys.keys.as_slice() else {
            panic!("one JWKS key expected");
        };
        assert!(jwks.contains(signer.kid()));
    }
}
