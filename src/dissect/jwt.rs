//! JWTs inside decoded messages: [`annotate`] finds compact JWS tokens in `Text` values
//! (whole values, `Authorization: Bearer ...`, cookies, form fields, JSON members) and adds
//! derived children to the node holding them:
//!
//! - `header`: JSON tree of the decoded header;
//! - `claims`: JSON tree of the decoded payload (`exp`/`iat`/`nbf` also shown as dates);
//! - `signature`: the signature bytes;
//! - `signature valid`: `true`, or `false` as an error node saying why (bad signature,
//!   `alg: none`, expired, not yet valid), or `not verified (no key)` when no configured key
//!   fits the token's algorithm.
//!
//! A value holding several tokens gets one `jwt` group per token instead. All added nodes
//! are derived (the JSON is base64 on the wire); their ranges are the base64 segment of the
//! token in the message when the token's text is found within the node's range, else the
//! node's range. Annotating again replaces earlier annotations, so a caller that learns
//! keys later can re-run it.

use std::ops::Range;
use std::str::FromStr as _;

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::{Node, Value, json};

/// One verification key.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HMAC secret (HS256/384/512).
    Hmac(Vec<u8>),
    /// RSA public key, PKCS#1 DER (RS*/PS*).
    RsaDer(Vec<u8>),
    /// EC public key, SEC1 point bytes (ES256/ES384).
    EcPoint(Vec<u8>),
    /// Ed25519 public key: 32 raw bytes, or the 44-byte SubjectPublicKeyInfo DER.
    Ed25519(Vec<u8>),
    /// A JWKS document (`{"keys":[...]}`), as served at `/.well-known/jwks.json`.
    Jwks(String),
}

/// Keys to verify tokens with, and the clock to check `exp`/`nbf` against.
#[derive(Clone, Debug)]
pub struct JwtKeys {
    pub keys: Vec<JwtKey>,
    /// Allowed clock skew in seconds for `exp`/`nbf`.
    pub leeway: u64,
    /// Unix time to check against; `None` = now.
    pub now: Option<i64>,
}

impl Default for JwtKeys {
    fn default() -> Self {
        JwtKeys {
            keys: Vec::new(),
            leeway: 60,
            now: None,
        }
    }
}

const KIND: &str = "jwt";
const MAX_TOKEN: usize = 256 * 1024;
const MAX_WALK_DEPTH: usize = 512;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Adds decoded-JWT children to every node of `tree` whose text holds a JWT. `msg` is the
/// buffer the tree's ranges point into. Cheap when `msg` has no `eyJ`.
pub fn annotate(tree: &mut Node, msg: &[u8], keys: &JwtKeys) {
    // No shortcut on the raw bytes: a token may be encoded on the wire (HPACK Huffman in a
    // gRPC `authorization` header) and appear only in the decoded values.
    walk(tree, msg, keys, 0);
}

fn walk(node: &mut Node, msg: &[u8], keys: &JwtKeys, depth: usize) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    node.children.retain(|c| c.kind() != Some(KIND));
    if let Value::Text(s) = &node.value
        && s.contains("eyJ")
    {
        let tokens = find_tokens(s);
        if !tokens.is_empty() {
            let base = token_base(node, msg, s, &tokens);
            let mut added = Vec::new();
            let several = tokens.len() > 1;
            for (off, tok) in &tokens {
                let at = base.map(|b| b + off);
                let nodes = token_nodes(tok, at, node.range.clone(), keys);
                if several {
                    let range = at.map_or(node.range.clone(), |a| a..a + tok.len());
                    added.push(
                        Node::group("jwt", range)
                            .with_children(nodes)
                            .with_kind(KIND)
                            .derived(),
                    );
                } else {
                    added.extend(nodes);
                }
            }
            node.children.extend(added);
        }
    }
    // Into derived nodes too (HPACK-decoded headers are derived), but not into our own.
    for c in node.children.iter_mut().filter(|c| c.kind() != Some(KIND)) {
        walk(c, msg, keys, depth + 1);
    }
}

/// Where the text's first byte sits in `msg`, when the text is found in the node's range.
fn token_base(node: &Node, msg: &[u8], s: &str, tokens: &[(usize, &str)]) -> Option<usize> {
    let hay = msg.get(node.range.clone())?;
    if hay == s.as_bytes() {
        return Some(node.range.start);
    }
    // The text may sit inside a larger range (a JSON member: key, quotes, value).
    let (off, tok) = tokens.first()?;
    let p = contains(hay, tok.as_bytes())?;
    (node.range.start + p).checked_sub(*off)
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// `(offset in s, token)` for every JWS compact token in `s`.
fn find_tokens(s: &str) -> Vec<(usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = contains(&b[i..], b"eyJ") {
        let start = i + p;
        if start > 0 && (is_b64url(b[start - 1]) || b[start - 1] == b'.') {
            i = start + 3;
            continue;
        }
        let len = b[start..]
            .iter()
            .take_while(|&&c| is_b64url(c) || c == b'.' || c == b'=')
            .count();
        let end = start + len;
        i = end.max(start + 3);
        let Some(tok) = s.get(start..end) else {
            continue;
        };
        let parts: Vec<&str> = tok.split('.').collect();
        if len > MAX_TOKEN || parts.len() != 3 || parts[1].is_empty() {
            continue;
        }
        let Ok(h) = b64().decode(parts[0]) else {
            continue;
        };
        let has_alg = serde_json::from_slice::<serde_json::Value>(&h)
            .ok()
            .is_some_and(|v| v.get("alg").is_some_and(serde_json::Value::is_string));
        if has_alg {
            out.push((start, tok));
        }
    }
    out
}

/// Sets every node's range (and marks it derived).
fn place(node: &mut Node, range: &Range<usize>) {
    node.range = range.clone();
    node.derived = true;
    for c in &mut node.children {
        place(c, range);
    }
}

fn date(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn token_nodes(tok: &str, at: Option<usize>, fallback: Range<usize>, keys: &JwtKeys) -> Vec<Node> {
    let mut parts = tok.splitn(3, '.');
    let (h, p, s) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let seg = |from: usize, len: usize| at.map_or(fallback.clone(), |a| a + from..a + from + len);
    let h_range = seg(0, h.len());
    let p_range = seg(h.len() + 1, p.len());
    let s_range = seg(h.len() + p.len() + 2, s.len());
    let whole = at.map_or(fallback.clone(), |a| a..a + tok.len());

    let header_bytes = b64().decode(h).unwrap_or_default();
    let mut header = json::tree(&header_bytes, "header");
    place(&mut header, &h_range);

    let mut claims_value = None;
    let mut claims = match b64().decode(p) {
        Ok(bytes) => {
            let mut t = json::tree(&bytes, "claims");
            if t.has_error() {
                let (v, _) = match std::str::from_utf8(&bytes) {
                    Ok(s) => (Value::Text(s.into()), true),
                    Err(_) => (Value::Bytes(bytes.clone().into()), false),
                };
                t = Node::new("claims", 0..0, v);
            } else {
                claims_value = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                for c in &mut t.children {
                    if matches!(c.name.as_ref(), "exp" | "iat" | "nbf")
                        && let Some(secs) = c.value.as_i64()
                        && let Some(d) = date(secs)
                    {
                        c.set_display(Some(format!("{secs} ({d})")));
                    }
                }
            }
            t
        }
        Err(e) => Node::new("claims", 0..0, Value::None).with_error(format!("bad base64: {e}")),
    };
    place(&mut claims, &p_range);

    let sig = b64().decode(s);
    let signature = match &sig {
        Ok(b) => Node::new("signature", s_range, Value::Bytes(b.clone().into())),
        Err(e) => {
            Node::new("signature", s_range, Value::None).with_error(format!("bad base64: {e}"))
        }
    }
    .derived();

    let header_json = serde_json::from_slice::<serde_json::Value>(&header_bytes).ok();
    let signing_input = &tok[..h.len() + 1 + p.len()];
    let mut valid = verify(
        header_json.as_ref(),
        signing_input,
        s,
        claims_value.as_ref(),
        keys,
    )
    .derived();
    valid.range = whole;

    let mut nodes = vec![header, claims, signature, valid];
    for n in &mut nodes {
        n.set_kind(Some(KIND.into()));
    }
    nodes
}

fn ed_key(bytes: &[u8]) -> Option<DecodingKey> {
    const SPKI: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let raw = match bytes.len() {
        32 => bytes,
        44 if bytes.starts_with(&SPKI) => &bytes[12..],
        _ => return None,
    };
    Some(DecodingKey::from_ed_der(raw))
}

/// The configured keys that fit `family`, preferring the JWKS entry named by `kid`.
fn candidate_keys(keys: &JwtKeys, family: AlgorithmFamily, kid: Option<&str>) -> Vec<DecodingKey> {
    let mut out = Vec::new();
    for k in &keys.keys {
        match k {
            JwtKey::Hmac(s) if family == AlgorithmFamily::Hmac => {
                out.push(DecodingKey::from_secret(s));
            }
            JwtKey::RsaDer(d) if family == AlgorithmFamily::Rsa => {
                out.push(DecodingKey::from_rsa_der(d));
            }
            JwtKey::EcPoint(d) if family == AlgorithmFamily::Ec => {
                out.push(DecodingKey::from_ec_der(d));
            }
            JwtKey::Ed25519(d) if family == AlgorithmFamily::Ed => out.extend(ed_key(d)),
            JwtKey::Jwks(text) => {
                let Ok(set) = serde_json::from_str::<JwkSet>(text) else {
                    continue;
                };
                let named: Vec<_> = set
                    .keys
                    .iter()
                    .filter(|j| kid.is_some() && j.common.key_id.as_deref() == kid)
                    .collect();
                let chosen = if named.is_empty() {
                    set.keys.iter().collect()
                } else {
                    named
                };
                for j in chosen {
                    let Ok(key) = DecodingKey::from_jwk(j) else {
                        continue;
                    };
                    if key.family() != family {
                        continue;
                    }
                    // The Ed25519 verifier slices 32 bytes off the key without checking.
                    if family == AlgorithmFamily::Ed {
                        match key.try_get_as_bytes() {
                            Ok(b) if b.len() == 32 => {}
                            _ => continue,
                        }
                    }
                    out.push(key);
                }
            }
            _ => {}
        }
    }
    out
}

fn verify(
    header: Option<&serde_json::Value>,
    signing_input: &str,
    sig_b64: &str,
    claims: Option<&serde_json::Value>,
    keys: &JwtKeys,
) -> Node {
    let node = |v: Value| Node::new("signature valid", 0..0, v);
    let alg = header
        .and_then(|h| h.get("alg"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if alg.eq_ignore_ascii_case("none") {
        return node(Value::Bool(false)).with_error("alg: none (unsigned token)");
    }
    let Ok(algorithm) = Algorithm::from_str(alg) else {
        return node(Value::Bool(false)).with_error(format!("unsupported alg {alg:?}"));
    };
    let kid = header
        .and_then(|h| h.get("kid"))
        .and_then(serde_json::Value::as_str);
    let candidates = candidate_keys(keys, algorithm.family(), kid);
    if candidates.is_empty() {
        return node(Value::None).with_display("not verified (no key)");
    }
    let good = candidates.iter().any(|k| {
        jsonwebtoken::crypto::verify(sig_b64, signing_input.as_bytes(), k, algorithm)
            .unwrap_or(false)
    });
    if !good {
        return node(Value::Bool(false)).with_error("bad signature");
    }
    let now = keys.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let leeway = i64::try_from(keys.leeway).unwrap_or(i64::MAX);
    let claim = |name: &str| {
        claims
            .and_then(|c| c.get(name))
            .and_then(serde_json::Value::as_i64)
    };
    if let Some(exp) = claim("exp")
        && exp.saturating_add(leeway) < now
    {
        let when = date(exp).unwrap_or_else(|| exp.to_string());
        return node(Value::Bool(false)).with_error(format!("expired at {when}"));
    }
    if let Some(nbf) = claim("nbf")
        && nbf.saturating_sub(leeway) > now
    {
        let when = date(nbf).unwrap_or_else(|| nbf.to_string());
        return node(Value::Bool(false)).with_error(format!("not valid before {when}"));
    }
    node(Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bearer_tokens_and_ignores_lookalikes() {
        let t = find_tokens("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, 7);
        assert!(find_tokens("eyJhIjoxfQ.eyJzdWIiOiJ4In0.c2ln").is_empty()); // no alg
        assert!(find_tokens("xeyJhbGciOiJIUzI1NiJ9.e.c").is_empty());
    }
}
