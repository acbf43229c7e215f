//! Helpers shared by the integration tests.
#![allow(dead_code)]

use gamewire::capture::files::{Format, Scope, Source};
use gamewire::capture::{
    Connection, ConnectionId, Direction, NewPacket, PacketFlags, StoreData, Timestamp, TlsInfo,
    Transport,
};

/// Writes `data` to `path` through the program's one save path, in the format the name asks
/// for.
pub fn save(data: &StoreData, path: &std::path::Path) {
    let format = Format::of_output(path).unwrap();
    gamewire::dissect::export::save(Source::Data(data), path, format, Scope::All, &|_| {}).unwrap();
}

/// A capture that exercises every field of the model: IPv4 and IPv6, all transports, TLS
/// facts, labels, flags, an edited packet with its original, an open and a closed
/// connection, one with no packets, binary and empty payloads.
pub fn rich_capture() -> StoreData {
    let mut data = StoreData::new();
    let mut a = Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:18800".parse().unwrap(),
        Transport::Tcp,
        Timestamp(1_754_607_232_000_000_001),
    );
    a.protocol = Some("fesl".into());
    a.route = Some("fesl".into());
    a.tls = Some(TlsInfo {
        sni: Some("fesl.ea.com".into()),
        alpn: Some("h2".into()),
        version: Some("TLSv1.3".into()),
        cipher: None,
    });
    let a = data.add_connection(a);
    let mut b = Connection::new(
        "[::1]:50001".parse().unwrap(),
        "[2001:db8::7]:5520".parse().unwrap(),
        Transport::Quic,
        Timestamp(1_754_607_232_500_000_000),
    );
    b.route = Some("hytale".into());
    let b = data.add_connection(b);
    let c = data.add_connection(Connection::new(
        "10.1.2.3:6000".parse().unwrap(),
        "10.1.2.4:27900".parse().unwrap(),
        Transport::Udp,
        Timestamp(1_754_607_233_000_000_000),
    ));
    data.add_connection(Connection::new(
        "127.0.0.1:50009".parse().unwrap(),
        "127.0.0.1:9000".parse().unwrap(),
        Transport::Tcp,
        Timestamp(1_754_607_233_100_000_000),
    ));
    let mut t = 1_754_607_232_000_100_000i64;
    let mut push = |conn: ConnectionId, dir, bytes: &[u8], label: Option<&str>, flags| {
        t += 1_234_567;
        let mut p = NewPacket::new(conn, dir, Timestamp(t), bytes.to_vec());
        p.label = label.map(str::to_owned);
        p.flags = flags;
        data.append(p).unwrap();
    };
    push(
        a,
        Direction::ClientToServer,
        b"fsys\xc0\x00\x00\x01\x00\x00\x00\x10TXN=",
        Some("fsys Hello"),
        PacketFlags::empty(),
    );
    push(
        a,
        Direction::ServerToClient,
        &[0u8, 255, 10, 13, 0x1a],
        Some("fsys Hello"),
        PacketFlags::REPLAYED,
    );
    push(
        b,
        Direction::ClientToServer,
        &[],
        None,
        PacketFlags::empty(),
    );
    push(
        c,
        Direction::ServerToClient,
        b"\\lc\\1\\final\\",
        Some("gp lc"),
        PacketFlags::INJECTED,
    );
    push(
        a,
        Direction::ClientToServer,
        "ünïcödé ✓".as_bytes(),
        Some("label with \"quotes\"\n"),
        PacketFlags::DROPPED,
    );
    let mut edited = NewPacket::new(
        a,
        Direction::ClientToServer,
        Timestamp(t + 5),
        b"edited".to_vec(),
    );
    edited.flags = PacketFlags::EDITED;
    edited.original = Some(b"original".to_vec());
    edited.label = Some("acct NuLogin".into());
    data.append(edited).unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    data.append(NewPacket::new(
        b,
        Direction::ServerToClient,
        Timestamp(t + 9),
        big,
    ))
    .unwrap();
    data.close_connection(a, Timestamp(t + 1_000_000_000), Some("client reset".into()))
        .unwrap();
    data.close_connection(c, Timestamp(t + 2_000_000_000), None)
        .unwrap();
    data
}

/// Asserts two captures hold the same connections and packets, field by field.
pub fn assert_same_capture(a: &StoreData, b: &StoreData) {
    assert_eq!(a.connections(), b.connections(), "connections differ");
    assert_eq!(a.packet_count(), b.packet_count(), "packet counts differ");
    for (x, y) in a.packets().zip(b.packets()) {
        assert_eq!(x.to_packet(), y.to_packet(), "packet {} differs", x.id);
    }
}

pub fn gamewire_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gamewire")
}

/// A free TCP port on 127.0.0.1 for a server the test configures by address.
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux), so the port cannot be
/// handed to some other socket's `connect` or `bind(0)` between this check and the server's
/// own bind, as a port freed by `bind("127.0.0.1:0")` can under parallel tests. Ports are
/// handed out in turn from a per-process start, so tests in one run never get the same one.
pub fn free_port() -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = LOW + (start + step) % SPAN;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
}

/// The decoding context `inspect` uses in this repository: the `.proto` schemas of
/// `proto/`, so Star Citizen payloads carry their field names.
pub fn schema_context() -> gamewire::dissect::Context {
    use gamewire::dissect::protobuf::schema;
    let dirs = schema::schema_dirs(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &[]);
    gamewire::dissect::Context {
        schemas: Some(schema::load_schemas(&dirs).unwrap()),
        ..gamewire::dissect::Context::default()
    }
}
