//! HTTP/1.x dissector: framing, tree shape and ranges, malformed input, re-encoding.

use std::io::Write as _;

use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::dissect::http1::Http1;
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{Context, Dissector, Framing, Message, Node, Value};
use proptest::prelude::*;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// Runs the dissector over packets given as (direction, bytes).
fn run(packets: &[(Direction, &[u8])]) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:9000".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (dir, bytes) in packets {
        data.append(NewPacket::new(c, *dir, Timestamp(0), bytes.to_vec()))
            .unwrap();
    }
    decode_connection(&Http1, &Context::default(), data.packets_of(c))
}

fn decode(dir: Direction, msg: &[u8]) -> Message {
    let mut d = Http1.decoder(dir, &Context::default());
    assert_eq!(
        d.frame(msg),
        Framing::Complete(msg.len()),
        "framing of {msg:?}"
    );
    d.decode(msg)
}

fn at<'a>(msg: &'a [u8], n: &Node) -> &'a [u8] {
    &msg[n.range.clone()]
}

fn text(n: &Node) -> &str {
    n.value
        .as_text()
        .unwrap_or_else(|| panic!("{} is not text", n.name))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const CURL_GET: &[u8] = b"GET /verify?token=abc HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

#[test]
fn curl_get_has_exact_ranges() {
    let m = decode(C2S, CURL_GET);
    assert_eq!(m.label, "GET /verify?token=abc");
    assert!(!m.is_error(), "{:#?}", m.tree);
    let t = &m.tree;
    assert_eq!(t.range, 0..CURL_GET.len());
    let rl = t.child("request line").unwrap();
    assert_eq!(at(CURL_GET, rl), b"GET /verify?token=abc HTTP/1.1");
    let method = rl.child("method").unwrap();
    assert_eq!((text(method), method.range.clone()), ("GET", 0..3));
    let target = rl.child("target").unwrap();
    assert_eq!(
        (text(target), target.range.clone()),
        ("/verify?token=abc", 4..21)
    );
    assert_eq!(text(rl.child("version").unwrap()), "HTTP/1.1");
    let headers = t.child("headers").unwrap();
    let names: Vec<&str> = headers.children.iter().map(|h| h.name.as_ref()).collect();
    assert_eq!(names, ["Host", "User-Agent", "Accept"]);
    let host = headers.child("Host").unwrap();
    assert_eq!(text(host), "127.0.0.1:9000");
    assert_eq!(at(CURL_GET, host), b"127.0.0.1:9000");
    assert_eq!(at(CURL_GET, headers.child("Accept").unwrap()), b"*/*");
    assert!(t.child("body").is_none());
    // A click on a byte of the Host value selects the Host node.
    let off = host.range.start + 2;
    assert_eq!(t.deepest_at(off), Some(vec![1, 0]));
    assert_eq!(Http1.encode(t).unwrap(), CURL_GET);
}

#[test]
fn post_login_form() {
    let body = b"username=Builder&password=p%40ss+word&remember";
    let msg = [
        b"POST /login HTTP/1.1\r\nHost: localhost:9000\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 46\r\n\r\n".as_slice(),
        body,
    ]
    .concat();
    let m = decode(C2S, &msg);
    assert_eq!(m.label, "POST /login");
    assert!(!m.is_error());
    let b = m.tree.child("body").unwrap();
    assert_eq!(at(&msg, b), body);
    let form = b.child("form").unwrap();
    let user = form.child("username").unwrap();
    assert_eq!(
        (text(user), at(&msg, user)),
        ("Builder", b"Builder".as_slice())
    );
    let pass = form.child("password").unwrap();
    assert_eq!(
        (text(pass), at(&msg, pass)),
        ("p@ss word", b"p%40ss+word".as_slice())
    );
    assert!(form.child("remember").is_some());
    assert_eq!(Http1.encode(&m.tree).unwrap(), msg);
    // Editing a field re-encodes the form and fixes Content-Length.
    let mut t = m.tree.clone();
    t.find_mut(&["body", "form", "password"]).unwrap().value = Value::Text("x&y".into());
    let out = Http1.encode(&t).unwrap();
    let m2 = decode(C2S, &out);
    assert_eq!(
        text(m2.tree.find(&["body", "form", "password"]).unwrap()),
        "x&y"
    );
    assert_eq!(
        text(m2.tree.find(&["headers", "Content-Length"]).unwrap()),
        (out.len() - out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4).to_string()
    );
}

const JSON_POST: &[u8] = b"POST /game-session/new HTTP/1.1\r\nHost: sessions.hytale.com\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n{\"uuid\":\"6f1d2c3b-4a59-4e68-9786-756453423120\"}";

#[test]
fn post_json_body_is_a_subtree_with_message_ranges() {
    let m = decode(C2S, JSON_POST);
    assert!(!m.is_error(), "{:#?}", m.tree);
    let json = m.tree.find(&["body", "json"]).unwrap();
    let uuid = json.child("uuid").unwrap();
    assert_eq!(text(uuid), "6f1d2c3b-4a59-4e68-9786-756453423120");
    assert_eq!(
        at(JSON_POST, uuid),
        b"\"uuid\":\"6f1d2c3b-4a59-4e68-9786-756453423120\""
    );
    assert_eq!(Http1.encode(&m.tree).unwrap(), JSON_POST);
    // Edit a JSON value: the body is re-serialized and Content-Length follows.
    let mut t = m.tree.clone();
    t.find_mut(&["body", "json", "uuid"]).unwrap().value = Value::Text("short".into());
    let out = Http1.encode(&t).unwrap();
    assert!(out.ends_with(b"Content-Length: 16\r\n\r\n{\"uuid\":\"short\"}"));
    let m2 = decode(C2S, &out);
    assert_eq!(
        text(m2.tree.find(&["body", "json", "uuid"]).unwrap()),
        "short"
    );
}

#[test]
fn chunked_gzip_json_response() {
    let json = br#"{"sessionToken":"s1","identityToken":"i1","expiresAt":"2030-01-01T00:00:00Z"}"#;
    let gz = gzip(json);
    let (a, b) = gz.split_at(10);
    let mut msg = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let head_len = msg.len();
    write!(msg, "{:x}\r\n", a.len()).unwrap();
    msg.extend_from_slice(a);
    msg.extend_from_slice(b"\r\n");
    write!(msg, "{:X};ext=1\r\n", b.len()).unwrap();
    msg.extend_from_slice(b);
    msg.extend_from_slice(b"\r\n0\r\nX-Trailer: done\r\n\r\n");
    // Incomplete: need more; complete: exactly the message.
    let mut d = Http1.decoder(S2C, &Context::default());
    assert_eq!(d.frame(&msg[..msg.len() - 2]), Framing::NeedMore(None));
    let mut with_next = msg.clone();
    with_next.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(d.frame(&with_next), Framing::Complete(msg.len()));

    let m = decode(S2C, &msg);
    assert_eq!(m.label, "200 OK");
    assert!(!m.is_error(), "{:#?}", m.tree);
    let body = m.tree.child("body").unwrap();
    assert_eq!(body.range, head_len..msg.len());
    let chunks: Vec<&Node> = body.children.iter().filter(|c| c.name == "chunk").collect();
    assert_eq!(chunks.len(), 2);
    let data0 = chunks[0].child("data").unwrap();
    assert_eq!(at(&msg, data0), a);
    assert_eq!(
        chunks[1].child("size").unwrap().value,
        Value::UInt(b.len() as u64)
    );
    assert_eq!(at(&msg, chunks[1].child("data").unwrap()), b);
    let trailers = body.child("trailers").unwrap();
    assert_eq!(at(&msg, trailers.child("X-Trailer").unwrap()), b"done");
    assert_eq!(m.derived.len(), 2);
    assert_eq!(m.derived[0].name, "body");
    assert_eq!(m.derived[0].bytes, gz);
    let dec = &m.derived[1];
    assert_eq!(dec.name, "body (decoded)");
    assert_eq!(dec.bytes, json);
    let tok = dec.tree.find(&["json", "identityToken"]).unwrap();
    assert_eq!(&dec.bytes[tok.range.clone()], br#""identityToken":"i1""#);
    // Byte-exact re-encoding, then an edited chunk is re-chunked with a new size.
    assert_eq!(Http1.encode(&m.tree).unwrap(), msg);
    let mut t = m.tree.clone();
    let body = t.child_mut("body").unwrap();
    body.children[1].child_mut("data").unwrap().value = Value::Bytes(b"xyz".as_slice().into());
    let out = Http1.encode(&t).unwrap();
    assert!(out.windows(8).any(|w| w == b"\r\n3\r\nxyz"));
    let m2 = decode(S2C, &out);
    assert_eq!(
        m2.derived[0].bytes,
        [a, b"xyz".as_slice()].concat(),
        "de-chunked body follows the edit"
    );
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let stream = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let got = run(&[(S2C, stream)]);
    let labels: Vec<&str> = got.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, ["204 No Content", "304 Not Modified", "200 OK"]);
    assert!(got.iter().all(|d| !d.message.is_error()));
    assert_eq!(got[2].offset, stream.len() - 40);
}

#[test]
fn pipelined_requests_in_one_read() {
    let stream = [
        CURL_GET,
        JSON_POST,
        b"DELETE /game-session HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n",
    ]
    .concat();
    let got = run(&[(C2S, &stream)]);
    let labels: Vec<&str> = got.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "GET /verify?token=abc",
            "POST /game-session/new",
            "DELETE /game-session"
        ]
    );
    assert_eq!(got[1].offset, CURL_GET.len());
    assert_eq!(got[1].bytes, JSON_POST);
    // The same bytes one at a time give the same messages.
    let bytes: Vec<(Direction, &[u8])> = stream.chunks(1).map(|c| (C2S, c)).collect();
    let got1 = run(&bytes);
    assert_eq!(got1.len(), 3);
    assert_eq!(got1[2].message, got[2].message);
}

#[test]
fn expect_100_continue() {
    let req =
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let got = run(&[
        (C2S, req),
        (S2C, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (C2S, b"hello"),
        (S2C, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let labels: Vec<(Direction, &str)> = got
        .iter()
        .map(|d| (d.direction, d.message.label.as_str()))
        .collect();
    assert_eq!(
        labels,
        // The request waits for its body, so the interim response comes out first.
        [
            (S2C, "100 Continue"),
            (C2S, "PUT /upload"),
            (S2C, "201 Created")
        ]
    );
    let body = got[1].message.tree.child("body").unwrap();
    assert_eq!(body.value, Value::Bytes(b"hello".as_slice().into()));
}

#[test]
fn head_response_followed_by_next_response() {
    let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let got = run(&[(S2C, stream)]);
    let labels: Vec<&str> = got.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(labels, ["200 OK", "404 Not Found"]);
}

#[test]
fn response_until_close_is_reported_incomplete() {
    let got = run(&[(
        S2C,
        b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nsome body",
    )]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.label, "undecodable");
}

#[test]
fn response_until_close_is_complete_when_the_connection_closed() {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:9000".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    data.append(NewPacket::new(
        c,
        C2S,
        Timestamp(0),
        b"GET /old HTTP/1.0\r\n\r\n".to_vec(),
    ))
    .unwrap();
    for part in [
        &b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nsome "[..],
        b"body",
    ] {
        data.append(NewPacket::new(c, S2C, Timestamp(1), part.to_vec()))
            .unwrap();
    }
    let open = gamewire::dissect::session::decode_capture(
        &gamewire::dissect::Registry::standard(),
        &Context::default(),
        &data,
        Some("http"),
    );
    let labels = |d: &gamewire::dissect::session::CaptureDecode| {
        let mut all: Vec<String> = d
            .messages
            .values()
            .flatten()
            .map(|m| m.message.label.clone())
            .collect();
        all.sort();
        all
    };
    // Still open: the response may go on.
    assert_eq!(labels(&open), ["GET /old", "undecodable"]);

    data.close_connection(c, Timestamp(2), Some("closed by server".into()))
        .unwrap();
    let closed = gamewire::dissect::session::decode_capture(
        &gamewire::dissect::Registry::standard(),
        &Context::default(),
        &data,
        Some("http"),
    );
    assert_eq!(labels(&closed), ["200 OK", "GET /old"]);
    let response = closed
        .messages
        .values()
        .flatten()
        .find(|m| m.direction == S2C)
        .unwrap();
    let body = response.message.tree.child("body").unwrap();
    assert_eq!(&response.bytes[body.range.clone()], b"some body");
    assert!(!response.message.is_error());
}

#[test]
fn upgrade_switches_to_opaque_data() {
    let got = run(&[
        (
            C2S,
            b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
        (
            S2C,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        ),
        (C2S, b"\x81\x85abcd\x00\x00\x00\x00\x00"),
    ]);
    let labels: Vec<&str> = got.iter().map(|d| d.message.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "GET /chat",
            "101 Switching Protocols",
            "upgraded data",
            "upgraded data"
        ]
    );
}

#[test]
fn detect_http1_but_not_http2() {
    assert!(Http1.detect(CURL_GET, C2S));
    assert!(Http1.detect(b"HTTP/1.1 200 OK\r\n", S2C));
    assert!(!Http1.detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", C2S));
    assert!(!Http1.detect(b"\x16\x03\x01\x02\x00", C2S));
    assert!(!Http1.detect(b"fsys\xc0\x00\x00\x01", C2S));
    assert_eq!(Http1.default_ports(), &[80, 8080, 9000]);
    // The HTTP/2 preface on a client stream is not framed as a request.
    let mut d = Http1.decoder(C2S, &Context::default());
    assert!(matches!(
        d.frame(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Framing::Unframeable { .. }
    ));
}

// ---- malformed ----

#[test]
fn header_line_without_colon_is_an_error_node() {
    let msg = b"GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n";
    let m = decode(C2S, msg);
    assert!(m.is_error());
    let bad = m.tree.find(&["headers", "header line"]).unwrap();
    assert_eq!(bad.error(), Some("header line without colon"));
    assert_eq!(at(msg, bad), b"NoColonHere");
    assert_eq!(text(m.tree.find(&["headers", "Host"]).unwrap()), "a");
}

#[test]
fn bad_chunk_size_is_an_error_and_framing_resumes() {
    let stream = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    let got = run(&[(C2S, stream)]);
    let first = &got[0].message;
    assert_eq!(first.label, "POST /a");
    let body = first.tree.child("body").unwrap();
    let bad = body.children.iter().find(|c| c.error().is_some()).unwrap();
    assert_eq!(bad.error(), Some("invalid chunk size"));
    assert_eq!(at(&got[0].bytes, bad), b"zz\r\n");
    assert_eq!(got.last().unwrap().message.label, "GET /b");
}

#[test]
fn truncated_head() {
    let got = run(&[(C2S, b"GET / HTTP/1.1\r\nHost: exa")]);
    assert_eq!(got.len(), 1);
    assert!(got[0].message.is_error());
    // Decoded directly, a head without its blank line says so.
    let mut d = Http1.decoder(C2S, &Context::default());
    let m = d.decode(b"GET / HTTP/1.1\r\nHost: exa");
    assert_eq!(
        m.tree.child("headers").unwrap().error(),
        Some("truncated head: no blank line after the headers")
    );
}

#[test]
fn oversized_head_is_unframeable_and_the_next_request_decodes() {
    let mut stream = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    stream.extend(std::iter::repeat_n(b'a', 70 * 1024));
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(CURL_GET);
    let mut d = Http1.decoder(C2S, &Context::default());
    match d.frame(&stream) {
        Framing::Unframeable { skip, reason } => {
            assert_eq!(skip, stream.len() - CURL_GET.len());
            assert!(reason.contains("64 KiB"));
        }
        other => panic!("{other:?}"),
    }
    let got = run(&[(C2S, &stream)]);
    assert_eq!(got[0].message.label, "undecodable");
    assert_eq!(got.last().unwrap().message.label, "GET /verify?token=abc");
}

#[test]
fn invalid_utf8_header_value() {
    let msg = b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n";
    let m = decode(C2S, msg);
    let h = m.tree.find(&["headers", "X-Name"]).unwrap();
    assert_eq!(h.value, Value::Bytes(b"caf\xe9".as_slice().into()));
    assert_eq!(h.error(), Some("header value is not valid UTF-8"));
    assert_eq!(at(msg, h), b"caf\xe9");
}

#[test]
fn negative_and_huge_content_length() {
    for cl in ["-1", "99999999999999999999999", "68719476736", "12abc"] {
        let msg = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        let mut d = Http1.decoder(C2S, &Context::default());
        assert_eq!(
            d.frame(msg.as_bytes()),
            Framing::Complete(msg.len()),
            "{cl}"
        );
        let m = d.decode(msg.as_bytes());
        let h = m.tree.find(&["headers", "Content-Length"]).unwrap();
        assert!(
            h.error().unwrap().contains("body not framed"),
            "{cl}: {h:?}"
        );
    }
    let conflict = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    let m = decode(C2S, conflict);
    assert!(m.is_error());
}

#[test]
fn garbage_is_skipped_line_by_line() {
    let stream = [b"\x00\x01garbage\r\nmore junk\r\n".as_slice(), CURL_GET].concat();
    let got = run(&[(C2S, &stream)]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].message.label, "undecodable");
    assert_eq!(got[2].message.label, "GET /verify?token=abc");
    let got = run(&[(
        S2C,
        b"SSH-2.0-OpenSSH\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )]);
    assert_eq!(got.last().unwrap().message.label, "200 OK");
}

#[test]
fn bad_gzip_is_an_error() {
    let msg = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope";
    let m = decode(S2C, msg);
    assert!(
        m.tree
            .child("body")
            .unwrap()
            .error()
            .unwrap()
            .starts_with("gzip body")
    );
}

#[test]
fn lf_only_and_odd_spacing_round_trip() {
    let msg = b"GET / HTTP/1.1\nHost:a\nX-Pad:\t b  \n\n";
    let m = decode(C2S, msg);
    assert!(!m.is_error(), "{:#?}", m.tree);
    let pad = m.tree.find(&["headers", "X-Pad"]).unwrap();
    assert_eq!(text(pad), "b");
    assert_eq!(at(msg, pad), b"b");
    assert_eq!(Http1.encode(&m.tree).unwrap(), msg);
}

#[test]
fn bearer_token_in_header_is_annotated() {
    let tok = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    let msg = format!("GET /verify HTTP/1.1\r\nAuthorization: Bearer {tok}\r\n\r\n");
    let m = decode(C2S, msg.as_bytes());
    let auth = m.tree.find(&["headers", "Authorization"]).unwrap();
    let header = auth.child("header").unwrap();
    assert!(header.derived);
    assert_eq!(text(header.child("alg").unwrap()), "HS256");
    assert_eq!(
        &msg.as_bytes()[header.range.clone()],
        b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    );
    let claims = auth.child("claims").unwrap();
    assert_eq!(
        claims.child("iat").unwrap().display(),
        Some("1516239022 (2018-01-18 01:30:22 UTC)")
    );
    assert_eq!(
        auth.child("signature valid").unwrap().display(),
        Some("not verified (no key)")
    );
    // Annotations are derived: they do not change the encoding.
    assert_eq!(Http1.encode(&m.tree).unwrap(), msg.as_bytes());
}

#[test]
fn encode_rejects_line_breaks_in_fields() {
    let m = decode(C2S, CURL_GET);
    let mut t = m.tree.clone();
    t.find_mut(&["headers", "Host"]).unwrap().value = Value::Text("a\r\nEvil: 1".into());
    assert!(Http1.encode(&t).is_err());
}

// ---- properties ----

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,12}"
}

#[derive(Clone, Debug)]
struct Msg {
    request: bool,
    first: (String, String, String),
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: Option<Vec<usize>>,
}

fn message() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        "/[a-z0-9/._?=&-]{0,30}",
        prop_oneof![Just(200u16), Just(201), Just(400), Just(404), Just(500)],
        "[A-Za-z ]{0,20}",
        proptest::collection::vec((token(), "[ -~]{0,30}"), 0..6),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::of(proptest::collection::vec(1usize..64, 1..5)),
    )
        .prop_map(
            |(request, method, target, code, reason, headers, body, chunked)| {
                let headers = headers
                    .into_iter()
                    .filter(|(n, _)| {
                        !n.eq_ignore_ascii_case("content-length")
                            && !n.eq_ignore_ascii_case("transfer-encoding")
                            && !n.eq_ignore_ascii_case("content-encoding")
                            && !n.eq_ignore_ascii_case("content-type")
                            && !n.eq_ignore_ascii_case("upgrade")
                    })
                    .map(|(n, v)| (n, v.trim().to_string()))
                    .collect();
                let first = if request {
                    (method.to_string(), target, "HTTP/1.1".to_string())
                } else {
                    (
                        "HTTP/1.1".to_string(),
                        code.to_string(),
                        reason.trim().to_string(),
                    )
                };
                Msg {
                    request,
                    first,
                    headers,
                    body,
                    chunked,
                }
            },
        )
}

fn build(m: &Msg) -> Vec<u8> {
    let mut out = Vec::new();
    let (a, b, c) = &m.first;
    if m.request || !c.is_empty() {
        write!(out, "{a} {b} {c}\r\n").unwrap();
    } else {
        write!(out, "{a} {b}\r\n").unwrap();
    }
    for (n, v) in &m.headers {
        write!(out, "{n}: {v}\r\n").unwrap();
    }
    match &m.chunked {
        Some(sizes) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = m.body.as_slice();
            for &s in sizes {
                let (chunk, r) = rest.split_at(s.min(rest.len()));
                rest = r;
                if !chunk.is_empty() {
                    write!(out, "{:x}\r\n", chunk.len()).unwrap();
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        None => {
            write!(out, "Content-Length: {}\r\n\r\n", m.body.len()).unwrap();
            out.extend_from_slice(&m.body);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn generated_messages_round_trip(m in message(), splits in proptest::collection::vec(1usize..64, 0..8)) {
        let bytes = build(&m);
        let dir = if m.request { C2S } else { S2C };
        // Two messages back to back, cut into arbitrary packets.
        let stream = [bytes.clone(), bytes.clone()].concat();
        let mut packets = Vec::new();
        let mut rest = stream.as_slice();
        for s in splits {
            let (p, r) = rest.split_at(s.min(rest.len()));
            if !p.is_empty() { packets.push((dir, p)); }
            rest = r;
        }
        if !rest.is_empty() { packets.push((dir, rest)); }
        let got = run(&packets);
        prop_assert_eq!(got.len(), 2, "{:?}", got.iter().map(|d| &d.message.label).collect::<Vec<_>>());
        for d in &got {
            prop_assert_eq!(&d.bytes, &bytes);
            prop_assert!(!d.message.tree.has_error(), "{:#?}", d.message.tree);
            prop_assert_eq!(Http1.encode(&d.message.tree).unwrap(), bytes.clone());
            // What an editor offers (decoded bodies) gives back the same bytes unedited.
            prop_assert_eq!(Http1.encode(&Http1.edit_tree(&d.message)).unwrap(), bytes.clone());
        }
    }

    #[test]
    fn edited_header_value_round_trips(m in message(), new in "[ -~]{0,40}") {
        let bytes = build(&m);
        let dir = if m.request { C2S } else { S2C };
        let msg = decode(dir, &bytes);
        let mut t = msg.tree.clone();
        let new = new.trim().to_string();
        if let Some(h) = t.child_mut("headers").and_then(|h| h.children.first_mut())
            && !h.name.eq_ignore_ascii_case("content-length")
            && !h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            let name = h.name.to_string();
            h.value = Value::Text(new.clone().into());
            let out = Http1.encode(&t).unwrap();
            let again = decode(dir, &out);
            prop_assert_eq!(again.tree.find(&["headers", &name]).unwrap().value.clone(), Value::Text(new.into()));
            prop_assert_eq!(again.tree.child("body").map(|b| b.value.clone()), msg.tree.child("body").map(|b| b.value.clone()));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 1usize..200, client in any::<bool>()) {
        let dir = if client { C2S } else { S2C };
        let packets: Vec<(Direction, &[u8])> = data.chunks(cut).map(|c| (dir, c)).collect();
        let got = run(&packets);
        let total: usize = got.iter().map(|d| d.bytes.len()).sum();
        prop_assert_eq!(total, data.len());
        for d in &got {
            let _ = Http1.encode(&d.message.tree);
        }
    }

    #[test]
    fn http_looking_noise_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Content-Encoding: gzip\r\n".to_vec()),
            Just(b"Content-Type: application/json\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"5\r\nhello\r\n".to_vec()),
            Just(b"0\r\n\r\n".to_vec()),
            Just(b"{\"a\":[1,".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..10),
        ], 0..30),
        client in any::<bool>(),
    ) {
        let data = parts.concat();
        let dir = if client { C2S } else { S2C };
        let got = run(&[(dir, &data)]);
        let total: usize = got.iter().map(|d| d.bytes.len()).sum();
        prop_assert_eq!(total, data.len());
        for d in &got {
            if let Ok(out) = Http1.encode(&d.message.tree) {
                let _ = decode_any(dir, &out);
            }
        }
    }
}

fn decode_any(dir: Direction, msg: &[u8]) -> Message {
    Http1.decoder(dir, &Context::default()).decode(msg)
}

// -------------------------------------------------------------------------------------
// Editing decoded bodies: what an editor offers (`edit_tree`) encodes back to the wire form.

fn set_json(tree: &mut Node, key: &str, value: &str) {
    let body = tree.child_mut("body").unwrap();
    let json = body.child_mut("json").unwrap();
    let field = json.child_mut(key).unwrap();
    field.value = Value::Text(value.into());
}

#[test]
fn a_gzip_json_body_is_edited_decoded_and_goes_out_compressed_with_its_length_fixed() {
    let json = br#"{"displayname":"TestCommander","account_id":7}"#;
    let gz = gzip(json);
    let mut msg = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    msg.extend_from_slice(&gz);
    let m = decode(S2C, &msg);
    let mut tree = Http1.edit_tree(&m);
    assert_eq!(tree.child("body").unwrap().kind(), Some("decoded gzip"));
    // Unedited, the original bytes go out as they came.
    assert_eq!(Http1.encode(&tree).unwrap(), msg);

    set_json(&mut tree, "displayname", "SomeoneElse_With_A_Longer_Name");
    let out = Http1.encode(&tree).unwrap();
    let again = decode(S2C, &out);
    assert!(!again.is_error(), "{:#?}", again.tree);
    let decoded = again
        .derived
        .iter()
        .find(|d| d.name == "body (decoded)")
        .expect("still gzip");
    assert_eq!(
        decoded.bytes,
        br#"{"displayname":"SomeoneElse_With_A_Longer_Name","account_id":7}"#
    );
    let body_len = again.tree.child("body").unwrap().range.len();
    let length = again
        .tree
        .find(&["headers", "Content-Length"])
        .unwrap()
        .value
        .clone();
    assert_eq!(length, Value::Text(body_len.to_string().into()));
}

#[test]
fn a_chunked_json_body_is_edited_whole_and_goes_out_as_one_chunk() {
    let mut msg =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for part in [&br#"{"state":"#[..], br#""IN_QUEUE"}"#] {
        write!(msg, "{:x}\r\n", part.len()).unwrap();
        msg.extend_from_slice(part);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"0\r\n\r\n");
    let m = decode(S2C, &msg);
    let mut tree = Http1.edit_tree(&m);
    assert_eq!(Http1.encode(&tree).unwrap(), msg);
    set_json(&mut tree, "state", "DONE");
    let out = Http1.encode(&tree).unwrap();
    let body = br#"{"state":"DONE"}"#;
    assert!(
        out.ends_with(
            &[
                format!("{:x}\r\n", body.len()).as_bytes(),
                body,
                b"\r\n0\r\n\r\n"
            ]
            .concat()
        )
    );
    let again = decode(S2C, &out);
    assert!(!again.is_error(), "{:#?}", again.tree);
    assert_eq!(again.derived[0].bytes, body);
}

#[test]
fn a_chunked_body_with_trailers_stays_edited_as_its_chunks() {
    let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n".to_vec();
    let m = decode(S2C, &msg);
    let tree = Http1.edit_tree(&m);
    assert_eq!(tree, m.tree);
    assert_eq!(Http1.encode(&tree).unwrap(), msg);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Compressed (and chunked) JSON bodies: unedited they go out byte for byte; an edited
    /// value comes back decoded from the re-encoded message.
    #[test]
    fn compressed_json_bodies_round_trip_and_take_edits(
        values in proptest::collection::vec("[a-zA-Z0-9 ]{0,30}", 1..6),
        new in "[a-zA-Z0-9 ]{0,60}",
        chunked in any::<bool>(),
        deflate in any::<bool>(),
    ) {
        let object: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), serde_json::Value::String(v.clone())))
            .collect();
        let json = serde_json::to_vec(&object).unwrap();
        let packed = if deflate {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&json).unwrap();
            e.finish().unwrap()
        } else {
            gzip(&json)
        };
        let encoding = if deflate { "deflate" } else { "gzip" };
        let mut msg = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {encoding}\r\n").into_bytes();
        if chunked {
            msg.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for part in packed.chunks(17) {
                write!(msg, "{:x}\r\n", part.len()).unwrap();
                msg.extend_from_slice(part);
                msg.extend_from_slice(b"\r\n");
            }
            msg.extend_from_slice(b"0\r\n\r\n");
        } else {
            write!(msg, "Content-Length: {}\r\n\r\n", packed.len()).unwrap();
            msg.extend_from_slice(&packed);
        }
        let m = decode(S2C, &msg);
        let mut tree = Http1.edit_tree(&m);
        prop_assert_eq!(Http1.encode(&tree).unwrap(), msg.clone());
        set_json(&mut tree, "k0", &new);
        let out = Http1.encode(&tree).unwrap();
        let again = decode(S2C, &out);
        prop_assert!(!again.is_error(), "{:#?}", again.tree);
        let decoded = again.derived.iter().find(|d| d.name == "body (decoded)").unwrap();
        let mut expected = object.clone();
        expected.insert("k0".into(), serde_json::Value::String(new.clone()));
        let got: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&decoded.bytes).unwrap();
        prop_assert_eq!(got, expected);
    }
}
