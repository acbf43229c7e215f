//! pcapng export with synthetic Ethernet/IP/TCP (or UDP) framing, and import of pcapng files.
//!
//! gamewire records application bytes per direction, not frames; Wireshark needs frames. So an
//! export invents the framing around the recorded bytes, and invents it consistently enough
//! that Wireshark's own stream reassembly (`tshark -z follow,tcp,raw,N`) gives back exactly the
//! recorded bytes of each direction:
//!
//! - One little-endian section with one Ethernet interface whose timestamps are in nanoseconds
//!   (`if_tsresol` = 9), so recorded timestamps survive to the nanosecond.
//! - A TCP connection (and a QUIC one, see [`Transport::Quic`] below) is a TCP stream: SYN,
//!   SYN-ACK and ACK at the earlier of `opened` and its first packet; each packet as one or
//!   more data segments of at most [`MAX_SEGMENT`] bytes, with sequence and acknowledgement
//!   numbers that follow the bytes; and, if the connection was closed, FIN, FIN-ACK and ACK
//!   at the later of `closed` and its last packet. Initial sequence numbers derive from the
//!   connection id, so an export is reproducible byte for byte.
//! - A UDP connection is one datagram per packet (several for a packet over
//!   [`MAX_SEGMENT`] bytes, the later ones marked as continuations).
//! - Frames of all connections are written in timestamp order.
//! - Everything the framing cannot say travels in frame comments (`opt_comment`) that start
//!   with `gamewire`: a connection record on each TCP connection's SYN (on a "note" frame for
//!   UDP, which has no handshake), and a packet record on the first frame of each packet. The
//!   importer restores the capture from them exactly; Wireshark shows them as frame comments.
//!
//! Comment formats, all JSON after the prefix:
//!
//! ```text
//! gamewire:{"kind":"connection",...}     a whole record
//! gamewire[p17 2/5]:<text>              part 2 of 5 of the record of packet 17 (c = connection)
//! gamewire+: ...                         human-readable marker, ignored by the importer
//! ```
//!
//! A record is split only when it would not fit one option (an option's length is 16 bits);
//! parts go on the packet's own frames first, then on extra carrier frames right after them
//! (an empty ACK segment for TCP, a note frame for UDP). Note frames are Ethernet frames of
//! the IEEE local experimental EtherType 0x88B5: no IP, so no stream analysis sees them.
//!
//! Decisions worth knowing:
//!
//! - Dropped packets (flag `dropped`) never reached the peer, so their bytes are not part of
//!   the exported TCP stream or UDP conversation: `follow` shows what actually flowed. They are
//!   kept in their packet record (`data`, hex), on an empty ACK segment of their connection
//!   (TCP) or on a note frame (UDP), and the importer restores them as packets.
//! - A server address of [`UNKNOWN_ADDR`] (sd.json does not record it) is written as the
//!   documentation address 192.0.2.1 (2001:db8::1 for an IPv6 client) port
//!   [`PLACEHOLDER_PORT`]; the connection record says `"server_unknown":true` and import
//!   restores [`UNKNOWN_ADDR`].
//! - Client and server of different address families are both written as IPv6 (an IPv4
//!   address as `::ffff:a.b.c.d`); the connection record keeps the real addresses.
//! - A file that ends inside its last block (a capture cut short by a crash or a full disk) is
//!   read like a damaged `.gwcap`: everything before the cut is kept and the cut is reported
//!   in [`Imported::problems`], with or without `skip_bad`. Any other damage is an error unless
//!   `skip_bad` is set.
//!
//! Files from other tools are read on a best-effort basis: Ethernet, raw IP, BSD loopback and
//! Linux cooked captures of IPv4/IPv6 TCP and UDP; each TCP payload segment or UDP datagram
//! becomes one packet of the connection of its address/port pair, whose client is the sender
//! of the first SYN, else of the first frame seen. Retransmissions are not removed.
//!
//! pcap-file writes every block and parses section headers; block lengths, interface
//! descriptions and packet blocks are read here, because its full parser panics on some
//! malformed name-resolution blocks, rejects valid `if_tzone` options, and cannot say where in
//! the file a problem is.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError};
use serde::{Deserialize, Serialize};

use super::model::{
    Connection, ConnectionId, Direction, PacketFlags, Timestamp, TlsInfo, Transport, UNKNOWN_ADDR,
};
use super::store::{PacketRef, StoreData};

/// First four bytes of every pcapng file (the Section Header Block type).
pub const SHB_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

/// Largest payload of one exported TCP segment or UDP datagram. An IP packet's total length
/// is 16 bits; this keeps header + payload well under 65535 for IPv4 and IPv6 alike.
pub const MAX_SEGMENT: usize = 65_000;

/// Port written for a server whose address was not recorded.
pub const PLACEHOLDER_PORT: u16 = 9;

/// Longest comment we write. pcapng option lengths are 16 bits and pcap-file truncates longer
/// ones silently; staying well under also keeps every block far below Wireshark's limit on
/// block size (about 384 KiB).
const MAX_COMMENT: usize = 60_000;
/// Room for the `gamewire[p18446744073709551615 123456/123456]:` header of a record part.
const PART_HEADER_ROOM: usize = 64;

const PREFIX: &str = "gamewire";
const PLACEHOLDER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PLACEHOLDER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const ETHERTYPE_NOTE: u16 = 0x88B5;
/// Locally administered MACs ("gw"), so they never collide with a real vendor's.
const CLIENT_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x02];
const NOTE_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x00];
const NOTE_PAYLOAD: &[u8] = b"gamewire metadata, see the frame comment";

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
/// Window scale announced in the handshake: 65535 << 14 is about 1 GiB, so Wireshark does not
/// flag full windows in streams that never see an acknowledgement-only segment.
const WINDOW_SHIFT: u8 = 14;
/// The MSS of a loopback interface, above [`MAX_SEGMENT`].
const MSS: u16 = 65_495;

const BLOCK_SHB: u32 = 0x0A0D_0D0A;
const BLOCK_IDB: u32 = 1;
const BLOCK_PB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;
/// Longest block a file cut short may have been writing. A declared length past the end of
/// the file above this is a damaged length field, not a cut.
const MAX_PLAUSIBLE_BLOCK: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcapngError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: offset {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

pub struct Imported {
    pub data: StoreData,
    /// What could not be imported, each line naming a byte offset: a file cut short and
    /// frames that are not TCP/UDP over IP always; other damage only with `skip_bad` (without
    /// it, damage is an error).
    pub problems: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Records carried in frame comments
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Record {
    Connection(ConnRecord),
    Packet(PacketRecord),
}

#[derive(Debug, Serialize, Deserialize)]
struct ConnRecord {
    id: u64,
    transport: Transport,
    /// The real addresses; the frames may show placeholders or IPv4-mapped forms.
    client: SocketAddr,
    server: SocketAddr,
    #[serde(default, skip_serializing_if = "is_false")]
    server_unknown: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<TlsInfo>,
    opened: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    close_reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PacketRecord {
    conn: u64,
    id: u64,
    dir: Direction,
    len: usize,
    /// Frames whose payload holds the bytes; 0 when they travel in `data` (dropped packets).
    segments: usize,
    /// Only when the frame's timestamp cannot hold it (before 1970).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ts: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    flags: Vec<String>,
    /// Flag bits this version has no name for, so that they survive a round trip.
    #[serde(default, skip_serializing_if = "is_zero")]
    other_flags: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// The comments that carry one record: one when it fits, else numbered parts.
fn record_comments(key: &str, record: &Record) -> io::Result<Vec<String>> {
    let json = serde_json::to_string(record).map_err(io::Error::other)?;
    if PREFIX.len() + 1 + json.len() <= MAX_COMMENT {
        return Ok(vec![format!("{PREFIX}:{json}")]);
    }
    let parts = split_at_chars(&json, MAX_COMMENT - PART_HEADER_ROOM);
    let count = parts.len();
    Ok(parts
        .iter()
        .enumerate()
        .map(|(i, part)| format!("{PREFIX}[{key} {}/{count}]:{part}", i + 1))
        .collect())
}

fn split_at_chars(s: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

enum Comment<'a> {
    Whole(&'a str),
    Part {
        key: &'a str,
        index: u32,
        count: u32,
        text: &'a str,
    },
    Marker,
    BadPart,
    Foreign,
}

fn classify_comment(comment: &str) -> Comment<'_> {
    let Some(rest) = comment.strip_prefix(PREFIX) else {
        return Comment::Foreign;
    };
    if let Some(json) = rest.strip_prefix(':') {
        return Comment::Whole(json);
    }
    if rest.starts_with('+') {
        return Comment::Marker;
    }
    let Some(rest) = rest.strip_prefix('[') else {
        return Comment::Foreign;
    };
    parse_part(rest).unwrap_or(Comment::BadPart)
}

fn parse_part(rest: &str) -> Option<Comment<'_>> {
    let (head, text) = rest.split_once("]:")?;
    let (key, numbers) = head.split_once(' ')?;
    let (index, count) = numbers.split_once('/')?;
    let index: u32 = index.parse().ok()?;
    let count: u32 = count.parse().ok()?;
    (index >= 1 && index <= count && !key.is_empty()).then_some(Comment::Part {
        key,
        index,
        count,
        text,
    })
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

/// Writes the connections `keep` selects, and their packets, as pcapng.
pub fn export(
    data: &StoreData,
    out: impl Write,
    keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<()> {
    let mut per_conn: Vec<Vec<PacketRef<'_>>> = vec![Vec::new(); data.connection_count()];
    for id in data.time_order() {
        if let Some(p) = data.packet(id)
            && keep(p.connection)
            && let Some(list) = usize::try_from(p.connection.0)
                .ok()
                .and_then(|i| per_conn.get_mut(i))
        {
            list.push(p);
        }
    }
    let mut plan = Plan::default();
    for (conn, packets) in data.connections().iter().zip(&per_conn) {
        if keep(conn.id) {
            plan.connection(conn, packets)?;
        }
    }
    // Stable: a connection's frames are generated in time order, so equal timestamps keep
    // each stream's own order.
    plan.frames.sort_by_key(|f| f.ts);
    write_frames(&plan, out)
}

pub fn export_file(data: &StoreData, path: &Path) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    export(data, file, |_| true)
}

/// The wire addresses of one connection: same family, no unknowns.
#[derive(Clone, Copy)]
struct Ends {
    client: SocketAddr,
    server: SocketAddr,
}

impl Ends {
    fn of(conn: &Connection) -> Self {
        let client = conn.client;
        let server = if conn.server == UNKNOWN_ADDR {
            let ip = match client.ip() {
                IpAddr::V4(_) => IpAddr::V4(PLACEHOLDER_V4),
                IpAddr::V6(_) => IpAddr::V6(PLACEHOLDER_V6),
            };
            SocketAddr::new(ip, PLACEHOLDER_PORT)
        } else {
            conn.server
        };
        if client.is_ipv4() == server.is_ipv4() {
            return Ends { client, server };
        }
        let v6 = |a: SocketAddr| SocketAddr::new(IpAddr::V6(as_v6(a.ip())), a.port());
        Ends {
            client: v6(client),
            server: v6(server),
        }
    }

    fn oriented(self, from_client: bool) -> (SocketAddr, SocketAddr) {
        if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        }
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

struct Frame<'a> {
    ts: u64,
    conn: usize,
    kind: FrameKind<'a>,
    comments: Vec<String>,
}

enum FrameKind<'a> {
    Tcp(TcpSegment<'a>),
    Udp {
        from_client: bool,
        payload: &'a [u8],
    },
    Note,
}

struct TcpSegment<'a> {
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &'a [u8],
}

/// Sequence numbers of one synthetic TCP stream: the next byte each side sends.
struct TcpStream {
    client_next: u32,
    server_next: u32,
}

impl TcpStream {
    fn new(conn: ConnectionId) -> Self {
        TcpStream {
            client_next: initial_sequence(conn.0, 0),
            server_next: initial_sequence(conn.0, 1),
        }
    }

    fn segment<'a>(&mut self, from_client: bool, flags: u8, payload: &'a [u8]) -> FrameKind<'a> {
        let (own, other) = if from_client {
            (&mut self.client_next, self.server_next)
        } else {
            (&mut self.server_next, self.client_next)
        };
        let seq = *own;
        // SYN and FIN each take one sequence number; a stream over 4 GiB wraps, as TCP does.
        let used = payload.len() as u64 + u64::from(flags & (TCP_SYN | TCP_FIN) != 0);
        *own = own.wrapping_add(used as u32);
        FrameKind::Tcp(TcpSegment {
            from_client,
            seq,
            ack: if flags & TCP_ACK != 0 { other } else { 0 },
            flags,
            payload,
        })
    }
}

/// A fixed function of the connection id (splitmix64), so exports are reproducible and
/// different connections do not share sequence space.
fn initial_sequence(conn: u64, side: u64) -> u32 {
    let mut z = conn
        .wrapping_mul(2)
        .wrapping_add(side)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

fn frame_time(t: Timestamp) -> u64 {
    u64::try_from(t.0).unwrap_or(0)
}

#[derive(Default)]
struct Plan<'a> {
    frames: Vec<Frame<'a>>,
    ends: Vec<Ends>,
}

impl<'a> Plan<'a> {
    fn connection(&mut self, conn: &Connection, packets: &[PacketRef<'a>]) -> io::Result<()> {
        let index = self.ends.len();
        self.ends.push(Ends::of(conn));
        let first = packets.first().map_or(conn.opened, |p| p.timestamp);
        let start = frame_time(conn.opened.min(first));
        let record = Record::Connection(ConnRecord {
            id: conn.id.0,
            transport: conn.transport,
            client: conn.client,
            server: conn.server,
            server_unknown: conn.server == UNKNOWN_ADDR,
            protocol: conn.protocol.clone(),
            route: conn.route.clone(),
            tls: conn.tls.clone(),
            opened: conn.opened,
            closed: conn.closed,
            close_reason: conn.close_reason.clone(),
        });
        let comments = record_comments(&format!("c{}", conn.id.0), &record)?;
        match conn.transport {
            // A QUIC connection's recorded bytes are its decrypted stream data, which is a
            // byte stream like TCP's; a TCP stream is what lets Wireshark reassemble them.
            Transport::Tcp | Transport::Quic => self.tcp(conn, index, start, comments, packets),
            Transport::Udp => self.udp(index, start, comments, packets),
        }
    }

    fn push(&mut self, ts: u64, conn: usize, kind: FrameKind<'a>) {
        self.frames.push(Frame {
            ts,
            conn,
            kind,
            comments: Vec::new(),
        });
    }

    /// Puts comment `i` on the `i`-th frame from `first`, and the rest on carrier frames.
    fn attach(
        &mut self,
        first: usize,
        comments: Vec<String>,
        mut carrier: impl FnMut() -> Frame<'a>,
    ) {
        for (i, comment) in comments.into_iter().enumerate() {
            match self.frames.get_mut(first + i) {
                Some(frame) => frame.comments.push(comment),
                None => {
                    let mut frame = carrier();
                    frame.comments.push(comment);
                    self.frames.push(frame);
                }
            }
        }
    }

    fn tcp(
        &mut self,
        conn: &Connection,
        index: usize,
        start: u64,
        comments: Vec<String>,
        packets: &[PacketRef<'a>],
    ) -> io::Result<()> {
        let mut stream = TcpStream::new(conn.id);
        let first = self.frames.len();
        let syn_flags = [(true, TCP_SYN), (false, TCP_SYN | TCP_ACK), (true, TCP_ACK)];
        for (from_client, flags) in syn_flags {
            let kind = stream.segment(from_client, flags, &[]);
            self.push(start, index, kind);
        }
        self.attach(first, comments, || Frame {
            ts: start,
            conn: index,
            kind: stream.segment(true, TCP_ACK, &[]),
            comments: Vec::new(),
        });
        for p in packets {
            self.tcp_packet(&mut stream, index, p)?;
        }
        if let Some(closed) = conn.closed {
            let last = packets.last().map_or(closed, |p| p.timestamp);
            let end = frame_time(closed.max(last));
            let fin_flags = [
                (true, TCP_FIN | TCP_ACK),
                (false, TCP_FIN | TCP_ACK),
                (true, TCP_ACK),
            ];
            for (from_client, flags) in fin_flags {
                let kind = stream.segment(from_client, flags, &[]);
                self.push(end, index, kind);
            }
        }
        Ok(())
    }

    fn tcp_packet(
        &mut self,
        stream: &mut TcpStream,
        index: usize,
        p: &PacketRef<'a>,
    ) -> io::Result<()> {
        let ts = frame_time(p.timestamp);
        let from_client = p.direction == Direction::ClientToServer;
        let pieces = pieces_of(p);
        let comments = packet_comments(p, pieces.len())?;
        let first = self.frames.len();
        if pieces.is_empty() {
            // A dropped packet: an empty segment carries its record, the stream stays intact.
            let kind = stream.segment(from_client, TCP_ACK, &[]);
            self.push(ts, index, kind);
        }
        let count = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let flags = if i + 1 == count {
                TCP_ACK | TCP_PSH
            } else {
                TCP_ACK
            };
            let kind = stream.segment(from_client, flags, piece);
            self.push(ts, index, kind);
        }
        self.mark_continuations(first, p, count);
        self.attach(first, comments, || Frame {
            ts,
            conn: index,
            kind: stream.segment(from_client, TCP_ACK, &[]),
            comments: Vec::new(),
        });
        Ok(())
    }

    fn udp(
        &mut self,
        index: usize,
        start: u64,
        comments: Vec<String>,
        packets: &[PacketRef<'a>],
    ) -> io::Result<()> {
        let first = self.frames.len();
        self.attach(first, comments, || note(start, index));
        for p in packets {
            let ts = frame_time(p.timestamp);
            let from_client = p.direction == Direction::ClientToServer;
            let pieces = pieces_of(p);
            let comments = packet_comments(p, pieces.len())?;
            let first = self.frames.len();
            let count = pieces.len();
            for payload in pieces {
                self.push(
                    ts,
                    index,
                    FrameKind::Udp {
                        from_client,
                        payload,
                    },
                );
            }
            self.mark_continuations(first, p, count);
            self.attach(first, comments, || note(ts, index));
        }
        Ok(())
    }

    /// Tells a reader of the capture that a frame is the middle of a larger packet.
    fn mark_continuations(&mut self, first: usize, p: &PacketRef<'_>, count: usize) {
        for i in 1..count {
            if let Some(frame) = self.frames.get_mut(first + i) {
                frame.comments.push(format!(
                    "{PREFIX}+: packet {} continues, segment {} of {count}",
                    p.id.0,
                    i + 1
                ));
            }
        }
    }
}

fn note<'a>(ts: u64, conn: usize) -> Frame<'a> {
    Frame {
        ts,
        conn,
        kind: FrameKind::Note,
        comments: Vec::new(),
    }
}

/// The payloads a packet is written as: none for a dropped packet, else at least one.
fn pieces_of<'a>(p: &PacketRef<'a>) -> Vec<&'a [u8]> {
    if p.flags.contains(PacketFlags::DROPPED) {
        Vec::new()
    } else if p.data.is_empty() {
        vec![p.data]
    } else {
        p.data.chunks(MAX_SEGMENT).collect()
    }
}

fn packet_comments(p: &PacketRef<'_>, segments: usize) -> io::Result<Vec<String>> {
    let known = PacketFlags(p.flags.0 & PacketFlags::KNOWN_BITS);
    let record = Record::Packet(PacketRecord {
        conn: p.connection.0,
        id: p.id.0,
        dir: p.direction,
        len: p.data.len(),
        segments,
        ts: (p.timestamp.0 < 0).then_some(p.timestamp),
        label: p.label.map(str::to_owned),
        flags: known.names().into_iter().map(str::to_owned).collect(),
        other_flags: p.flags.0 & !PacketFlags::KNOWN_BITS,
        original: p.original.map(hex::encode),
        data: (segments == 0).then(|| hex::encode(p.data)),
    });
    record_comments(&format!("p{}", p.id.0), &record)
}

fn pcap_io(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

fn write_frames(plan: &Plan<'_>, out: impl Write) -> io::Result<()> {
    let section = SectionHeaderBlock {
        endianness: Endianness::Little,
        options: vec![
            SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "gamewire {}",
                env!("CARGO_PKG_VERSION")
            ))),
            SectionHeaderOption::Comment(Cow::Borrowed(
                "Framing made by gamewire: Ethernet/IP/TCP/UDP headers, handshakes and sequence \
                 numbers are synthetic; payload bytes and timestamps are as recorded. Comments \
                 starting with gamewire carry the capture's metadata for re-import.",
            )),
        ],
        ..SectionHeaderBlock::default()
    };
    let mut writer =
        PcapNgWriter::with_section_header(BufWriter::new(out), section).map_err(pcap_io)?;
    let interface = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed("gamewire")),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    writer.write_pcapng_block(interface).map_err(pcap_io)?;
    let mut buf = Vec::with_capacity(MAX_SEGMENT + 128);
    for (n, frame) in plan.frames.iter().enumerate() {
        buf.clear();
        let ends = plan.ends.get(frame.conn).copied();
        encode_frame(frame, ends, n as u16, &mut buf);
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(frame.ts),
            original_len: buf.len() as u32,
            data: Cow::Borrowed(&buf),
            options: frame
                .comments
                .iter()
                .map(|c| EnhancedPacketOption::Comment(Cow::Borrowed(c.as_str())))
                .collect(),
        };
        writer.write_pcapng_block(block).map_err(pcap_io)?;
    }
    writer
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok(())
}

fn encode_frame(frame: &Frame<'_>, ends: Option<Ends>, ip_id: u16, buf: &mut Vec<u8>) {
    let ends = match (&frame.kind, ends) {
        (FrameKind::Note, _) | (_, None) => {
            push_ethernet(buf, NOTE_MAC, NOTE_MAC, ETHERTYPE_NOTE);
            buf.extend_from_slice(NOTE_PAYLOAD);
            return;
        }
        (_, Some(ends)) => ends,
    };
    match &frame.kind {
        FrameKind::Tcp(seg) => {
            let (src, dst) = ends.oriented(seg.from_client);
            let macs = macs(seg.from_client);
            push_ip(buf, macs, (src.ip(), dst.ip()), PROTO_TCP, ip_id, |b| {
                push_tcp(b, src.port(), dst.port(), seg)
            });
        }
        FrameKind::Udp {
            from_client,
            payload,
        } => {
            let (src, dst) = ends.oriented(*from_client);
            push_ip(
                buf,
                macs(*from_client),
                (src.ip(), dst.ip()),
                PROTO_UDP,
                ip_id,
                |b| push_udp(b, src.port(), dst.port(), payload),
            );
        }
        FrameKind::Note => {}
    }
}

fn macs(from_client: bool) -> ([u8; 6], [u8; 6]) {
    if from_client {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    }
}

fn push_ethernet(buf: &mut Vec<u8>, src: [u8; 6], dst: [u8; 6], ethertype: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

/// Writes Ethernet and IP headers, lets `l4` write the transport header and payload (and say
/// where its checksum goes), then fills in lengths and checksums.
fn push_ip(
    buf: &mut Vec<u8>,
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): (IpAddr, IpAddr),
    proto: u8,
    ip_id: u16,
    l4: impl FnOnce(&mut Vec<u8>) -> usize,
) {
    let v4 = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some((s, d)),
        _ => None,
    };
    let ethertype = if v4.is_some() {
        ETHERTYPE_IPV4
    } else {
        ETHERTYPE_IPV6
    };
    push_ethernet(buf, src_mac, dst_mac, ethertype);
    let ip_start = buf.len();
    buf.resize(ip_start + if v4.is_some() { 20 } else { 40 }, 0);
    let l4_start = buf.len();
    let checksum_at = l4_start + l4(buf);
    let l4_len = buf.len() - l4_start;
    let pseudo = match v4 {
        Some((s, d)) => {
            fill_ipv4_header(&mut buf[ip_start..l4_start], s, d, proto, ip_id, l4_len);
            pseudo_sum(&s.octets(), &d.octets(), proto, l4_len)
        }
        None => {
            let (s, d) = (as_v6(src), as_v6(dst));
            fill_ipv6_header(&mut buf[ip_start..l4_start], s, d, proto, l4_len);
            pseudo_sum(&s.octets(), &d.octets(), proto, l4_len)
        }
    };
    let mut sum = fold(pseudo + sum16(&buf[l4_start..]));
    if proto == PROTO_UDP && sum == 0 {
        // 0 means "no checksum" in UDP; its ones' complement equivalent is all ones.
        sum = 0xFFFF;
    }
    buf[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn fill_ipv4_header(h: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, l4: usize) {
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + l4) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = fold(sum16(h));
    h[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn fill_ipv6_header(h: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: usize) {
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
    h[6] = proto;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// Writes a TCP header and payload; returns where the checksum goes.
fn push_tcp(buf: &mut Vec<u8>, src: u16, dst: u16, seg: &TcpSegment<'_>) -> usize {
    let syn = seg.flags & TCP_SYN != 0;
    // MSS (so that no segment looks oversized), NOP, window scale: 8 bytes, as the header
    // must stay a multiple of 4.
    let [mss_hi, mss_lo] = MSS.to_be_bytes();
    let syn_options = [2, 4, mss_hi, mss_lo, 1, 3, 3, WINDOW_SHIFT];
    let options: &[u8] = if syn { &syn_options } else { &[] };
    let header_words = (20 + options.len()) / 4;
    buf.extend_from_slice(&src.to_be_bytes());
    buf.extend_from_slice(&dst.to_be_bytes());
    buf.extend_from_slice(&seg.seq.to_be_bytes());
    buf.extend_from_slice(&seg.ack.to_be_bytes());
    buf.push((header_words as u8) << 4);
    buf.push(seg.flags);
    buf.extend_from_slice(&u16::MAX.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    buf.extend_from_slice(options);
    buf.extend_from_slice(seg.payload);
    16
}

fn push_udp(buf: &mut Vec<u8>, src: u16, dst: u16, payload: &[u8]) -> usize {
    buf.extend_from_slice(&src.to_be_bytes());
    buf.extend_from_slice(&dst.to_be_bytes());
    buf.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(payload);
    6
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, l4_len: usize) -> u64 {
    // The IPv4 pseudo-header has a 16-bit length and IPv6's a 32-bit one; summed as 16-bit
    // words both come to the same value.
    sum16(src) + sum16(dst) + u64::from(proto) + l4_len as u64
}

fn sum16(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

pub fn import_file(path: &Path, skip_bad: bool) -> Result<Imported, PcapngError> {
    let bytes = std::fs::read(path).map_err(|source| PcapngError::Io {
        path: path.to_owned(),
        source,
    })?;
    import_named(&bytes, path, skip_bad)
}

/// Imports from memory, for fuzzing and for callers that already hold the bytes.
pub fn import_slice(bytes: &[u8], skip_bad: bool) -> Result<Imported, PcapngError> {
    import_named(bytes, Path::new("(memory)"), skip_bad)
}

fn import_named(bytes: &[u8], path: &Path, skip_bad: bool) -> Result<Imported, PcapngError> {
    let mut importer = Importer::new(path, skip_bad);
    read_blocks(bytes, &mut importer)?;
    importer.finish()
}

/// How a block's framing (lengths) is broken.
enum Framing {
    /// The file ends inside the block: cut short.
    Cut(String),
    Corrupt(String),
}

fn read_u32(bytes: &[u8], at: usize, endianness: Endianness) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    })
}

fn read_u16(bytes: &[u8], at: usize, endianness: Endianness) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u16::from_be_bytes(b),
        Endianness::Little => u16::from_le_bytes(b),
    })
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    read_u16(bytes, at, Endianness::Big)
}

/// Checks a block's length fields before the parser sees it, so that damage is classified
/// (cut short or corrupt) and a block with bad contents but sound lengths can be skipped.
fn block_len(rest: &[u8], section: Endianness) -> Result<usize, Framing> {
    let Some(kind) = read_u32(rest, 0, section) else {
        return Err(Framing::Cut(format!(
            "the file ends inside a block header ({} of 8 bytes)",
            rest.len()
        )));
    };
    let endianness = if kind == BLOCK_SHB {
        match rest.get(8..12) {
            Some([0x1A, 0x2B, 0x3C, 0x4D]) => Endianness::Big,
            Some([0x4D, 0x3C, 0x2B, 0x1A]) => Endianness::Little,
            Some(_) => return Err(Framing::Corrupt("bad byte-order magic".into())),
            None => {
                return Err(Framing::Cut("the file ends inside a section header".into()));
            }
        }
    } else {
        section
    };
    let Some(len) = read_u32(rest, 4, endianness) else {
        return Err(Framing::Cut(format!(
            "the file ends inside a block header ({} of 8 bytes)",
            rest.len()
        )));
    };
    if len < 12 || len % 4 != 0 {
        return Err(Framing::Corrupt(format!(
            "block of type {kind:#x} has an impossible length of {len} bytes"
        )));
    }
    let len = len as usize;
    if len > rest.len() {
        let reason = format!(
            "block of type {kind:#x} and {len} bytes runs past the end of the file ({} bytes left)",
            rest.len()
        );
        // A file cut inside its last block has no trailer after the cut; a length field
        // damaged in the middle of a file leaves the real trailer somewhere behind it.
        let cut = (len as u64) <= MAX_PLAUSIBLE_BLOCK && !has_trailer_within(rest, endianness);
        return Err(if cut {
            Framing::Cut(reason)
        } else {
            Framing::Corrupt(reason)
        });
    }
    let trailer = read_u32(rest, len - 4, endianness).unwrap_or(0);
    if trailer as usize != len {
        return Err(Framing::Corrupt(format!(
            "block length {len} does not match its trailing copy {trailer}"
        )));
    }
    Ok(len)
}

/// Whether some length `n` in the bytes at hand is followed by itself at `n - 4`, as a complete
/// block's trailer would be.
fn has_trailer_within(rest: &[u8], endianness: Endianness) -> bool {
    (12..=rest.len())
        .step_by(4)
        .any(|n| read_u32(rest, n - 4, endianness) == Some(n as u32))
}

fn describe_start(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(8)];
    format!(
        "{} \"{}\"",
        hex::encode(shown),
        super::model::ascii_preview(shown)
    )
}

fn read_blocks<'a>(bytes: &'a [u8], imp: &mut Importer<'a>) -> Result<(), PcapngError> {
    if bytes.is_empty() {
        return Err(imp.error(0, "empty file, not a pcapng capture".into()));
    }
    if !bytes.starts_with(&SHB_MAGIC) {
        return Err(imp.error(
            0,
            format!(
                "not a pcapng file (it starts with {})",
                describe_start(bytes)
            ),
        ));
    }
    // Nothing precedes the first section header, so damage there is always an error.
    let first_len = match block_len(bytes, Endianness::Big) {
        Ok(len) => len,
        Err(Framing::Cut(reason) | Framing::Corrupt(reason)) => return Err(imp.error(0, reason)),
    };
    let (_, mut parser) = PcapNgParser::new(&bytes[..first_len])
        .map_err(|e| imp.error(0, format!("bad section header block: {e}")))?;
    check_version(&parser).map_err(|reason| imp.error(0, reason))?;
    let mut rest = &bytes[first_len..];
    while !rest.is_empty() {
        let offset = (bytes.len() - rest.len()) as u64;
        let len = match block_len(rest, parser.section().endianness) {
            Ok(len) => len,
            Err(framing) => return imp.broken_framing(offset, framing),
        };
        let (block, after) = rest.split_at(len);
        if !imp.on_block(offset, block, &mut parser)? {
            return Ok(());
        }
        rest = after;
    }
    Ok(())
}

fn check_version(parser: &PcapNgParser) -> Result<(), String> {
    let major = parser.section().major_version;
    if major == 1 {
        Ok(())
    } else {
        Err(format!(
            "pcapng major version {major} is not supported (only version 1 is)"
        ))
    }
}

fn units_per_sec(resolution: u8) -> Option<u128> {
    let exponent = u32::from(resolution & 0x7F);
    if resolution & 0x80 == 0 {
        10u128.checked_pow(exponent)
    } else {
        1u128.checked_shl(exponent)
    }
}

struct Interface {
    linktype: u32,
    /// Units per second of the interface's timestamps.
    units_per_sec: Option<u128>,
    offset_secs: i64,
}

impl Interface {
    /// Reads an interface description block's body. Read here rather than by pcap-file,
    /// whose parser rejects valid files (it expects `if_tzone` to be 1 byte instead of 4),
    /// and only three fields matter.
    fn parse(body: &[u8], e: Endianness) -> Result<Self, String> {
        let linktype = read_u16(body, 0, e).ok_or("interface description shorter than 8 bytes")?;
        let mut resolution = 6u8;
        let mut offset_secs = 0i64;
        for (code, value) in parse_options(body.get(8..).unwrap_or(&[]), e)? {
            match (code, value) {
                (9, [r]) => resolution = *r,
                (14, v) => {
                    if let Ok(b) = <[u8; 8]>::try_from(v) {
                        offset_secs = match e {
                            Endianness::Big => i64::from_be_bytes(b),
                            Endianness::Little => i64::from_le_bytes(b),
                        };
                    }
                }
                _ => {}
            }
        }
        Ok(Interface {
            linktype: u32::from(linktype),
            units_per_sec: units_per_sec(resolution),
            offset_secs,
        })
    }

    fn timestamp(&self, raw: u64) -> Timestamp {
        let nanos = match self.units_per_sec {
            Some(units) if units > 0 => u128::from(raw) * 1_000_000_000 / units,
            _ => 0,
        };
        let total = i128::try_from(nanos).unwrap_or(i128::MAX)
            + i128::from(self.offset_secs) * 1_000_000_000;
        Timestamp(total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

struct Epb<'a> {
    interface: u32,
    raw_ts: u64,
    data: &'a [u8],
    comments: Vec<&'a str>,
}

fn parse_epb(body: &[u8], e: Endianness) -> Result<Epb<'_>, String> {
    let field = |at| read_u32(body, at, e).ok_or("enhanced packet block shorter than 20 bytes");
    let interface = field(0)?;
    let raw_ts = (u64::from(field(4)?) << 32) | u64::from(field(8)?);
    let captured = field(12)?;
    let past_end = || format!("captured length {captured} runs past the end of its block");
    let end = usize::try_from(captured)
        .ok()
        .and_then(|c| c.checked_add(20))
        .ok_or_else(past_end)?;
    let data = body.get(20..end).ok_or_else(past_end)?;
    let options = body.get(end.next_multiple_of(4)..).unwrap_or(&[]);
    Ok(Epb {
        interface,
        raw_ts,
        data,
        comments: parse_comments(options, e)?,
    })
}

/// The `opt_comment` values among a block's options. Comments that are not UTF-8 cannot be
/// ours, and are not worth losing the packet over.
fn parse_comments(options: &[u8], e: Endianness) -> Result<Vec<&str>, String> {
    Ok(parse_options(options, e)?
        .into_iter()
        .filter(|(code, _)| *code == 1)
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .collect())
}

/// A block's options as (code, value).
fn parse_options(mut options: &[u8], e: Endianness) -> Result<Vec<(u16, &[u8])>, String> {
    let mut found = Vec::new();
    while options.len() >= 4 {
        let code = read_u16(options, 0, e).unwrap_or(0);
        let len = usize::from(read_u16(options, 2, e).unwrap_or(0));
        if code == 0 {
            break;
        }
        let value = options.get(4..4 + len).ok_or_else(|| {
            format!("option {code} of {len} bytes runs past the end of its block")
        })?;
        found.push((code, value));
        options = options.get(4 + len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Ok(found)
}

// -- frame decoding ---------------------------------------------------------------------------

enum Wire<'a> {
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        payload: &'a [u8],
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: &'a [u8],
    },
    Note,
    Skip(&'static str),
}

/// An IP packet's transport bytes; `cut` when the capture holds less than the header says.
struct Transported<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    bytes: &'a [u8],
    cut: bool,
}

enum Network<'a> {
    V4(&'a [u8]),
    V6(&'a [u8]),
    Note,
}

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Decodes a frame; the flag says it was cut short by the capture's snapshot length.
fn decode_frame(linktype: u32, frame: &[u8]) -> (Wire<'_>, bool) {
    let network = match decode_link(linktype, frame) {
        Ok(n) => n,
        Err(reason) => return (Wire::Skip(reason), false),
    };
    let ip = match network {
        Network::Note => return (Wire::Note, false),
        Network::V4(p) => decode_ipv4(p),
        Network::V6(p) => decode_ipv6(p),
    };
    match ip {
        Ok(t) => {
            let cut = t.cut;
            (decode_transport(t), cut)
        }
        Err(reason) => (Wire::Skip(reason), false),
    }
}

fn decode_link(linktype: u32, f: &[u8]) -> Result<Network<'_>, &'static str> {
    const SHORT: &str = "frames too short for their link-layer header";
    match linktype {
        LINKTYPE_ETHERNET => {
            let mut at = 12;
            let mut ethertype = be16(f, at).ok_or(SHORT)?;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                at += 4;
                ethertype = be16(f, at).ok_or(SHORT)?;
            }
            let payload = f.get(at + 2..).ok_or(SHORT)?;
            by_ethertype(ethertype, payload)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family: [u8; 4] = f.get(..4).and_then(|b| b.try_into().ok()).ok_or(SHORT)?;
            // The family is in the capturing host's byte order, which the file does not say.
            let le = u32::from_le_bytes(family);
            let family = if le < 256 {
                le
            } else {
                u32::from_be_bytes(family)
            };
            let payload = &f[4..];
            match family {
                2 => Ok(Network::V4(payload)),
                10 | 24 | 28 | 30 => Ok(Network::V6(payload)),
                _ => Err("loopback frames of a family other than IPv4 or IPv6"),
            }
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => match f.first().map(|b| b >> 4) {
            Some(4) => Ok(Network::V4(f)),
            Some(6) => Ok(Network::V6(f)),
            _ => Err("raw frames that are not IPv4 or IPv6"),
        },
        LINKTYPE_LINUX_SLL => by_ethertype(be16(f, 14).ok_or(SHORT)?, f.get(16..).ok_or(SHORT)?),
        LINKTYPE_LINUX_SLL2 => by_ethertype(be16(f, 0).ok_or(SHORT)?, f.get(20..).ok_or(SHORT)?),
        _ => Err("frames of an unsupported link type"),
    }
}

fn by_ethertype(ethertype: u16, payload: &[u8]) -> Result<Network<'_>, &'static str> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok(Network::V4(payload)),
        ETHERTYPE_IPV6 => Ok(Network::V6(payload)),
        ETHERTYPE_NOTE => Ok(Network::Note),
        _ => Err("frames that are not IPv4 or IPv6"),
    }
}

fn decode_ipv4(p: &[u8]) -> Result<Transported<'_>, &'static str> {
    const SHORT: &str = "IPv4 headers cut short";
    let header = p.get(..20).ok_or(SHORT)?;
    let ihl = usize::from(header[0] & 0x0F) * 4;
    let total = usize::from(be16(header, 2).unwrap_or(0));
    if header[0] >> 4 != 4 || ihl < 20 || total < ihl {
        return Err("IPv4 headers with impossible lengths");
    }
    if be16(header, 6).unwrap_or(0) & 0x3FFF != 0 {
        return Err("IP fragments (reassembly is not supported)");
    }
    let end = total.min(p.len());
    let bytes = p.get(ihl..end).ok_or(SHORT)?;
    Ok(Transported {
        src: IpAddr::from([header[12], header[13], header[14], header[15]]),
        dst: IpAddr::from([header[16], header[17], header[18], header[19]]),
        proto: header[9],
        bytes,
        cut: total > p.len(),
    })
}

fn decode_ipv6(p: &[u8]) -> Result<Transported<'_>, &'static str> {
    let header: &[u8; 40] = p
        .get(..40)
        .and_then(|h| h.try_into().ok())
        .ok_or("IPv6 headers cut short")?;
    if header[0] >> 4 != 6 {
        return Err("IPv6 headers with a wrong version");
    }
    let payload_len = usize::from(be16(header, 4).unwrap_or(0));
    // A payload length of 0 is a jumbogram, whose length is in an option: take what is there.
    let (end, cut) = if payload_len == 0 {
        (p.len(), false)
    } else {
        ((40 + payload_len).min(p.len()), 40 + payload_len > p.len())
    };
    let mut next = header[6];
    let mut rest = &p[40..end];
    for _ in 0..8 {
        let header_len = match next {
            0 | 43 | 60 => rest.get(1).map(|&l| (usize::from(l) + 1) * 8),
            51 => rest.get(1).map(|&l| (usize::from(l) + 2) * 4),
            44 => return Err("IP fragments (reassembly is not supported)"),
            _ => break,
        };
        let header_len = header_len.ok_or("IPv6 extension headers cut short")?;
        next = rest[0];
        rest = rest
            .get(header_len..)
            .ok_or("IPv6 extension headers cut short")?;
    }
    let src: [u8; 16] = header[8..24].try_into().unwrap_or([0; 16]);
    let dst: [u8; 16] = header[24..40].try_into().unwrap_or([0; 16]);
    Ok(Transported {
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto: next,
        bytes: rest,
        cut,
    })
}

fn decode_transport(t: Transported<'_>) -> Wire<'_> {
    let ports = |b: &[u8]| (be16(b, 0).unwrap_or(0), be16(b, 2).unwrap_or(0));
    match t.proto {
        PROTO_TCP => {
            let b = t.bytes;
            let Some(&[offset_byte, flags]) = b.get(12..14) else {
                return Wire::Skip("TCP headers cut short");
            };
            let offset = usize::from(offset_byte >> 4) * 4;
            let Some(payload) = b.get(offset..).filter(|_| offset >= 20) else {
                return Wire::Skip("TCP headers with impossible lengths");
            };
            let (sp, dp) = ports(b);
            Wire::Tcp {
                src: SocketAddr::new(t.src, sp),
                dst: SocketAddr::new(t.dst, dp),
                flags,
                payload,
            }
        }
        PROTO_UDP => {
            let b = t.bytes;
            let Some(len) = be16(b, 4).map(usize::from) else {
                return Wire::Skip("UDP headers cut short");
            };
            // Length 0 only occurs in jumbograms; then the datagram is what the IP layer holds.
            let end = if len >= 8 { len.min(b.len()) } else { b.len() };
            let (sp, dp) = ports(b);
            Wire::Udp {
                src: SocketAddr::new(t.src, sp),
                dst: SocketAddr::new(t.dst, dp),
                payload: b.get(8..end).unwrap_or(&[]),
            }
        }
        _ => Wire::Skip("IP packets that are neither TCP nor UDP"),
    }
}

// -- assembly ---------------------------------------------------------------------------------

/// A conversation, independent of direction: the two endpoints in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct FlowKey {
    udp: bool,
    low: SocketAddr,
    high: SocketAddr,
}

impl FlowKey {
    fn new(udp: bool, a: SocketAddr, b: SocketAddr) -> Self {
        FlowKey {
            udp,
            low: a.min(b),
            high: a.max(b),
        }
    }
}

/// One direction of a conversation: the flow and its sender.
type FlowDir = (FlowKey, SocketAddr);

#[derive(Clone, Copy)]
struct Origin {
    offset: u64,
    ts: Timestamp,
}

struct Slot {
    conn: Connection,
    /// The id in the connection record, for gamewire files.
    recorded: Option<u64>,
    /// A foreign TCP connection that saw FIN or RST: a later SYN starts a new connection.
    ended: bool,
}

/// A record whose parts are still arriving.
struct Assembly {
    next: u32,
    count: u32,
    text: String,
    origin: Origin,
    flow: Option<FlowDir>,
}

/// The bytes of one gamewire packet, collected from the frames of its direction.
struct Claim<'a> {
    key: String,
    record: Option<PacketRecord>,
    data: Cow<'a, [u8]>,
    origin: Origin,
}

impl<'a> Claim<'a> {
    fn push(&mut self, payload: &'a [u8]) {
        if payload.is_empty() {
            return;
        }
        if self.data.is_empty() {
            self.data = Cow::Borrowed(payload);
        } else {
            self.data.to_mut().extend_from_slice(payload);
        }
    }
}

struct Pending<'a> {
    /// The recorded packet id: a gamewire file's packets get their ids back in this order.
    recorded: Option<u64>,
    slot: usize,
    direction: Direction,
    ts: Timestamp,
    data: Cow<'a, [u8]>,
    label: Option<String>,
    flags: PacketFlags,
    original: Option<Vec<u8>>,
    offset: u64,
}

struct Importer<'a> {
    path: PathBuf,
    skip_bad: bool,
    problems: Vec<String>,
    /// Frames skipped for a reason that repeats: how many, and the first one's offset.
    skipped: BTreeMap<&'static str, (u64, u64)>,
    cut_short: bool,
    /// Interfaces of the current section; `None` for one whose description was unreadable.
    interfaces: Vec<Option<Interface>>,
    slots: Vec<Slot>,
    recorded_slots: HashMap<u64, usize>,
    flows: HashMap<FlowKey, usize>,
    assemblies: HashMap<String, Assembly>,
    claims: HashMap<FlowDir, Claim<'a>>,
    claim_keys: HashMap<String, FlowDir>,
    packets: Vec<Pending<'a>>,
}

impl<'a> Importer<'a> {
    fn new(path: &Path, skip_bad: bool) -> Self {
        Importer {
            path: path.to_owned(),
            skip_bad,
            problems: Vec::new(),
            skipped: BTreeMap::new(),
            cut_short: false,
            interfaces: Vec::new(),
            slots: Vec::new(),
            recorded_slots: HashMap::new(),
            flows: HashMap::new(),
            assemblies: HashMap::new(),
            claims: HashMap::new(),
            claim_keys: HashMap::new(),
            packets: Vec::new(),
        }
    }

    fn error(&self, offset: u64, reason: String) -> PcapngError {
        PcapngError::Malformed {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// Damage at `offset`: an error, or with `skip_bad` a problem line and carry on.
    fn damaged(&mut self, offset: u64, reason: String) -> Result<(), PcapngError> {
        if self.skip_bad {
            self.problems.push(format!("offset {offset}: {reason}"));
            Ok(())
        } else {
            Err(self.error(offset, reason))
        }
    }

    fn skip_frame(&mut self, offset: u64, reason: &'static str) {
        let entry = self.skipped.entry(reason).or_insert((0, offset));
        entry.0 += 1;
    }

    fn broken_framing(&mut self, offset: u64, framing: Framing) -> Result<(), PcapngError> {
        let kept = self.packets.len();
        match framing {
            Framing::Cut(reason) => {
                self.cut_short = true;
                self.problems.push(format!(
                    "offset {offset}: {reason}: the file was cut short; kept the {kept} packets before it"
                ));
                Ok(())
            }
            Framing::Corrupt(reason) => self.damaged(
                offset,
                format!("{reason}; stopped reading there, kept the {kept} packets before it"),
            ),
        }
    }

    /// Handles one block with sound lengths; false when reading must stop.
    fn on_block(
        &mut self,
        offset: u64,
        block: &'a [u8],
        parser: &mut PcapNgParser,
    ) -> Result<bool, PcapngError> {
        let endianness = parser.section().endianness;
        let kind = read_u32(block, 0, endianness).unwrap_or(0);
        let body = block.get(8..block.len() - 4).unwrap_or(&[]);
        match kind {
            BLOCK_SHB => {
                if let Err(e) = parser.next_raw_block(block) {
                    self.damaged(offset, format!("bad section header block: {e}"))?;
                    return Ok(false);
                }
                self.interfaces.clear();
                if let Err(reason) = check_version(parser) {
                    self.damaged(offset, reason)?;
                    return Ok(false);
                }
            }
            BLOCK_IDB => match Interface::parse(body, endianness) {
                Ok(interface) => self.interfaces.push(Some(interface)),
                Err(reason) => {
                    self.interfaces.push(None);
                    self.damaged(offset, format!("bad interface description block: {reason}"))?;
                }
            },
            BLOCK_EPB => match parse_epb(body, endianness) {
                Ok(epb) => self.on_epb(offset, epb)?,
                Err(reason) => self.damaged(offset, reason)?,
            },
            BLOCK_SPB | BLOCK_PB => {
                self.skip_frame(offset, "simple or obsolete packet blocks (not supported)");
            }
            // Name resolution, statistics, secrets, custom blocks: nothing to import.
            _ => {}
        }
        Ok(true)
    }

    fn on_epb(&mut self, offset: u64, epb: Epb<'a>) -> Result<(), PcapngError> {
        let interface = match self.interfaces.get(epb.interface as usize) {
            Some(Some(i)) => i,
            Some(None) => {
                self.skip_frame(offset, "packets of an unreadable interface description");
                return Ok(());
            }
            None => {
                return self.damaged(
                    offset,
                    format!(
                        "packet of interface {}, which no interface description block defines",
                        epb.interface
                    ),
                );
            }
        };
        let origin = Origin {
            offset,
            ts: interface.timestamp(epb.raw_ts),
        };
        let (wire, cut) = decode_frame(interface.linktype, epb.data);
        if cut {
            self.skip_frame(
                offset,
                "frames cut short by the capture's snapshot length (kept what was captured)",
            );
        }
        self.on_frame(origin, wire, &epb.comments)
    }

    fn on_frame(
        &mut self,
        origin: Origin,
        wire: Wire<'a>,
        comments: &[&str],
    ) -> Result<(), PcapngError> {
        let flow = match &wire {
            Wire::Tcp { src, dst, .. } => Some((FlowKey::new(false, *src, *dst), *src, *dst)),
            Wire::Udp { src, dst, .. } => Some((FlowKey::new(true, *src, *dst), *src, *dst)),
            Wire::Note => None,
            Wire::Skip(reason) => {
                self.skip_frame(origin.offset, reason);
                None
            }
        };
        let flow_dir = flow.map(|(key, src, _)| (key, src));
        let mut ours = false;
        for comment in comments {
            ours |= self.on_comment(origin, flow_dir, comment)?;
        }
        match wire {
            Wire::Tcp {
                src,
                dst,
                flags,
                payload,
            } => self.on_payload(origin, (src, dst), Some(flags), payload, ours),
            Wire::Udp { src, dst, payload } => {
                self.on_payload(origin, (src, dst), None, payload, ours)
            }
            Wire::Note | Wire::Skip(_) => Ok(()),
        }
    }

    /// Returns whether the comment is one of ours.
    fn on_comment(
        &mut self,
        origin: Origin,
        flow: Option<FlowDir>,
        comment: &str,
    ) -> Result<bool, PcapngError> {
        match classify_comment(comment) {
            Comment::Foreign => return Ok(false),
            Comment::Marker => {}
            Comment::BadPart => {
                self.damaged(origin.offset, "unreadable gamewire comment header".into())?;
            }
            Comment::Whole(json) => match serde_json::from_str::<Record>(json) {
                Ok(record) => self.on_record(record, origin, flow, true)?,
                Err(e) => self.damaged(origin.offset, format!("bad gamewire record: {e}"))?,
            },
            Comment::Part {
                key,
                index,
                count,
                text,
            } => self.on_part(origin, flow, key, (index, count), text)?,
        }
        Ok(true)
    }

    fn on_part(
        &mut self,
        origin: Origin,
        flow: Option<FlowDir>,
        key: &str,
        (index, count): (u32, u32),
        text: &str,
    ) -> Result<(), PcapngError> {
        if index == 1 {
            if self.assemblies.remove(key).is_some() {
                self.damaged(
                    origin.offset,
                    format!("gamewire record {key} starts again before it was complete"),
                )?;
            }
            if key.starts_with('p')
                && let Some(flow) = flow
            {
                self.open_claim(flow, key.to_owned(), origin, None)?;
            }
            self.assemblies.insert(
                key.to_owned(),
                Assembly {
                    next: 1,
                    count,
                    text: String::new(),
                    origin,
                    flow,
                },
            );
        }
        let Some(assembly) = self.assemblies.get_mut(key) else {
            return self.damaged(
                origin.offset,
                format!("part {index} of {count} of gamewire record {key} without its beginning"),
            );
        };
        if assembly.next != index || assembly.count != count {
            let expected = (assembly.next, assembly.count);
            self.assemblies.remove(key);
            return self.damaged(
                origin.offset,
                format!(
                    "part {index} of {count} of gamewire record {key} where part {} of {} was due",
                    expected.0, expected.1
                ),
            );
        }
        assembly.text.push_str(text);
        assembly.next += 1;
        if index < count {
            return Ok(());
        }
        let Some(done) = self.assemblies.remove(key) else {
            return Ok(());
        };
        match serde_json::from_str::<Record>(&done.text) {
            Ok(record) => self.on_record(record, done.origin, done.flow, false),
            Err(e) => self.damaged(
                done.origin.offset,
                format!("bad gamewire record {key}: {e}"),
            ),
        }
    }

    /// A complete record. `whole` when it came in one comment on the current frame, which is
    /// then the first frame of its packet.
    fn on_record(
        &mut self,
        record: Record,
        origin: Origin,
        flow: Option<FlowDir>,
        whole: bool,
    ) -> Result<(), PcapngError> {
        match record {
            Record::Connection(r) => self.on_connection_record(r, origin, flow.map(|f| f.0)),
            Record::Packet(r) => {
                let key = format!("p{}", r.id);
                if whole {
                    return match flow {
                        Some(flow) => self.open_claim(flow, key, origin, Some(r)),
                        None => self.finish_packet(r, Cow::Borrowed(&[]), origin, None),
                    };
                }
                match self.claim_keys.get(&key).copied() {
                    Some(flow) => {
                        if let Some(claim) = self.claims.get_mut(&flow) {
                            claim.record = Some(r);
                        }
                        self.try_finish(flow)
                    }
                    None => self.finish_packet(r, Cow::Borrowed(&[]), origin, None),
                }
            }
        }
    }

    fn on_connection_record(
        &mut self,
        r: ConnRecord,
        origin: Origin,
        flow: Option<FlowKey>,
    ) -> Result<(), PcapngError> {
        if self.recorded_slots.contains_key(&r.id) {
            return self.damaged(
                origin.offset,
                format!("a second record of connection {}", r.id),
            );
        }
        let index = self.slots.len();
        self.slots.push(Slot {
            conn: Connection {
                id: ConnectionId(0),
                client: r.client,
                server: if r.server_unknown {
                    UNKNOWN_ADDR
                } else {
                    r.server
                },
                transport: r.transport,
                tls: r.tls,
                protocol: r.protocol,
                route: r.route,
                opened: r.opened,
                closed: r.closed,
                close_reason: r.close_reason,
            },
            recorded: Some(r.id),
            ended: false,
        });
        self.recorded_slots.insert(r.id, index);
        if let Some(flow) = flow {
            self.flows.insert(flow, index);
        }
        Ok(())
    }

    fn open_claim(
        &mut self,
        flow: FlowDir,
        key: String,
        origin: Origin,
        record: Option<PacketRecord>,
    ) -> Result<(), PcapngError> {
        if let Some(old) = self.claims.remove(&flow) {
            self.claim_keys.remove(&old.key);
            self.damaged(
                old.origin.offset,
                format!(
                    "gamewire packet {} is incomplete: packet {key} starts at offset {} in the same direction",
                    &old.key[1..],
                    origin.offset
                ),
            )?;
        }
        self.claim_keys.insert(key.clone(), flow);
        self.claims.insert(
            flow,
            Claim {
                key,
                record,
                data: Cow::Borrowed(&[]),
                origin,
            },
        );
        Ok(())
    }

    /// Completes the packet collected on `flow` once its record and all its bytes are in.
    fn try_finish(&mut self, flow: FlowDir) -> Result<(), PcapngError> {
        let Some(claim) = self.claims.get(&flow) else {
            return Ok(());
        };
        let Some(record) = &claim.record else {
            return Ok(());
        };
        let expected = if record.segments == 0 { 0 } else { record.len };
        if claim.data.len() < expected {
            return Ok(());
        }
        let Some(claim) = self.claims.remove(&flow) else {
            return Ok(());
        };
        self.claim_keys.remove(&claim.key);
        let Some(record) = claim.record else {
            return Ok(());
        };
        if claim.data.len() > expected {
            return self.damaged(
                claim.origin.offset,
                format!(
                    "gamewire packet {} holds {} bytes in its frames but its record says {expected}",
                    record.id,
                    claim.data.len()
                ),
            );
        }
        self.finish_packet(record, claim.data, claim.origin, Some(flow.0))
    }

    fn finish_packet(
        &mut self,
        record: PacketRecord,
        stream_bytes: Cow<'a, [u8]>,
        origin: Origin,
        flow: Option<FlowKey>,
    ) -> Result<(), PcapngError> {
        match self.packet_from_record(record, stream_bytes, origin) {
            Ok(pending) => {
                if let Some(flow) = flow {
                    self.flows.insert(flow, pending.slot);
                }
                self.packets.push(pending);
                Ok(())
            }
            Err(reason) => self.damaged(origin.offset, reason),
        }
    }

    fn packet_from_record(
        &self,
        r: PacketRecord,
        stream_bytes: Cow<'a, [u8]>,
        origin: Origin,
    ) -> Result<Pending<'a>, String> {
        let id = r.id;
        let slot = *self.recorded_slots.get(&r.conn).ok_or_else(|| {
            format!(
                "gamewire packet {id} belongs to connection {}, which has no record before it",
                r.conn
            )
        })?;
        let data = if r.segments == 0 {
            let bytes = hex::decode(r.data.as_deref().unwrap_or(""))
                .map_err(|e| format!("gamewire packet {id}: bad data: {e}"))?;
            if bytes.len() != r.len {
                return Err(format!(
                    "gamewire packet {id} holds {} bytes in its record but says {}",
                    bytes.len(),
                    r.len
                ));
            }
            Cow::Owned(bytes)
        } else if stream_bytes.len() == r.len {
            stream_bytes
        } else {
            return Err(format!(
                "gamewire packet {id} holds {} bytes in TCP/UDP frames but its record says {}",
                stream_bytes.len(),
                r.len
            ));
        };
        let original = r
            .original
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|e| format!("gamewire packet {id}: bad original bytes: {e}"))?;
        let mut flags = PacketFlags(r.other_flags);
        for name in &r.flags {
            flags |= PacketFlags::from_name(name)
                .ok_or_else(|| format!("gamewire packet {id}: unknown flag \"{name}\""))?;
        }
        Ok(Pending {
            recorded: Some(id),
            slot,
            direction: r.dir,
            ts: r.ts.unwrap_or(origin.ts),
            data,
            label: r.label,
            flags,
            original,
            offset: origin.offset,
        })
    }

    fn on_payload(
        &mut self,
        origin: Origin,
        (src, dst): (SocketAddr, SocketAddr),
        tcp_flags: Option<u8>,
        payload: &'a [u8],
        ours: bool,
    ) -> Result<(), PcapngError> {
        let key = FlowKey::new(tcp_flags.is_none(), src, dst);
        if let Some(claim) = self.claims.get_mut(&(key, src)) {
            claim.push(payload);
            return self.try_finish((key, src));
        }
        if ours {
            // A handshake or carrier frame of a gamewire connection, or a segment of a packet
            // whose damage is already reported: no traffic of its own.
            return Ok(());
        }
        let slot = self.foreign_slot(key, (src, dst), tcp_flags, origin.ts);
        // An empty TCP segment carries no data; an empty UDP datagram is a message.
        if !payload.is_empty() || tcp_flags.is_none() {
            let conn = &self.slots[slot].conn;
            let direction = if src == conn.client {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            self.packets.push(Pending {
                recorded: None,
                slot,
                direction,
                ts: origin.ts,
                data: Cow::Borrowed(payload),
                label: None,
                flags: PacketFlags::empty(),
                original: None,
                offset: origin.offset,
            });
        }
        if let Some(flags) = tcp_flags {
            self.track_close(slot, flags, origin.ts);
        }
        Ok(())
    }

    fn foreign_slot(
        &mut self,
        key: FlowKey,
        (src, dst): (SocketAddr, SocketAddr),
        tcp_flags: Option<u8>,
        ts: Timestamp,
    ) -> usize {
        let flags = tcp_flags.unwrap_or(0);
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if let Some(&slot) = self.flows.get(&key) {
            let s = &self.slots[slot];
            let reused = syn && !ack && s.recorded.is_none() && s.ended;
            if !reused {
                return slot;
            }
        }
        let (client, server) = if syn && ack { (dst, src) } else { (src, dst) };
        let transport = if tcp_flags.is_some() {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let index = self.slots.len();
        self.slots.push(Slot {
            conn: Connection::new(client, server, transport, ts),
            recorded: None,
            ended: false,
        });
        self.flows.insert(key, index);
        index
    }

    fn track_close(&mut self, slot: usize, flags: u8, ts: Timestamp) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.recorded.is_some() || flags & (TCP_FIN | TCP_RST) == 0 {
            return;
        }
        s.ended = true;
        s.conn.closed = Some(ts);
        if flags & TCP_RST != 0 {
            s.conn.close_reason = Some("reset".into());
        }
    }

    /// Reports what never completed, then builds the store.
    fn finish(mut self) -> Result<Imported, PcapngError> {
        let mut leftovers: Vec<(u64, String)> = self
            .claims
            .values()
            .map(|c| {
                (
                    c.origin.offset,
                    format!(
                        "gamewire packet {} is incomplete at the end of the file",
                        &c.key[1..]
                    ),
                )
            })
            .chain(self.assemblies.iter().map(|(key, a)| {
                (
                    a.origin.offset,
                    format!("gamewire record {key} is incomplete at the end of the file"),
                )
            }))
            .collect();
        leftovers.sort();
        leftovers.dedup();
        for (offset, reason) in leftovers {
            if self.cut_short {
                self.problems.push(format!("offset {offset}: {reason}"));
            } else {
                self.damaged(offset, reason)?;
            }
        }
        for (reason, (count, first)) in std::mem::take(&mut self.skipped) {
            self.problems.push(format!(
                "offset {first}: skipped {count} frame(s): {reason} (the first is here)"
            ));
        }
        self.build()
    }

    fn build(mut self) -> Result<Imported, PcapngError> {
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        // Recorded connections first, in their recorded order; then foreign ones as met.
        order.sort_by_key(|&i| (self.slots[i].recorded.is_none(), self.slots[i].recorded, i));
        let mut new_ids = vec![ConnectionId(0); self.slots.len()];
        let mut data = StoreData::new();
        for &i in &order {
            new_ids[i] = data.add_connection(self.slots[i].conn.clone());
        }
        let mut packets = std::mem::take(&mut self.packets);
        if packets.iter().all(|p| p.recorded.is_some()) {
            // Stable, so a recorded id that appears twice keeps file order.
            packets.sort_by_key(|p| p.recorded);
        }
        for p in packets {
            let appended = data.append_parts(
                new_ids[p.slot],
                p.direction,
                p.ts,
                &p.data,
                p.label.as_deref(),
                p.flags,
                p.original.as_deref(),
            );
            if let Err(e) = appended {
                self.damaged(p.offset, format!("packet not imported: {e}"))?;
            }
        }
        Ok(Imported {
            data,
            problems: self.problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The example header of RFC 1071 discussions (Wikipedia "IPv4 header checksum").
        let mut h = hex::decode("450000730000400040110000c0a80001c0a800c7").unwrap();
        let sum = fold(sum16(&h));
        assert_eq!(sum, 0xB861);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(fold(sum16(&h)), 0);
    }

    #[test]
    fn long_records_split_into_numbered_parts_that_classify_back() {
        let record = Record::Packet(PacketRecord {
            conn: 1,
            id: 7,
            dir: Direction::ClientToServer,
            len: 0,
            segments: 1,
            ts: None,
            label: Some("é".repeat(40_000)),
            flags: vec![],
            other_flags: 0,
            original: None,
            data: None,
        });
        let comments = record_comments("p7", &record).unwrap();
        assert!(comments.len() > 1);
        let mut text = String::new();
        for (i, c) in comments.iter().enumerate() {
            assert!(c.len() <= MAX_COMMENT);
            match classify_comment(c) {
                Comment::Part {
                    key,
                    index,
                    count,
                    text: part,
                } => {
                    assert_eq!(
                        (key, index, count),
                        ("p7", i as u32 + 1, comments.len() as u32)
                    );
                    text.push_str(part);
                }
                _ => panic!("not a part: {}", &c[..40]),
            }
        }
        assert!(matches!(
            serde_json::from_str::<Record>(&text).unwrap(),
            Record::Packet(PacketRecord { id: 7, .. })
        ));
    }

    #[test]
    fn timestamps_follow_the_interface_resolution() {
        let iface = |resol, offset| Interface {
            linktype: 1,
            units_per_sec: units_per_sec(resol),
            offset_secs: offset,
        };
        assert_eq!(iface(6, 0).timestamp(1_500_000).0, 1_500_000_000);
        assert_eq!(iface(9, 0).timestamp(7).0, 7);
        assert_eq!(iface(0x80 | 10, 2).timestamp(1024).0, 3_000_000_000);
        assert_eq!(iface(100, 0).timestamp(5).0, 0);
    }
}
