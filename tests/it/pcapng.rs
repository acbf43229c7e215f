//! pcapng export checked with Wireshark's own tshark (follow streams, timestamps, addresses,
//! checksums), lossless re-import, best-effort import of other tools' files, and import of
//! damaged files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use gamewire::capture::pcapng::{self, Imported, PcapngError};
use gamewire::capture::{
    Connection, ConnectionId, Direction, PacketFlags, StoreData, Timestamp, TlsInfo, Transport,
    UNKNOWN_ADDR,
};
use proptest::prelude::*;

const T0: i64 = 1_754_607_232_000_000_001;
const BIG: usize = 70_001;

/// Bytes that are hard to carry: every byte value, and runs that look like pcapng magic.
fn binary(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| match i % 7 {
            0 => 0x0A,
            1 => 0x0D,
            _ => (i as u8).wrapping_mul(31).wrapping_add(seed),
        })
        .collect()
}

fn conn(client: &str, server: &str, transport: Transport, opened: i64) -> Connection {
    let server = if server.is_empty() {
        UNKNOWN_ADDR
    } else {
        server.parse().unwrap()
    };
    Connection::new(
        client.parse().unwrap(),
        server,
        transport,
        Timestamp(opened),
    )
}

struct Clock(i64);

impl Clock {
    fn tick(&mut self) -> Timestamp {
        self.0 += 1_234_567;
        Timestamp(self.0)
    }
}

#[allow(clippy::too_many_arguments)]
fn put(
    data: &mut StoreData,
    c: ConnectionId,
    dir: Direction,
    ts: Timestamp,
    bytes: &[u8],
    label: Option<&str>,
    flags: PacketFlags,
    original: Option<&[u8]>,
) {
    data.append_parts(c, dir, ts, bytes, label, flags, original)
        .unwrap();
}

/// Several connections covering every case the export handles differently.
fn rich_capture() -> StoreData {
    use Direction::{ClientToServer as C2S, ServerToClient as S2C};
    let none = PacketFlags::empty();
    let mut d = StoreData::new();

    let mut fesl = conn("127.0.0.1:50000", "127.0.0.1:18800", Transport::Tcp, T0);
    fesl.protocol = Some("fesl".into());
    fesl.route = Some("fesl-ra3".into());
    fesl.tls = Some(TlsInfo {
        sni: Some("ra3.fesl.ea.com".into()),
        alpn: None,
        version: Some("TLSv1.2".into()),
        cipher: Some("TLS_RSA_WITH_RC4_128_SHA".into()),
    });
    let fesl = d.add_connection(fesl);
    let quic = d.add_connection(conn(
        "[::1]:50001",
        "[2001:db8::7]:5520",
        Transport::Quic,
        T0 + 10,
    ));
    let udp = d.add_connection(conn(
        "10.1.2.3:6000",
        "10.1.2.4:27900",
        Transport::Udp,
        T0 + 20,
    ));
    let idle = d.add_connection(conn(
        "127.0.0.1:50009",
        "127.0.0.1:9000",
        Transport::Tcp,
        T0 + 30,
    ));
    let sd = d.add_connection(conn("192.168.1.20:61000", "", Transport::Tcp, T0 + 40));
    let mixed = d.add_connection(conn(
        "127.0.0.1:50010",
        "[2001:db8::9]:40443",
        Transport::Tcp,
        T0 + 50,
    ));
    let sd_udp6 = d.add_connection(conn("[fe80::1]:7000", "", Transport::Udp, T0 + 60));

    let mut t = Clock(T0 + 1_000);
    let hello = b"fsys\xc0\x00\x00\x01\x00\x00\x00\x10TXN=Hello\n\x00";
    put(
        &mut d,
        fesl,
        C2S,
        t.tick(),
        hello,
        Some("fsys Hello"),
        none,
        None,
    );
    put(
        &mut d,
        fesl,
        S2C,
        t.tick(),
        &binary(300, 1),
        Some("fsys Hello"),
        PacketFlags::REPLAYED,
        None,
    );
    put(
        &mut d,
        quic,
        C2S,
        t.tick(),
        &binary(40, 2),
        None,
        none,
        None,
    );
    put(
        &mut d,
        fesl,
        C2S,
        t.tick(),
        b"edited!",
        Some("acct NuLogin"),
        PacketFlags::EDITED,
        Some(b"original bytes"),
    );
    put(
        &mut d,
        fesl,
        S2C,
        t.tick(),
        &binary(BIG, 3),
        Some("große Antwort ✓"),
        none,
        None,
    );
    put(
        &mut d,
        fesl,
        C2S,
        t.tick(),
        b"never delivered",
        None,
        PacketFlags::DROPPED,
        None,
    );
    put(&mut d, fesl, C2S, t.tick(), b"", Some("empty"), none, None);
    // An edit that shrank a large message: the record (with the original in hex) needs
    // several comments, more than the packet has frames.
    put(
        &mut d,
        fesl,
        C2S,
        t.tick(),
        b"short",
        None,
        PacketFlags::EDITED | PacketFlags::INJECTED,
        Some(&binary(100_000, 4)),
    );
    put(
        &mut d,
        udp,
        C2S,
        t.tick(),
        b"\\basic\\",
        Some("gp basic"),
        none,
        None,
    );
    put(
        &mut d,
        udp,
        S2C,
        t.tick(),
        &binary(BIG, 5),
        None,
        PacketFlags::INJECTED,
        None,
    );
    put(&mut d, udp, S2C, t.tick(), b"", None, none, None);
    put(
        &mut d,
        udp,
        C2S,
        t.tick(),
        &binary(50_000, 6),
        None,
        PacketFlags::DROPPED,
        None,
    );
    put(
        &mut d,
        quic,
        S2C,
        t.tick(),
        &binary(1_000, 7),
        None,
        PacketFlags(0x80),
        None,
    );
    put(
        &mut d,
        sd,
        C2S,
        t.tick(),
        b"{\"jsonrpc\":\"2.0\"}",
        Some("rpc"),
        none,
        None,
    );
    put(
        &mut d,
        sd,
        S2C,
        t.tick(),
        &binary(2_000, 8),
        Some("rpc"),
        none,
        None,
    );
    put(
        &mut d,
        mixed,
        C2S,
        t.tick(),
        b"GET / HTTP/1.1\r\n\r\n",
        None,
        none,
        None,
    );
    put(
        &mut d,
        mixed,
        S2C,
        t.tick(),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        None,
        none,
        None,
    );
    put(
        &mut d,
        sd_udp6,
        S2C,
        t.tick(),
        &binary(99, 9),
        None,
        none,
        None,
    );
    // Recorded late but earlier in time: the export must still be in time order.
    let early = Timestamp(T0 + 500);
    put(&mut d, quic, C2S, early, b"early", None, none, None);
    let end = t.tick().0;

    d.close_connection(
        fesl,
        Timestamp(end + 1_000_000),
        Some("client closed".into()),
    )
    .unwrap();
    d.close_connection(udp, Timestamp(end + 2_000_000), None)
        .unwrap();
    d.close_connection(idle, Timestamp(T0 + 40_000_000), Some("timeout".into()))
        .unwrap();
    d.close_connection(sd, Timestamp(end + 3_000_000), None)
        .unwrap();
    d.close_connection(mixed, Timestamp(end + 4_000_000), Some("reset".into()))
        .unwrap();
    d
}

// -- tshark -----------------------------------------------------------------------------------

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "tshark could not be run ({e}). These tests check exports with Wireshark's tshark; \
             install it (Debian/Ubuntu: apt-get install tshark) so that `tshark` is on PATH."
            )
        });
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark prints UTF-8")
}

fn exported(data: &StoreData) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcapng");
    common::save(data, &path);
    (dir, path)
}

/// What `-z follow,PROTO,raw,N` printed: the two nodes and the bytes each one sent.
struct Followed {
    node0: String,
    node1: String,
    from0: Vec<u8>,
    from1: Vec<u8>,
}

/// The raw follow output is a banner, `Node 0: addr:port` and `Node 1: ...`, then one hex
/// line per segment: unindented for data sent by node 0, indented by a tab for node 1.
fn follow(path: &Path, proto: &str, stream: usize) -> Followed {
    let out = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-q",
        "-z",
        &format!("follow,{proto},raw,{stream}"),
    ]);
    let mut f = Followed {
        node0: String::new(),
        node1: String::new(),
        from0: Vec::new(),
        from1: Vec::new(),
    };
    let mut in_data = false;
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("Node 0: ") {
            f.node0 = n.to_owned();
        } else if let Some(n) = line.strip_prefix("Node 1: ") {
            f.node1 = n.to_owned();
            in_data = true;
        } else if line.starts_with("====") {
            in_data = false;
        } else if in_data {
            match line.strip_prefix('\t') {
                Some(hex_line) => f.from1.extend(hex::decode(hex_line).unwrap()),
                None => f.from0.extend(hex::decode(line).unwrap()),
            }
        }
    }
    f
}

fn stream_count(path: &Path, field: &str) -> usize {
    tshark(&["-r", path.to_str().unwrap(), "-T", "fields", "-e", field])
        .lines()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1)
}

/// The addresses an export shows for a connection, as tshark prints them.
fn wire_ends(c: &Connection) -> (SocketAddr, SocketAddr) {
    let server = if c.server == UNKNOWN_ADDR {
        if c.client.is_ipv4() {
            "192.0.2.1:9".parse().unwrap()
        } else {
            "[2001:db8::1]:9".parse().unwrap()
        }
    } else {
        c.server
    };
    if c.client.is_ipv4() == server.is_ipv4() {
        return (c.client, server);
    }
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    (v6(c.client), v6(server))
}

/// Each direction's bytes that actually flowed (not dropped), in time order.
fn flowed(data: &StoreData, c: ConnectionId) -> (Vec<u8>, Vec<u8>) {
    let mut packets: Vec<_> = data.packets_of(c).collect();
    packets.sort_by_key(|p| (p.timestamp, p.id));
    let mut c2s = Vec::new();
    let mut s2c = Vec::new();
    for p in packets
        .iter()
        .filter(|p| !p.flags.contains(PacketFlags::DROPPED))
    {
        match p.direction {
            Direction::ClientToServer => c2s.extend_from_slice(p.data),
            Direction::ServerToClient => s2c.extend_from_slice(p.data),
        }
    }
    (c2s, s2c)
}

fn assert_follow_matches(data: &StoreData, path: &Path, proto: &str, transports: &[Transport]) {
    let wanted: Vec<&Connection> = data
        .connections()
        .iter()
        .filter(|c| transports.contains(&c.transport))
        .collect();
    let streams = stream_count(path, &format!("{proto}.stream"));
    assert_eq!(streams, wanted.len(), "{proto} streams");
    let mut seen = BTreeMap::new();
    for n in 0..streams {
        let f = follow(path, proto, n);
        let c = wanted
            .iter()
            .find(|c| {
                let (client, server) = wire_ends(c);
                let ends = [client.to_string(), server.to_string()];
                ends.contains(&f.node0) && ends.contains(&f.node1)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{proto} stream {n} ({} / {}) matches no connection",
                    f.node0, f.node1
                )
            });
        let (c2s, s2c) = flowed(data, c.id);
        // Node 0 is whoever sent the stream's first frame; for TCP that is the client's SYN.
        let (from_client, from_server) = if f.node0 == wire_ends(c).0.to_string() {
            (f.from0, f.from1)
        } else {
            (f.from1, f.from0)
        };
        assert!(
            from_client == c2s,
            "{proto} stream {n}: client bytes differ ({} vs {})",
            from_client.len(),
            c2s.len()
        );
        assert!(
            from_server == s2c,
            "{proto} stream {n}: server bytes differ ({} vs {})",
            from_server.len(),
            s2c.len()
        );
        seen.insert(c.id, n);
    }
    assert_eq!(seen.len(), wanted.len(), "every connection is one stream");
}

#[test]
fn tshark_follow_gives_back_exactly_the_recorded_bytes() {
    let data = rich_capture();
    let (_dir, path) = exported(&data);
    assert_follow_matches(&data, &path, "tcp", &[Transport::Tcp, Transport::Quic]);
    assert_follow_matches(&data, &path, "udp", &[Transport::Udp]);
}

fn nanos_of_epoch(field: &str) -> i64 {
    let (secs, frac) = field.split_once('.').unwrap();
    assert_eq!(frac.len(), 9, "tshark shows nanoseconds: {field}");
    secs.parse::<i64>().unwrap() * 1_000_000_000 + frac.parse::<i64>().unwrap()
}

/// The packet id in a frame's first gamewire packet record, if it carries one.
fn packet_id_in(comment: &str) -> Option<u64> {
    let start = comment.find(r#"{"kind":"packet","conn":"#)?;
    let rest = &comment[start..];
    let id = &rest[rest.find(r#","id":"#)? + 6..];
    let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn tshark_sees_recorded_times_addresses_and_sound_frames() {
    let data = rich_capture();
    let (_dir, path) = exported(&data);
    let fields = [
        "frame.time_epoch",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "ip.checksum.status",
        "tcp.checksum.status",
        "udp.checksum.status",
        "_ws.malformed",
        "_ws.expert.severity",
        "_ws.expert.message",
        "frame.comment",
    ];
    let mut args = vec![
        "-r",
        path.to_str().unwrap(),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
    ];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let out = tshark(&args);
    let mut last_time = i64::MIN;
    let mut checked = BTreeMap::new();
    for line in out.lines() {
        let col: Vec<&str> = line.split('\t').collect();
        assert_eq!(col.len(), fields.len(), "{line}");
        let time = nanos_of_epoch(col[0]);
        assert!(time >= last_time, "frames are in time order: {line}");
        last_time = time;
        for status in &col[9..12] {
            assert!(status.is_empty() || *status == "1", "bad checksum: {line}");
        }
        assert!(col[12].is_empty(), "malformed frame: {line}");
        // Wireshark's expert severities: 2097152 chat, 4194304 note, 6291456 warn, 8388608
        // error, 1048576 comment (the frame comments themselves).
        for severity in col[13].split(',').filter(|s| !s.is_empty()) {
            let severity: u64 = severity.parse().unwrap();
            assert!(severity < 6_291_456, "tshark warns: {line}");
        }
        let Some(id) = packet_id_in(col[15]) else {
            continue;
        };
        let p = data.packet(gamewire::capture::PacketId(id)).unwrap();
        assert_eq!(time, p.timestamp.0, "packet {id} time");
        let c = data.connection(p.connection).unwrap();
        let (client, server) = wire_ends(c);
        let (src, dst) = match p.direction {
            Direction::ClientToServer => (client, server),
            Direction::ServerToClient => (server, client),
        };
        let udp_dropped = c.transport == Transport::Udp && p.flags.contains(PacketFlags::DROPPED);
        if !udp_dropped {
            let (ip_src, ip_dst) = if src.is_ipv4() {
                (col[1], col[2])
            } else {
                (col[3], col[4])
            };
            let (sport, dport) = if c.transport == Transport::Udp {
                (col[7], col[8])
            } else {
                (col[5], col[6])
            };
            assert_eq!(ip_src, src.ip().to_string(), "packet {id}");
            assert_eq!(ip_dst, dst.ip().to_string(), "packet {id}");
            assert_eq!(sport, src.port().to_string(), "packet {id}");
            assert_eq!(dport, dst.port().to_string(), "packet {id}");
        }
        checked.insert(id, ());
    }
    assert_eq!(
        checked.len(),
        data.packet_count(),
        "every packet has its record on a frame"
    );
}

// -- round trip -------------------------------------------------------------------------------

fn assert_same_capture(want: &StoreData, got: &StoreData) {
    assert_eq!(got.connections().len(), want.connections().len());
    for (w, g) in want.connections().iter().zip(got.connections()) {
        assert_eq!(g.id, w.id);
        assert_eq!(g.client, w.client, "connection {}", w.id);
        assert_eq!(g.server, w.server, "connection {}", w.id);
        assert_eq!(g.transport, w.transport, "connection {}", w.id);
        assert_eq!(g.tls, w.tls, "connection {}", w.id);
        assert_eq!(g.protocol, w.protocol, "connection {}", w.id);
        assert_eq!(g.route, w.route, "connection {}", w.id);
        assert_eq!(g.opened, w.opened, "connection {}", w.id);
        assert_eq!(g.closed, w.closed, "connection {}", w.id);
        assert_eq!(g.close_reason, w.close_reason, "connection {}", w.id);
    }
    assert_eq!(got.packet_count(), want.packet_count());
    for (w, g) in want.packets().zip(got.packets()) {
        assert_eq!(g.id, w.id);
        assert_eq!(g.connection, w.connection, "packet {}", w.id);
        assert_eq!(g.direction, w.direction, "packet {}", w.id);
        assert_eq!(g.timestamp, w.timestamp, "packet {}", w.id);
        assert!(g.data == w.data, "packet {}: data differs", w.id);
        assert_eq!(g.label, w.label, "packet {}", w.id);
        assert_eq!(g.flags, w.flags, "packet {}", w.id);
        assert_eq!(g.original, w.original, "packet {}", w.id);
    }
}

fn import(path: &Path) -> Imported {
    let imported = pcapng::import_file(path, false).unwrap();
    assert!(imported.problems.is_empty(), "{:?}", imported.problems);
    imported
}

#[test]
fn export_then_import_restores_every_field() {
    let data = rich_capture();
    let (_dir, path) = exported(&data);
    assert_same_capture(&data, &import(&path).data);
}

#[test]
fn a_file_rewritten_by_wireshark_still_imports_losslessly() {
    let data = rich_capture();
    let (dir, path) = exported(&data);
    let rewritten = dir.path().join("rewritten.pcapng");
    tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-w",
        rewritten.to_str().unwrap(),
    ]);
    assert_same_capture(&data, &import(&rewritten).data);
}

#[test]
fn exports_are_reproducible_and_keep_selects_connections() {
    let data = rich_capture();
    let export = |keep: &dyn Fn(ConnectionId) -> bool| {
        let mut out = Vec::new();
        pcapng::export(&data, &mut out, keep).unwrap();
        out
    };
    assert_eq!(export(&|_| true), export(&|_| true));
    let some = export(&|c| c.0 == 2 || c.0 == 4);
    let got = pcapng::import_slice(&some, false).unwrap().data;
    let kept: Vec<&Connection> = data
        .connections()
        .iter()
        .filter(|c| c.id.0 == 2 || c.id.0 == 4)
        .collect();
    assert_eq!(got.connections().len(), 2);
    for (new_id, (w, g)) in kept.iter().zip(got.connections()).enumerate() {
        assert_eq!(g.id, ConnectionId(new_id as u64));
        assert_eq!(
            (g.client, g.server, g.transport),
            (w.client, w.server, w.transport)
        );
        let want: Vec<_> = data
            .packets_of(w.id)
            .map(|p| (p.timestamp, p.data.to_vec(), p.flags))
            .collect();
        let have: Vec<_> = got
            .packets_of(g.id)
            .map(|p| (p.timestamp, p.data.to_vec(), p.flags))
            .collect();
        assert_eq!(have, want);
    }
}

#[test]
fn an_empty_capture_exports_and_imports() {
    let data = StoreData::new();
    let mut out = Vec::new();
    pcapng::export(&data, &mut out, |_| true).unwrap();
    let got = pcapng::import_slice(&out, false).unwrap();
    assert_eq!(got.data.connections().len(), 0);
    assert!(got.problems.is_empty());
}

#[test]
fn timestamps_before_1970_survive_the_round_trip() {
    // pcapng timestamps are unsigned: such frames are written at the epoch and the records
    // carry the real times.
    let mut data = StoreData::new();
    let c = data.add_connection(conn(
        "127.0.0.1:1",
        "127.0.0.1:2",
        Transport::Tcp,
        -5_000_000_001,
    ));
    let u = data.add_connection(conn("127.0.0.1:3", "127.0.0.1:4", Transport::Udp, -7));
    put(
        &mut data,
        c,
        Direction::ClientToServer,
        Timestamp(-3),
        b"old",
        None,
        PacketFlags::empty(),
        None,
    );
    put(
        &mut data,
        u,
        Direction::ServerToClient,
        Timestamp(-2),
        b"older",
        None,
        PacketFlags::empty(),
        None,
    );
    put(
        &mut data,
        c,
        Direction::ServerToClient,
        Timestamp(5),
        b"new",
        None,
        PacketFlags::empty(),
        None,
    );
    data.close_connection(c, Timestamp(-1), None).unwrap();
    let mut out = Vec::new();
    pcapng::export(&data, &mut out, |_| true).unwrap();
    let got = pcapng::import_slice(&out, false).unwrap();
    assert!(got.problems.is_empty(), "{:?}", got.problems);
    assert_same_capture(&data, &got.data);
}

// -- other tools' files -----------------------------------------------------------------------

/// Rewrites an export as another tool might have written it: no gamewire comments, big-endian,
/// and optionally raw IP frames (no Ethernet) with microsecond timestamps, or a link type we
/// cannot read.
fn as_foreign(bytes: &[u8], link: Option<pcap_file::DataLink>) -> Vec<u8> {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
    let mut reader = PcapNgReader::new(bytes).unwrap();
    let mut writer = PcapNgWriter::with_endianness(Vec::new(), pcap_file::Endianness::Big).unwrap();
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            Block::InterfaceDescription(mut idb) => {
                if let Some(link) = link {
                    idb.linktype = link;
                    idb.options
                        .retain(|o| !matches!(o, InterfaceDescriptionOption::IfTsResol(_)));
                }
                writer
                    .write_block(&Block::InterfaceDescription(idb))
                    .unwrap();
            }
            Block::EnhancedPacket(mut epb) => {
                epb.options.clear();
                if link == Some(pcap_file::DataLink::RAW) {
                    if epb.data[12..14] == [0x88, 0xB5] {
                        continue;
                    }
                    epb.data = epb.data[14..].to_vec().into();
                    epb.original_len -= 14;
                }
                if link.is_some() {
                    // pcap-file writes the raw count; without if_tsresol it means microseconds.
                    epb.timestamp =
                        std::time::Duration::from_nanos(epb.timestamp.as_nanos() as u64 / 1000);
                }
                writer.write_block(&Block::EnhancedPacket(epb)).unwrap();
            }
            _ => {}
        }
    }
    writer.into_inner()
}

/// Per conversation, keyed by (client address, transport): each direction's bytes, joined.
type Conversations = BTreeMap<(String, &'static str), (Vec<u8>, Vec<u8>)>;

fn streams_by_client(data: &StoreData) -> Conversations {
    data.connections()
        .iter()
        .map(|c| {
            (
                (c.client.to_string(), c.transport.as_str()),
                flowed(data, c.id),
            )
        })
        .collect()
}

/// What an importer that sees only frames can know: QUIC is TCP, addresses are the wire's,
/// and a UDP conversation's client is whoever sent first.
fn foreign_expectation(data: &StoreData) -> Conversations {
    data.connections()
        .iter()
        .map(|c| {
            let (client, server) = wire_ends(c);
            let (c2s, s2c) = flowed(data, c.id);
            if c.transport != Transport::Udp {
                return ((client.to_string(), "tcp"), (c2s, s2c));
            }
            let mut sent: Vec<_> = data
                .packets_of(c.id)
                .filter(|p| !p.flags.contains(PacketFlags::DROPPED))
                .collect();
            sent.sort_by_key(|p| (p.timestamp, p.id));
            match sent.first().map(|p| p.direction) {
                Some(Direction::ServerToClient) => ((server.to_string(), "udp"), (s2c, c2s)),
                _ => ((client.to_string(), "udp"), (c2s, s2c)),
            }
        })
        .collect()
}

#[test]
fn foreign_ethernet_captures_import_best_effort() {
    let data = rich_capture();
    let mut ours = Vec::new();
    pcapng::export(&data, &mut ours, |_| true).unwrap();
    let foreign = as_foreign(&ours, None);
    let got = pcapng::import_slice(&foreign, false).unwrap();
    assert!(got.problems.is_empty(), "{:?}", got.problems);
    assert_eq!(streams_by_client(&got.data), foreign_expectation(&data));
    // Each TCP segment is a packet of its own, with the frame's nanosecond time.
    let big = got
        .data
        .packets()
        .filter(|p| p.data.len() == 65_000)
        .count();
    assert_eq!(
        big, 2,
        "the two 70001-byte packets each became 65000 + 5001"
    );
    let first = got.data.packets().next().unwrap();
    assert_eq!(first.timestamp, Timestamp(T0 + 500));
    let idle = got
        .data
        .connections()
        .iter()
        .find(|c| c.client.port() == 50009)
        .unwrap();
    assert_eq!(idle.closed, Some(Timestamp(T0 + 40_000_000)), "FIN closes");
    assert_eq!(idle.opened, Timestamp(T0 + 30));
}

#[test]
fn foreign_raw_ip_captures_with_microseconds_import() {
    let data = rich_capture();
    let mut ours = Vec::new();
    pcapng::export(&data, &mut ours, |_| true).unwrap();
    let foreign = as_foreign(&ours, Some(pcap_file::DataLink::RAW));
    let got = pcapng::import_slice(&foreign, false).unwrap();
    assert!(got.problems.is_empty(), "{:?}", got.problems);
    assert_eq!(streams_by_client(&got.data), foreign_expectation(&data));
    let first = got.data.packets().next().unwrap();
    assert_eq!(first.timestamp, Timestamp((T0 + 500) / 1000 * 1000));
}

#[test]
fn unsupported_link_types_are_skipped_with_a_problem() {
    let data = rich_capture();
    let mut ours = Vec::new();
    pcapng::export(&data, &mut ours, |_| true).unwrap();
    let foreign = as_foreign(&ours, Some(pcap_file::DataLink::USER0));
    let got = pcapng::import_slice(&foreign, false).unwrap();
    assert_eq!(got.data.packet_count(), 0);
    assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
    assert!(
        got.problems[0].contains("unsupported link type"),
        "{:?}",
        got.problems
    );
    assert!(got.problems[0].starts_with("offset "), "{:?}", got.problems);
}

// -- damage -----------------------------------------------------------------------------------

/// (offset, type, length) of each block of a little-endian file.
fn blocks(bytes: &[u8]) -> Vec<(usize, u32, usize)> {
    let mut at = 0;
    let mut found = Vec::new();
    while at + 8 <= bytes.len() {
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        found.push((at, kind, len));
        at += len;
    }
    found
}

fn small_capture() -> StoreData {
    let mut d = StoreData::new();
    let c = d.add_connection(conn("127.0.0.1:40000", "127.0.0.1:80", Transport::Tcp, T0));
    let u = d.add_connection(conn("127.0.0.1:40001", "127.0.0.1:53", Transport::Udp, T0));
    for i in 0..6u8 {
        let dir = if i % 2 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let conn = if i % 3 == 2 { u } else { c };
        put(
            &mut d,
            conn,
            dir,
            Timestamp(T0 + 1_000 * i64::from(i)),
            &binary(50 + usize::from(i), i),
            Some("m"),
            PacketFlags::empty(),
            None,
        );
    }
    d.close_connection(c, Timestamp(T0 + 10_000), None).unwrap();
    d
}

fn small_export() -> Vec<u8> {
    let mut out = Vec::new();
    pcapng::export(&small_capture(), &mut out, |_| true).unwrap();
    out
}

fn malformed_offset(result: Result<Imported, PcapngError>) -> (u64, String) {
    match result {
        Err(e @ PcapngError::Malformed { offset, .. }) => (offset, e.to_string()),
        Err(e) => panic!("not a Malformed error: {e}"),
        Ok(i) => panic!(
            "imported {} packets, problems {:?}",
            i.data.packet_count(),
            i.problems
        ),
    }
}

/// Every packet imported from a damaged file is one of the original packets, unchanged.
fn assert_subset(original: &StoreData, got: &StoreData) {
    let known: Vec<_> = original
        .packets()
        .map(|p| (p.timestamp, p.data.to_vec()))
        .collect();
    for p in got.packets() {
        assert!(
            known.contains(&(p.timestamp, p.data.to_vec())),
            "packet {} was not in the capture",
            p.id
        );
    }
}

#[test]
fn empty_and_foreign_bytes_are_errors_at_offset_zero() {
    let named = |bytes: &[u8]| malformed_offset(pcapng::import_slice(bytes, true));
    let (offset, msg) = named(b"");
    assert_eq!(offset, 0);
    assert!(msg.contains("empty"), "{msg}");
    let (offset, msg) = named(b"GWCAP\r\n\x1a\x01\x00");
    assert_eq!(offset, 0);
    assert!(msg.contains("not a pcapng"), "{msg}");
    let (offset, _) = named(&[0x0A, 0x0D, 0x0D, 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    assert_eq!(offset, 0);
}

#[test]
fn import_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.pcapng");
    std::fs::write(&path, b"definitely not a capture").unwrap();
    let err = pcapng::import_file(&path, false).err().unwrap().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("offset 0"), "{err}");
    let missing = pcapng::import_file(&dir.path().join("missing.pcapng"), false);
    assert!(matches!(missing, Err(PcapngError::Io { .. })));
}

#[test]
fn a_file_cut_short_keeps_what_comes_before_the_cut() {
    let full = small_export();
    let original = small_capture();
    let all = blocks(&full);
    // Inside the section header: nothing to keep.
    for cut in [4, 10, 20] {
        for skip_bad in [false, true] {
            let (offset, _) = malformed_offset(pcapng::import_slice(&full[..cut], skip_bad));
            assert_eq!(offset, 0);
        }
    }
    // Inside later blocks: the blocks before are kept and the cut is reported at the
    // offset of the block it cuts, like a damaged .gwcap, with or without skip_bad.
    let mut seen_packets = Vec::new();
    for &(offset, _, len) in &all[2..] {
        for cut in [offset + 3, offset + 8, offset + len / 2, offset + len - 1] {
            for skip_bad in [false, true] {
                let got = pcapng::import_slice(&full[..cut], skip_bad).unwrap();
                assert!(
                    got.problems
                        .iter()
                        .any(|p| p.starts_with(&format!("offset {offset}:"))
                            && p.contains("cut short")),
                    "cut at {cut}: {:?}",
                    got.problems
                );
                assert_subset(&original, &got.data);
                seen_packets.push(got.data.packet_count());
            }
        }
    }
    assert_eq!(seen_packets.first(), Some(&0));
    assert_eq!(
        seen_packets.last(),
        Some(&original.packet_count()),
        "a cut in the last FIN keeps all"
    );
    assert!(
        seen_packets.windows(2).all(|w| w[0] <= w[1]),
        "{seen_packets:?}"
    );
}

#[test]
fn a_damaged_length_field_is_an_error_naming_the_block() {
    let full = small_export();
    let original = small_capture();
    let all = blocks(&full);
    let (offset, _, len) = all[all.len() / 2];
    for damaged_len in [len ^ 4, len + 8, len | 0x8000_0000, 8, len + 0x10_0000] {
        let mut bytes = full.clone();
        bytes[offset + 4..offset + 8].copy_from_slice(&(damaged_len as u32).to_le_bytes());
        let (at, msg) = malformed_offset(pcapng::import_slice(&bytes, false));
        assert_eq!(at, offset as u64, "length {damaged_len}: {msg}");
        let got = pcapng::import_slice(&bytes, true).unwrap();
        assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
        assert!(
            got.problems[0].starts_with(&format!("offset {offset}:")),
            "{:?}",
            got.problems
        );
        assert!(got.data.packet_count() > 0 && got.data.packet_count() < original.packet_count());
        assert_subset(&original, &got.data);
    }
}

/// The offset of the block that holds `needle`.
fn block_with(bytes: &[u8], needle: &str) -> (usize, usize) {
    blocks(bytes)
        .into_iter()
        .find(|&(o, _, len)| {
            bytes[o..o + len]
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .map(|(o, _, len)| (o, len))
        .unwrap()
}

#[test]
fn garbage_inside_a_block_is_skipped_with_skip_bad() {
    let full = small_export();
    let original = small_capture();
    let (offset, _) = block_with(&full, r#""id":2,"#);
    // The captured length of the packet, past the end of its block.
    let mut bytes = full.clone();
    bytes[offset + 20..offset + 24].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
    let (at, msg) = malformed_offset(pcapng::import_slice(&bytes, false));
    assert_eq!(at, offset as u64, "{msg}");
    let got = pcapng::import_slice(&bytes, true).unwrap();
    assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
    assert!(got.problems[0].starts_with(&format!("offset {offset}:")));
    assert_eq!(
        got.data.packet_count(),
        original.packet_count() - 1,
        "only that packet is lost"
    );
    assert_subset(&original, &got.data);
}

#[test]
fn a_damaged_gamewire_comment_is_an_error_naming_its_block() {
    let full = small_export();
    let original = small_capture();
    let (offset, len) = block_with(&full, r#""id":3,"#);
    let mut bytes = full.clone();
    let at = offset
        + bytes[offset..offset + len]
            .windows(7)
            .position(|w| w == br#""id":3,"#)
            .unwrap();
    bytes[at + 5] = b'x';
    let (got_at, msg) = malformed_offset(pcapng::import_slice(&bytes, false));
    assert_eq!(got_at, offset as u64, "{msg}");
    assert!(msg.contains("gamewire"), "{msg}");
    let got = pcapng::import_slice(&bytes, true).unwrap();
    assert_eq!(got.data.packet_count(), original.packet_count() - 1);
    assert_subset(&original, &got.data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), with_header in any::<bool>()) {
        let full = small_export();
        // The section header and interface description of a valid file, then noise.
        let mut input = if with_header { full[..blocks(&full)[2].0].to_vec() } else { Vec::new() };
        input.extend(bytes);
        for skip_bad in [false, true] {
            let _ = pcapng::import_slice(&input, skip_bad);
        }
    }

    #[test]
    fn damaged_exports_never_panic(
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
    ) {
        let full = small_export();
        let mut bytes = full[..(full.len() as f64 * cut) as usize].to_vec();
        let len = bytes.len();
        if len >= blocks(&full)[1].0 {
            // A cut alone loses data but is never an error once the section header is whole.
            prop_assert!(pcapng::import_slice(&bytes, true).is_ok());
        }
        for (at, value) in flips {
            if len > 0 {
                bytes[((len as f64 * at) as usize).min(len - 1)] = value;
            }
        }
        for skip_bad in [false, true] {
            let _ = pcapng::import_slice(&bytes, skip_bad);
        }
    }
}
