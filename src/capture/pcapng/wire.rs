//! Ethernet, IPv4, IPv6, TCP and UDP headers: writing them, with their checksums, around the
//! payloads of an export, and reading them back from the frames of a capture.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pcap_file::Endianness;

use super::blocks::read_u16;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
pub(super) const ETHERTYPE_NOTE: u16 = 0x88B5;

pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;
pub(super) const TCP_FIN: u8 = 0x01;
pub(super) const TCP_SYN: u8 = 0x02;
pub(super) const TCP_RST: u8 = 0x04;
pub(super) const TCP_PSH: u8 = 0x08;
pub(super) const TCP_ACK: u8 = 0x10;
/// Window scale announced in the handshake: 65535 << 14 is about 1 GiB, so Wireshark does not
/// flag full windows in streams that never see an acknowledgement-only segment.
const WINDOW_SHIFT: u8 = 14;
/// The MSS of a loopback interface, above [`MAX_SEGMENT`](super::MAX_SEGMENT).
const MSS: u16 = 65_495;

/// One TCP segment to write; `from_client` says which end sends it.
pub(super) struct TcpSegment<'a> {
    pub(super) from_client: bool,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) payload: &'a [u8],
}

pub(super) fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

pub(super) fn push_ethernet(buf: &mut Vec<u8>, src: [u8; 6], dst: [u8; 6], ethertype: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

/// Writes Ethernet and IP headers, lets `l4` write the transport header and payload (and say
/// where its checksum goes), then fills in lengths and checksums.
pub(super) fn push_ip(
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
pub(super) fn push_tcp(buf: &mut Vec<u8>, src: u16, dst: u16, seg: &TcpSegment<'_>) -> usize {
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

pub(super) fn push_udp(buf: &mut Vec<u8>, src: u16, dst: u16, payload: &[u8]) -> usize {
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

// -- frame decoding ---------------------------------------------------------------------------
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    read_u16(bytes, at, Endianness::Big)
}

pub(super) enum Wire<'a> {
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
pub(super) fn decode_frame(linktype: u32, frame: &[u8]) -> (Wire<'_>, bool) {
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
}
