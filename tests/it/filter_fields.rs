//! Filter fields as the dissectors register them: every registered path finds a node in a
//! real tree of the dissector that registered it (the sample sessions, plus HTTP/1, HTTP/2
//! and gRPC exchanges built here, which the samples lack), so renaming a node fails here;
//! and a misspelt field name is a parse error that suggests the names it was close to.

use crate::common;

use std::sync::OnceLock;

use gamewire::capture::{
    Connection, Direction, NewPacket, PacketId, StoreData, Timestamp, Transport,
};
use gamewire::dissect::filter::{Filter, PacketView, path_resolves};
use gamewire::dissect::http2::{self, PREFACE};
use gamewire::dissect::session::{CaptureDecode, decode_capture};
use gamewire::dissect::{FieldDef, FieldPath, FieldType, Message, Registry, fesl, hytale};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

struct Decoded {
    data: StoreData,
    decode: CaptureDecode,
}

fn add(data: &mut StoreData, server: &str, packets: &[(Direction, Vec<u8>)]) {
    let c = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        server.parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (dir, bytes) in packets {
        data.append(NewPacket::new(c, *dir, Timestamp(0), bytes.clone()))
            .unwrap();
    }
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// One HTTP/2 exchange: `request` headers, then `response` headers and `trailers`.
fn h2_call(
    request: &[(&str, &str)],
    response: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> Vec<(Direction, Vec<u8>)> {
    let block = |enc: &mut loona_hpack::Encoder<'_>, h: &[(&str, &str)]| {
        enc.encode(h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    };
    let (mut cenc, mut senc) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
    let mut client = PREFACE.to_vec();
    client.extend(h2_frame(http2::SETTINGS, 0, 0, &[]));
    let end = http2::FLAG_END_HEADERS | http2::FLAG_END_STREAM;
    client.extend(h2_frame(http2::HEADERS, end, 1, &block(&mut cenc, request)));
    let mut server = h2_frame(http2::SETTINGS, 0, 0, &[]);
    let resp = block(&mut senc, response);
    server.extend(h2_frame(http2::HEADERS, http2::FLAG_END_HEADERS, 1, &resp));
    server.extend(h2_frame(
        http2::HEADERS,
        end,
        1,
        &block(&mut senc, trailers),
    ));
    vec![(C2S, client), (S2C, server)]
}

/// The sample sessions and the HTTP exchanges, decoded as `inspect` decodes them.
fn decoded() -> &'static Decoded {
    static CELL: OnceLock<Decoded> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut data = gamewire::clients::samples::all_samples();
        add(
            &mut data,
            "127.0.0.1:80",
            &[
                (
                    C2S,
                    b"GET /status HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
                ),
                (
                    S2C,
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                ),
            ],
        );
        let get = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "web.test"),
        ];
        add(
            &mut data,
            "127.0.0.1:50443",
            &h2_call(&get, &[(":status", "200")], &[("x-done", "1")]),
        );
        let call = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/sc.Login/Initiate"),
            (":authority", "127.0.0.1:5678"),
            ("content-type", "application/grpc"),
        ];
        let status = [(":status", "200"), ("content-type", "application/grpc")];
        let trailers = [("grpc-status", "5"), ("grpc-message", "not found")];
        add(
            &mut data,
            "127.0.0.1:5678",
            &h2_call(&call, &status, &trailers),
        );
        let ctx = common::schema_context();
        let decode = decode_capture(&Registry::standard(), &ctx, &data, None);
        Decoded { data, decode }
    })
}

/// Every message the dissector called `protocol` decoded.
fn messages_of(protocol: &str) -> Vec<&'static Message> {
    let d = decoded();
    d.decode
        .messages
        .values()
        .flatten()
        .filter(|m| {
            d.data
                .packet(m.packet)
                .and_then(|p| d.decode.protocols.get(&p.connection))
                == Some(&protocol)
        })
        .map(|m| &m.message)
        .collect()
}

#[test]
fn every_registered_path_resolves_in_a_real_tree_of_its_dissector() {
    let fields = Registry::standard().filter_fields();
    assert!(fields.fields.len() >= 17, "{:?}", fields.fields);
    for (protocol, field) in &fields.fields {
        let messages = messages_of(protocol);
        assert!(
            !messages.is_empty(),
            "no {protocol} messages to check against"
        );
        for path in field.paths {
            assert!(
                messages.iter().any(|m| path_resolves(path, m)),
                "{protocol}: `{}` path {path:?} finds no node in any decoded {protocol} message",
                field.name
            );
        }
    }
}

#[test]
fn path_resolves_follows_the_tree_exactly() {
    let m = fesl::FeslDecoder::new().decode_packet(&fesl::write_packet(
        b"acct",
        fesl::Tag::SingleClient,
        1,
        &[("TXN", "NuLogin")],
        true,
    ));
    assert!(path_resolves(&FieldPath::Anchored(&["payload", "TXN"]), &m));
    assert!(path_resolves(&FieldPath::Anchored(&["payload", "txn"]), &m));
    assert!(!path_resolves(&FieldPath::Anchored(&["TXN"]), &m));
    assert!(!path_resolves(
        &FieldPath::Anchored(&["payload", "TXNs"]),
        &m
    ));
    assert!(path_resolves(&FieldPath::Anywhere("TXN"), &m));
    assert!(!path_resolves(&FieldPath::Anywhere("nuid"), &m));
    let ping = hytale::decode_message(&hytale::ping(1, 2, 3, [4, 5, 6]).unwrap(), None);
    assert!(path_resolves(&FieldPath::RootName, &ping));
    assert!(path_resolves(&FieldPath::FirstChildName, &ping));
}

#[test]
fn registrations_are_well_formed() {
    let fields = Registry::standard().filter_fields();
    for (protocol, f) in &fields.fields {
        assert!(!f.help.is_empty() && !f.paths.is_empty(), "{f:?}");
        for name in f.names() {
            assert_eq!(
                name,
                name.to_ascii_lowercase(),
                "{name}: names are lowercase"
            );
            let (ns, leaf) = name.split_once('.').unwrap_or_else(|| panic!("{name}"));
            assert!(!leaf.is_empty() && !leaf.contains('.'), "{name}");
            let ns = fields
                .namespace(ns)
                .unwrap_or_else(|| panic!("{name}: no namespace"));
            assert!(
                ns.protocols.contains(protocol),
                "{name}: registered by {protocol}, whose connections `{}` does not cover",
                ns.name
            );
            let others: Vec<&FieldDef> = fields
                .fields
                .iter()
                .map(|(_, g)| g)
                .filter(|g| g.name != f.name && g.names().any(|n| n == name))
                .collect();
            assert!(others.is_empty(), "{name} names two fields: {others:?}");
        }
        let special = |p: &FieldPath| matches!(p, FieldPath::RootName | FieldPath::FirstChildName);
        assert!(
            f.paths.len() == 1 || !f.paths.iter().any(special),
            "{}: a name path stands alone",
            f.name
        );
    }
    let http = fields.namespace("http").unwrap();
    assert_eq!(http.protocols, ["h2", "grpc", "http"]);
    assert!(fields.namespace("json").unwrap().nested);
    assert!(!fields.namespace("fesl").unwrap().nested);
    // Both HTTP dissectors register `http.status`: the field looks for either spelling.
    assert_eq!(
        fields.paths("h2.code").unwrap(),
        [FieldPath::Anywhere(":status"), FieldPath::Anywhere("code")]
    );
    assert_eq!(fields.paths("fesl.nuid"), None);
}

/// Ids of the packets `filter` matches.
fn ids(filter: &str) -> Vec<u64> {
    let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let d = decoded();
    (0..d.data.packet_count() as u64)
        .filter(|&i| {
            let view = PacketView::of(&d.data, Some(&d.decode), PacketId(i)).unwrap();
            f.matches(&view)
        })
        .collect()
}

#[test]
fn every_registered_name_filters_packets() {
    let fields = Registry::standard().filter_fields();
    for (_, f) in &fields.fields {
        let canonical = ids(f.name);
        assert!(!canonical.is_empty(), "`{}` matches no packet", f.name);
        for alias in f
            .aliases
            .iter()
            .filter(|a| a.split('.').next() == f.name.split('.').next())
        {
            assert_eq!(ids(alias), canonical, "{alias} and {}", f.name);
        }
    }
    // The exchanges built here: HTTP/1 on port 80, h2 on 50443, gRPC on 5678.
    assert_eq!(ids("http.status == 404 && conn.server.port == 80").len(), 1);
    assert_eq!(
        ids("h2.status == 200 && (conn.server.port == 50443 || conn.server.port == 5678)").len(),
        2,
        "the h2 and the gRPC response"
    );
    assert!(ids("http.status == 404 && conn.server.port != 80").is_empty());
    assert_eq!(
        ids("grpc.status == 5"),
        ids("grpc.message == \"not found\"")
    );
    assert_eq!(ids("http.host == web.test"), ids("http2.host == web.test"));
    assert_eq!(ids("http.host == api.test").len(), 1);
    assert_eq!(ids("http.method == GET").len(), 2);
}

#[test]
fn a_registry_with_more_fields_extends_the_filter() {
    const EXTRA: &[FieldDef] = &[FieldDef {
        name: "fesl.nick",
        aliases: &[],
        ty: FieldType::Text,
        help: "the persona name",
        paths: &[FieldPath::Anywhere("name")],
    }];
    let fields = Registry::standard()
        .with_fields("fesl", EXTRA)
        .filter_fields();
    let f = Filter::parse_with("fesl.nick", &fields).unwrap();
    let g = Filter::parse_with("fesl.name", &fields).unwrap();
    let d = decoded();
    let hits = |f: &Filter| -> Vec<u64> {
        (0..d.data.packet_count() as u64)
            .filter(|&i| f.matches(&PacketView::of(&d.data, Some(&d.decode), PacketId(i)).unwrap()))
            .collect()
    };
    assert_eq!(hits(&f), hits(&g));
    // The standard filter does not know it: a path of that name matches nothing.
    assert!(ids("fesl.nick").is_empty());
}

#[test]
fn an_unknown_field_suggests_close_names() {
    let cases = [
        ("fsel.txn == NuLogin", "`fesl.txn`"),
        ("htpp.status >= 400", "`http.status`"),
        ("grcp", "`grpc`"),
        ("protocl == fesl", "`protocol`"),
        ("conn.prot == 1", "`conn.port`"),
        ("conn.tl", "`conn.tls`"),
    ];
    for (expr, want) in cases {
        let err = Filter::parse(expr).unwrap_err();
        assert_eq!(err.position, 0, "{expr}");
        assert!(err.message.contains("did you mean"), "{expr}: {err}");
        assert!(err.message.contains(want), "{expr}: {err}");
    }
    // Nothing close: the error lists the known fields, registered ones included.
    let err = Filter::parse("dir == c2s && wibble").unwrap_err();
    assert_eq!(err.position, 14);
    assert!(!err.message.contains("did you mean"), "{err}");
    for known in [
        "packet fields: id",
        "fesl.*",
        "fesl.txn",
        "grpc.status",
        "http.host",
    ] {
        assert!(err.message.contains(known), "{known}: {err}");
    }
    // Inside a known namespace a name is a tree path, not an error.
    assert!(Filter::parse("fesl.txnn").is_ok());
}

#[test]
fn field_names_include_the_registered_fields() {
    let names = Filter::field_names();
    for n in [
        "id",
        "conn.tls.sni",
        "fesl",
        "jwt",
        "fesl.txn",
        "fesl.cmd",
        "h2.status",
    ] {
        assert!(names.contains(&n), "{n}: {names:?}");
    }
}

#[test]
fn the_readme_lists_every_registered_field() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("### Filters").unwrap();
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |n| n + 4)];
    for f in Registry::standard().filter_fields().unique() {
        assert!(
            section.contains(&format!("`{}`", f.name)),
            "README lacks `{}`",
            f.name
        );
    }
}
