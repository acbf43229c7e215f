//! Star Citizen diffusion frames: the sample capture with and without the repo's schemas,
//! byte ranges, framing errors and resynchronisation, re-encoding.

use std::path::Path;

use gamewire::capture::sdjson::import_file;
use gamewire::capture::{
    Connection, ConnectionId, Direction, NewPacket, StoreData, Timestamp, Transport,
};
use gamewire::dissect::protobuf::load_schemas;
use gamewire::dissect::sc::{MAX_PAYLOAD, ScDecoder, StarCitizen, message_type};
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{Context, Dissector, Framing, Node, StreamDecoder, Value};
use proptest::prelude::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_ctx() -> Context {
    Context {
        schemas: Some(load_schemas(&[repo().join("proto")]).unwrap()),
        ..Default::default()
    }
}

fn sample() -> StoreData {
    import_file(&repo().join("captures/sc-diffusion.sd.json"), false)
        .unwrap()
        .data
}

fn decode_sample(ctx: &Context) -> (StoreData, Vec<Decoded>) {
    let data = sample();
    assert_eq!(data.connection_count(), 1);
    let out = decode_connection(&StarCitizen, ctx, data.packets_of(ConnectionId(0)));
    (data, out)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&[0xef, 0xbe, 0xad, 0xde]);
    out.extend_from_slice(payload);
    out
}

/// A heartbeat frame: field 1 "heartbeat", field 2 = n.
fn heartbeat(n: u8) -> Vec<u8> {
    let mut p = vec![0x0a, 9];
    p.extend_from_slice(b"heartbeat");
    p.extend_from_slice(&[0x10, n]);
    frame(&p)
}

fn is_number(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_digit())
}

const LABELS: [&str; 12] = [
    "diff.service.online",
    "diff.service.online",
    "cmsg_ls_req_dests",
    "cmsg_ls_req_dests",
    "cmsg_set_region_id",
    "cmsg_set_region_id",
    "heartbeat",
    "heartbeat_ack",
    "heartbeat",
    "heartbeat_ack",
    "heartbeat",
    "heartbeat_ack",
];

#[test]
fn every_sample_frame_decodes_with_named_fields() {
    let (data, out) = decode_sample(&schema_ctx());
    assert_eq!(out.len(), data.packet_count());
    let labels: Vec<_> = out.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, LABELS);
    for d in &out {
        let tree = &d.message.tree;
        assert!(!tree.has_error(), "{}", d.message.label);
        let names: Vec<_> = tree.children.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["length", "magic", "payload"]);
        let payload = tree.child("payload").unwrap();
        let ty = message_type(&d.message.label, d.direction).unwrap();
        assert_eq!(
            payload.display(),
            Some(format!("sc.diffusion.v1.{ty}").as_str())
        );
        for (_, n) in payload.walk().into_iter().skip(1) {
            assert!(
                !is_number(&n.name),
                "{}: unnamed field {}",
                d.message.label,
                n.name
            );
        }
        assert_eq!(payload.children[0].name, "message_name");
        // Byte-exact re-encoding.
        assert_eq!(StarCitizen.encode(tree).unwrap(), d.bytes);
    }
}

#[test]
fn discovery_request_fields_and_ranges() {
    let (_, out) = decode_sample(&schema_ctx());
    let tree = &out[0].message.tree;
    assert_eq!(tree.range, 0..74);
    let length = tree.child("length").unwrap();
    assert_eq!(
        (length.range.clone(), &length.value),
        (0..4, &Value::UInt(66))
    );
    let magic = tree.child("magic").unwrap();
    assert_eq!(magic.range, 4..8);
    assert_eq!(
        magic.value,
        Value::Bytes(vec![0xef, 0xbe, 0xad, 0xde].into())
    );
    let payload = tree.child("payload").unwrap();
    assert_eq!(payload.range, 8..74);
    let field = |path: &[&str]| payload.find(path).unwrap();
    assert_eq!(field(&["message_name"]).range, 8..29);
    assert_eq!(
        field(&["message_name"]).value,
        Value::Text("diff.service.online".into())
    );
    assert_eq!(field(&["client"]).range, 29..72);
    assert_eq!(
        field(&["client", "name"]).value,
        Value::Text("Star Citizen Game Client".into())
    );
    assert_eq!(field(&["client", "name"]).range, 31..57);
    assert_eq!(
        field(&["client", "client_id"]).value,
        Value::Text("sc_client".into())
    );
    assert_eq!(field(&["client", "number_3"]).value, Value::UInt(4));
    assert_eq!(field(&["client", "number_4"]).range, 70..72);
    assert_eq!(field(&["sequence"]).value, Value::UInt(1));
    assert_eq!(field(&["sequence"]).range, 72..74);
    // A click on a byte of "sc_client" selects that field.
    let path = tree.deepest_at(60).unwrap();
    let mut n: &Node = tree;
    for i in path {
        n = &n.children[i];
    }
    assert_eq!(n.name, "client_id");
}

#[test]
fn server_replies_have_their_own_types() {
    let (_, out) = decode_sample(&schema_ctx());
    let list = out[1].message.tree.child("payload").unwrap();
    let services: Vec<_> = list
        .children
        .iter()
        .filter(|c| c.name == "services")
        .map(|s| {
            (
                s.child("name").unwrap().value.clone(),
                s.child("port").unwrap().value.clone(),
                s.children
                    .iter()
                    .filter(|c| c.name == "protocols")
                    .map(|c| c.value.clone())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let t = |s: &str| Value::Text(s.into());
    assert_eq!(
        services,
        vec![
            (
                t("authentication_service"),
                Value::UInt(9000),
                vec![t("https")]
            ),
            (
                t("diffusion_service"),
                Value::UInt(8001),
                vec![t("websocket"), t("http2")]
            ),
            (
                t("game_service"),
                Value::UInt(5678),
                vec![t("grpc"), t("http2")]
            ),
        ]
    );
    let dest = out[3]
        .message
        .tree
        .find(&["payload", "destinations"])
        .unwrap();
    assert_eq!(
        dest.child("display_name").unwrap().value,
        t("Persistent Universe - Stanton System")
    );
    assert_eq!(dest.child("region").unwrap().value, t("eu-west"));
    let confirm = out[5].message.tree.child("payload").unwrap();
    assert_eq!(confirm.child("confirmed").unwrap().value, Value::Bool(true));
    let ack = out[7].message.tree.child("payload").unwrap();
    assert_eq!(
        ack.child("session_id").unwrap().value,
        t("sc_session_1754607242_9f3a1c7e")
    );
    assert_eq!(ack.child("sequence").unwrap().value, Value::UInt(1));
}

#[test]
fn every_sample_frame_decodes_without_schema() {
    let (_, out) = decode_sample(&Context::default());
    let labels: Vec<_> = out.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, LABELS);
    for d in &out {
        let tree = &d.message.tree;
        assert!(!tree.has_error(), "{}", d.message.label);
        let payload = tree.child("payload").unwrap();
        assert_eq!(payload.display(), None);
        assert!(payload.children.iter().all(|c| is_number(&c.name)));
        assert_eq!(StarCitizen.encode(tree).unwrap(), d.bytes);
    }
    // Nested messages and strings are still recognised.
    let list = out[1].message.tree.child("payload").unwrap();
    assert_eq!(
        list.find(&["2", "1"]).unwrap().value,
        Value::Text("authentication_service".into())
    );
    assert_eq!(list.find(&["2", "3"]).unwrap().value, Value::UInt(9000));
}

#[test]
fn unknown_names_use_the_envelope_type() {
    let ctx = schema_ctx();
    let mut dec = StarCitizen.decoder(Direction::ClientToServer, &ctx);
    let mut p = vec![0x0a, 4];
    p.extend_from_slice(b"ping");
    p.extend_from_slice(&[0x10, 7]);
    let msg = dec.decode(&frame(&p));
    assert_eq!(msg.label, "ping");
    let payload = msg.tree.child("payload").unwrap();
    assert_eq!(payload.display(), Some("sc.diffusion.v1.DiffusionMessage"));
    assert_eq!(payload.children[0].name, "message_name");
    assert_eq!(payload.children[1].name, "2");
    // A heartbeat sent the wrong way round falls back too.
    let mut s2c = ScDecoder::new(Direction::ServerToClient, ctx.schemas.as_ref());
    let msg = s2c.decode(&heartbeat(3));
    assert_eq!(
        msg.tree.child("payload").unwrap().display(),
        Some("sc.diffusion.v1.DiffusionMessage")
    );
}

#[test]
fn framing() {
    let mut dec = StarCitizen.decoder(Direction::ClientToServer, &Context::default());
    let hb = heartbeat(1);
    assert_eq!(dec.frame(&hb), Framing::Complete(hb.len()));
    let mut two = hb.clone();
    two.extend_from_slice(&heartbeat(2));
    assert_eq!(dec.frame(&two), Framing::Complete(hb.len()));
    // Truncated: the header tells the total.
    assert_eq!(dec.frame(&hb[..3]), Framing::NeedMore(Some(8)));
    assert_eq!(dec.frame(&hb[..6]), Framing::NeedMore(Some(8)));
    assert_eq!(dec.frame(&hb[..10]), Framing::NeedMore(Some(hb.len())));
    assert_eq!(dec.frame(&[]), Framing::NeedMore(Some(8)));
}

#[test]
fn bad_magic_is_unframeable_and_skips_to_the_next_magic() {
    let mut dec = StarCitizen.decoder(Direction::ClientToServer, &Context::default());
    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    let garbage = buf.len();
    buf.extend_from_slice(&heartbeat(1));
    match dec.frame(&buf) {
        Framing::Unframeable { skip, reason } => {
            assert_eq!(skip, garbage);
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A partly seen wrong magic is already unframeable.
    assert!(matches!(
        dec.frame(&[1, 0, 0, 0, 0xef, 0x00]),
        Framing::Unframeable { skip: 2, .. }
    ));
    // No magic anywhere: skip all but the last bytes that could still start a frame.
    match dec.frame(&[0x55; 100]) {
        Framing::Unframeable { skip, .. } => assert_eq!(skip, 96),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_length_is_unframeable() {
    let mut dec = StarCitizen.decoder(Direction::ClientToServer, &Context::default());
    let mut buf = ((MAX_PAYLOAD + 1) as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(&[0xef, 0xbe, 0xad, 0xde, 0x0a, 0x00]);
    match dec.frame(&buf) {
        Framing::Unframeable { skip, reason } => {
            assert!(skip >= 1);
            assert!(reason.contains("16 MiB"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // At the maximum it is only waiting for the bytes.
    let mut buf = (MAX_PAYLOAD as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(&[0xef, 0xbe, 0xad, 0xde]);
    assert_eq!(dec.frame(&buf), Framing::NeedMore(Some(MAX_PAYLOAD + 8)));
}

fn run(chunks: &[Vec<u8>], ctx: &Context) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50639".parse().unwrap(),
        "127.0.0.1:8000".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (i, chunk) in chunks.iter().enumerate() {
        data.append(NewPacket::new(
            c,
            Direction::ClientToServer,
            Timestamp(i as i64),
            chunk.clone(),
        ))
        .unwrap();
    }
    decode_connection(&StarCitizen, ctx, data.packets_of(c))
}

#[test]
fn resync_after_garbage() {
    let mut stream = heartbeat(1);
    stream.extend_from_slice(b"\x00\x01garbage bytes\xff");
    stream.extend_from_slice(&heartbeat(2));
    let out = run(&[stream], &schema_ctx());
    let labels: Vec<_> = out.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, ["heartbeat", "undecodable", "heartbeat"]);
    assert_eq!(out[1].bytes, b"\x00\x01garbage bytes\xff");
    assert_eq!(
        out[2]
            .message
            .tree
            .find(&["payload", "sequence"])
            .unwrap()
            .value,
        Value::UInt(2)
    );
}

#[test]
fn truncated_frame_at_the_end_is_reported() {
    let hb = heartbeat(1);
    let out = run(&[hb.clone(), hb[..10].to_vec()], &Context::default());
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].message.label, "undecodable");
    assert!(out[1].message.is_error());
}

#[test]
fn malformed_payloads_and_short_messages_are_error_nodes() {
    let mut dec = StarCitizen.decoder(Direction::ClientToServer, &schema_ctx());
    // Payload with a length running past the end.
    let msg = dec.decode(&frame(&[0x0a, 0x09, b'h']));
    assert!(msg.is_error());
    let bad = &msg.tree.child("payload").unwrap().children[0];
    assert_eq!(bad.range, 8..11);
    assert_eq!(msg.label, "diffusion");
    // Shorter than a header, wrong magic, inconsistent length (decode called directly).
    assert!(dec.decode(&[1, 2, 3]).is_error());
    let mut wrong = heartbeat(1);
    wrong[5] = 0;
    assert!(
        dec.decode(&wrong)
            .tree
            .child("magic")
            .unwrap()
            .error()
            .is_some()
    );
    let mut long = heartbeat(1);
    long[0] += 1;
    assert!(
        dec.decode(&long)
            .tree
            .child("length")
            .unwrap()
            .error()
            .is_some()
    );
    // Invalid UTF-8 in a typed string field.
    let msg = dec.decode(&frame(&[0x0a, 0x02, 0xff, 0xfe]));
    assert!(msg.is_error());
}

#[test]
fn edits_recompute_the_length() {
    let (_, out) = decode_sample(&schema_ctx());
    let mut tree = out[7].message.tree.clone();
    let session = tree.find_mut(&["payload", "session_id"]).unwrap();
    session.value = Value::Text("sc_session_1754607242_9f3a1c7e_and_a_much_longer_tail".into());
    let bytes = StarCitizen.encode(&tree).unwrap();
    let mut dec = StarCitizen.decoder(Direction::ServerToClient, &schema_ctx());
    assert_eq!(dec.frame(&bytes), Framing::Complete(bytes.len()));
    let again = dec.decode(&bytes);
    assert!(!again.is_error());
    assert_eq!(
        again.tree.child("length").unwrap().value,
        Value::UInt(bytes.len() as u64 - 8)
    );
    assert_eq!(
        again.tree.find(&["payload", "session_id"]).unwrap().value,
        Value::Text("sc_session_1754607242_9f3a1c7e_and_a_much_longer_tail".into())
    );
    assert!(StarCitizen.encode(&Node::group("diffusion", 0..0)).is_err());
}

#[test]
fn detect_and_ports() {
    assert!(StarCitizen.detect(&heartbeat(1), Direction::ClientToServer));
    assert!(!StarCitizen.detect(b"GET / HTTP/1.1\r\n", Direction::ClientToServer));
    assert!(!StarCitizen.detect(&heartbeat(1)[..6], Direction::ClientToServer));
    assert_eq!(StarCitizen.default_ports(), &[8000, 8001]);
    assert_eq!(StarCitizen.name(), "sc");
}

fn sample_stream() -> Vec<u8> {
    let data = sample();
    data.packets()
        .filter(|p| p.direction == Direction::ClientToServer)
        .flat_map(|p| p.data.to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_chunking_gives_the_same_messages(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let stream = sample_stream();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
        at.sort_unstable();
        at.dedup();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for a in at.into_iter().chain([stream.len()]) {
            chunks.push(stream[prev..a].to_vec());
            prev = a;
        }
        let out = run(&chunks, &Context::default());
        let labels: Vec<_> = out.iter().map(|d| d.message.label.clone()).collect();
        prop_assert_eq!(labels, ["diff.service.online", "cmsg_ls_req_dests", "cmsg_set_region_id", "heartbeat", "heartbeat", "heartbeat"]);
        prop_assert!(out.iter().all(|d| !d.message.is_error()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..8), magic_at in any::<prop::sample::Index>()) {
        let mut chunks = chunks;
        // Often put a real header in, so framing gets past the magic check.
        if let Some(c) = chunks.first_mut() {
            let i = magic_at.index(c.len() + 1);
            c.splice(i..i, [3, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
        }
        let total: usize = chunks.iter().map(Vec::len).sum();
        for ctx in [Context::default(), schema_ctx()] {
            let out = run(&chunks, &ctx);
            prop_assert_eq!(out.iter().map(|d| d.bytes.len()).sum::<usize>(), total);
            for d in &out {
                prop_assert_eq!(d.message.tree.range.clone(), 0..d.bytes.len());
                if !d.message.is_error() {
                    prop_assert_eq!(StarCitizen.encode(&d.message.tree).unwrap(), d.bytes.clone());
                }
            }
        }
    }

    #[test]
    fn frames_of_arbitrary_payload_round_trip(name in "[a-z_.]{1,30}", seq in any::<u64>(), extra in "\\PC{0,200}") {
        let mut p = vec![0x0a, name.len() as u8];
        p.extend_from_slice(name.as_bytes());
        p.push(0x10);
        let mut v = seq;
        while v >= 0x80 { p.push((v as u8) | 0x80); v >>= 7; }
        p.push(v as u8);
        p.push(0x1a);
        let mut l = extra.len();
        while l >= 0x80 { p.push((l as u8) | 0x80); l >>= 7; }
        p.push(l as u8);
        p.extend_from_slice(extra.as_bytes());
        let f = frame(&p);
        for ctx in [Context::default(), schema_ctx()] {
            let mut dec = StarCitizen.decoder(Direction::ClientToServer, &ctx);
            prop_assert_eq!(dec.frame(&f), Framing::Complete(f.len()));
            let msg = dec.decode(&f);
            prop_assert_eq!(msg.label.as_str(), name.as_str());
            prop_assert_eq!(StarCitizen.encode(&msg.tree).unwrap(), f.clone());
        }
    }
}

#[test]
fn the_codec_frames_parses_and_writes_what_the_dissector_reads() {
    use gamewire::dissect::sc::{self, FrameError, MAGIC, pb};
    use prost::Message as _;
    let hb = pb::diffusion::Heartbeat {
        message_name: "heartbeat".into(),
        sequence: 7,
    };
    let bytes = sc::write_message(&hb);
    assert_eq!(bytes, frame(&hb.encode_to_vec()));
    assert_eq!(sc::frame(&bytes), Framing::Complete(bytes.len()));
    let payload = sc::parse_frame(&bytes).unwrap();
    assert_eq!(sc::message_name(payload), Some("heartbeat"));
    assert_eq!(sc::write_frame(payload), bytes);

    assert_eq!(sc::parse_frame(&bytes[..5]), Err(FrameError::Short));
    let mut bad = bytes.clone();
    bad[4] = 0;
    assert_eq!(sc::parse_frame(&bad), Err(FrameError::Magic));
    let mut long = bytes.clone();
    long.push(0);
    let (declared, actual) = (payload.len(), payload.len() + 1);
    assert_eq!(
        sc::parse_frame(&long),
        Err(FrameError::Length { declared, actual })
    );

    // A server's smaller limit refuses what the dissector would wait for.
    let limit = 1024 * 1024;
    let mut big = ((limit + 1) as u32).to_le_bytes().to_vec();
    big.extend_from_slice(&MAGIC);
    match sc::frame_within(&big, limit) {
        Framing::Unframeable { reason, .. } => assert!(reason.contains("1 MiB"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sc::frame(&big), Framing::NeedMore(Some(limit + 1 + 8)));
}
