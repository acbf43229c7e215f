//! Plain data types of a capture: connections and packets.
//!
//! Everything here is owned, cloneable data with no I/O, so every file format and every
//! consumer (dissectors, GUI, CLI) shares one vocabulary.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC. An `i64` covers the years 1678..2262, which is
/// every timestamp a capture can hold, and keeps the model free of any time library.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;

    pub fn now() -> Self {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_nanos().min(i64::MAX as u128) as i64),
            Err(e) => Timestamp(-(e.duration().as_nanos().min(i64::MAX as u128) as i64)),
        }
    }

    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(Self::NANOS_PER_SEC)
                .saturating_add(i64::from(nanos)),
        )
    }

    /// Whole seconds (floored) and the nanosecond remainder in `0..1e9`.
    pub fn secs_nanos(self) -> (i64, u32) {
        (
            self.0.div_euclid(Self::NANOS_PER_SEC),
            self.0.rem_euclid(Self::NANOS_PER_SEC) as u32,
        )
    }

    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        let (s, n) = self.secs_nanos();
        chrono::DateTime::from_timestamp(s, n).unwrap_or_default()
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2025-08-07T22:53:52.581782000Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ConnectionId(pub u64);

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PacketId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
    Quic,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Quic => "quic",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Transport::Tcp),
            1 => Some(Transport::Udp),
            2 => Some(Transport::Quic),
            _ => None,
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Transport::Tcp => 0,
            Transport::Udp => 1,
            Transport::Quic => 2,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    #[serde(rename = "client->server")]
    ClientToServer,
    #[serde(rename = "server->client")]
    ServerToClient,
}

impl Direction {
    /// The spelling used by sd.json and `inspect --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client->server",
            Direction::ServerToClient => "server->client",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client->server" | "c2s" => Some(Direction::ClientToServer),
            "server->client" | "s2c" => Some(Direction::ServerToClient),
            _ => None,
        }
    }

    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ClientToServer => "→",
            Direction::ServerToClient => "←",
        }
    }

    pub fn reverse(self) -> Self {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a packet on its way through gamewire. A bit set so that a packet can be,
/// say, both replayed and edited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PacketFlags(pub u8);

impl PacketFlags {
    pub const EDITED: PacketFlags = PacketFlags(1);
    pub const INJECTED: PacketFlags = PacketFlags(2);
    pub const DROPPED: PacketFlags = PacketFlags(4);
    pub const REPLAYED: PacketFlags = PacketFlags(8);
    const ALL: [(PacketFlags, &'static str); 4] = [
        (Self::EDITED, "edited"),
        (Self::INJECTED, "injected"),
        (Self::DROPPED, "dropped"),
        (Self::REPLAYED, "replayed"),
    ];
    pub const KNOWN_BITS: u8 = 0x0F;

    pub fn empty() -> Self {
        PacketFlags(0)
    }

    pub fn contains(self, other: PacketFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn names(self) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for PacketFlags {
    type Output = PacketFlags;
    fn bitor(self, rhs: Self) -> Self {
        PacketFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for PacketFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for PacketFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// TLS facts of a connection as gamewire saw them (on the client side of a tap).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub version: Option<String>,
    pub cipher: Option<String>,
}

/// One client↔server conversation. Fields that become known later (protocol, TLS facts,
/// close) are updated in place; files store the latest state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
    pub tls: Option<TlsInfo>,
    /// Dissector label such as `fesl` or `http`.
    pub protocol: Option<String>,
    /// The configured route (tap or proxy) that carried it.
    pub route: Option<String>,
    pub opened: Timestamp,
    pub closed: Option<Timestamp>,
    pub close_reason: Option<String>,
}

/// An address that stands for "not known", used when a format does not record the server.
pub const UNKNOWN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl Connection {
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        transport: Transport,
        opened: Timestamp,
    ) -> Self {
        Connection {
            id: ConnectionId(0),
            client,
            server,
            transport,
            tls: None,
            protocol: None,
            route: None,
            opened,
            closed: None,
            close_reason: None,
        }
    }
}

/// A packet as handed to the store: one read from one side of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPacket {
    pub connection: ConnectionId,
    pub direction: Direction,
    pub timestamp: Timestamp,
    pub data: Vec<u8>,
    pub label: Option<String>,
    pub flags: PacketFlags,
    /// The bytes as they arrived, when `data` is an edited version of them.
    pub original: Option<Vec<u8>>,
}

impl NewPacket {
    pub fn new(
        connection: ConnectionId,
        direction: Direction,
        timestamp: Timestamp,
        data: Vec<u8>,
    ) -> Self {
        NewPacket {
            connection,
            direction,
            timestamp,
            data,
            label: None,
            flags: PacketFlags::empty(),
            original: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// A packet as read back from a store: owned, so it can leave the store's lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub id: PacketId,
    pub connection: ConnectionId,
    pub direction: Direction,
    pub timestamp: Timestamp,
    pub data: Vec<u8>,
    pub label: Option<String>,
    pub flags: PacketFlags,
    pub original: Option<Vec<u8>>,
}

impl Packet {
    pub fn into_new(self) -> NewPacket {
        NewPacket {
            connection: self.connection,
            direction: self.direction,
            timestamp: self.timestamp,
            data: self.data,
            label: self.label,
            flags: self.flags,
            original: self.original,
        }
    }
}

/// Printable ASCII with every other byte as `.`, the convention of sd.json and hex dumps.
pub fn ascii_preview(data: &[u8]) -> String {
    data.iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// The first bytes of a file that is not what it claims to be, for error messages:
/// `7f454c46 ".ELF"`.
pub fn describe_start(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(8)];
    format!("{} \"{}\"", hex::encode(shown), ascii_preview(shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_splits_negative_values_with_floor() {
        let t = Timestamp(-1);
        assert_eq!(t.secs_nanos(), (-1, 999_999_999));
        assert_eq!(Timestamp::from_secs_nanos(-1, 999_999_999), t);
    }

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        let t = Timestamp::from_secs_nanos(1_754_607_232, 581_782_123);
        assert_eq!(t.to_rfc3339(), "2025-08-07T22:53:52.581782123Z");
    }

    #[test]
    fn flags_round_trip_through_names() {
        let f = PacketFlags::EDITED | PacketFlags::REPLAYED;
        assert_eq!(f.names(), vec!["edited", "replayed"]);
        let back = f
            .names()
            .iter()
            .filter_map(|n| PacketFlags::from_name(n))
            .fold(PacketFlags::empty(), |a, b| a | b);
        assert_eq!(back, f);
    }
}
