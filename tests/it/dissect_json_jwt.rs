//! JSON span parser, bare JSON stream dissector, and JWT annotation/verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::dissect::json::{self, Json};
use gamewire::dissect::jwt::{self, JwtKey, JwtKeys};
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{Context, Dissector, Node, Value};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::json;

fn run_json(chunks: &[&[u8]]) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:7000".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for ch in chunks {
        data.append(NewPacket::new(
            c,
            Direction::ClientToServer,
            Timestamp(0),
            ch.to_vec(),
        ))
        .unwrap();
    }
    decode_connection(&Json, &Context::default(), data.packets_of(c))
}

fn errors(n: &Node) -> Vec<(usize, String)> {
    n.walk()
        .into_iter()
        .filter_map(|(_, n)| n.error().map(|e| (n.range.start, e.to_owned())))
        .collect()
}

// ---- JSON ----

#[test]
fn escapes_and_surrogate_pairs() {
    let src = br#"{"a\"b": "line\nnext \u00e9 \ud83d\ude00 \/ \\"}"#;
    let t = json::tree(src, "json");
    assert!(!t.has_error(), "{t:#?}");
    let m = t.child("a\"b").unwrap();
    assert_eq!(m.value, Value::Text("line\nnext é 😀 / \\".into()));
    assert_eq!(m.kind(), Some("string"));
    assert_eq!(m.range, 1..src.len() - 1);
}

#[test]
fn lone_surrogates_and_bad_escapes_are_errors() {
    for (src, at) in [
        (&br#"["ok", "\ud83d x"]"#[..], 8),
        (br#"["\udc00"]"#, 2),
        (br#"["\x"]"#, 2),
        (br#"["\u12"]"#, 2),
    ] {
        let t = json::tree(src, "json");
        let e = errors(&t);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, at, "{:?}", String::from_utf8_lossy(src));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let src = [vec![b'['; 10_000], vec![b']'; 10_000]].concat();
    let t = json::tree(&src, "json");
    let e = errors(&t);
    assert_eq!(
        e,
        vec![(json::MAX_DEPTH, "JSON nested too deeply".to_string())]
    );
    assert!(json::encode_tree(&t).is_err());
    let obj = "{\"a\":".repeat(10_000);
    let t = json::tree(obj.as_bytes(), "json");
    assert!(t.has_error());
    // Depth 128 itself is fine.
    let ok = [vec![b'['; 128], vec![b']'; 128]].concat();
    assert!(!json::tree(&ok, "json").has_error());
}

#[test]
fn numbers() {
    let src = br#"[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 1.5e3, 0.1, -0, 7]"#;
    let t = json::tree(src, "json");
    assert!(!t.has_error());
    let v: Vec<&Value> = t.children.iter().map(|c| &c.value).collect();
    assert_eq!(v[0], &Value::UInt(u64::MAX));
    assert_eq!(v[1], &Value::Float(18446744073709551616.0));
    assert_eq!(t.children[1].display(), Some("18446744073709551616"));
    assert_eq!(v[2], &Value::Int(i64::MIN));
    assert_eq!(v[3], &Value::Float(-9223372036854775809.0));
    assert_eq!(v[4], &Value::Float(1500.0));
    assert_eq!(t.children[4].display(), Some("1.5e3"));
    assert_eq!(v[5], &Value::Float(0.1));
    assert_eq!(t.children[5].display(), None);
    assert_eq!(v[6], &Value::Int(0));
    assert_eq!(&src[t.children[7].range.clone()], b"7");
    // Big literals survive re-encoding.
    let out = json::encode_tree(&t).unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("18446744073709551616")
    );
    for bad in [&b"[01]"[..], b"[1.]", b"[-]", b"[1e]", b"[.5]"] {
        assert!(json::tree(bad, "json").has_error(), "{bad:?}");
    }
}

#[test]
fn errors_keep_what_parsed_before() {
    let src = br#"{"a": 1, "b": [true, fal], "c": 2}"#;
    let t = json::tree(src, "json");
    assert_eq!(t.child("a").unwrap().value, Value::UInt(1));
    let b = t.child("b").unwrap();
    assert_eq!(b.children[0].value, Value::Bool(true));
    assert_eq!(errors(&t), vec![(21, "invalid literal".to_string())]);
    assert!(t.child("c").is_none());

    let e = |s: &[u8]| errors(&json::tree(s, "json"));
    assert_eq!(e(br#"{"a" 1}"#), vec![(5, "expected ':'".into())]);
    assert_eq!(
        e(b"{} x"),
        vec![(3, "trailing data after the JSON value".into())]
    );
    assert_eq!(e(b"{\"a\":1"), vec![(6, "expected ',' or '}'".into())]);
    assert_eq!(e(b""), vec![(0, "unexpected end of JSON".into())]);
    assert_eq!(
        e(b"[\"a\x01\"]"),
        vec![(3, "control character in string".into())]
    );
    assert_eq!(
        e(b"[\"a\xff\"]"),
        vec![(3, "invalid UTF-8 in string".into())]
    );
    assert_eq!(e(b"{1:2}"), vec![(1, "expected a member name".into())]);
}

#[test]
fn member_and_element_ranges() {
    let src = b"{\n  \"user\": {\"name\": \"Builder\", \"roles\": [\"citizen\", \"backer\"]},\n  \"ok\": null\n}\n";
    let t = json::tree(src, "json");
    assert!(!t.has_error());
    assert_eq!(t.range, 0..src.len());
    let user = t.child("user").unwrap();
    assert_eq!(user.kind(), Some("object"));
    let roles = user.child("roles").unwrap();
    assert_eq!(roles.kind(), Some("array"));
    assert_eq!(&src[roles.children[1].range.clone()], b"\"backer\"");
    assert_eq!(roles.children[1].name, "[1]");
    let ok = t.child("ok").unwrap();
    assert_eq!(&src[ok.range.clone()], b"\"ok\": null");
    assert_eq!(ok.display(), Some("null"));
}

#[test]
fn json_stream_frames_values() {
    let stream = b"{\"a\":1}\n[1, 2]\r\n  \"s}\"\n{\"b\":\n{}}";
    let got = run_json(&[&stream[..5], &stream[5..20], &stream[20..]]);
    let labels: Vec<&str> = got.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, ["{a}", "[2 items]", "string", "{b}"]);
    assert!(got.iter().all(|d| !d.message.is_error()));
    assert_eq!(got[1].bytes, b"[1, 2]\r\n  ");
    let got = run_json(&[b"garbage\n{\"x\":true}"]);
    assert_eq!(got[0].message.label, "undecodable");
    assert_eq!(got.last().unwrap().message.label, "{x}");
    assert!(Json.detect(b" {\"a\":1}", Direction::ClientToServer));
    assert!(!Json.detect(b"GET / HTTP/1.1", Direction::ClientToServer));
}

#[test]
fn json_encode_gives_valid_json_with_edits() {
    let src = br#"{ "name": "Builder", "level": 3, "tags": ["a", "b"], "x": {"y": null} }"#;
    let mut t = json::tree(src, "json");
    let original: serde_json::Value = serde_json::from_slice(src).unwrap();
    let out = Json.encode(&t).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
        original
    );
    t.child_mut("level").unwrap().value = Value::Int(-4);
    t.find_mut(&["tags", "[1]"]).unwrap().value = Value::Text("é\"".into());
    let out = Json.encode(&t).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["level"], -4);
    assert_eq!(v["tags"][1], "é\"");
    let again = json::tree(&out, "json");
    assert_eq!(again.child("level").unwrap().value, Value::Int(-4));
    t.child_mut("level").unwrap().value = Value::Float(f64::NAN);
    assert!(Json.encode(&t).is_err());
}

// ---- JWT ----

const SECRET: &[u8] = b"gamewire-test-secret";
/// RFC 8032 test 1 key pair.
const ED_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn ed_pkcs8() -> Vec<u8> {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend(hex::decode(ED_SEED).unwrap());
    der
}

fn hs256(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn eddsa(claims: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("gamewire-1".into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(&ed_pkcs8())).unwrap()
}

const NOW: i64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({"iss": "https://robertsspaceindustries.com", "sub": "42", "iat": NOW - 10, "exp": NOW + 3600})
}

fn keys(k: Vec<JwtKey>) -> JwtKeys {
    JwtKeys {
        keys: k,
        leeway: 60,
        now: Some(NOW),
    }
}

/// A JSON body with the token as a member; returns (bytes, annotated tree).
fn annotated(token: &str, k: &JwtKeys) -> (Vec<u8>, Node) {
    let body = format!("{{\"accessToken\":\"{token}\"}}").into_bytes();
    let mut t = json::tree(&body, "json");
    jwt::annotate(&mut t, &body, k);
    (body, t)
}

fn validity(t: &Node) -> &Node {
    t.find(&["accessToken", "signature valid"])
        .expect("signature valid node")
}

#[test]
fn hs256_verified_with_exact_segment_ranges() {
    let tok = hs256(&claims());
    let (body, t) = annotated(&tok, &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    let v = validity(&t);
    assert_eq!((v.value.clone(), v.error()), (Value::Bool(true), None));
    assert!(v.derived);
    let m = t.child("accessToken").unwrap();
    let header = m.child("header").unwrap();
    assert_eq!(
        header.child("alg").unwrap().value,
        Value::Text("HS256".into())
    );
    let segs: Vec<&str> = tok.split('.').collect();
    assert_eq!(&body[header.range.clone()], segs[0].as_bytes());
    let claims = m.child("claims").unwrap();
    assert_eq!(&body[claims.range.clone()], segs[1].as_bytes());
    assert_eq!(claims.child("sub").unwrap().value, Value::Text("42".into()));
    assert_eq!(
        claims.child("exp").unwrap().display(),
        Some("1800003600 (2027-01-15 09:00:00 UTC)")
    );
    let sig = m.child("signature").unwrap();
    assert_eq!(&body[sig.range.clone()], segs[2].as_bytes());
    assert_eq!(
        sig.value,
        Value::Bytes(URL_SAFE_NO_PAD.decode(segs[2]).unwrap().into())
    );
    // The annotation is derived: a click on the token still selects the member.
    assert_eq!(t.deepest_at(header.range.start), Some(vec![0]));
}

#[test]
fn tampered_token_fails() {
    let tok = hs256(&claims());
    let segs: Vec<&str> = tok.split('.').collect();
    let mut forged = claims();
    forged["sub"] = json!("1");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{}.{payload}.{}", segs[0], segs[2]);
    let (_, t) = annotated(&tampered, &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    let v = validity(&t);
    assert_eq!(v.value, Value::Bool(false));
    assert_eq!(v.error(), Some("bad signature"));
    // The wrong secret fails too.
    let (_, t) = annotated(&tok, &keys(vec![JwtKey::Hmac(b"nope".to_vec())]));
    assert_eq!(validity(&t).error(), Some("bad signature"));
}

#[test]
fn alg_none_fails_even_without_keys() {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let tok = format!("{h}.{p}.");
    for k in [keys(vec![]), keys(vec![JwtKey::Hmac(SECRET.to_vec())])] {
        let (_, t) = annotated(&tok, &k);
        let v = validity(&t);
        assert_eq!(v.value, Value::Bool(false));
        assert_eq!(v.error(), Some("alg: none (unsigned token)"));
    }
}

#[test]
fn expired_and_not_yet_valid_fail() {
    let mut c = claims();
    c["exp"] = json!(NOW - 3600);
    let (_, t) = annotated(&hs256(&c), &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    let v = validity(&t);
    assert_eq!(v.value, Value::Bool(false));
    assert_eq!(v.error(), Some("expired at 2027-01-15 07:00:00 UTC"));
    // Within the leeway it passes.
    c["exp"] = json!(NOW - 30);
    let (_, t) = annotated(&hs256(&c), &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    assert_eq!(validity(&t).value, Value::Bool(true));
    let mut c = claims();
    c["nbf"] = json!(NOW + 3600);
    let (_, t) = annotated(&hs256(&c), &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    assert!(
        validity(&t)
            .error()
            .unwrap()
            .starts_with("not valid before")
    );
}

#[test]
fn no_key_means_not_verified() {
    let (_, t) = annotated(&hs256(&claims()), &keys(vec![]));
    let v = validity(&t);
    assert_eq!(v.display(), Some("not verified (no key)"));
    assert!(v.error().is_none());
    // A key of another family does not count.
    let (_, t) = annotated(
        &eddsa(&claims()),
        &keys(vec![JwtKey::Hmac(SECRET.to_vec())]),
    );
    assert_eq!(validity(&t).display(), Some("not verified (no key)"));
}

#[test]
fn eddsa_with_raw_key_and_jwks() {
    let tok = eddsa(&claims());
    let public = hex::decode(ED_PUBLIC).unwrap();
    let (_, t) = annotated(&tok, &keys(vec![JwtKey::Ed25519(public.clone())]));
    assert_eq!(validity(&t).value, Value::Bool(true));
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "other", "x": URL_SAFE_NO_PAD.encode([1u8; 32])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "gamewire-1", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(&public)},
    ]})
    .to_string();
    let (_, t) = annotated(&tok, &keys(vec![JwtKey::Jwks(jwks)]));
    assert_eq!(validity(&t).value, Value::Bool(true));
    // A JWKS with a short (hostile) Ed25519 key is skipped, not a panic.
    let short = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}).to_string();
    let (_, t) = annotated(
        &tok,
        &keys(vec![JwtKey::Jwks(short), JwtKey::Ed25519(vec![1, 2, 3])]),
    );
    assert_eq!(validity(&t).display(), Some("not verified (no key)"));
    // Another Ed25519 key: bad signature.
    let (_, t) = annotated(&tok, &keys(vec![JwtKey::Ed25519([9u8; 32].to_vec())]));
    assert_eq!(validity(&t).value, Value::Bool(false));
}

#[test]
fn annotate_again_replaces_and_plain_text_is_untouched() {
    let tok = hs256(&claims());
    let (body, mut t) = annotated(&tok, &keys(vec![]));
    let n = t.child("accessToken").unwrap().children.len();
    assert_eq!(n, 4);
    jwt::annotate(&mut t, &body, &keys(vec![JwtKey::Hmac(SECRET.to_vec())]));
    assert_eq!(t.child("accessToken").unwrap().children.len(), 4);
    assert_eq!(validity(&t).value, Value::Bool(true));
    // Re-encoding ignores the annotations.
    let v: serde_json::Value = serde_json::from_slice(&json::encode_tree(&t).unwrap()).unwrap();
    assert_eq!(v["accessToken"], tok.as_str());

    let plain = br#"{"a":"eyJ not a token","b":"x.y.z"}"#;
    let mut t = json::tree(plain, "json");
    let before = t.clone();
    jwt::annotate(&mut t, plain, &keys(vec![]));
    assert_eq!(t, before);
}

#[test]
fn two_tokens_in_one_value_get_groups() {
    let a = hs256(&claims());
    let b = eddsa(&claims());
    let cookie = format!("a={a}; b={b}");
    let mut t = Node::new(
        "Cookie",
        0..cookie.len(),
        Value::Text(cookie.clone().into()),
    );
    jwt::annotate(
        &mut t,
        cookie.as_bytes(),
        &keys(vec![JwtKey::Hmac(SECRET.to_vec())]),
    );
    let groups: Vec<&Node> = t.children.iter().filter(|c| c.name == "jwt").collect();
    assert_eq!(groups.len(), 2);
    assert_eq!(&cookie.as_bytes()[groups[1].range.clone()], b.as_bytes());
    assert_eq!(
        groups[0].child("signature valid").unwrap().value,
        Value::Bool(true)
    );
}

#[test]
fn sample_hytale_identity_token_decodes() {
    // The sample capture's token: EdDSA header, claims, a fake signature.
    let tok = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdhbWV3aXJlLTEifQ.eyJzdWIiOiI2ZjFkMmMzYi00YTU5LTRlNjgtOTc4Ni03NTY0NTM0MjMxMjAiLCJzY29wZSI6Imh5dGFsZTpjbGllbnQiLCJwcm9maWxlIjp7InVzZXJuYW1lIjoiQnVpbGRlciJ9fQ.c2lnbmF0dXJl";
    let (_, t) = annotated(
        tok,
        &keys(vec![JwtKey::Ed25519(hex::decode(ED_PUBLIC).unwrap())]),
    );
    let m = t.child("accessToken").unwrap();
    assert_eq!(
        m.find(&["claims", "profile", "username"]).unwrap().value,
        Value::Text("Builder".into())
    );
    assert_eq!(validity(&t).value, Value::Bool(false));
}

// ---- properties ----

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn json_values_round_trip(v in arb_json(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
        let t = json::tree(&text, "json");
        prop_assert!(!t.has_error(), "{:?}", String::from_utf8_lossy(&text));
        prop_assert_eq!(json::to_value(&t).unwrap(), v.clone());
        let out = json::encode_tree(&t).unwrap();
        // Valid JSON (serde_json's own float parsing is not exact, so compare via ours).
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        prop_assert_eq!(json::to_value(&json::tree(&out, "json")).unwrap(), v);
        // Every member's range starts with its quoted key and ends with its value.
        fn check(n: &Node, text: &[u8]) -> bool {
            n.children.iter().all(|c| {
                let r = &text[c.range.clone()];
                let ok = if n.kind() == Some("object") {
                    r.first() == Some(&b'"')
                } else {
                    !r.is_empty()
                };
                ok && !r.last().is_some_and(u8::is_ascii_whitespace) && check(c, text)
            })
        }
        prop_assert!(check(&t, &text));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1500), cut in 1usize..100) {
        let t = json::tree(&data, "json");
        let _ = json::encode_tree(&t);
        let chunks: Vec<&[u8]> = data.chunks(cut).collect();
        let got = run_json(&chunks);
        let total: usize = got.iter().map(|d| d.bytes.len()).sum();
        prop_assert_eq!(total, data.len());
        let mut n = Node::new("v", 0..data.len(), Value::Text(String::from_utf8_lossy(&data).into()));
        jwt::annotate(&mut n, &data, &keys(vec![JwtKey::Hmac(vec![]), JwtKey::Ed25519(vec![0; 32])]));
    }

    #[test]
    fn json_like_noise_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("{"), Just("}"), Just("["), Just("]"), Just("\""), Just(","), Just(":"), Just("\\u"),
        Just("\\ud800"), Just("1"), Just("-"), Just("e"), Just("true"), Just(" "), Just("eyJ"), Just("."),
    ], 0..60)) {
        let s = parts.concat();
        let t = json::tree(s.as_bytes(), "json");
        let _ = json::encode_tree(&t);
        let got = run_json(&[s.as_bytes()]);
        let total: usize = got.iter().map(|d| d.bytes.len()).sum();
        prop_assert_eq!(total, s.len());
    }

    #[test]
    fn token_like_text_never_panics(h in "[A-Za-z0-9_-]{0,40}", p in "[A-Za-z0-9_-]{1,40}", s in "[A-Za-z0-9_-]{0,90}", alg in prop_oneof![Just("HS256"), Just("EdDSA"), Just("RS256"), Just("ES256"), Just("none"), Just("xx")]) {
        let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\",\"kid\":\"{h}\"}}"));
        let text = format!("Bearer {header}.{p}.{s}");
        let mut n = Node::new("Authorization", 0..text.len(), Value::Text(text.clone().into()));
        jwt::annotate(&mut n, text.as_bytes(), &keys(vec![
            JwtKey::Hmac(b"k".to_vec()),
            JwtKey::Ed25519(vec![7; 32]),
            JwtKey::RsaDer(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            JwtKey::EcPoint(vec![4; 65]),
        ]));
        prop_assert!(n.child("signature valid").is_some());
    }
}
