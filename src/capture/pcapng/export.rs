//! Export: plans the frames of each connection (handshakes, data segments and datagrams with
//! their sequence numbers, carrier and note frames, records in comments) and writes them as
//! pcapng blocks.

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness, PcapError};

use super::records::{ConnRecord, PREFIX, PacketRecord, Record, record_comments};
use super::wire::{
    ETHERTYPE_NOTE, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TcpSegment, as_v6,
    push_ethernet, push_ip, push_tcp, push_udp,
};
use super::{MAX_SEGMENT, PLACEHOLDER_PORT};
use crate::capture::model::{
    Connection, ConnectionId, Direction, PacketFlags, Timestamp, Transport, UNKNOWN_ADDR,
};
use crate::capture::store::{PacketRef, StoreData};

const PLACEHOLDER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PLACEHOLDER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Locally administered MACs ("gw"), so they never collide with a real vendor's.
const CLIENT_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x02];
const NOTE_MAC: [u8; 6] = [0x02, 0x67, 0x77, 0x00, 0x00, 0x00];
const NOTE_PAYLOAD: &[u8] = b"gamewire metadata, see the frame comment";

/// Writes the connections `keep` selects, and their packets, as pcapng: the work behind the
/// public `export`.
pub(super) fn write(
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
