//! The GameSpy GP dissector: framing on `\final\`, pairs with exact value ranges, labels,
//! errors, byte-exact re-encoding, the login math of the protocol notes and MD5 itself.

use gamewire::capture::{
    Connection, ConnectionId, Direction, NewPacket, StoreData, Timestamp, Transport, gwcap,
};
use gamewire::dissect::gp::{self, Gp, GpDecoder};
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{
    Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
};
use proptest::prelude::*;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

const LC1: &[u8] = b"\\lc\\1\\challenge\\ABCDEFGHIJ\\id\\1\\final\\";
const LOGIN: &str = concat!(
    "\\login\\\\challenge\\a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6",
    "\\authtoken\\MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM=",
    "\\partnerid\\0\\response\\98eca380e91ea22929e8d97c771bd5c1",
    "\\firewall\\1\\port\\0\\productid\\11419\\gamename\\redalert3pc",
    "\\namespaceid\\1\\sdkrevision\\3\\quiet\\0\\id\\1\\final\\",
);
const LC2: &str = concat!(
    "\\lc\\2\\sesskey\\51437\\proof\\b45781b2880edefccf21cb5a3b5b6c93",
    "\\userid\\1000001\\profileid\\2000001\\uniquenick\\Commander",
    "\\lt\\Rk9PQkFSYmF6cXV4MTIzNDU2Nzg5MA__\\id\\1\\final\\",
);

const FESL_CHALLENGE: &str = "abcdefgh";
const AUTHTOKEN: &str = "MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM=";
const SERVER_CHAL: &str = "ABCDEFGHIJ";
const CLIENT_CHAL: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";

fn decode_one(bytes: &[u8]) -> Message {
    let mut d = GpDecoder;
    assert_eq!(d.frame(bytes), Framing::Complete(bytes.len()));
    d.decode(bytes)
}

fn run(packets: &[(Direction, Vec<u8>)]) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50001".parse().unwrap(),
        "127.0.0.1:29900".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (dir, bytes) in packets {
        data.append(NewPacket::new(c, *dir, Timestamp(0), bytes.clone()))
            .unwrap();
    }
    decode_connection(&Gp, &Context::default(), data.packets_of(c))
}

fn labels(d: &[Decoded]) -> Vec<&str> {
    d.iter().map(|m| m.message.label.as_str()).collect()
}

fn text(n: &Node) -> &str {
    n.value.as_text().unwrap()
}

#[test]
fn md5_matches_the_rfc_1321_test_suite() {
    let cases: &[(&str, &str)] = &[
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "c3fcd3d76192e4007dfb496cca67e13b",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(gp::md5_hex(input.as_bytes()), *want, "{input:?}");
    }
    // Lengths around the 56/64-byte padding boundary, and several blocks.
    let more: &[(usize, u8, &str)] = &[
        (55, b'x', "04364420e25c512fd958a70738aa8f72"),
        (56, b'x', "668a72d5ba17f08e62dabcafad6db14b"),
        (63, b'x', "7dc2ca208106a2f703567bdff99d8981"),
        (64, b'x', "c1bb4f81d892b2d57947682aeb252456"),
        (65, b'x', "1bc932052302d074bdec39795fe00cf6"),
        (1000, b'a', "cabe45dcc9ae5b66ba86600cca6b8ba8"),
    ];
    for &(n, c, want) in more {
        assert_eq!(gp::md5_hex(&vec![c; n]), want, "{n} x {c}");
    }
}

#[test]
fn published_login_test_vector() {
    assert_eq!(
        gp::md5_hex(FESL_CHALLENGE.as_bytes()),
        "e8dc4081b13434b45189a720b77b6818"
    );
    assert_eq!(
        gp::gp_proof(FESL_CHALLENGE, AUTHTOKEN, CLIENT_CHAL, SERVER_CHAL),
        "b45781b2880edefccf21cb5a3b5b6c93"
    );
    assert_eq!(
        gp::gp_response(FESL_CHALLENGE, AUTHTOKEN, CLIENT_CHAL, SERVER_CHAL),
        "98eca380e91ea22929e8d97c771bd5c1"
    );
    // Only the first 32 characters of the response count.
    assert!(gp::check_response(
        FESL_CHALLENGE,
        AUTHTOKEN,
        CLIENT_CHAL,
        SERVER_CHAL,
        "98eca380e91ea22929e8d97c771bd5c1trailing"
    ));
    assert!(!gp::check_response(
        "abcdefgi",
        AUTHTOKEN,
        CLIENT_CHAL,
        SERVER_CHAL,
        "98eca380e91ea22929e8d97c771bd5c1"
    ));
    assert!(!gp::check_response(
        FESL_CHALLENGE,
        AUTHTOKEN,
        CLIENT_CHAL,
        SERVER_CHAL,
        "98ec"
    ));
}

#[test]
fn server_challenge_lc_1() {
    let m = decode_one(LC1);
    assert_eq!(m.label, "gp lc 1");
    assert!(!m.is_error());
    let t = &m.tree;
    assert_eq!(t.range, 0..LC1.len());
    let names: Vec<&str> = t.children.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(names, ["lc", "challenge", "id", "final"]);
    let lc = t.child("lc").unwrap();
    assert_eq!((text(lc), lc.range.clone()), ("1", 4..5));
    let ch = t.child("challenge").unwrap();
    assert_eq!(text(ch), "ABCDEFGHIJ");
    assert_eq!(&LC1[ch.range.clone()], b"ABCDEFGHIJ");
    assert_eq!(ch.range, 16..26);
    let fin = t.child("final").unwrap();
    assert_eq!(&LC1[fin.range.clone()], b"\\final\\");
    assert_eq!(Gp.encode(t).unwrap(), LC1);
    assert_eq!(
        gp::parse_message(LC1).unwrap(),
        vec![
            ("lc".to_string(), "1".to_string()),
            ("challenge".into(), "ABCDEFGHIJ".into()),
            ("id".into(), "1".into())
        ]
    );
    assert_eq!(
        gp::write_message(&[("lc", "1"), ("challenge", "ABCDEFGHIJ"), ("id", "1")]),
        LC1
    );
}

#[test]
fn client_login_and_its_math() {
    let bytes = LOGIN.as_bytes();
    let m = decode_one(bytes);
    assert_eq!(m.label, "gp login");
    assert!(!m.is_error());
    let login = m.tree.child("login").unwrap();
    assert_eq!(text(login), "");
    assert_eq!(login.range, 7..7);
    let resp = m.tree.child("response").unwrap();
    assert_eq!(
        &bytes[resp.range.clone()],
        b"98eca380e91ea22929e8d97c771bd5c1"
    );
    let chal = text(m.tree.child("challenge").unwrap());
    let token = text(m.tree.child("authtoken").unwrap());
    assert!(gp::check_response(
        FESL_CHALLENGE,
        token,
        chal,
        SERVER_CHAL,
        text(resp)
    ));
    assert_eq!(Gp.encode(&m.tree).unwrap(), bytes);
}

#[test]
fn login_reply_lc_2_and_keep_alive() {
    let m = decode_one(LC2.as_bytes());
    assert_eq!(m.label, "gp lc 2");
    assert_eq!(
        text(m.tree.child("proof").unwrap()),
        gp::gp_proof(FESL_CHALLENGE, AUTHTOKEN, CLIENT_CHAL, SERVER_CHAL)
    );
    assert_eq!(text(m.tree.child("uniquenick").unwrap()), "Commander");
    let ka = decode_one(b"\\ka\\\\final\\");
    assert_eq!(ka.label, "gp ka");
    assert_eq!(Gp.encode(&ka.tree).unwrap(), b"\\ka\\\\final\\");
}

#[test]
fn error_messages_are_marked_in_the_label_with_a_derived_node() {
    let bytes = b"\\error\\\\err\\260\\fatal\\\\errmsg\\The password provided is incorrect.\\id\\1\\final\\";
    let m = decode_one(bytes);
    assert_eq!(m.label, "gp error 260 fatal");
    let e = m.tree.child("error").unwrap();
    // The first `error` child is the command pair; the derived summary comes last.
    assert!(!e.derived);
    let summary = m
        .tree
        .children
        .iter()
        .rev()
        .find(|c| c.name == "error")
        .unwrap();
    assert!(summary.derived);
    assert_eq!(summary.child("code").unwrap().value, Value::Int(260));
    assert_eq!(summary.child("fatal").unwrap().value, Value::Bool(true));
    assert_eq!(
        text(summary.child("message").unwrap()),
        "The password provided is incorrect."
    );
    assert_eq!(Gp.encode(&m.tree).unwrap(), bytes);
    let nonfatal = decode_one(b"\\error\\\\err\\516\\errmsg\\x\\final\\");
    assert_eq!(nonfatal.label, "gp error 516");
}

#[test]
fn several_messages_per_read_and_messages_across_reads() {
    let mut stream = LC1.to_vec();
    stream.extend_from_slice(LC2.as_bytes());
    let got = run(&[(S2C, stream.clone())]);
    assert_eq!(labels(&got), ["gp lc 1", "gp lc 2"]);
    assert_eq!(got[1].offset, LC1.len());
    for cut in 1..stream.len() {
        let got = run(&[(S2C, stream[..cut].to_vec()), (S2C, stream[cut..].to_vec())]);
        assert_eq!(labels(&got), ["gp lc 1", "gp lc 2"], "cut {cut}");
    }
}

#[test]
fn framing_of_garbage_incomplete_and_oversized_input() {
    let mut d = GpDecoder;
    assert_eq!(d.frame(b"\\lc\\1\\fin"), Framing::NeedMore(None));
    assert_eq!(d.frame(b""), Framing::NeedMore(None));
    match d.frame(b"xyz\\lc\\1\\final\\") {
        Framing::Unframeable { skip, .. } => assert_eq!(skip, 3),
        f => panic!("{f:?}"),
    }
    let mut big = b"\\lc\\".to_vec();
    big.resize(gp::MAX_MESSAGE + 10, b'a');
    assert!(matches!(d.frame(&big), Framing::Unframeable { .. }));
    // A stream that never says \final\ is given up at the cap and framing resumes after it.
    let mut stream = big.clone();
    stream.extend_from_slice(LC1);
    let got = run(&[(S2C, stream)]);
    assert_eq!(got.last().unwrap().message.label, "gp lc 1");
    assert!(got[0].message.is_error());
}

#[test]
fn malformed_messages_become_error_nodes_and_round_trip() {
    // A key without a value.
    let m = decode_one(b"\\lc\\1\\id\\final\\");
    let id = m.tree.child("id").unwrap();
    assert_eq!(id.kind(), Some("key-only"));
    assert!(id.error().is_some());
    assert_eq!(Gp.encode(&m.tree).unwrap(), b"\\lc\\1\\id\\final\\");
    assert_eq!(
        gp::parse_message(b"\\lc\\1\\id\\final\\"),
        Err(gp::GpError::MissingValue("id".into()))
    );
    // Invalid UTF-8 value.
    let bad = b"\\lc\\\xff\xfe\\final\\";
    let m = decode_one(bad);
    let lc = m.tree.child("lc").unwrap();
    assert_eq!(lc.value, Value::Bytes(vec![0xff, 0xfe].into()));
    assert!(lc.error().is_some());
    assert_eq!(Gp.encode(&m.tree).unwrap(), bad);
    assert!(gp::parse_message(bad).is_err());
    // No \final\ when decoded directly.
    let m = GpDecoder.decode(b"\\lc\\1");
    assert!(m.is_error());
    assert_eq!(gp::parse_message(b"\\lc\\1"), Err(gp::GpError::NoFinal));
    // A backslash in an edited value cannot be encoded.
    let mut m = decode_one(LC1);
    m.tree.child_mut("challenge").unwrap().value = Value::Text("a\\b".into());
    assert!(matches!(
        Gp.encode(&m.tree),
        Err(EncodeError::BadField { .. })
    ));
}

#[test]
fn edits_re_encode_with_the_new_value() {
    let mut m = decode_one(LC1);
    m.tree.child_mut("challenge").unwrap().value = Value::Text("ZZZZ".into());
    m.tree.child_mut("id").unwrap().value = Value::UInt(7);
    let out = Gp.encode(&m.tree).unwrap();
    assert_eq!(out, b"\\lc\\1\\challenge\\ZZZZ\\id\\7\\final\\");
}

#[test]
fn detect_recognises_gp_only() {
    assert!(Gp.detect(LC1, S2C));
    assert!(Gp.detect(LOGIN.as_bytes(), C2S));
    assert!(!Gp.detect(b"\\unknownthing\\1\\final\\", C2S));
    assert!(!Gp.detect(b"fsys\xc0\0\0\x01\0\0\0\xb0", C2S));
    assert!(!Gp.detect(b"GET / HTTP/1.1\r\n", C2S));
}

#[test]
fn sample_capture_decodes_and_the_login_checks_out() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/ra3-login.gwcap");
    let data = gwcap::load(&path).unwrap().data;
    let conn = data
        .connections()
        .iter()
        .position(|c| c.protocol.as_deref() == Some("gp"))
        .unwrap();
    let got = decode_connection(
        &Gp,
        &Context::default(),
        data.packets_of(ConnectionId(conn as u64)),
    );
    assert_eq!(
        labels(&got),
        ["gp lc 1", "gp login", "gp lc 2", "gp ka", "gp ka"]
    );
    for g in &got {
        assert!(!g.message.is_error(), "{}", g.message.label);
        assert_eq!(Gp.encode(&g.message.tree).unwrap(), g.bytes);
    }
    let lc1 = &got[0].message.tree;
    let login = &got[1].message.tree;
    let lc2 = &got[2].message.tree;
    let server_chal = text(lc1.child("challenge").unwrap());
    let client_chal = text(login.child("challenge").unwrap());
    let token = text(login.child("authtoken").unwrap());
    assert!(gp::check_response(
        FESL_CHALLENGE,
        token,
        client_chal,
        server_chal,
        text(login.child("response").unwrap())
    ));
    assert_eq!(
        text(lc2.child("proof").unwrap()),
        gp::gp_proof(FESL_CHALLENGE, token, client_chal, server_chal)
    );
}

// ---- Properties ------------------------------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    "[^\\\\]{0,10}".prop_filter("not final", |s| s != "final")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_of_decode_is_byte_exact(pairs in prop::collection::vec(("[a-z]{1,8}".prop_filter("not final", |s| s != "final"), token()), 1..10)) {
        let bytes = gp::write_message(&pairs);
        let m = decode_one(&bytes);
        prop_assert!(!m.is_error());
        prop_assert_eq!(Gp.encode(&m.tree).unwrap(), bytes.clone());
        prop_assert_eq!(gp::parse_message(&bytes).unwrap(), pairs.clone());
        // Every value node's range holds exactly its value.
        for (c, (_, v)) in m.tree.children.iter().zip(&pairs) {
            prop_assert_eq!(&bytes[c.range.clone()], v.as_bytes());
        }
    }

    #[test]
    fn edited_values_come_back(pairs in prop::collection::vec(("[a-z]{1,8}".prop_filter("not final", |s| s != "final"), token()), 1..10),
                               new in token(), pick in any::<prop::sample::Index>()) {
        let bytes = gp::write_message(&pairs);
        let mut m = decode_one(&bytes);
        let i = pick.index(pairs.len());
        m.tree.children[i].value = Value::Text(new.clone().into());
        let out = Gp.encode(&m.tree).unwrap();
        let back = decode_one(&out);
        prop_assert_eq!(back.tree.children[i].value.as_text(), Some(new.as_str()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\\'), Just(b'f')], 0..400),
                                   cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut d = GpDecoder;
        let _ = d.frame(&data);
        let m = d.decode(&data);
        let _ = Gp.encode(&m.tree);
        let _ = gp::parse_message(&data);
        let mut stream = data.clone();
        stream.extend_from_slice(b"\\final\\");
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.extend([0, stream.len()]);
        points.sort_unstable();
        points.dedup();
        let packets: Vec<(Direction, Vec<u8>)> =
            points.windows(2).map(|w| (C2S, stream[w[0]..w[1]].to_vec())).collect();
        let got = run(&packets);
        let total: usize = got.iter().map(|g| g.bytes.len()).sum();
        prop_assert_eq!(total, stream.len());
        for g in &got {
            if !g.message.is_error() {
                prop_assert_eq!(Gp.encode(&g.message.tree).unwrap(), g.bytes.clone());
            }
        }
    }
}
