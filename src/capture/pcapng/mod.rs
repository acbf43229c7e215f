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
//!
//! One job per submodule: `records` are the gamewire records in frame comments, `export`
//! plans the frames and writes them, `wire` encodes and decodes their headers, `blocks`
//! reads the layout of pcapng blocks, and `import` rebuilds a capture from the blocks.
//!
//! [`Transport::Quic`]: crate::capture::model::Transport::Quic
//! [`UNKNOWN_ADDR`]: crate::capture::model::UNKNOWN_ADDR

mod blocks;
mod export;
mod import;
mod records;
mod wire;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::capture::model::ConnectionId;
use crate::capture::store::StoreData;

/// First four bytes of every pcapng file (the Section Header Block type).
pub const SHB_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

/// Largest payload of one exported TCP segment or UDP datagram. An IP packet's total length
/// is 16 bits; this keeps header + payload well under 65535 for IPv4 and IPv6 alike.
pub const MAX_SEGMENT: usize = 65_000;

/// Port written for a server whose address was not recorded.
pub const PLACEHOLDER_PORT: u16 = 9;

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

/// Writes the connections `keep` selects, and their packets, as pcapng.
pub fn export(
    data: &StoreData,
    out: impl Write,
    keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<()> {
    export::write(data, out, keep)
}

pub fn import_file(path: &Path, skip_bad: bool) -> Result<Imported, PcapngError> {
    let bytes = std::fs::read(path).map_err(|source| PcapngError::Io {
        path: path.to_owned(),
        source,
    })?;
    import::import_named(&bytes, path, skip_bad)
}

/// Imports from memory, for fuzzing and for callers that already hold the bytes.
pub fn import_slice(bytes: &[u8], skip_bad: bool) -> Result<Imported, PcapngError> {
    import::import_named(bytes, Path::new("(memory)"), skip_bad)
}
