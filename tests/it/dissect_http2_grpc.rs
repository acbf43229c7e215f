//! HTTP/2 (cleartext, HPACK) and gRPC dissectors, on traffic built here frame by frame with
//! loona-hpack's encoder: a gRPC unary call with trailers, dynamic-table reuse, CONTINUATION,
//! padding, DATA split over packets, gzip messages, RST_STREAM, and the malformed cases.

use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::dissect::grpc::{self, Grpc};
use gamewire::dissect::http2::{self, Http2, PREFACE};
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{Context, Dissector, EncodeError, Framing, Node, Value};
use proptest::prelude::*;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;
const LOGIN_PATH: &str = "/sc.external.services.login.v1.LoginService/InitiateLogin";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(http2::SETTINGS, 0, 0, &p)
}

fn grpc_msg(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn hpack(enc: &mut loona_hpack::Encoder<'_>, headers: &[(&str, &str)]) -> Vec<u8> {
    enc.encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn request_headers(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1:5678"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "grpc-c++/1.62"),
        ("grpc-accept-encoding", "identity,deflate,gzip"),
        ("x-client-version", "sc-alpha-4.2"),
    ]
}

/// InitiateLoginRequest{session_id: "abc", version: {base_cl: 1, shelf_cl: 2}}.
const LOGIN_REQ: &[u8] = b"\x0a\x03abc\x12\x04\x08\x01\x10\x02";
/// InitiateLoginResponse{account_id: 42, nickname: "Pilot"}.
const LOGIN_RESP: &[u8] = b"\x08\x2a\x12\x05Pilot";

/// The packets of a gRPC unary call: preface + SETTINGS, request HEADERS + DATA, the
/// server's SETTINGS, response HEADERS, DATA and trailers.
fn unary_call() -> Vec<(Direction, Vec<u8>)> {
    let mut cenc = loona_hpack::Encoder::new();
    let mut senc = loona_hpack::Encoder::new();
    let mut client_hello = PREFACE.to_vec();
    client_hello.extend(settings(&[(2, 0), (4, 4_194_304)]));
    let req = hpack(&mut cenc, &request_headers(LOGIN_PATH));
    let mut request = frame(http2::HEADERS, http2::FLAG_END_HEADERS, 1, &req);
    request.extend(frame(
        http2::DATA,
        http2::FLAG_END_STREAM,
        1,
        &grpc_msg(0, LOGIN_REQ),
    ));
    let resp = hpack(
        &mut senc,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    let trailers = hpack(&mut senc, &[("grpc-status", "0"), ("grpc-message", "")]);
    let mut response = frame(http2::HEADERS, http2::FLAG_END_HEADERS, 1, &resp);
    response.extend(frame(http2::DATA, 0, 1, &grpc_msg(0, LOGIN_RESP)));
    response.extend(frame(
        http2::HEADERS,
        http2::FLAG_END_HEADERS | http2::FLAG_END_STREAM,
        1,
        &trailers,
    ));
    vec![
        (C2S, client_hello),
        (S2C, settings(&[(3, 100)])),
        (C2S, frame(http2::SETTINGS, http2::FLAG_ACK, 0, &[])),
        (C2S, request),
        (S2C, response),
    ]
}

fn run_with(d: &dyn Dissector, ctx: &Context, packets: &[(Direction, Vec<u8>)]) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:5678".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (dir, bytes) in packets {
        data.append(NewPacket::new(c, *dir, Timestamp(0), bytes.clone()))
            .unwrap();
    }
    decode_connection(d, ctx, data.packets_of(c))
}

fn run(packets: &[(Direction, Vec<u8>)]) -> Vec<Decoded> {
    run_with(&Http2, &Context::default(), packets)
}

fn labels(out: &[Decoded]) -> Vec<&str> {
    out.iter().map(|d| d.message.label.as_str()).collect()
}

fn text<'a>(n: &'a Node, path: &[&str]) -> &'a str {
    n.find(path)
        .and_then(|n| n.value.as_text())
        .unwrap_or_else(|| panic!("no text at {path:?}"))
}

fn uint(n: &Node, path: &[&str]) -> u64 {
    n.find(path)
        .and_then(|n| n.value.as_u64())
        .unwrap_or_else(|| panic!("no number at {path:?}"))
}

fn range(n: &Node, path: &[&str]) -> std::ops::Range<usize> {
    n.find(path)
        .unwrap_or_else(|| panic!("no node at {path:?}"))
        .range
        .clone()
}

/// Every node's range lies inside its parent's and inside the message.
fn assert_ranges_nested(n: &Node, len: usize) {
    assert!(n.range.start <= n.range.end && n.range.end <= len, "{n:?}");
    for c in &n.children {
        assert!(
            c.range.start >= n.range.start && c.range.end <= n.range.end,
            "{} {:?} outside {} {:?}",
            c.name,
            c.range,
            n.name,
            n.range
        );
        assert_ranges_nested(c, len);
    }
}

fn assert_all_well_formed(out: &[Decoded]) {
    for d in out {
        assert_ranges_nested(&d.message.tree, d.bytes.len());
        assert_eq!(d.message.tree.range, 0..d.bytes.len());
        for b in &d.message.derived {
            assert_ranges_nested(&b.tree, b.bytes.len());
        }
    }
}

#[test]
fn detect_takes_the_client_preface_only() {
    assert!(Http2.detect(PREFACE, C2S));
    assert!(Http2.detect(&PREFACE[..10], C2S));
    assert!(!Http2.detect(PREFACE, S2C));
    assert!(!Http2.detect(b"GET / HTTP/1.1\r\n", C2S));
    assert!(!Http2.detect(b"PRI", C2S));
    assert_eq!(Http2.name(), "h2");
    assert_eq!(Grpc.name(), "grpc");
}

#[test]
fn preface_and_settings_frames() {
    let out = run(&unary_call());
    assert_eq!(
        &labels(&out)[..4],
        &["h2 preface", "SETTINGS", "SETTINGS", "SETTINGS ACK"]
    );
    let preface = &out[0];
    assert_eq!(preface.bytes, PREFACE);
    assert_eq!(preface.message.tree.name, "h2 preface");
    let s = &out[1].message.tree;
    assert_eq!(out[1].offset, 24);
    assert_eq!(range(s, &["header"]), 0..9);
    assert_eq!(uint(s, &["header", "length"]), 12);
    assert_eq!(range(s, &["header", "length"]), 0..3);
    let ty = s.find(&["header", "type"]).unwrap();
    assert_eq!(
        (ty.value.as_u64(), ty.display()),
        (Some(4), Some("SETTINGS"))
    );
    assert_eq!(range(s, &["header", "flags"]), 4..5);
    assert_eq!(range(s, &["header", "stream"]), 5..9);
    assert_eq!(uint(s, &["ENABLE_PUSH"]), 0);
    assert_eq!(range(s, &["ENABLE_PUSH"]), 9..15);
    assert_eq!(uint(s, &["INITIAL_WINDOW_SIZE"]), 4_194_304);
    assert_eq!(s.find(&["INITIAL_WINDOW_SIZE"]).unwrap().tag, Some(4));
    assert_eq!(range(s, &["INITIAL_WINDOW_SIZE"]), 15..21);
    assert!(!out.iter().any(|d| d.message.is_error()), "{out:#?}");
    assert_all_well_formed(&out);
}

#[test]
fn grpc_unary_call_with_trailers() {
    let out = run(&unary_call());
    assert_eq!(
        &labels(&out)[4..],
        &[
            format!("HEADERS s1 POST {LOGIN_PATH}").as_str(),
            "DATA s1 (16 B)",
            "HEADERS s1 200",
            "DATA s1 (14 B)",
            "HEADERS s1 grpc-status 0 OK",
        ]
    );
    let req = &out[4].message;
    let block = req.tree.find(&["header block"]).unwrap();
    assert_eq!(block.range, 9..out[4].bytes.len());
    assert_eq!(text(block, &[":path"]), LOGIN_PATH);
    assert_eq!(text(block, &["content-type"]), "application/grpc");
    assert!(
        block
            .children
            .iter()
            .all(|c| c.derived && c.range == block.range)
    );
    let flags = req.tree.find(&["header", "flags"]).unwrap();
    assert_eq!(flags.display(), Some("END_HEADERS"));

    // The request DATA: the frame's data range, and the message in a derived buffer.
    let data = &out[5];
    assert_eq!(range(&data.message.tree, &["data"]), 9..25);
    assert_eq!(
        data.message
            .tree
            .find(&["header", "flags"])
            .unwrap()
            .display(),
        Some("END_STREAM")
    );
    let d = &data.message.derived;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name, "stream 1 gRPC message 1");
    assert_eq!(d[0].bytes, grpc_msg(0, LOGIN_REQ));
    assert_eq!(d[0].tree.display(), Some(LOGIN_PATH));
    let m = d[0].tree.child("message 1").unwrap();
    assert_eq!(m.range, 0..16);
    assert_eq!(uint(m, &["compressed"]), 0);
    assert_eq!((uint(m, &["length"]), range(m, &["length"])), (11, 1..5));
    assert_eq!(range(m, &["payload"]), 5..16);
    // Schemaless: field 1 is the session id string, field 2 the version message.
    assert_eq!(text(m, &["payload", "1"]), "abc");
    assert_eq!(range(m, &["payload", "1"]), 5..10);
    assert_eq!(range(m, &["payload", "2"]), 10..16);

    let resp = &out[7].message;
    assert_eq!(resp.derived[0].name, "stream 1 gRPC message 1");
    let m = resp.derived[0].tree.child("message 1").unwrap();
    assert_eq!(uint(m, &["payload", "1"]), 42);

    let trailers = &out[8].message;
    let status = trailers
        .tree
        .find(&["header block", "grpc-status"])
        .unwrap();
    assert_eq!(status.value, Value::Text("0".into()));
    assert_eq!(status.display(), Some("0 (OK)"));
    assert!(!out.iter().any(|d| d.message.is_error()), "{out:#?}");
    assert_all_well_formed(&out);
}

#[test]
fn grpc_error_status_is_marked_in_the_label() {
    let mut senc = loona_hpack::Encoder::new();
    let block = hpack(
        &mut senc,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20user"),
        ],
    );
    let out = run(&[(
        S2C,
        frame(
            http2::HEADERS,
            http2::FLAG_END_HEADERS | http2::FLAG_END_STREAM,
            3,
            &block,
        ),
    )]);
    assert_eq!(
        labels(&out),
        ["HEADERS s3 200 grpc error 5 NOT_FOUND: no such user"]
    );
    let msg = out[0]
        .message
        .tree
        .find(&["header block", "grpc-message"])
        .unwrap();
    assert_eq!(msg.display(), Some("\"no such user\""));
}

#[test]
fn hpack_dynamic_table_is_kept_across_requests() {
    let mut cenc = loona_hpack::Encoder::new();
    let first = hpack(&mut cenc, &request_headers(LOGIN_PATH));
    let second = hpack(&mut cenc, &request_headers(LOGIN_PATH));
    // The second block refers to the dynamic table entries the first one added (indices
    // 62 and up: te, grpc-accept-encoding, x-client-version).
    assert!(second.len() + 40 < first.len(), "{second:?}");
    assert_eq!(second.iter().filter(|&&b| b >= 0x80 | 62).count(), 3);
    let mut c = PREFACE.to_vec();
    c.extend(settings(&[]));
    c.extend(frame(http2::HEADERS, http2::FLAG_END_HEADERS, 1, &first));
    c.extend(frame(http2::HEADERS, http2::FLAG_END_HEADERS, 3, &second));
    let out = run(&[(C2S, c)]);
    assert_eq!(
        &labels(&out)[2..],
        &[
            format!("HEADERS s1 POST {LOGIN_PATH}").as_str(),
            format!("HEADERS s3 POST {LOGIN_PATH}").as_str()
        ]
    );
    let two = &out[3].message.tree;
    assert_eq!(text(two, &["header block", "user-agent"]), "grpc-c++/1.62");
    assert_eq!(text(two, &["header block", ":authority"]), "127.0.0.1:5678");
    assert_eq!(
        text(two, &["header block", "x-client-version"]),
        "sc-alpha-4.2"
    );
    assert_eq!(
        text(two, &["header block", "grpc-accept-encoding"]),
        "identity,deflate,gzip"
    );
    assert_eq!(range(two, &["header block"]), 9..9 + second.len());
    assert!(!two.has_error());
}

#[test]
fn header_block_over_continuation_frames() {
    let mut cenc = loona_hpack::Encoder::new();
    let block = hpack(&mut cenc, &request_headers(LOGIN_PATH));
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(20);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(settings(&[]));
    bytes.extend(frame(http2::HEADERS, 0, 1, a));
    bytes.extend(frame(http2::CONTINUATION, 0, 1, b));
    bytes.extend(frame(http2::CONTINUATION, http2::FLAG_END_HEADERS, 1, c));
    let out = run(&[(C2S, bytes)]);
    assert_eq!(
        &labels(&out)[2..],
        &[
            "HEADERS s1 (continued)",
            "CONTINUATION s1 (continued)",
            format!("CONTINUATION s1 POST {LOGIN_PATH}").as_str(),
        ]
    );
    let last = &out[4].message;
    let node = last.tree.find(&["header block"]).unwrap();
    assert_eq!(node.range, 9..9 + c.len());
    assert_eq!(
        node.display(),
        Some(format!("{} B block collected from 3 frames", block.len()).as_str())
    );
    assert_eq!(text(node, &[":path"]), LOGIN_PATH);
    assert_eq!(last.derived[0].name, "stream 1 header block");
    assert_eq!(last.derived[0].bytes, block);
    assert_eq!(text(&last.derived[0].tree, &["te"]), "trailers");
    assert!(!out.iter().any(|d| d.message.is_error()));
    assert_all_well_formed(&out);

    // A frame of another type in the middle loses the block, and later blocks say so.
    let mut bad = PREFACE.to_vec();
    bad.extend(settings(&[]));
    bad.extend(frame(http2::HEADERS, 0, 1, a));
    bad.extend(frame(http2::PING, 0, 0, &[0; 8]));
    bad.extend(frame(http2::HEADERS, http2::FLAG_END_HEADERS, 3, &[0x82]));
    let out = run(&[(C2S, bad)]);
    assert!(
        out[3]
            .message
            .tree
            .child("continuation")
            .unwrap()
            .error()
            .is_some()
    );
    let later = out[4]
        .message
        .tree
        .find(&["header block", "hpack table"])
        .unwrap();
    assert!(later.error().unwrap().contains("out of sync"));
    // A CONTINUATION with nothing to continue.
    let out = run(&[(S2C, frame(http2::CONTINUATION, 4, 1, b"\x88"))]);
    assert!(
        out[0]
            .message
            .tree
            .child("header block")
            .unwrap()
            .error()
            .is_some()
    );
}

#[test]
fn padded_data_ranges_and_round_trip() {
    let mut payload = vec![4u8];
    payload.extend_from_slice(b"hello");
    payload.extend_from_slice(&[0; 4]);
    let bytes = frame(http2::DATA, http2::FLAG_PADDED, 5, &payload);
    let out = run(&[(S2C, bytes.clone())]);
    let t = &out[0].message.tree;
    assert_eq!(out[0].message.label, "DATA s5 (5 B)");
    assert_eq!(
        t.find(&["header", "flags"]).unwrap().display(),
        Some("PADDED")
    );
    assert_eq!(
        (uint(t, &["pad length"]), range(t, &["pad length"])),
        (4, 9..10)
    );
    assert_eq!(range(t, &["data"]), 10..15);
    assert_eq!(range(t, &["padding"]), 15..19);
    assert_eq!(
        t.deepest_at(12).map(|p| t.children[p[0]].name.to_string()),
        Some("data".into())
    );
    assert_eq!(Http2.encode(t).unwrap(), bytes);

    // Pad length beyond the payload.
    let out = run(&[(S2C, frame(http2::DATA, http2::FLAG_PADDED, 5, &[9, 1, 2]))]);
    assert!(
        out[0]
            .message
            .tree
            .child("pad length")
            .unwrap()
            .error()
            .is_some()
    );
    // PADDED without even the pad length byte.
    let out = run(&[(S2C, frame(http2::HEADERS, 0x0c, 5, &[]))]);
    assert!(out[0].message.is_error());
}

fn chunked(packets: &[(Direction, Vec<u8>)], size: usize) -> Vec<(Direction, Vec<u8>)> {
    packets
        .iter()
        .flat_map(|(d, b)| b.chunks(size).map(move |c| (*d, c.to_vec())))
        .collect()
}

#[test]
fn data_split_across_packets_decodes_the_same() {
    let whole = run(&unary_call());
    for size in [1, 3, 7, 10, 64] {
        let out = run(&chunked(&unary_call(), size));
        assert_eq!(labels(&out), labels(&whole), "chunk size {size}");
        for (a, b) in out.iter().zip(&whole) {
            assert_eq!(a.message, b.message);
        }
    }
    // A gRPC message split over two DATA frames is emitted on the second.
    let msg = grpc_msg(0, b"\x08\x01\x12\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let (a, b) = msg.split_at(9);
    let mut cenc = loona_hpack::Encoder::new();
    let mut c = frame(
        http2::HEADERS,
        4,
        1,
        &hpack(&mut cenc, &request_headers("/x.Y/Z")),
    );
    c.extend(frame(http2::DATA, 0, 1, a));
    c.extend(frame(http2::DATA, 1, 1, b));
    let out = run(&[(C2S, c)]);
    assert!(out[1].message.derived.is_empty());
    assert_eq!(out[2].message.derived[0].bytes, msg);
    assert_eq!(
        text(
            &out[2].message.derived[0].tree,
            &["message 1", "payload", "2"]
        ),
        "a".repeat(32)
    );
}

#[test]
fn gzip_compressed_grpc_message() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(LOGIN_RESP).unwrap();
    let compressed = gz.finish().unwrap();
    let mut senc = loona_hpack::Encoder::new();
    let mut s = frame(
        http2::HEADERS,
        4,
        1,
        &hpack(
            &mut senc,
            &[
                (":status", "200"),
                ("content-type", "application/grpc+proto"),
                ("grpc-encoding", "gzip"),
            ],
        ),
    );
    s.extend(frame(http2::DATA, 0, 1, &grpc_msg(1, &compressed)));
    let out = run(&[(S2C, s)]);
    let derived = &out[1].message.derived;
    assert_eq!(derived.len(), 2);
    let m = derived[0].tree.child("message 1").unwrap();
    assert_eq!(m.child("compressed").unwrap().display(), Some("yes (gzip)"));
    let payload = m.child("payload").unwrap();
    assert_eq!(payload.value, Value::Bytes(compressed.clone().into()));
    assert_eq!(payload.range, 5..5 + compressed.len());
    assert_eq!(
        derived[1].name,
        "stream 1 message 1 payload (gzip-decompressed)"
    );
    assert_eq!(derived[1].bytes, LOGIN_RESP);
    assert_eq!(uint(&derived[1].tree, &["1"]), 42);
    assert_eq!(text(&derived[1].tree, &["2"]), "Pilot");
    assert_eq!(range(&derived[1].tree, &["2"]), 2..9);
    assert!(!out[1].message.is_error());

    // Corrupt gzip: an error on the payload, no derived buffer.
    let body = grpc_msg(1, b"\x1f\x8bnot gzip at all");
    let opts = grpc::Options {
        encoding: Some("gzip"),
        ..Default::default()
    };
    let b = grpc::decode_messages(&body, &opts, &Context::default());
    assert!(b.nodes[0].child("payload").unwrap().error().is_some());
    assert!(b.derived.is_empty());
}

#[test]
fn rst_stream_cancels_and_drops_the_stream() {
    let mut cenc = loona_hpack::Encoder::new();
    let mut c = frame(
        http2::HEADERS,
        4,
        3,
        &hpack(&mut cenc, &request_headers("/x.Y/Z")),
    );
    c.extend(frame(http2::DATA, 0, 3, &[0, 0, 0, 0, 10, 1, 2]));
    c.extend(frame(http2::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    let out = run(&[(C2S, c)]);
    assert_eq!(labels(&out)[2], "RST_STREAM s3 CANCEL");
    let t = &out[2].message.tree;
    let code = t.child("error code").unwrap();
    assert_eq!(
        (code.value.as_u64(), code.display()),
        (Some(8), Some("CANCEL"))
    );
    assert_eq!(code.range, 9..13);
    assert_eq!(uint(t, &["discarded body bytes"]), 7);
    assert!(!out[2].message.is_error());
    assert_eq!(
        Http2.encode(t).unwrap(),
        frame(http2::RST_STREAM, 0, 3, &8u32.to_be_bytes())
    );
    // RST_STREAM on stream 0, and with a short payload.
    let out = run(&[(S2C, frame(http2::RST_STREAM, 0, 0, &[0, 0]))]);
    assert!(
        out[0]
            .message
            .tree
            .find(&["header", "stream"])
            .unwrap()
            .error()
            .is_some()
    );
    assert!(
        out[0]
            .message
            .tree
            .child("payload")
            .unwrap()
            .error()
            .is_some()
    );
}

#[test]
fn control_frames_are_named() {
    let mut goaway = 7u32.to_be_bytes().to_vec();
    goaway.extend(1u32.to_be_bytes());
    goaway.extend(b"bye");
    let out = run(&[(
        S2C,
        [
            frame(http2::GOAWAY, 0, 0, &goaway),
            frame(http2::PING, 1, 0, b"12345678"),
            frame(http2::WINDOW_UPDATE, 0, 0, &65_535u32.to_be_bytes()),
            frame(http2::WINDOW_UPDATE, 0, 1, &0x8000_0010u32.to_be_bytes()),
            frame(http2::PRIORITY, 0, 3, &[0x80, 0, 0, 1, 15]),
            frame(0x0a, 0, 0, b"alt"),
        ]
        .concat(),
    )]);
    assert_eq!(
        labels(&out),
        [
            "GOAWAY PROTOCOL_ERROR",
            "PING ACK",
            "WINDOW_UPDATE",
            "WINDOW_UPDATE s1",
            "PRIORITY s3",
            "ALTSVC"
        ]
    );
    let g = &out[0].message.tree;
    assert_eq!(
        (uint(g, &["last stream"]), range(g, &["last stream"])),
        (7, 9..13)
    );
    assert_eq!(
        g.child("error code").unwrap().display(),
        Some("PROTOCOL_ERROR")
    );
    assert_eq!(g.child("debug data").unwrap().display(), Some("\"bye\""));
    assert_eq!(range(g, &["debug data"]), 17..20);
    assert_eq!(range(&out[1].message.tree, &["opaque data"]), 9..17);
    assert_eq!(uint(&out[2].message.tree, &["increment"]), 65_535);
    let w = &out[3].message.tree;
    assert_eq!(uint(w, &["increment"]), 16);
    assert_eq!(
        w.find(&["increment", "reserved"]).unwrap().value,
        Value::Bool(true)
    );
    let p = &out[4].message.tree;
    assert_eq!(p.child("exclusive").unwrap().value, Value::Bool(true));
    assert_eq!(uint(p, &["stream dependency"]), 1);
    assert_eq!(
        p.child("weight").unwrap().display(),
        Some("15 (effective 16)")
    );
    for d in &out {
        assert!(!d.message.is_error(), "{:?}", d.message);
        assert_eq!(
            Http2.encode(&d.message.tree).unwrap(),
            d.bytes,
            "{}",
            d.message.label
        );
    }
    // Malformed control frames.
    let out = run(&[(
        S2C,
        [
            frame(http2::PING, 0, 1, b"1234"),
            frame(http2::SETTINGS, 1, 0, b"\0\0\0\0\0\0"),
            frame(http2::SETTINGS, 0, 0, b"\0\x01\0\0\0"),
            frame(http2::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]),
            frame(http2::GOAWAY, 0, 0, &[0, 0, 0]),
        ]
        .concat(),
    )]);
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|d| d.message.is_error()), "{out:#?}");
}

#[test]
fn encode_recomputes_lengths_and_refuses_header_blocks() {
    let bytes = frame(http2::DATA, http2::FLAG_END_STREAM, 1, b"abc");
    let mut tree = run(&[(S2C, bytes)])[0].message.tree.clone();
    tree.child_mut("data").unwrap().value = Value::Bytes(b"longer body".as_slice().into());
    let encoded = Http2.encode(&tree).unwrap();
    assert_eq!(encoded, frame(http2::DATA, 1, 1, b"longer body"));
    let again = run(&[(S2C, encoded)]);
    assert_eq!(uint(&again[0].message.tree, &["header", "length"]), 11);

    let bytes = settings(&[(5, 16_384)]);
    let mut tree = run(&[(S2C, bytes)])[0].message.tree.clone();
    tree.child_mut("MAX_FRAME_SIZE").unwrap().value = Value::UInt(65_536);
    assert_eq!(Grpc.encode(&tree).unwrap(), settings(&[(5, 65_536)]));
    tree.child_mut("MAX_FRAME_SIZE").unwrap().value = Value::UInt(1 << 40);
    assert!(matches!(
        Http2.encode(&tree),
        Err(EncodeError::BadField { .. })
    ));

    let out = run(&unary_call());
    assert_eq!(Http2.encode(&out[0].message.tree).unwrap(), PREFACE);
    assert_eq!(
        Http2.encode(&out[4].message.tree),
        Err(EncodeError::NotEditable("HTTP/2 header-block"))
    );
}

#[test]
fn oversized_and_garbage_frames_are_unframeable() {
    let mut d = Http2.decoder(S2C, &Context::default());
    // A PING claiming 1 MiB, an unknown type claiming 64 KiB: garbage, not waited for.
    let ping = [0x10, 0, 0, http2::PING, 0, 0, 0, 0, 0];
    assert!(matches!(
        d.frame(&ping),
        Framing::Unframeable { skip: 9, .. }
    ));
    let unknown = [0x01, 0, 0, 0x42, 0, 0, 0, 0, 0, 1, 2];
    assert!(matches!(
        d.frame(&unknown),
        Framing::Unframeable { skip: 11, .. }
    ));
    // DATA may be as long as 2^24 - 1 bytes: the decoder asks for exactly that, no more.
    let big = [0xff, 0xff, 0xff, http2::DATA, 0, 0, 0, 0, 1];
    assert_eq!(d.frame(&big), Framing::NeedMore(Some(9 + 0xff_ffff)));
    assert_eq!(d.frame(&big[..4]), Framing::NeedMore(Some(9)));
    // Through the driver: the partial frame is reported at the end of the capture.
    let out = run(&[(S2C, [&big[..], b"only a little"].concat())]);
    assert_eq!(labels(&out), ["undecodable"]);
    assert!(out[0].message.tree.error().unwrap().contains("incomplete"));

    let out = run(&[
        (S2C, ping.to_vec()),
        (S2C, frame(http2::PING, 0, 0, &[7; 8])),
    ]);
    assert_eq!(labels(&out), ["undecodable", "PING"]);
    assert!(
        out[0]
            .message
            .tree
            .error()
            .unwrap()
            .contains("implausible length")
    );
}

#[test]
fn garbage_after_the_preface() {
    let mut c = PREFACE.to_vec();
    c.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = run(&[(C2S, c), (C2S, frame(http2::PING, 0, 0, &[1; 8]))]);
    assert_eq!(labels(&out), ["h2 preface", "undecodable", "PING"]);
    assert!(out[1].message.tree.error().unwrap().contains("SETTINGS"));
    assert_eq!(out[1].bytes.len(), 27);
    // A short mismatch that is not the preface: framed as frames (mid-connection capture).
    let out = run(&[(C2S, frame(http2::PING, 0, 0, &[1; 8]))]);
    assert_eq!(labels(&out), ["PING"]);
    // A partial preface waits for the rest.
    let mut d = Http2.decoder(C2S, &Context::default());
    assert_eq!(d.frame(&PREFACE[..5]), Framing::NeedMore(Some(24)));
}

#[test]
fn truncated_header_block_is_an_error_and_poisons_later_blocks() {
    let mut cenc = loona_hpack::Encoder::new();
    let block = hpack(&mut cenc, &request_headers(LOGIN_PATH));
    let truncated = &block[..block.len() - 3];
    let mut c = PREFACE.to_vec();
    c.extend(settings(&[]));
    c.extend(frame(http2::HEADERS, 4, 1, truncated));
    c.extend(frame(http2::HEADERS, 4, 3, &[0x83, 0x86, 0x84]));
    let out = run(&[(C2S, c)]);
    let first = &out[2].message;
    assert!(first.label.ends_with("(HPACK error)"), "{}", first.label);
    let err = first.tree.find(&["header block", "hpack error"]).unwrap();
    assert!(err.error().unwrap().contains("truncated"), "{err:?}");
    // The headers before the cut are still shown.
    assert_eq!(text(&first.tree, &["header block", ":method"]), "POST");
    let second = &out[3].message;
    assert_eq!(second.label, "HEADERS s3 POST /");
    let note = second.tree.find(&["header block", "hpack table"]).unwrap();
    assert!(note.error().unwrap().contains("out of sync"));
}

#[test]
fn hpack_index_out_of_range() {
    // Index 70 with an empty dynamic table (61 static entries).
    let out = run(&[(S2C, frame(http2::HEADERS, 4, 1, &[0x88, 0x80 | 70]))]);
    let m = &out[0].message;
    let err = m.tree.find(&["header block", "hpack error"]).unwrap();
    assert_eq!(
        err.error(),
        Some("HPACK decoding failed: header table index out of range")
    );
    assert_eq!(text(&m.tree, &["header block", ":status"]), "200");
    assert_eq!(m.label, "HEADERS s1 200 (HPACK error)");
}

#[test]
fn json_body_of_a_plain_request() {
    let mut cenc = loona_hpack::Encoder::new();
    let mut c = frame(
        http2::HEADERS,
        4,
        1,
        &hpack(
            &mut cenc,
            &[
                (":method", "POST"),
                (":path", "/verify"),
                ("content-type", "application/json"),
            ],
        ),
    );
    c.extend(frame(http2::DATA, 0, 1, b"{\"token\":"));
    c.extend(frame(http2::DATA, 1, 1, b"\"abc\"}"));
    let out = run(&[(C2S, c)]);
    assert_eq!(
        labels(&out),
        ["HEADERS s1 POST /verify", "DATA s1 (9 B)", "DATA s1 (6 B)"]
    );
    assert!(out[1].message.derived.is_empty());
    let body = &out[2].message.derived[0];
    assert_eq!(body.name, "stream 1 body");
    assert_eq!(body.bytes, b"{\"token\":\"abc\"}");
    assert_eq!(text(&body.tree, &["token"]), "abc");
}

#[test]
fn decode_as_grpc_decodes_bodies_without_content_type() {
    // A capture that starts mid-connection: no preface, no request headers seen.
    let packets = vec![(C2S, frame(http2::DATA, 1, 7, &grpc_msg(0, LOGIN_REQ)))];
    let h2 = run(&packets);
    assert_eq!(h2[0].message.derived[0].name, "stream 7 body");
    let g = run_with(&Grpc, &Context::default(), &packets);
    assert_eq!(g[0].message.derived[0].name, "stream 7 gRPC message 1");
    assert_eq!(
        text(
            &g[0].message.derived[0].tree,
            &["message 1", "payload", "1"]
        ),
        "abc"
    );
    assert_eq!(Grpc.default_ports(), &[5678]);
}

#[test]
fn grpc_stream_ending_inside_a_message_is_an_error() {
    let mut cenc = loona_hpack::Encoder::new();
    let mut c = frame(
        http2::HEADERS,
        4,
        1,
        &hpack(&mut cenc, &request_headers("/x.Y/Z")),
    );
    c.extend(frame(http2::DATA, 1, 1, &[0, 0, 0, 0, 9, 1, 2]));
    let out = run(&[(C2S, c)]);
    let m = &out[1].message;
    assert!(m.tree.child("gRPC").unwrap().error().is_some());
    let d = &m.derived[0];
    assert!(d.tree.child("message 1").unwrap().has_error());
    // A declared length beyond the cap is reported at once.
    let mut c = frame(
        http2::HEADERS,
        4,
        1,
        &hpack(&mut loona_hpack::Encoder::new(), &request_headers("/x.Y/Z")),
    );
    c.extend(frame(http2::DATA, 0, 1, &[0, 0xff, 0xff, 0xff, 0xff, 1]));
    let out = run(&[(C2S, c)]);
    assert!(
        out[1]
            .message
            .tree
            .child("gRPC")
            .unwrap()
            .error()
            .unwrap()
            .contains("limit")
    );
}

#[test]
fn stream_and_buffer_caps_are_reported() {
    let mut d = Http2.decoder(S2C, &Context::default());
    // GET / on 1001 streams that never end: the 1001st is not tracked.
    for i in 0..http2::MAX_STREAMS as u32 {
        let m = d.decode(&frame(http2::HEADERS, 4, 2 * i + 1, &[0x82, 0x84]));
        assert!(!m.is_error(), "stream {}", 2 * i + 1);
    }
    let m = d.decode(&frame(http2::HEADERS, 4, 5001, &[0x82, 0x84]));
    assert_eq!(m.label, "HEADERS s5001 GET /");
    assert!(m.tree.child("stream state").unwrap().error().is_some());

    // 5 DATA frames of 16 MiB on one stream: the fifth passes the 64 MiB cap.
    let mut d = Http2.decoder(S2C, &Context::default());
    let big = frame(http2::DATA, 0, 1, &vec![b'x'; http2::MAX_FRAME_SIZE]);
    for _ in 0..4 {
        assert!(!d.decode(&big).is_error());
    }
    let m = d.decode(&big);
    let err = m.tree.child("reassembly").unwrap().error().unwrap();
    assert!(err.contains("buffering limit"), "{err}");
    // The stream is no longer reassembled: its end emits no body.
    let m = d.decode(&frame(http2::DATA, 1, 1, b"end"));
    assert!(m.derived.is_empty());
}

fn login_schema() -> Context {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("login.proto"),
        r#"syntax = "proto3";
package sc.external.services.login.v1;
message VersionIdentifier { uint64 base_cl = 1; uint64 shelf_cl = 2; }
message InitiateLoginRequest { string session_id = 1; VersionIdentifier version = 2; }
message InitiateLoginResponse { uint32 account_id = 1; string nickname = 2; }
service LoginService {
  rpc InitiateLogin(InitiateLoginRequest) returns (InitiateLoginResponse);
}
"#,
    )
    .unwrap();
    let mut compiler = protox::Compiler::new([dir.path()]).unwrap();
    compiler.open_file("login.proto").unwrap();
    Context {
        schemas: Some(compiler.descriptor_pool()),
        ..Default::default()
    }
}

#[test]
fn grpc_messages_decode_with_the_method_schema() {
    let ctx = login_schema();
    let pool = ctx.schemas.as_ref().unwrap();
    assert_eq!(
        grpc::message_type(pool, LOGIN_PATH, false)
            .unwrap()
            .full_name(),
        "sc.external.services.login.v1.InitiateLoginResponse"
    );
    assert!(grpc::message_type(pool, "/no.Such/Method", true).is_none());
    assert!(grpc::message_type(pool, "garbage", true).is_none());

    let out = run_with(&Http2, &ctx, &unary_call());
    assert_eq!(out[5].message.label, "DATA s1 (16 B) InitiateLoginRequest");
    let req = &out[5].message.derived[0].tree;
    let m = req.child("message 1").unwrap();
    assert_eq!(
        m.display(),
        Some("sc.external.services.login.v1.InitiateLoginRequest")
    );
    assert_eq!(text(m, &["payload", "session_id"]), "abc");
    assert_eq!(range(m, &["payload", "session_id"]), 5..10);
    assert_eq!(uint(m, &["payload", "version", "shelf_cl"]), 2);
    // The response side learns the path from the client side of the same connection.
    assert_eq!(out[7].message.label, "DATA s1 (14 B) InitiateLoginResponse");
    let resp = &out[7].message.derived[0].tree;
    assert_eq!(uint(resp, &["message 1", "payload", "account_id"]), 42);
    assert_eq!(text(resp, &["message 1", "payload", "nickname"]), "Pilot");
    assert!(!out.iter().any(|d| d.message.is_error()));
    assert_all_well_formed(&out);
}

fn simple_frame() -> impl Strategy<Value = Vec<u8>> {
    let stream = 1u32..0x7fff_ffff;
    prop_oneof![
        (
            stream.clone(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(s, end, d)| frame(http2::DATA, u8::from(end), s, &d)),
        (
            stream.clone(),
            proptest::collection::vec(any::<u8>(), 0..50),
            0usize..40
        )
            .prop_map(|(s, d, pad)| {
                let mut p = vec![pad as u8];
                p.extend(d);
                p.extend(vec![0; pad]);
                frame(http2::DATA, http2::FLAG_PADDED, s, &p)
            }),
        proptest::collection::vec((any::<u16>(), any::<u32>()), 0..8).prop_map(|p| settings(&p)),
        Just(frame(http2::SETTINGS, 1, 0, &[])),
        (any::<[u8; 8]>(), any::<bool>()).prop_map(|(d, ack)| frame(
            http2::PING,
            u8::from(ack),
            0,
            &d
        )),
        (0u32..=u32::MAX, 0u32..1000).prop_map(|(i, s)| frame(
            http2::WINDOW_UPDATE,
            0,
            s,
            &i.to_be_bytes()
        )),
        (stream.clone(), any::<u32>()).prop_map(|(s, c)| frame(
            http2::RST_STREAM,
            0,
            s,
            &c.to_be_bytes()
        )),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(last, code, dbg)| {
                let mut p = last.to_be_bytes().to_vec();
                p.extend(code.to_be_bytes());
                p.extend(dbg);
                frame(http2::GOAWAY, 0, 0, &p)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn simple_frames_round_trip(bytes in simple_frame()) {
        let out = run(&[(S2C, bytes.clone())]);
        prop_assert_eq!(out.len(), 1);
        prop_assert!(!out[0].message.tree.has_error() || bytes[3] == http2::WINDOW_UPDATE);
        prop_assert_eq!(Http2.encode(&out[0].message.tree).unwrap(), bytes);
    }

    #[test]
    fn edited_data_and_settings_encode_with_consistent_lengths(
        body in proptest::collection::vec(any::<u8>(), 0..500),
        pad in 0usize..30,
        value in any::<u32>(),
    ) {
        let padded = frame(http2::DATA, http2::FLAG_PADDED, 1, &[&[2u8][..], b"ab", &[0, 0]].concat());
        let mut tree = run(&[(S2C, padded)])[0].message.tree.clone();
        tree.child_mut("data").unwrap().value = Value::Bytes(body.clone().into());
        tree.child_mut("padding").unwrap().value = Value::Bytes(vec![0; pad].into());
        let bytes = Http2.encode(&tree).unwrap();
        let again = &run(&[(S2C, bytes.clone())])[0];
        prop_assert_eq!(again.bytes.len(), bytes.len());
        let t = &again.message.tree;
        prop_assert_eq!(uint(t, &["header", "length"]) as usize, 1 + body.len() + pad);
        prop_assert_eq!(uint(t, &["pad length"]) as usize, pad);
        prop_assert_eq!(&t.child("data").unwrap().value, &Value::Bytes(body.into()));
        prop_assert!(!t.has_error());

        let mut tree = run(&[(S2C, settings(&[(4, 1), (6, 2)]))])[0].message.tree.clone();
        tree.child_mut("MAX_HEADER_LIST_SIZE").unwrap().value = Value::UInt(u64::from(value));
        let again = run(&[(S2C, Http2.encode(&tree).unwrap())]);
        prop_assert_eq!(uint(&again[0].message.tree, &["MAX_HEADER_LIST_SIZE"]), u64::from(value));
        prop_assert_eq!(uint(&again[0].message.tree, &["INITIAL_WINDOW_SIZE"]), 1);
    }

    #[test]
    fn a_call_chunked_anyhow_decodes_the_same(cuts in proptest::collection::vec(1usize..40, 1..30)) {
        let whole = run(&unary_call());
        // Re-split each direction's bytes at the given sizes, cycling through them.
        let mut packets = Vec::new();
        let mut k = 0;
        for (dir, bytes) in unary_call() {
            let mut at = 0;
            while at < bytes.len() {
                let n = cuts[k % cuts.len()].min(bytes.len() - at);
                packets.push((dir, bytes[at..at + n].to_vec()));
                at += n;
                k += 1;
            }
        }
        let out = run(&packets);
        prop_assert_eq!(out.len(), whole.len());
        for (a, b) in out.iter().zip(&whole) {
            prop_assert_eq!(&a.message, &b.message);
            prop_assert_eq!(&a.bytes, &b.bytes);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        server in proptest::collection::vec(any::<u8>(), 0..300),
        chunk in 1usize..64,
        with_preface in any::<bool>(),
        grpc in any::<bool>(),
    ) {
        let mut client = if with_preface { PREFACE.to_vec() } else { Vec::new() };
        if with_preface && grpc {
            client.extend(settings(&[]));
        }
        client.extend(&data);
        let packets = chunked(&[(C2S, client), (S2C, server)], chunk);
        let d: &dyn Dissector = if grpc { &Grpc } else { &Http2 };
        let out = run_with(d, &login_schema_cached(), &packets);
        for m in &out {
            prop_assert_eq!(m.message.tree.range.clone(), 0..m.bytes.len());
        }
    }

    #[test]
    fn valid_frames_with_random_payload_bytes_never_panic(
        kind in 0u8..12,
        flags in any::<u8>(),
        stream in 0u32..5,
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        c.extend(frame(kind, flags, stream, &payload));
        c.extend(frame(kind, flags, stream, &payload));
        let out = run_with(&Grpc, &Context::default(), &[(C2S, c)]);
        prop_assert!(out.len() >= 3);
        for m in &out {
            assert_ranges_nested(&m.message.tree, m.bytes.len());
            let _ = Http2.encode(&m.message.tree);
        }
    }
}

fn login_schema_cached() -> Context {
    use std::sync::OnceLock;
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(login_schema).clone()
}
