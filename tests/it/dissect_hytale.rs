//! The Hytale dissector: the sample capture decoded field by field with exact values and
//! byte ranges, referral data with good and bad HMACs, compressed packets, every malformed
//! case we could think of, and property tests for round trips and arbitrary input.

use std::path::Path;

use gamewire::capture::{
    ConnectionId, Direction, PacketFlags, PacketId, PacketRef, Timestamp, gwcap,
};
use gamewire::dissect::hytale::{
    self, Connect, Hytale, Referral, ReferralError, frame, referral_data, verify_referral,
};
use gamewire::dissect::stream::decode_connection;
use gamewire::dissect::{Context, Dissector, Framing, Message, Node, Value};
use proptest::prelude::*;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

const UUID: [u8; 16] = [
    0x6f, 0x1d, 0x2c, 0x3b, 0x4a, 0x59, 0x4e, 0x68, 0x97, 0x86, 0x75, 0x64, 0x53, 0x42, 0x31, 0x20,
];
const UUID_TEXT: &str = "6f1d2c3b-4a59-4e68-9786-756453423120";
const IDENTITY: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdhbWV3aXJlLTEifQ.eyJzdWIiOiI2ZjFkMmMzYi00YTU5LTRlNjgtOTc4Ni03NTY0NTM0MjMxMjAiLCJzY29wZSI6Imh5dGFsZTpjbGllbnQiLCJwcm9maWxlIjp7InVzZXJuYW1lIjoiQnVpbGRlciJ9fQ.c2lnbmF0dXJl";
const BASE_SECS: i64 = 1_754_607_232;
const SECRET: &[u8] = b"your-shared-secret-here";

fn decode_with(bytes: &[u8], ctx: &Context) -> Message {
    let mut d = Hytale.decoder(C2S, ctx);
    assert_eq!(d.frame(bytes), Framing::Complete(bytes.len()));
    d.decode(bytes)
}

fn decode(bytes: &[u8]) -> Message {
    decode_with(bytes, &Context::default())
}

fn at<'a>(m: &'a Node, path: &[&str]) -> &'a Node {
    m.find(path)
        .unwrap_or_else(|| panic!("no node {path:?} in\n{}", text(m)))
}

fn text(n: &Node) -> String {
    let mut s = String::new();
    n.write_text(&mut s, 0);
    s
}

/// Value and range of a node.
fn vr(m: &Node, path: &[&str]) -> (Value, std::ops::Range<usize>) {
    let n = at(m, path);
    (n.value.clone(), n.range.clone())
}

fn errors(n: &Node) -> Vec<String> {
    n.walk()
        .into_iter()
        .filter_map(|(_, n)| n.error().map(|e| format!("{}: {e}", n.name)))
        .collect()
}

fn has_error_containing(n: &Node, needle: &str) -> bool {
    errors(n).iter().any(|e| e.contains(needle))
}

fn sample_connect() -> Connect {
    Connect {
        protocol_crc: 0x1B2C_3D4E,
        protocol_build_number: 25,
        client_version: "2026.01.15".into(),
        client_type: 0,
        uuid: UUID,
        username: "Builder".into(),
        identity_token: Some(IDENTITY.into()),
        language: "en_US".into(),
        referral_data: None,
        referral_source: None,
    }
}

fn roundtrip(bytes: &[u8]) {
    let m = decode(bytes);
    assert_eq!(
        Hytale.encode(&m.tree).as_deref(),
        Ok(bytes),
        "{}",
        text(&m.tree)
    );
}

// -------------------------------------------------------------------------------------
// The sample capture

fn sample_messages() -> Vec<(Direction, Vec<u8>, Message)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/hytale-connect.gwcap");
    let loaded = gwcap::load(&path).expect("sample capture loads");
    let data = loaded.data;
    let conn = data
        .connections()
        .first()
        .map(|c| c.id)
        .expect("one connection");
    let packets: Vec<_> = data.packets_of(conn).collect();
    assert_eq!(packets.len(), 8);
    let decoded = decode_connection(&Hytale, &Context::default(), packets.iter().copied());
    assert_eq!(decoded.len(), 8, "one frame per packet");
    for (d, p) in decoded.iter().zip(&packets) {
        assert_eq!(d.packet, p.id);
        assert_eq!(d.offset, 0);
        assert_eq!(d.bytes, p.data, "each packet holds exactly one frame");
    }
    decoded
        .into_iter()
        .map(|d| (d.direction, d.bytes, d.message))
        .collect()
}

#[test]
fn sample_capture_decodes_without_errors_and_round_trips() {
    let msgs = sample_messages();
    let labels: Vec<_> = msgs.iter().map(|m| (m.0, m.2.label.as_str())).collect();
    assert_eq!(
        labels,
        vec![
            (C2S, "Connect"),
            (S2C, "AuthGrant"),
            (C2S, "AuthToken"),
            (S2C, "ServerAuthToken"),
            (S2C, "Ping"),
            (C2S, "Pong"),
            (C2S, "ChatMessage"),
            (C2S, "Disconnect"),
        ]
    );
    for (_, bytes, m) in &msgs {
        assert!(errors(&m.tree).is_empty(), "{}", text(&m.tree));
        assert_eq!(m.tree.range, 0..bytes.len());
        assert_eq!(Hytale.encode(&m.tree).as_deref(), Ok(bytes.as_slice()));
    }
}

#[test]
fn sample_connect_fields_and_ranges() {
    let msgs = sample_messages();
    let (_, bytes, m) = &msgs[0];
    let t = &m.tree;
    let payload_len = 66 + 8 + 2 + IDENTITY.len() + 6;
    assert_eq!(bytes.len(), 8 + payload_len);
    assert_eq!(vr(t, &["length"]), (Value::Int(payload_len as i64), 0..4));
    assert_eq!(vr(t, &["id"]), (Value::Int(0), 4..8));
    assert_eq!(at(t, &["id"]).display(), Some("0 (Connect)"));
    assert_eq!(at(t, &["payload"]).range, 8..bytes.len());
    let p = ["payload"];
    let f = |name: &str| vr(t, &[p[0], name]);
    assert_eq!(f("nullBits"), (Value::UInt(1), 8..9));
    assert_eq!(
        at(t, &["payload", "nullBits"]).display(),
        Some("0b00000001 (identityToken)")
    );
    assert_eq!(f("protocolCrc"), (Value::Int(0x1B2C_3D4E), 9..13));
    assert_eq!(f("protocolBuildNumber"), (Value::Int(25), 13..17));
    assert_eq!(
        f("clientVersion"),
        (Value::Text("2026.01.15".into()), 17..37)
    );
    assert_eq!(f("clientType"), (Value::UInt(0), 37..38));
    assert_eq!(
        at(t, &["payload", "clientType"]).display(),
        Some("0 (game)")
    );
    assert_eq!(f("uuid"), (Value::Text(UUID_TEXT.into()), 38..54));
    assert_eq!(at(t, &["payload", "offsets"]).range, 54..74);
    let o = |name: &str| vr(t, &["payload", "offsets", name]);
    assert_eq!(o("usernameOffset"), (Value::Int(0), 54..58));
    assert_eq!(o("identityTokenOffset"), (Value::Int(8), 58..62));
    let lang_off = 8 + 2 + IDENTITY.len();
    assert_eq!(o("languageOffset"), (Value::Int(lang_off as i64), 62..66));
    assert_eq!(o("referralDataOffset"), (Value::Int(-1), 66..70));
    assert_eq!(o("referralSourceOffset"), (Value::Int(-1), 70..74));
    assert_eq!(
        at(t, &["payload", "offsets", "referralDataOffset"]).display(),
        Some("-1 (absent)")
    );
    assert_eq!(f("username"), (Value::Text("Builder".into()), 74..82));
    assert_eq!(
        vr(t, &["payload", "username", "length"]),
        (Value::UInt(7), 74..75)
    );
    let tok_end = 82 + 2 + IDENTITY.len();
    assert_eq!(
        f("identityToken"),
        (Value::Text(IDENTITY.into()), 82..tok_end)
    );
    assert_eq!(
        vr(t, &["payload", "identityToken", "length"]),
        (Value::UInt(IDENTITY.len() as u64), 82..84)
    );
    assert_eq!(
        f("language"),
        (Value::Text("en_US".into()), tok_end..tok_end + 6)
    );
    assert!(at(t, &["payload"]).child("referralData").is_none());
    assert!(at(t, &["payload"]).child("referralSource").is_none());
    // A click on a token byte selects the token, on its length byte the length.
    assert_eq!(t.deepest_at(100).unwrap(), vec![2, 8]);
    assert_eq!(t.deepest_at(82).unwrap(), vec![2, 8, 0]);
    assert_eq!(t.deepest_at(56).unwrap(), vec![2, 6, 0]);
    // The builder writes the very same bytes.
    assert_eq!(sample_connect().build().unwrap(), *bytes);
}

#[test]
fn sample_auth_packets_fields_and_ranges() {
    let msgs = sample_messages();
    let grant = &msgs[1].2.tree;
    assert_eq!(vr(grant, &["payload", "nullBits"]), (Value::UInt(3), 8..9));
    assert_eq!(
        vr(grant, &["payload", "offsets", "authorizationGrantOffset"]),
        (Value::Int(0), 9..13)
    );
    assert_eq!(
        vr(grant, &["payload", "offsets", "serverIdentityTokenOffset"]),
        (Value::Int(31), 13..17)
    );
    assert_eq!(
        vr(grant, &["payload", "authorizationGrant"]),
        (Value::Text("grant.eyJhdWQiOiJnYW1ld2lyZSJ9".into()), 17..48)
    );
    assert_eq!(
        vr(grant, &["payload", "serverIdentityToken"]),
        (
            Value::Text("server-identity.eyJzdWIiOiJwcm94eSJ9".into()),
            48..85
        )
    );
    assert_eq!(
        hytale::auth_grant(
            Some("grant.eyJhdWQiOiJnYW1ld2lyZSJ9"),
            Some("server-identity.eyJzdWIiOiJwcm94eSJ9")
        )
        .unwrap(),
        msgs[1].1
    );

    let token = &msgs[2].2.tree;
    assert_eq!(
        vr(token, &["payload", "accessToken"]),
        (
            Value::Text("access.eyJjbmYiOnsieDV0I1MyNTYiOiJhYmMifX0".into()),
            17..60
        )
    );
    assert_eq!(
        vr(token, &["payload", "serverAuthorizationGrant"]),
        (
            Value::Text("server-grant.eyJhdWQiOiJwcm94eSJ9".into()),
            60..94
        )
    );
    assert_eq!(
        hytale::auth_token(
            Some("access.eyJjbmYiOnsieDV0I1MyNTYiOiJhYmMifX0"),
            Some("server-grant.eyJhdWQiOiJwcm94eSJ9")
        )
        .unwrap(),
        msgs[2].1
    );

    let server = &msgs[3].2.tree;
    assert_eq!(vr(server, &["payload", "nullBits"]), (Value::UInt(1), 8..9));
    assert_eq!(
        vr(server, &["payload", "serverAccessToken"]),
        (
            Value::Text("server-access.eyJhdWQiOiJjbGllbnQifQ".into()),
            17..54
        )
    );
    assert_eq!(
        vr(server, &["payload", "offsets", "passwordChallengeOffset"]),
        (Value::Int(-1), 13..17)
    );
    assert!(
        at(server, &["payload"])
            .child("passwordChallenge")
            .is_none()
    );
    assert_eq!(
        hytale::server_auth_token(Some("server-access.eyJhdWQiOiJjbGllbnQifQ"), None).unwrap(),
        msgs[3].1
    );
}

#[test]
fn sample_ping_pong_chat_disconnect() {
    let msgs = sample_messages();
    let ping = &msgs[4].2.tree;
    assert_eq!(vr(ping, &["length"]), (Value::Int(29), 0..4));
    assert_eq!(vr(ping, &["payload", "id"]), (Value::Int(1), 9..13));
    assert_eq!(at(ping, &["payload", "instant"]).range, 13..25);
    assert_eq!(
        vr(ping, &["payload", "instant", "seconds"]),
        (Value::Int(BASE_SECS + 20), 13..21)
    );
    assert_eq!(
        vr(ping, &["payload", "instant", "nanos"]),
        (Value::Int(125_000_000), 21..25)
    );
    assert_eq!(
        at(ping, &["payload", "instant"]).display(),
        Some("2025-08-07T22:54:12.125Z")
    );
    assert_eq!(
        vr(ping, &["payload", "lastPingRaw"]),
        (Value::Int(0), 25..29)
    );
    assert_eq!(
        vr(ping, &["payload", "lastPingDirect"]),
        (Value::Int(0), 29..33)
    );
    assert_eq!(
        vr(ping, &["payload", "lastPingTick"]),
        (Value::Int(0), 33..37)
    );
    assert_eq!(
        hytale::ping(1, BASE_SECS + 20, 125_000_000, [0, 0, 0]).unwrap(),
        msgs[4].1
    );

    let pong = &msgs[5].2.tree;
    assert_eq!(vr(pong, &["payload", "id"]), (Value::Int(1), 9..13));
    assert_eq!(vr(pong, &["payload", "type"]), (Value::UInt(0), 25..26));
    assert_eq!(
        vr(pong, &["payload", "packetQueueSize"]),
        (Value::Int(0), 26..28)
    );
    assert_eq!(
        hytale::pong(1, BASE_SECS + 20, 125_000_000, 0, 0).unwrap(),
        msgs[5].1
    );

    let chat = &msgs[6].2.tree;
    assert_eq!(
        vr(chat, &["payload", "message"]),
        (Value::Text("hello from gamewire ✓".into()), 9..33)
    );
    assert_eq!(
        vr(chat, &["payload", "message", "length"]),
        (Value::UInt(23), 9..10)
    );
    assert_eq!(
        hytale::chat_message("hello from gamewire ✓").unwrap(),
        msgs[6].1
    );

    let bye = &msgs[7].2.tree;
    assert_eq!(vr(bye, &["payload", "reasonType"]), (Value::UInt(0), 9..10));
    assert_eq!(
        at(bye, &["payload", "reasonType"]).display(),
        Some("0 (disconnect)")
    );
    assert_eq!(
        vr(bye, &["payload", "reason"]),
        (Value::Text("Client disconnected".into()), 10..30)
    );
    assert_eq!(
        hytale::disconnect(0, "Client disconnected").unwrap(),
        msgs[7].1
    );
}

#[test]
fn detect_and_ports() {
    let connect = sample_connect().build().unwrap();
    assert!(Hytale.detect(&connect, C2S));
    assert!(!Hytale.detect(&connect, S2C));
    let grant = hytale::auth_grant(Some("g"), Some("s")).unwrap();
    assert!(Hytale.detect(&grant, S2C));
    assert!(!Hytale.detect(b"GET / HTTP/1.1\r\n", C2S));
    assert!(
        !Hytale.detect(&[0, 0, 0, 0, 0, 0, 0, 0], C2S),
        "Connect needs 46 bytes"
    );
    assert!(!Hytale.detect(&connect[..7], C2S));
    assert_eq!(Hytale.default_ports(), &[5520, 24322]);
    assert_eq!(Hytale.name(), "hytale");
}

// -------------------------------------------------------------------------------------
// Referral data

fn referral() -> Referral {
    Referral {
        uuid: UUID,
        username: "Builder".into(),
        backend: "lobby".into(),
        remote_address: "/203.0.113.7:50200".into(),
        timestamp: (BASE_SECS + 25) as i32,
    }
}

fn connect_with_referral(data: Vec<u8>) -> Vec<u8> {
    Connect {
        referral_data: Some(data),
        referral_source: Some((24322, "proxy.example.net".into())),
        ..sample_connect()
    }
    .build()
    .unwrap()
}

#[test]
fn connect_with_referral_data_and_a_correct_hmac() {
    let data = referral_data(SECRET, &referral());
    assert_eq!(data.len(), 68 + 7 + 5 + 18);
    let bytes = connect_with_referral(data.clone());
    let ctx = Context {
        hytale_referral_secret: Some(SECRET.to_vec()),
        ..Context::default()
    };
    let m = decode_with(&bytes, &ctx);
    let t = &m.tree;
    assert!(errors(t).is_empty(), "{}", text(t));
    assert_eq!(vr(t, &["payload", "nullBits"]).0, Value::UInt(0b111));
    // The referral data follows the language in the variable block.
    let lang_end = 74 + 8 + 2 + IDENTITY.len() + 6;
    let rd = at(t, &["payload", "referralData"]);
    assert_eq!(rd.range, lang_end..lang_end + 1 + data.len());
    assert_eq!(rd.value, Value::Bytes(data.clone().into()));
    let r0 = lang_end + 1;
    let r = |name: &str| vr(t, &["payload", "referralData", "referral", name]);
    assert_eq!(r("version"), (Value::Int(1), r0..r0 + 4));
    assert_eq!(
        r("uuidMsb"),
        (Value::Int(0x6f1d_2c3b_4a59_4e68), r0 + 4..r0 + 12)
    );
    assert_eq!(r("uuid").0, Value::Text(UUID_TEXT.into()));
    assert_eq!(
        r("username"),
        (Value::Text("Builder".into()), r0 + 20..r0 + 31)
    );
    assert_eq!(
        r("backendName"),
        (Value::Text("lobby".into()), r0 + 31..r0 + 40)
    );
    assert_eq!(
        r("remoteAddress"),
        (Value::Text("/203.0.113.7:50200".into()), r0 + 40..r0 + 62)
    );
    assert_eq!(
        r("timestamp"),
        (Value::Int(BASE_SECS + 25), r0 + 62..r0 + 66)
    );
    assert_eq!(r("hmac").1, r0 + 66..r0 + 98);
    assert_eq!(r("hmac").0, Value::Bytes(data[66..].into()));
    let valid = at(t, &["payload", "referralData", "referral", "hmac valid"]);
    assert!(valid.derived);
    assert_eq!(valid.value, Value::Bool(true));
    assert_eq!(r("uuid matches Connect").0, Value::Bool(true));
    assert_eq!(r("username matches Connect").0, Value::Bool(true));
    let src = at(t, &["payload", "referralSource"]);
    assert_eq!(src.display(), Some("proxy.example.net:24322"));
    assert_eq!(
        vr(t, &["payload", "referralSource", "port"]),
        (Value::UInt(24322), r0 + data.len()..r0 + data.len() + 2)
    );
    assert_eq!(src.range.end, bytes.len());
    assert_eq!(Hytale.encode(t).unwrap(), bytes);

    // Without a secret the HMAC is shown but not judged.
    let m = decode(&bytes);
    assert!(errors(&m.tree).is_empty());
    assert!(
        m.tree
            .find(&["payload", "referralData", "referral", "hmac valid"])
            .is_none()
    );
}

#[test]
fn connect_with_referral_data_and_a_wrong_hmac_or_player() {
    let ctx = Context {
        hytale_referral_secret: Some(SECRET.to_vec()),
        ..Context::default()
    };
    let bytes = connect_with_referral(referral_data(b"another secret", &referral()));
    let m = decode_with(&bytes, &ctx);
    let valid = at(
        &m.tree,
        &["payload", "referralData", "referral", "hmac valid"],
    );
    assert_eq!(valid.value, Value::Bool(false));
    assert!(valid.error().is_some());
    assert_eq!(errors(&m.tree).len(), 1, "{}", text(&m.tree));

    // Signed correctly, but for another player.
    let other = Referral {
        username: "Mallory".into(),
        ..referral()
    };
    let m = decode_with(&connect_with_referral(referral_data(SECRET, &other)), &ctx);
    let r = at(&m.tree, &["payload", "referralData", "referral"]);
    assert_eq!(r.child("hmac valid").unwrap().value, Value::Bool(true));
    let check = r.child("username matches Connect").unwrap();
    assert_eq!(check.value, Value::Bool(false));
    assert!(check.error().is_some());
    assert_eq!(
        r.child("uuid matches Connect").unwrap().value,
        Value::Bool(true)
    );

    // Editing the signed username in the tree re-encodes with the copied (now stale) HMAC.
    let good = connect_with_referral(referral_data(SECRET, &referral()));
    let mut m = decode_with(&good, &ctx);
    at_mut(
        &mut m.tree,
        &["payload", "referralData", "referral", "username"],
    )
    .value = Value::Text("Builder2".into());
    let edited = Hytale.encode(&m.tree).unwrap();
    assert_eq!(edited.len(), good.len() + 1);
    let again = decode_with(&edited, &ctx);
    let r = at(&again.tree, &["payload", "referralData", "referral"]);
    assert_eq!(
        r.child("username").unwrap().value,
        Value::Text("Builder2".into())
    );
    assert_eq!(r.child("hmac valid").unwrap().value, Value::Bool(false));
}

fn at_mut<'a>(n: &'a mut Node, path: &[&str]) -> &'a mut Node {
    n.find_mut(path).expect("node exists")
}

#[test]
fn referral_verification_follows_the_backend_order() {
    let r = referral();
    let data = referral_data(SECRET, &r);
    let now = BASE_SECS + 100;
    assert_eq!(verify_referral(&data, SECRET, now), Ok(r.clone()));
    assert_eq!(
        verify_referral(&data, b"wrong", now),
        Err(ReferralError::BadHmac)
    );
    assert!(matches!(
        verify_referral(&data, SECRET, BASE_SECS + 25 + 301),
        Err(ReferralError::Expired { skew: 301, .. })
    ));
    assert!(verify_referral(&data, SECRET, BASE_SECS + 25 - 300).is_ok());
    assert_eq!(
        verify_referral(&data[..67], SECRET, now),
        Err(ReferralError::TooShort(67))
    );
    let mut v2 = data.clone();
    v2[0] = 2;
    assert_eq!(
        verify_referral(&v2, SECRET, now),
        Err(ReferralError::Version(2))
    );
    let mut long = data.clone();
    long[20..24].copy_from_slice(&257i32.to_le_bytes());
    assert!(matches!(
        verify_referral(&long, SECRET, now),
        Err(ReferralError::Malformed {
            field: "username",
            ..
        })
    ));
    let mut tampered = data.clone();
    tampered[24] ^= 0x20; // "builder"
    assert_eq!(
        verify_referral(&tampered, SECRET, now),
        Err(ReferralError::BadHmac)
    );
    assert_eq!(r.check_player(&UUID, "Builder", "LOBBY"), Ok(()));
    assert_eq!(
        r.check_player(&UUID, "builder", "lobby"),
        Err(ReferralError::Mismatch("username"))
    );
    assert_eq!(
        r.check_player(&[0; 16], "Builder", "lobby"),
        Err(ReferralError::Mismatch("uuid"))
    );
    assert_eq!(
        r.check_player(&UUID, "Builder", "survival"),
        Err(ReferralError::Mismatch("backend name"))
    );
}

#[test]
fn malformed_referral_data_becomes_error_nodes() {
    // Too short, a negative string length, and a truncated HMAC.
    let good = referral_data(SECRET, &referral());
    let mut negative = good.clone();
    negative[20..24].copy_from_slice(&(-1i32).to_le_bytes());
    for (data, needle) in [
        (good[..40].to_vec(), "shorter than the minimum"),
        (negative, "outside 0..=256"),
        (good[..good.len() - 1].to_vec(), "needs 32 bytes"),
    ] {
        let m = decode(&connect_with_referral(data));
        assert!(
            has_error_containing(&m.tree, needle),
            "{needle}: {}",
            text(&m.tree)
        );
    }
}

// -------------------------------------------------------------------------------------
// Compressed packets

fn chunk_payload() -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i / 7 % 13) as u8 ^ (i % 3) as u8)
        .collect()
}

#[test]
fn set_chunk_is_decompressed_into_a_derived_buffer() {
    let plain = chunk_payload();
    let bytes = hytale::packet(131, &plain).unwrap();
    assert!(bytes.len() < plain.len() / 4, "compressed");
    let m = decode(&bytes);
    assert_eq!(m.label, "SetChunk");
    assert!(errors(&m.tree).is_empty());
    let payload = at(&m.tree, &["payload"]);
    assert_eq!(payload.kind(), Some("zstd"));
    assert_eq!(payload.range, 8..bytes.len());
    assert_eq!(payload.value, Value::Bytes(bytes[8..].into()));
    assert_eq!(m.derived.len(), 1);
    let d = &m.derived[0];
    assert_eq!(d.name, "decompressed");
    assert_eq!(d.bytes, plain);
    assert_eq!(d.tree.range, 0..plain.len());
    assert_eq!(
        vr(&d.tree, &["data"]),
        (Value::Bytes(plain.clone().into()), 0..20_000)
    );
    // The on-wire tree re-encodes byte for byte; the decompressed tree recompresses.
    assert_eq!(Hytale.encode(&m.tree).unwrap(), bytes);
    assert_eq!(Hytale.encode(&d.tree).unwrap(), bytes);
    assert_eq!(hytale::encode_message(&m).unwrap(), bytes);

    // Edit the decompressed bytes: the frame is recompressed with a new length.
    let mut m = m;
    let mut edited = plain.clone();
    edited.truncate(1000);
    m.derived[0].tree.children[0].value = Value::Bytes(edited.clone().into());
    let out = hytale::encode_message(&m).unwrap();
    let again = decode(&out);
    assert_eq!(again.derived[0].bytes, edited);
    assert_eq!(
        at(&again.tree, &["length"]).value,
        Value::Int(out.len() as i64 - 8)
    );
}

#[test]
fn broken_compressed_payloads_are_errors() {
    // Not zstd at all.
    let m = decode(&frame(131, b"definitely not zstd"));
    assert!(has_error_containing(&m.tree, "not a zstd frame"));
    assert!(m.derived.is_empty());
    // A streamed frame that does not state its size.
    let streamed = zstd::stream::encode_all(&b"abc"[..], 3).unwrap();
    let m = decode(&frame(131, &streamed));
    assert!(has_error_containing(
        &m.tree,
        "does not state its content size"
    ));
    // A frame that claims more than the cap is not decompressed.
    let big = zstd::bulk::compress(&vec![0u8; 16 * 1024 * 1024 + 1], 1).unwrap();
    let m = decode(&frame(131, &big));
    assert!(has_error_containing(&m.tree, "exceeds the maximum"));
    // Truncated frame, and a second frame after the first.
    let z = zstd::bulk::compress(&chunk_payload(), 3).unwrap();
    let m = decode(&frame(131, &z[..z.len() - 3]));
    assert!(has_error_containing(&m.tree, "zstd"), "{}", text(&m.tree));
    let mut two = z.clone();
    two.extend_from_slice(&z);
    let m = decode(&frame(131, &two));
    assert!(has_error_containing(&m.tree, "bytes after the zstd frame"));
}

// -------------------------------------------------------------------------------------
// Framing and malformed packets

#[test]
fn frame_boundaries() {
    let mut d = Hytale.decoder(C2S, &Context::default());
    let chat = hytale::chat_message("hi").unwrap();
    assert_eq!(d.frame(&[]), Framing::NeedMore(Some(8)));
    assert_eq!(d.frame(&chat[..3]), Framing::NeedMore(Some(8)));
    assert_eq!(d.frame(&chat[..5]), Framing::NeedMore(Some(chat.len())));
    let mut two = chat.clone();
    two.extend_from_slice(&chat);
    assert_eq!(d.frame(&two), Framing::Complete(chat.len()));
}

#[test]
fn negative_and_huge_lengths_are_unframeable_and_framing_resyncs() {
    let mut d = Hytale.decoder(C2S, &Context::default());
    let chat = hytale::chat_message("hi").unwrap();
    let mut buf = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2];
    let next = buf.len();
    buf.extend_from_slice(&chat);
    match d.frame(&buf) {
        Framing::Unframeable { skip, reason } => {
            assert_eq!(skip, next);
            assert!(reason.contains("negative payload length -1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut huge = (17 * 1024 * 1024i32).to_le_bytes().to_vec();
    huge.extend_from_slice(&0i32.to_le_bytes());
    match d.frame(&huge) {
        Framing::Unframeable { skip, reason } => {
            assert_eq!(skip, 1);
            assert!(reason.contains("exceeds"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Through the stream driver: one undecodable span, then the chat message.
    let packets = [(C2S, buf.clone())];
    let got = run(&packets);
    let labels: Vec<_> = got.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["undecodable", "ChatMessage"]);
}

#[test]
fn length_above_the_registered_maximum_is_an_error_node() {
    // A ConnectAccept may be at most 70 bytes; this one states 100 and carries them.
    let mut payload = vec![1u8, 99];
    payload.extend_from_slice(&[7u8; 98]);
    let bytes = frame(14, &payload);
    let m = decode(&bytes);
    assert_eq!(m.label, "ConnectAccept");
    let len = at(&m.tree, &["length"]);
    assert_eq!(len.value, Value::Int(100));
    assert!(
        len.error().unwrap().contains("exceeds the maximum 70"),
        "{len:?}"
    );
    assert!(has_error_containing(
        &m.tree,
        "length 99 exceeds the maximum 64"
    ));
    // Frames still line up after it.
    let mut stream = bytes.clone();
    stream.extend_from_slice(&hytale::connect_accept(None).unwrap());
    let got = run(&[(S2C, stream)]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].label, "ConnectAccept");
    assert!(!got[1].is_error());
}

#[test]
fn unknown_ids_show_the_payload_raw() {
    let bytes = frame(4242, b"\x01\x02\x03");
    let m = decode(&bytes);
    assert_eq!(m.label, "Unknown 4242");
    assert!(!m.is_error());
    assert_eq!(
        vr(&m.tree, &["payload"]),
        (Value::Bytes(vec![1, 2, 3].into()), 8..11)
    );
    assert_eq!(at(&m.tree, &["id"]).display(), Some("4242 (unknown)"));
    roundtrip(&bytes);
    // Registered but without a layout: raw too.
    let m = decode(&frame(100, &7i32.to_le_bytes()));
    assert_eq!(m.label, "SetClientId");
    assert_eq!(at(&m.tree, &["payload"]).kind(), Some("raw"));
}

#[test]
fn proxy_ping_and_pong_are_big_endian() {
    let bytes = hytale::proxy_ping(0x0102_0304_0506_0708, 1_754_607_252_000);
    assert_eq!(&bytes[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let m = decode(&bytes);
    assert_eq!(m.label, "ProxyPing");
    assert!(!m.is_error());
    assert_eq!(
        vr(&m.tree, &["payload", "nonce"]),
        (Value::Int(0x0102_0304_0506_0708), 8..16)
    );
    assert_eq!(
        vr(&m.tree, &["payload", "timestamp"]),
        (Value::Int(1_754_607_252_000), 16..24)
    );
    roundtrip(&bytes);
    assert_eq!(decode(&hytale::proxy_pong(1, 2)).label, "ProxyPong");
}

/// A Connect payload with the given variable block and offsets.
fn connect_raw(null_bits: u8, offsets: [i32; 5], block: &[u8]) -> Vec<u8> {
    let good = sample_connect().build().unwrap();
    let mut p = good[8..54].to_vec();
    p[0] = null_bits;
    for o in offsets {
        p.extend_from_slice(&o.to_le_bytes());
    }
    p.extend_from_slice(block);
    frame(0, &p)
}

#[test]
fn truncated_variable_block() {
    // identityToken says 200 bytes, 5 are there.
    let mut block = vec![7];
    block.extend_from_slice(b"Builder");
    block.extend_from_slice(&[0xc8, 0x01]);
    block.extend_from_slice(b"eyJhb");
    let bytes = connect_raw(1, [0, 8, 0, -1, -1], &block);
    let m = decode(&bytes);
    let tok = at(&m.tree, &["payload", "identityToken"]);
    assert_eq!(tok.range, 82..bytes.len());
    assert!(
        tok.error()
            .unwrap()
            .contains("length 200 runs past the end (5 bytes left)")
    );
    assert_eq!(
        vr(&m.tree, &["payload", "identityToken", "length"]),
        (Value::UInt(200), 82..84)
    );
    // A Connect cut inside its offset table, and a Ping cut inside its fixed part.
    let good = sample_connect().build().unwrap();
    let m = decode(&frame(0, &good[8..60]));
    assert!(has_error_containing(&m.tree, "offset table"));
    let ping = hytale::ping(1, 2, 3, [4, 5, 6]).unwrap();
    let m = decode(&frame(2, &ping[8..20]));
    assert!(has_error_containing(&m.tree, "truncated"));
    assert_eq!(vr(&m.tree, &["payload", "id"]), (Value::Int(1), 9..13));
    // An empty payload.
    let m = decode(&frame(211, &[]));
    assert!(has_error_containing(&m.tree, "empty payload"));
}

#[test]
fn six_byte_and_negative_varints() {
    let mut p = vec![0u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    p.extend_from_slice(b"hello");
    let m = decode(&frame(211, &p));
    let msg = at(&m.tree, &["payload", "message"]);
    assert_eq!(msg.range, 9..14);
    assert!(msg.error().unwrap().contains("longer than 5 bytes"));

    let m = decode(&frame(211, &[0, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    assert!(has_error_containing(&m.tree, "negative"));
    let m = decode(&frame(211, &[0, 0xff, 0xff]));
    assert!(has_error_containing(&m.tree, "runs past the end"));
}

#[test]
fn offsets_outside_the_block() {
    let mut block = vec![7];
    block.extend_from_slice(b"Builder");
    block.extend_from_slice(&[5]);
    block.extend_from_slice(b"en_US");
    for bad in [500, -7] {
        let bytes = connect_raw(1, [0, bad, 8, -1, -1], &block);
        let m = decode(&bytes);
        let off = at(&m.tree, &["payload", "offsets", "identityTokenOffset"]);
        assert_eq!(off.range, 58..62);
        assert_eq!(off.value, Value::Int(bad.into()));
        assert!(off.error().is_some(), "{}", text(&m.tree));
        assert_eq!(
            vr(&m.tree, &["payload", "language"]).0,
            Value::Text("en_US".into())
        );
    }
    // Required field without an offset; offset set although the null bit is clear.
    let m = decode(&connect_raw(0, [-1, -1, 8, -1, -1], &block));
    assert!(has_error_containing(
        &m.tree,
        "username is required but its offset is -1"
    ));
    let m = decode(&connect_raw(0, [0, 8, 8, -1, -1], &block));
    assert!(has_error_containing(
        &m.tree,
        "null bit of identityToken is clear"
    ));
    let m = decode(&connect_raw(2, [0, -1, 8, -1, -1], &block));
    assert!(has_error_containing(&m.tree, "is set but its offset is -1"));
}

#[test]
fn field_content_errors() {
    let mk = |username: &[u8], version: &[u8], client_type: u8| {
        let c = sample_connect();
        let good = c.build().unwrap();
        let mut p = good[8..54].to_vec();
        p[9..29].fill(0);
        p[9..9 + version.len()].copy_from_slice(version);
        p[29] = client_type;
        p[0] = 0;
        let mut block = vec![username.len() as u8];
        block.extend_from_slice(username);
        let lang = block.len() as i32;
        block.extend_from_slice(b"\x05en_US");
        for o in [0, -1, lang, -1, -1] {
            p.extend_from_slice(&o.to_le_bytes());
        }
        p.extend_from_slice(&block);
        decode(&frame(0, &p))
    };
    let ok = mk(b"Builder", b"1.0", 1);
    assert!(!ok.is_error(), "{}", text(&ok.tree));
    assert_eq!(
        at(&ok.tree, &["payload", "clientType"]).display(),
        Some("1 (editor)")
    );
    assert!(has_error_containing(
        &mk(b"ABCDEFGHIJKLMNOPQ", b"1.0", 0).tree,
        "length 17 exceeds the maximum 16"
    ));
    assert!(has_error_containing(
        &mk("Bü".as_bytes(), b"1.0", 0).tree,
        "not ASCII"
    ));
    assert!(has_error_containing(
        &mk(b"Builder", "1.0é".as_bytes(), 0).tree,
        "not ASCII"
    ));
    assert!(has_error_containing(
        &mk(b"Builder", b"1.0", 9).tree,
        "unknown value 9"
    ));
    // Invalid UTF-8 in a chat message, and bytes after the last field.
    let m = decode(&frame(211, &[0, 2, 0xc3, 0x28]));
    assert!(has_error_containing(&m.tree, "invalid UTF-8"));
    assert_eq!(
        vr(&m.tree, &["payload", "message"]).0,
        Value::Bytes(vec![0xc3, 0x28].into())
    );
    roundtrip(&frame(211, &[0, 2, 0xc3, 0x28]));
    let bytes = frame(211, &[0, 1, b'a', 9, 9]);
    let m = decode(&bytes);
    assert_eq!(
        vr(&m.tree, &["payload", "trailing"]),
        (Value::Bytes(vec![9, 9].into()), 11..13)
    );
    roundtrip(&bytes);
    // Ping with nanoseconds out of range.
    let m = decode(&hytale::ping(1, 2, -1, [0; 3]).unwrap());
    assert!(has_error_containing(&m.tree, "nanoseconds"));
}

#[test]
fn decode_of_short_or_long_slices_never_panics() {
    let chat = hytale::chat_message("hi").unwrap();
    for n in 0..chat.len() {
        let m = Hytale.decoder(C2S, &Context::default()).decode(&chat[..n]);
        assert!(m.is_error(), "{n}");
    }
    let mut long = chat.clone();
    long.push(0);
    let m = Hytale.decoder(C2S, &Context::default()).decode(&long);
    assert!(has_error_containing(&m.tree, "after the frame"));
}

#[test]
fn edits_change_lengths_and_offsets() {
    let bytes = sample_connect().build().unwrap();
    let mut m = decode(&bytes);
    at_mut(&mut m.tree, &["payload", "username"]).value = Value::Text("Someone_Else".into());
    // Removing an optional field clears its null bit and offset.
    let payload = at_mut(&mut m.tree, &["payload"]);
    payload.children.retain(|c| c.name != "identityToken");
    let out = Hytale.encode(&m.tree).unwrap();
    let again = decode(&out);
    assert!(!again.is_error(), "{}", text(&again.tree));
    assert_eq!(
        vr(&again.tree, &["payload", "username"]).0,
        Value::Text("Someone_Else".into())
    );
    assert_eq!(vr(&again.tree, &["payload", "nullBits"]).0, Value::UInt(0));
    assert_eq!(
        vr(&again.tree, &["payload", "offsets", "identityTokenOffset"]).0,
        Value::Int(-1)
    );
    assert_eq!(
        vr(&again.tree, &["payload", "offsets", "languageOffset"]).0,
        Value::Int(13)
    );
    assert_eq!(
        vr(&again.tree, &["length"]).0,
        Value::Int(out.len() as i64 - 8)
    );
    // Values that do not fit are refused.
    let mut m = decode(&bytes);
    at_mut(&mut m.tree, &["payload", "protocolCrc"]).value = Value::Int(1 << 40);
    assert!(Hytale.encode(&m.tree).is_err());
    let mut m = decode(&bytes);
    at_mut(&mut m.tree, &["payload", "clientVersion"]).value = Value::Text("x".repeat(21).into());
    assert!(Hytale.encode(&m.tree).is_err());
    let mut m = decode(&bytes);
    at_mut(&mut m.tree, &["payload", "uuid"]).value = Value::Text("nope".into());
    assert!(Hytale.encode(&m.tree).is_err());
}

// -------------------------------------------------------------------------------------
// Stream driver and property tests

fn run(packets: &[(Direction, Vec<u8>)]) -> Vec<Message> {
    run_ctx(packets, &Context::default())
}

fn run_ctx(packets: &[(Direction, Vec<u8>)], ctx: &Context) -> Vec<Message> {
    let refs: Vec<PacketRef<'_>> = packets
        .iter()
        .enumerate()
        .map(|(i, (dir, data))| PacketRef {
            id: PacketId(i as u64),
            connection: ConnectionId(0),
            direction: *dir,
            timestamp: Timestamp(i as i64),
            data,
            label: None,
            flags: PacketFlags::empty(),
            original: None,
        })
        .collect();
    decode_connection(&Hytale, ctx, refs)
        .into_iter()
        .map(|d| d.message)
        .collect()
}

fn chunked(stream: &[u8], cuts: &[usize]) -> Vec<(Direction, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| (C2S, stream[w[0]..w[1]].to_vec()))
        .filter(|(_, b)| !b.is_empty())
        .collect()
}

fn ascii_str(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).unwrap()
}

fn any_str(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

fn connect_strategy() -> impl Strategy<Value = Connect> {
    (
        (
            any::<i32>(),
            any::<i32>(),
            ascii_str(20),
            0u8..2,
            any::<[u8; 16]>(),
        ),
        (
            ascii_str(16),
            proptest::option::of(any_str(60)),
            ascii_str(16),
        ),
        proptest::option::of((ascii_str(20), ascii_str(30), any::<i32>(), any::<Vec<u8>>())),
        proptest::option::of((any::<u16>(), any_str(40))),
    )
        .prop_map(
            |((crc, build, ver, ty, uuid), (user, token, lang), referral, source)| {
                // Trailing NULs are padding, so a version cannot end in one.
                let ver = ver.trim_end_matches('\0').to_string();
                Connect {
                    protocol_crc: crc,
                    protocol_build_number: build,
                    client_version: ver,
                    client_type: ty,
                    uuid,
                    username: user.clone(),
                    identity_token: token,
                    language: lang,
                    referral_data: referral.map(|(b, a, ts, secret)| {
                        referral_data(
                            &secret,
                            &Referral {
                                uuid,
                                username: user.clone(),
                                backend: b,
                                remote_address: a,
                                timestamp: ts,
                            },
                        )
                    }),
                    referral_source: source,
                }
            },
        )
}

/// Any valid packet, as frame bytes.
fn packet_strategy() -> impl Strategy<Value = Vec<u8>> {
    let opt_s = |n| proptest::option::of(any_str(n));
    prop_oneof![
        connect_strategy().prop_map(|c| c.build().unwrap()),
        (opt_s(50), opt_s(50))
            .prop_map(|(a, b)| hytale::auth_grant(a.as_deref(), b.as_deref()).unwrap()),
        (opt_s(50), opt_s(50))
            .prop_map(|(a, b)| hytale::auth_token(a.as_deref(), b.as_deref()).unwrap()),
        (
            opt_s(50),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
        )
            .prop_map(|(a, b)| hytale::server_auth_token(a.as_deref(), b.as_deref()).unwrap()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|c| hytale::connect_accept(c.as_deref()).unwrap()),
        (0u8..2, any_str(80)).prop_map(|(t, r)| hytale::disconnect(t, &r).unwrap()),
        any_str(80).prop_map(|s| hytale::chat_message(&s).unwrap()),
        (
            any::<i32>(),
            any::<i64>(),
            0i32..1_000_000_000,
            any::<[i32; 3]>()
        )
            .prop_map(|(id, s, n, l)| hytale::ping(id, s, n, l).unwrap()),
        (
            any::<i32>(),
            any::<i64>(),
            0i32..1_000_000_000,
            any::<u8>(),
            any::<i16>()
        )
            .prop_map(|(id, s, n, t, q)| hytale::pong(id, s, n, t, q).unwrap()),
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| hytale::proxy_ping(a, b)),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|p| hytale::packet(131, &p).unwrap()),
        (1000i32..5000, proptest::collection::vec(any::<u8>(), 0..50))
            .prop_map(|(id, p)| frame(id, &p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_packets_round_trip(bytes in packet_strategy()) {
        let m = decode(&bytes);
        prop_assert!(!m.is_error(), "{}", text(&m.tree));
        prop_assert_eq!(Hytale.encode(&m.tree).unwrap(), bytes.clone());
        prop_assert_eq!(hytale::encode_message(&m).unwrap(), bytes);
    }

    #[test]
    fn edited_connect_decodes_to_the_edit(c in connect_strategy(), user in ascii_str(16), token in proptest::option::of(any_str(100))) {
        // The referral names the original user; drop it so the edit leaves no mismatch.
        let c = Connect { referral_data: None, ..c };
        let mut m = decode(&c.build().unwrap());
        at_mut(&mut m.tree, &["payload", "username"]).value = Value::Text(user.clone().into());
        let payload = at_mut(&mut m.tree, &["payload"]);
        payload.children.retain(|n| n.name != "identityToken");
        if let Some(t) = &token {
            payload.push(Node::new("identityToken", 0..0, Value::Text(t.clone().into())));
        }
        let out = Hytale.encode(&m.tree).unwrap();
        prop_assert_eq!(&out, &Connect { username: user.clone(), identity_token: token.clone(), ..c }.build().unwrap());
        let again = decode(&out);
        prop_assert!(!again.is_error());
        prop_assert_eq!(&vr(&again.tree, &["payload", "username"]).0, &Value::Text(user.into()));
        prop_assert_eq!(
            again.tree.find(&["payload", "identityToken"]).map(|n| n.value.clone()),
            token.map(|t| Value::Text(t.into()))
        );
        prop_assert_eq!(vr(&again.tree, &["length"]).0, Value::Int(out.len() as i64 - 8));
    }

    #[test]
    fn edited_chat_and_ping_decode_to_the_edit(s in any_str(200), id in any::<i32>()) {
        let mut m = decode(&hytale::chat_message("x").unwrap());
        at_mut(&mut m.tree, &["payload", "message"]).value = Value::Text(s.clone().into());
        let out = Hytale.encode(&m.tree).unwrap();
        let again = decode(&out);
        prop_assert_eq!(&vr(&again.tree, &["payload", "message"]).0, &Value::Text(s.into()));
        prop_assert_eq!(vr(&again.tree, &["length"]).0, Value::Int(out.len() as i64 - 8));
        let mut m = decode(&hytale::ping(0, 0, 0, [0; 3]).unwrap());
        at_mut(&mut m.tree, &["payload", "id"]).value = Value::Int(id.into());
        let again = decode(&Hytale.encode(&m.tree).unwrap());
        prop_assert_eq!(vr(&again.tree, &["payload", "id"]).0, Value::Int(id.into()));
    }

    #[test]
    fn stream_of_valid_packets_survives_any_chunking(
        frames in proptest::collection::vec(packet_strategy(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream: Vec<u8> = frames.concat();
        let got = run(&chunked(&stream, &cuts));
        prop_assert_eq!(got.len(), frames.len());
        for (m, f) in got.iter().zip(&frames) {
            prop_assert!(!m.is_error());
            prop_assert_eq!(&Hytale.encode(&m.tree).unwrap(), f);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let ctx = Context { hytale_referral_secret: Some(SECRET.to_vec()), ..Context::default() };
        let got = run_ctx(&chunked(&data, &cuts), &ctx);
        let total: usize = got.iter().map(|m| m.tree.range.len()).sum();
        prop_assert_eq!(total, data.len());
        for m in &got {
            let _ = Hytale.encode(&m.tree);
            for d in &m.derived {
                let _ = Hytale.encode(&d.tree);
            }
        }
        let _ = Hytale.detect(&data, C2S);
        let _ = Hytale.decoder(S2C, &ctx).decode(&data);
    }

    #[test]
    fn mutated_packets_never_panic(
        bytes in packet_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = bytes;
        for (i, v) in flips {
            let n = bytes.len();
            bytes[i % n] = v;
        }
        let ctx = Context { hytale_referral_secret: Some(SECRET.to_vec()), ..Context::default() };
        let m = Hytale.decoder(C2S, &ctx).decode(&bytes);
        for (_, n) in m.tree.walk() {
            prop_assert!(n.range.end <= bytes.len() && n.range.start <= n.range.end);
        }
        let _ = Hytale.encode(&m.tree);
    }
}
