//! The FESL dissector: framing on a byte stream, the field tree with exact byte ranges,
//! fragments, errors, byte-exact re-encoding, and robustness against malformed input.

use gamewire::capture::{
    Connection, ConnectionId, Direction, NewPacket, StoreData, Timestamp, Transport, gwcap,
};
use gamewire::dissect::fesl::{self, Fesl, FeslDecoder, Tag};
use gamewire::dissect::stream::{Decoded, decode_connection};
use gamewire::dissect::{
    Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
};
use proptest::prelude::*;

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn packet(cmd: &[u8; 4], tag: u8, number: u32, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(cmd);
    out.extend_from_slice(&((u32::from(tag) << 24) | number).to_be_bytes());
    out.extend_from_slice(&((12 + text.len()) as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn client_hello() -> Vec<u8> {
    packet(
        b"fsys",
        0xC0,
        1,
        "TXN=Hello\nclientString=cncra3-pc\nsku=15299\nlocale=en_US\nclientPlatform=PC\n\
         clientVersion=1.0\nSDKVersion=4.3.4.0.0\nprotocolVersion=2.0\nfragmentSize=8096\n\
         clientType=\n\0",
    )
}

const SERVER_HELLO: &str = "domainPartition.domain=eagames\nmessengerIp=127.0.0.1\n\
    messengerPort=0\ndomainPartition.subDomain=CNCRA3\nTXN=Hello\nactivityTimeoutSecs=0\n\
    curTime=\"Feb-08-2010 17%3a49%3a40 UTC\"\ntheaterIp=127.0.0.1\ntheaterPort=18805\0";

fn server_hello() -> Vec<u8> {
    packet(b"fsys", 0x80, 1, SERVER_HELLO)
}

fn memcheck() -> Vec<u8> {
    packet(
        b"fsys",
        0x80,
        0,
        "TXN=MemCheck\nmemcheck.[]=0\ntype=0\nsalt=1840327851\0",
    )
}

fn decode_one(bytes: &[u8]) -> Message {
    let mut d = FeslDecoder::new();
    assert_eq!(d.frame(bytes), Framing::Complete(bytes.len()));
    d.decode(bytes)
}

/// Runs packets (direction, bytes) through the stream driver.
fn run(packets: &[(Direction, Vec<u8>)]) -> Vec<Decoded> {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:18800".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (dir, bytes) in packets {
        data.append(NewPacket::new(c, *dir, Timestamp(0), bytes.clone()))
            .unwrap();
    }
    decode_connection(&Fesl, &Context::default(), data.packets_of(c))
}

fn labels(d: &[Decoded]) -> Vec<&str> {
    d.iter().map(|m| m.message.label.as_str()).collect()
}

fn text(n: &Node) -> &str {
    n.value
        .as_text()
        .unwrap_or_else(|| panic!("{} is not text", n.name))
}

fn assert_no_errors(m: &Message) {
    let mut s = String::new();
    m.tree.write_text(&mut s, 0);
    assert!(!m.tree.has_error(), "{}:\n{s}", m.label);
    for d in &m.derived {
        assert!(!d.tree.has_error(), "{} derived {}", m.label, d.name);
    }
}

#[test]
fn client_hello_from_the_seed() {
    let bytes = client_hello();
    assert_eq!(
        &bytes[..12],
        &[0x66, 0x73, 0x79, 0x73, 0xc0, 0, 0, 1, 0, 0, 0, 0xb0]
    );
    let m = decode_one(&bytes);
    assert_eq!(m.label, "fsys Hello");
    assert_no_errors(&m);
    let t = &m.tree;
    assert_eq!(t.range, 0..176);
    let h = t.child("header").unwrap();
    assert_eq!(h.range, 0..12);
    assert_eq!(text(h.child("command").unwrap()), "fsys");
    assert_eq!(h.child("command").unwrap().range, 0..4);
    let ty = h.child("type").unwrap();
    assert_eq!((ty.value.as_u64(), ty.range.clone()), (Some(0xC0), 4..5));
    assert_eq!(ty.display(), Some("TAG_SINGLE_CLIENT"));
    let num = h.child("number").unwrap();
    assert_eq!((num.value.as_u64(), num.range.clone()), (Some(1), 5..8));
    let size = h.child("size").unwrap();
    assert_eq!(
        (size.value.as_u64(), size.range.clone()),
        (Some(176), 8..12)
    );
    let p = t.child("payload").unwrap();
    assert_eq!(p.range, 12..176);
    assert_eq!(p.kind(), Some("client"));
    let txn = p.child("TXN").unwrap();
    assert_eq!((text(txn), txn.range.clone()), ("Hello", 12..21));
    assert_eq!(&bytes[txn.range.clone()], b"TXN=Hello");
    let cs = p.child("clientString").unwrap();
    assert_eq!(text(cs), "cncra3-pc");
    assert_eq!(&bytes[cs.range.clone()], b"clientString=cncra3-pc");
    assert_eq!(text(p.child("sku").unwrap()), "15299");
    assert_eq!(text(p.child("fragmentSize").unwrap()), "8096");
    let ct = p.child("clientType").unwrap();
    assert_eq!(text(ct), "");
    assert_eq!(&bytes[ct.range.clone()], b"clientType=");
    assert_eq!(p.children.len(), 10);
    assert_eq!(Fesl.encode(t).unwrap(), bytes);
    assert_eq!(
        fesl::parse_payload(&bytes[12..]).unwrap()[1],
        ("clientString".to_string(), "cncra3-pc".to_string())
    );
}

#[test]
fn server_hello_unquotes_and_unescapes_cur_time_and_nests_domain_partition() {
    let bytes = server_hello();
    let m = decode_one(&bytes);
    assert_eq!(m.label, "fsys Hello");
    assert_no_errors(&m);
    let p = m.tree.child("payload").unwrap();
    assert_eq!(p.kind(), Some("server"));
    let ct = p.child("curTime").unwrap();
    assert_eq!(text(ct), "Feb-08-2010 17:49:40 UTC");
    assert_eq!(ct.kind(), Some("quoted"));
    assert_eq!(
        &bytes[ct.range.clone()],
        b"curTime=\"Feb-08-2010 17%3a49%3a40 UTC\""
    );
    // TXN in the middle, as retail servers send it.
    assert_eq!(text(p.child("TXN").unwrap()), "Hello");
    // domainPartition is split by other keys: two groups, in wire order.
    let groups: Vec<&Node> = p
        .children
        .iter()
        .filter(|c| c.name == "domainPartition")
        .collect();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].kind(), Some("record"));
    assert_eq!(text(groups[0].child("domain").unwrap()), "eagames");
    assert_eq!(
        &bytes[groups[0].range.clone()],
        b"domainPartition.domain=eagames"
    );
    assert_eq!(text(groups[1].child("subDomain").unwrap()), "CNCRA3");
    let names: Vec<&str> = p.children.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "domainPartition",
            "messengerIp",
            "messengerPort",
            "domainPartition",
            "TXN",
            "activityTimeoutSecs",
            "curTime",
            "theaterIp",
            "theaterPort"
        ]
    );
    // Re-encoding gives the retail bytes back: quoting, lowercase escapes, no `\n` before NUL.
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
    // The deepest node under a byte of the value is the curTime field.
    let path = m.tree.deepest_at(ct.range.start + 10).unwrap();
    let mut n = &m.tree;
    for i in path {
        n = &n.children[i];
    }
    assert_eq!(n.name, "curTime");
}

#[test]
fn write_packet_produces_the_retail_server_hello() {
    let pairs = fesl::parse_payload(SERVER_HELLO.as_bytes()).unwrap();
    assert_eq!(pairs[6].1, "Feb-08-2010 17:49:40 UTC");
    assert_eq!(
        fesl::write_packet(b"fsys", Tag::SingleServer, 1, &pairs, false),
        server_hello()
    );
    let client = fesl::parse_payload(&client_hello()[12..]).unwrap();
    assert_eq!(
        fesl::write_packet(b"fsys", Tag::SingleClient, 1, &client, true),
        client_hello()
    );
}

#[test]
fn hello_and_memcheck_in_one_read() {
    let mut both = server_hello();
    both.extend(memcheck());
    let got = run(&[(C2S, client_hello()), (S2C, both)]);
    assert_eq!(labels(&got), ["fsys Hello", "fsys Hello", "fsys MemCheck"]);
    assert_eq!(got[2].offset, server_hello().len());
    assert_eq!(got[2].packet, got[1].packet);
    let mc = &got[2].message;
    assert_no_errors(mc);
    let list = mc.tree.find(&["payload", "memcheck"]).unwrap();
    assert_eq!(list.kind(), Some("list"));
    let count = list.child("[]").unwrap();
    assert_eq!(count.value, Value::UInt(0));
    assert_eq!(count.kind(), Some("count"));
    assert_eq!(&got[2].bytes[count.range.clone()], b"memcheck.[]=0");
    assert_eq!(
        mc.tree.find(&["header", "number"]).unwrap().value,
        Value::UInt(0)
    );
}

#[test]
fn a_packet_spanning_reads_and_every_split_point() {
    let mut stream = client_hello();
    stream.extend(memcheck());
    for cut in 1..stream.len() {
        let got = run(&[(C2S, stream[..cut].to_vec()), (C2S, stream[cut..].to_vec())]);
        assert_eq!(labels(&got), ["fsys Hello", "fsys MemCheck"], "cut {cut}");
    }
}

#[test]
fn old_sdk_request_with_0x80_tag() {
    let bytes = packet(b"fsys", 0x80, 0, "TXN=Ping\n\0");
    let got = run(&[(C2S, bytes.clone())]);
    assert_eq!(labels(&got), ["fsys Ping"]);
    let m = &got[0].message;
    assert_no_errors(m);
    assert_eq!(
        m.tree.find(&["header", "type"]).unwrap().display(),
        Some("TAG_SINGLE_SERVER")
    );
    assert_eq!(m.tree.child("payload").unwrap().kind(), Some("client"));
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
    let login = packet(b"acct", 0x80, 2, "TXN=NuLogin\nnuid=a@b.c\npassword=x\n\0");
    let m = decode_one(&login);
    assert_eq!(m.label, "acct NuLogin");
    assert_no_errors(&m);
}

#[test]
fn error_reply_code_122() {
    let bytes = packet(
        b"acct",
        0x80,
        2,
        "TXN=NuLogin\nlocalizedMessage=\"The password the user specified is incorrect\"\n\
         errorContainer.[]=0\nerrorCode=122\0",
    );
    let m = decode_one(&bytes);
    assert_eq!(m.label, "acct NuLogin error 122");
    // An error reply is a well-formed message: no error nodes.
    assert_no_errors(&m);
    let e = m.tree.child("error").unwrap();
    assert!(e.derived);
    assert_eq!(e.display(), Some("bad password"));
    assert_eq!(e.child("code").unwrap().value, Value::Int(122));
    assert_eq!(
        text(e.child("message").unwrap()),
        "The password the user specified is incorrect"
    );
    assert_eq!(&bytes[e.range.clone()], b"errorCode=122");
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
}

#[test]
fn field_error_container_and_bare_error_container() {
    let bytes = packet(
        b"acct",
        0x80,
        7,
        "TXN=NuAddPersona\nlocalizedMessage=\"Persona exists\"\nerrorContainer.[]=1\n\
         errorContainer.0.fieldName=name\nerrorContainer.0.fieldError=6\nerrorCode=160\0",
    );
    let m = decode_one(&bytes);
    assert_eq!(m.label, "acct NuAddPersona error 160");
    assert_no_errors(&m);
    let ec = m.tree.find(&["payload", "errorContainer"]).unwrap();
    assert_eq!(ec.child("[]").unwrap().value, Value::UInt(1));
    assert_eq!(text(ec.find(&["0", "fieldName"]).unwrap()), "name");
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);

    let bare = packet(
        b"acct",
        0x80,
        7,
        "TXN=NuLogin\nerrorContainer=[]\nerrorCode=99\0",
    );
    let m = decode_one(&bare);
    assert_eq!(m.label, "acct NuLogin error 99");
    assert_no_errors(&m);
    assert_eq!(
        text(m.tree.find(&["payload", "errorContainer"]).unwrap()),
        "[]"
    );
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bare);
}

#[test]
fn ferr_packets_are_errors_in_the_label() {
    let bytes = packet(
        b"ferr",
        0x80,
        1,
        "TXN=Hello\nlocalizedMessage=\"Not authenticated\"\nerrorContainer.[]=0\nerrorCode=20\0",
    );
    let m = decode_one(&bytes);
    assert_eq!(m.label, "ferr Hello error 20");
    assert_eq!(
        m.tree.find(&["error", "code"]).unwrap().value,
        Value::Int(20)
    );
    let m = decode_one(&packet(b"ferr", 0x80, 1, "TXN=Hello\0"));
    assert_eq!(m.label, "ferr Hello error");
}

#[test]
fn nested_arrays_and_recomputed_counts() {
    let bytes = packet(
        b"acct",
        0x80,
        4,
        "TXN=NuGetPersonas\npersonas.[]=2\npersonas.0=Commander\npersonas.1=AltCommander\0",
    );
    let mut m = decode_one(&bytes);
    assert_no_errors(&m);
    let list = m.tree.find(&["payload", "personas"]).unwrap();
    assert_eq!(list.kind(), Some("list"));
    assert_eq!(text(list.child("0").unwrap()), "Commander");
    assert_eq!(text(list.child("1").unwrap()), "AltCommander");
    assert_eq!(
        &bytes[list.range.clone()],
        b"personas.[]=2\npersonas.0=Commander\npersonas.1=AltCommander"
    );
    // Drop one persona and add a value with characters that need escaping.
    let list = m.tree.find_mut(&["payload", "personas"]).unwrap();
    list.children.retain(|c| c.name != "1");
    list.children[1].value = Value::Text("Red Army: 1=2 100%".into());
    let out = Fesl.encode(&m.tree).unwrap();
    let want = packet(
        b"acct",
        0x80,
        4,
        "TXN=NuGetPersonas\npersonas.[]=1\npersonas.0=\"Red Army%3a 1%3d2 100%25\"\0",
    );
    assert_eq!(out, want);
    let back = decode_one(&out);
    assert_no_errors(&back);
    assert_eq!(
        text(back.tree.find(&["payload", "personas", "0"]).unwrap()),
        "Red Army: 1=2 100%"
    );
}

#[test]
fn nulogin_entitlements_nest_three_levels() {
    let bytes = packet(
        b"acct",
        0x80,
        3,
        "TXN=NuLogin\nnuid=1000001\nlkey=T4QdgDQCFm83wYUMCn4qpAAAKDw.\n\
         entitledGameFeatureWrappers.[]=1\n\
         entitledGameFeatureWrappers.0.entitlementExpirationDate=\n\
         entitledGameFeatureWrappers.0.entitlementExpirationDays=-1\n\
         entitledGameFeatureWrappers.0.gameFeatureId=6014\n\
         entitledGameFeatureWrappers.0.message=\n\
         entitledGameFeatureWrappers.0.status=0\0",
    );
    let m = decode_one(&bytes);
    assert_no_errors(&m);
    let w = m
        .tree
        .find(&["payload", "entitledGameFeatureWrappers", "0"])
        .unwrap();
    assert_eq!(w.kind(), Some("record"));
    assert_eq!(w.children.len(), 5);
    assert_eq!(text(w.child("gameFeatureId").unwrap()), "6014");
    assert_eq!(text(w.child("entitlementExpirationDays").unwrap()), "-1");
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
}

#[test]
fn count_that_disagrees_with_the_elements_is_an_error() {
    let m = decode_one(&packet(b"acct", 0x80, 4, "personas.[]=3\npersonas.0=a\0"));
    let c = m.tree.find(&["payload", "personas", "[]"]).unwrap();
    assert!(c.error().unwrap().contains("count says 3 but 1"));
    let m = decode_one(&packet(b"acct", 0x80, 4, "personas.[]=x\0"));
    assert!(
        m.tree
            .find(&["payload", "personas", "[]"])
            .unwrap()
            .error()
            .is_some()
    );
}

fn personas_text(n: usize) -> String {
    let mut s = format!("TXN=NuGetPersonas\npersonas.[]={n}");
    for i in 0..n {
        s.push_str(&format!("\npersonas.{i}=Commander{i}"));
    }
    s
}

#[test]
fn three_fragments_reassemble_nugetpersonas() {
    let text = personas_text(6);
    let b64_len = text.len().div_ceil(3) * 4;
    let chunk = b64_len.div_ceil(3);
    let frags = fesl::fragment(b"acct", Tag::MultiServer, 4, text.as_bytes(), chunk, false);
    assert_eq!(frags.len(), 3);
    // Every fragment has the same number and announces the same total.
    for f in &frags {
        assert_eq!(&f[4..8], &[0xB0, 0, 0, 4]);
        let pairs = fesl::parse_payload(&f[12..]).unwrap();
        assert_eq!(pairs[2], ("size".into(), b64_len.to_string()));
        assert_eq!(pairs[1], ("decodedSize".into(), text.len().to_string()));
    }
    let mut packets: Vec<(Direction, Vec<u8>)> = vec![(
        C2S,
        packet(b"acct", 0xC0, 4, "TXN=NuGetPersonas\nnamespace=\n\0"),
    )];
    packets.extend(frags.iter().map(|f| (S2C, f.clone())));
    let got = run(&packets);
    assert_eq!(
        labels(&got),
        [
            "acct NuGetPersonas",
            "acct NuGetPersonas fragment 1/3",
            "acct NuGetPersonas fragment 2/3",
            "acct NuGetPersonas fragment 3/3"
        ]
    );
    for g in &got {
        assert_no_errors(&g.message);
        assert_eq!(Fesl.encode(&g.message.tree).unwrap(), g.bytes);
    }
    assert!(got[1].message.derived.is_empty());
    let last = &got[3].message;
    let info = last.tree.child("fragment").unwrap();
    assert_eq!(info.child("index").unwrap().value, Value::UInt(3));
    assert_eq!(last.derived.len(), 1);
    let r = &last.derived[0];
    assert_eq!(r.name, "reassembled");
    assert_eq!(r.bytes, text.as_bytes());
    let list = r.tree.child("personas").unwrap();
    assert_eq!(list.child("[]").unwrap().value, Value::UInt(6));
    let p5 = list.child("5").unwrap();
    assert_eq!(text_of(p5), "Commander5");
    assert_eq!(&r.bytes[p5.range.clone()], b"personas.5=Commander5");
}

fn text_of(n: &Node) -> &str {
    n.value.as_text().unwrap()
}

#[test]
fn fragment_padding_is_escaped_and_unescaped() {
    // "TXN=Ping" -> "VFhOPVBpbmc=": the padding goes on the wire as %3d.
    let frags = fesl::fragment(b"acct", Tag::MultiClient, 9, b"TXN=Ping", 11, true);
    assert_eq!(frags.len(), 2);
    assert_eq!(&frags[1][12..], b"data=%3d\ndecodedSize=8\nsize=12\n\0");
    let got = run(&frags.iter().map(|f| (C2S, f.clone())).collect::<Vec<_>>());
    assert_eq!(got[0].message.label, "acct fragment 1/2");
    assert_eq!(got[1].message.derived[0].bytes, b"TXN=Ping");
    assert_eq!(got[1].message.label, "acct Ping fragment 2/2");
    assert_eq!(Fesl.encode(&got[1].message.tree).unwrap(), frags[1]);
}

#[test]
fn fragment_with_a_different_size_is_an_error() {
    let text = personas_text(6);
    let frags = fesl::fragment(b"acct", Tag::MultiServer, 4, text.as_bytes(), 64, false);
    let mut second = String::from_utf8(frags[1][12..].to_vec()).unwrap();
    let size_line = second.rfind("size=").unwrap();
    second.replace_range(size_line.., "size=999\0");
    let bad = packet(b"acct", 0xB0, 4, &second);
    let got = run(&[(S2C, frags[0].clone()), (S2C, bad)]);
    let m = &got[1].message;
    assert!(m.is_error());
    let size = m.tree.find(&["payload", "size"]).unwrap();
    assert!(size.error().unwrap().contains("differs"), "{size:?}");
}

#[test]
fn fragment_over_the_cap_and_without_data_are_errors() {
    let huge = packet(
        b"acct",
        0xB0,
        1,
        "data=QUJD\ndecodedSize=3\nsize=999999999\0",
    );
    let m = decode_one(&huge);
    assert!(m.tree.find(&["payload", "size"]).unwrap().error().is_some());
    let nodata = packet(b"acct", 0xB0, 1, "size=4\0");
    assert!(decode_one(&nodata).is_error());
    let overflow = packet(b"acct", 0xB0, 1, "data=QUJDRA%3d%3d\nsize=4\0");
    assert!(decode_one(&overflow).is_error());
    let bad_b64 = packet(b"acct", 0xB0, 1, "data=!!!!\nsize=4\0");
    assert!(decode_one(&bad_b64).is_error());
}

#[test]
fn reassembler_is_a_reusable_api() {
    let mut r = fesl::Reassembler::new();
    let p = r.push(*b"acct", 1, "VFhOPU5", 12).unwrap();
    assert_eq!(
        p,
        fesl::Progress::Partial {
            index: 1,
            total: Some(2),
            collected: 7
        }
    );
    let p = r.push(*b"acct", 1, "1TG9naW4=", 16);
    assert!(p.is_err());
    let p = r.push(*b"acct", 1, "1TG9n", 12).unwrap();
    assert_eq!(
        p,
        fesl::Progress::Done {
            index: 2,
            text: b"TXN=NuLog".to_vec()
        }
    );
}

#[test]
fn sample_capture_decodes_without_error_nodes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/ra3-login.gwcap");
    let loaded = gwcap::load(&path).unwrap();
    let data = loaded.data;
    let conn = data
        .connections()
        .iter()
        .position(|c| c.protocol.as_deref() == Some("fesl"))
        .unwrap();
    let got = decode_connection(
        &Fesl,
        &Context::default(),
        data.packets_of(ConnectionId(conn as u64)),
    );
    for g in &got {
        assert_no_errors(&g.message);
        assert_eq!(
            Fesl.encode(&g.message.tree).unwrap(),
            g.bytes,
            "{}",
            g.message.label
        );
    }
    let c2s: Vec<&str> = got
        .iter()
        .filter(|g| g.direction == C2S)
        .map(|g| g.message.label.as_str())
        .collect();
    let s2c: Vec<&str> = got
        .iter()
        .filter(|g| g.direction == S2C)
        .map(|g| g.message.label.as_str())
        .collect();
    assert_eq!(
        c2s,
        [
            "fsys Hello",
            "fsys MemCheck",
            "acct NuLogin",
            "acct NuLogin",
            "acct NuGetPersonas",
            "acct NuLoginPersona",
            "acct GameSpyPreAuth",
            "fsys Ping"
        ]
    );
    assert_eq!(
        s2c,
        [
            "fsys Hello",
            "fsys MemCheck",
            "acct NuLogin error 122",
            "acct NuLogin",
            "acct NuGetPersonas",
            "acct NuLoginPersona",
            "acct GameSpyPreAuth",
            "fsys Ping"
        ]
    );
    let preauth = got
        .iter()
        .find(|g| g.direction == S2C && g.message.label == "acct GameSpyPreAuth")
        .unwrap();
    assert_eq!(
        text(preauth.message.tree.find(&["payload", "ticket"]).unwrap()),
        "MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM="
    );
}

#[test]
fn detect_recognises_fesl_only() {
    assert!(Fesl.detect(&client_hello(), C2S));
    assert!(Fesl.detect(&server_hello(), S2C));
    assert!(!Fesl.detect(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C2S));
    assert!(!Fesl.detect(b"\\lc\\1\\challenge\\ABCDEFGHIJ\\id\\1\\final\\", S2C));
    assert!(!Fesl.detect(&[0x16, 3, 0, 0, 0x50, 1, 0, 0, 0x4c, 3, 0, 0], C2S));
    assert!(!Fesl.detect(b"fsys", C2S));
}

// ---- Malformed input -------------------------------------------------------------------

#[test]
fn framing_of_short_oversized_and_garbage_input() {
    let mut d = FeslDecoder::new();
    let hello = client_hello();
    assert_eq!(d.frame(&hello[..5]), Framing::NeedMore(None));
    assert_eq!(d.frame(&hello[..40]), Framing::NeedMore(Some(176)));
    assert_eq!(d.frame(&[]), Framing::NeedMore(None));
    // size below the header
    let mut small = hello.clone();
    small[8..12].copy_from_slice(&11u32.to_be_bytes());
    assert!(matches!(d.frame(&small), Framing::Unframeable { .. }));
    // size above 1 MiB
    let mut big = hello.clone();
    big[8..12].copy_from_slice(&(2u32 << 20).to_be_bytes());
    match d.frame(&big) {
        Framing::Unframeable { reason, .. } => assert!(reason.contains("maximum"), "{reason}"),
        f => panic!("{f:?}"),
    }
    // unknown tag, non-ASCII command
    let mut tag = hello.clone();
    tag[4] = 0x40;
    assert!(matches!(d.frame(&tag), Framing::Unframeable { .. }));
    let mut cmd = hello.clone();
    cmd[1] = 0xff;
    assert!(matches!(d.frame(&cmd), Framing::Unframeable { .. }));
    // garbage then a packet: the skip lands on the packet.
    let mut g = b"\x01\x02 zz\xff".to_vec();
    let at = g.len();
    g.extend(&hello);
    match d.frame(&g) {
        Framing::Unframeable { skip, .. } => assert_eq!(skip, at),
        f => panic!("{f:?}"),
    }
    let got = run(&[(C2S, g)]);
    assert_eq!(labels(&got), ["undecodable", "fsys Hello"]);
}

#[test]
fn malformed_payload_lines_become_error_nodes_and_round_trip() {
    let cases: &[(&[u8], &str)] = &[
        (b"TXN=Hello\nno equals here\n\0", "no '='"),
        (b"TXN=Hello\nkey=\xff\xfe\n\0", "not UTF-8"),
        (b"TXN=Hello\nkey=50%zz\n\0", "bad percent escape"),
        (b"TXN=Hello\nkey=%ff\n\0", "escaped bytes are not UTF-8"),
        (b"TXN=Hello\nkey=a\0b\n\0", "NUL inside"),
        (b"TXN=Hello\n\n\0", "no '='"),
    ];
    for (payload, want) in cases {
        let mut bytes = packet(b"fsys", 0xC0, 1, "");
        bytes.extend_from_slice(payload);
        let len = (bytes.len() as u32).to_be_bytes();
        bytes[8..12].copy_from_slice(&len);
        let m = decode_one(&bytes);
        assert_eq!(m.label, "fsys Hello");
        let errs: Vec<&str> = m
            .tree
            .walk()
            .into_iter()
            .filter_map(|(_, n)| n.error())
            .collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains(want), "{errs:?} vs {want}");
        let raw = m
            .tree
            .walk()
            .into_iter()
            .find(|(_, n)| n.error().is_some())
            .unwrap()
            .1;
        assert_eq!(raw.kind(), Some("raw"));
        assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes, "{want}");
        assert!(fesl::parse_payload(payload).is_err());
    }
}

#[test]
fn missing_terminator_and_truncated_messages() {
    let bytes = packet(b"fsys", 0xC0, 1, "TXN=Hello");
    let m = decode_one(&bytes);
    assert!(m.tree.child("payload").unwrap().error().is_some());
    assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
    assert_eq!(
        fesl::parse_payload(b"TXN=Hello"),
        Err(fesl::FeslError::NoTerminator)
    );
    let mut d = FeslDecoder::new();
    let m = d.decode(b"fsy");
    assert!(m.is_error());
    // decode called on a packet whose size field disagrees
    let mut wrong = client_hello();
    wrong[11] = 0x20;
    let m = d.decode(&wrong);
    assert!(m.tree.find(&["header", "size"]).unwrap().error().is_some());
}

#[test]
fn encode_rejects_bad_header_fields() {
    let m = decode_one(&client_hello());
    let mut t = m.tree.clone();
    t.find_mut(&["header", "command"]).unwrap().value = Value::Text("fsyst".into());
    assert!(matches!(Fesl.encode(&t), Err(EncodeError::BadField { .. })));
    let mut t = m.tree.clone();
    t.find_mut(&["header", "type"]).unwrap().value = Value::UInt(0x41);
    assert!(Fesl.encode(&t).is_err());
    let mut t = m.tree.clone();
    t.find_mut(&["header", "number"]).unwrap().value = Value::UInt(1 << 24);
    assert!(Fesl.encode(&t).is_err());
    let mut t = m.tree.clone();
    t.find_mut(&["payload", "sku"]).unwrap().name = "s=ku".into();
    assert!(Fesl.encode(&t).is_err());
    let mut t = m.tree.clone();
    t.children.retain(|c| c.name != "header");
    assert_eq!(Fesl.encode(&t), Err(EncodeError::Missing("header".into())));
    // Editing the number and a value: size recomputed.
    let mut t = m.tree.clone();
    t.find_mut(&["header", "number"]).unwrap().value = Value::UInt(0x123456);
    t.find_mut(&["payload", "locale"]).unwrap().value = Value::Text("de_DE with space".into());
    let out = Fesl.encode(&t).unwrap();
    assert_eq!(&out[4..8], &[0xC0, 0x12, 0x34, 0x56]);
    assert_eq!(
        u32::from_be_bytes([out[8], out[9], out[10], out[11]]) as usize,
        out.len()
    );
    let back = decode_one(&out);
    assert_eq!(
        text(back.tree.find(&["payload", "locale"]).unwrap()),
        "de_DE with space"
    );
}

// ---- Properties ------------------------------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9]{0,6}(\\.[A-Za-z0-9]{1,4}){0,2}"
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((key(), "\\PC{0,12}|[ -~]{0,12}"), 0..12)
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![Just(Tag::SingleClient), Just(Tag::SingleServer)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_of_decode_is_byte_exact(
        pairs in pairs(), tag in tag(), number in 0u32..0x100_0000, client in any::<bool>()
    ) {
        let bytes = fesl::write_packet(b"acct", tag, number, &pairs, client);
        let m = decode_one(&bytes);
        prop_assert!(!m.tree.has_error(), "{:?}", m.tree);
        prop_assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes.clone());
        prop_assert_eq!(fesl::parse_payload(&bytes[12..]).unwrap(), pairs);
    }

    #[test]
    fn arrays_round_trip(names in prop::collection::vec("[a-z ]{0,8}", 0..6), client in any::<bool>()) {
        let mut pairs = vec![("TXN".to_string(), "NuGetPersonas".to_string()),
                             ("personas.[]".to_string(), names.len().to_string())];
        for (i, n) in names.iter().enumerate() {
            pairs.push((format!("personas.{i}"), n.clone()));
        }
        let bytes = fesl::write_packet(b"acct", Tag::SingleServer, 4, &pairs, client);
        let m = decode_one(&bytes);
        prop_assert!(!m.tree.has_error());
        prop_assert_eq!(Fesl.encode(&m.tree).unwrap(), bytes);
    }

    #[test]
    fn edited_values_come_back(pairs in prop::collection::vec((key(), "[ -~]{0,8}"), 1..8),
                               new in "\\PC{0,16}", pick in any::<prop::sample::Index>()) {
        let bytes = fesl::write_packet(b"acct", Tag::SingleServer, 3, &pairs, false);
        let mut m = decode_one(&bytes);
        // Edit one leaf, wherever it sits in the nested groups.
        let leaves: Vec<Vec<usize>> = leaf_paths(&m.tree);
        let path = &leaves[pick.index(leaves.len())];
        let leaf = node_at_mut(&mut m.tree, path);
        leaf.value = Value::Text(new.clone().into());
        let out = Fesl.encode(&m.tree).unwrap();
        prop_assert_eq!(fesl::frame(&out), Framing::Complete(out.len()));
        let back = decode_one(&out);
        prop_assert!(!back.tree.has_error());
        prop_assert_eq!(node_at(&back.tree, path).value.as_text(), Some(new.as_str()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600),
                                   cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut d = FeslDecoder::new();
        let _ = d.frame(&data);
        let m = d.decode(&data);
        let _ = Fesl.encode(&m.tree);
        let _ = fesl::parse_payload(&data);
        let got = run(&chunked(&data, &cuts));
        let total: usize = got.iter().map(|g| g.bytes.len()).sum();
        prop_assert_eq!(total, data.len());
    }

    #[test]
    fn plausible_headers_with_random_payloads_never_panic(
        payload in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'='), Just(b'.'), Just(b'%'), Just(b'"'), Just(0u8)], 0..200),
        tag in prop_oneof![Just(0xC0u8), Just(0x80), Just(0xF0), Just(0xB0)],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut bytes = packet(b"acct", tag, 5, "");
        bytes.extend(&payload);
        let len = (bytes.len() as u32).to_be_bytes();
        bytes[8..12].copy_from_slice(&len);
        let mut stream = bytes.clone();
        stream.extend(&bytes);
        let got = run(&chunked(&stream, &cuts));
        prop_assert_eq!(got.len(), 2);
        for g in &got {
            if let Ok(out) = Fesl.encode(&g.message.tree) {
                // Whatever re-encodes frames as one packet again.
                prop_assert_eq!(fesl::frame(&out), Framing::Complete(out.len()));
            }
        }
    }
}

fn chunked(data: &[u8], cuts: &[prop::sample::Index]) -> Vec<(Direction, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| (C2S, data[w[0]..w[1]].to_vec()))
        .collect()
}

fn leaf_paths(tree: &Node) -> Vec<Vec<usize>> {
    fn go(n: &Node, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        for (i, c) in n.children.iter().enumerate() {
            path.push(i);
            if matches!(c.value, Value::Text(_)) {
                out.push(path.clone());
            } else {
                go(c, path, out);
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    let payload = tree
        .children
        .iter()
        .position(|c| c.name == "payload")
        .unwrap();
    go(&tree.children[payload], &mut vec![payload], &mut out);
    out
}

fn node_at<'a>(n: &'a Node, path: &[usize]) -> &'a Node {
    path.iter().fold(n, |n, &i| &n.children[i])
}

fn node_at_mut<'a>(n: &'a mut Node, path: &[usize]) -> &'a mut Node {
    path.iter().fold(n, |n, &i| &mut n.children[i])
}
