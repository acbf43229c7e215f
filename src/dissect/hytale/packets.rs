//! The Hytale packet registry: one table of every packet id gamewire knows, with its name,
//! whether its payload is Zstandard-compressed, its maximum size and (where the protocol
//! notes give it) its layout. Decoding, encoding, the builders and the framing checks all read
//! this table, so a new game build's layout changes are edits here and nowhere else.

/// Largest payload accepted for ids without a registered maximum (and for unknown ids), and
/// the most a compressed payload may expand to.
pub const GLOBAL_MAX: usize = 16 * 1024 * 1024;

/// A fixed-size field at a fixed offset of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedType {
    U8,
    /// A u8 whose values have names (index = value).
    Enum8(&'static [&'static str]),
    I16,
    I32,
    I64,
    /// Big-endian i64 (the proxy's own packets).
    I64Be,
    /// 16 bytes, most significant first; shown as canonical UUID text.
    UuidBe,
    /// ASCII text NUL-padded to this many bytes.
    Ascii(usize),
    /// `seconds: i64 LE`, `nanos: i32 LE`.
    Instant,
}

impl FixedType {
    pub const fn size(self) -> usize {
        match self {
            FixedType::U8 | FixedType::Enum8(_) => 1,
            FixedType::I16 => 2,
            FixedType::I32 => 4,
            FixedType::I64 | FixedType::I64Be => 8,
            FixedType::UuidBe => 16,
            FixedType::Ascii(n) => n,
            FixedType::Instant => 12,
        }
    }
}

/// A variable-length field (inline after the fixed part, or reached through the offset
/// table when the packet has more than one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarType {
    /// VarInt byte length + text. `ascii`: at most `max` bytes of ASCII; otherwise UTF-8 of at
    /// most `max` characters (so at most `4 * max` bytes).
    Str { max: usize, ascii: bool },
    /// VarInt byte length + bytes, at most `max`.
    Bytes { max: usize },
    /// VarInt byte length + the proxy's HMAC-signed referral record, at most `max` bytes.
    Referral { max: usize },
    /// `port: i16 LE`, then a UTF-8 host string of at most `max_host` characters.
    HostPort { max_host: usize },
}

impl VarType {
    /// The most bytes the field may occupy, length prefix included.
    pub const fn max_wire(self) -> usize {
        match self {
            VarType::Str { max, ascii: true } => 5 + max,
            VarType::Str { max, ascii: false } => 5 + 4 * max,
            VarType::Bytes { max } | VarType::Referral { max } => 5 + max,
            VarType::HostPort { max_host } => 2 + 5 + 4 * max_host,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedField {
    pub name: &'static str,
    pub offset: usize,
    pub ty: FixedType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarField {
    pub name: &'static str,
    /// The null bit that says the field is present; `None` for a field that always is.
    pub null_bit: Option<u8>,
    pub ty: VarType,
}

/// How a payload is laid out: `[null bits]`, fixed fields, then the variable fields (inline
/// when there is one, else a table of i32 LE offsets followed by the variable block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Whether byte 0 is the null-bit set.
    pub null_bits: bool,
    /// Bytes before the offset table (null-bit byte included).
    pub fixed_size: usize,
    pub fixed: &'static [FixedField],
    pub var: &'static [VarField],
}

impl Layout {
    /// Where the variable block starts.
    pub const fn var_block_start(&self) -> usize {
        if self.var.len() > 1 {
            self.fixed_size + 4 * self.var.len()
        } else {
            self.fixed_size
        }
    }

    /// The null bits this layout defines.
    pub fn known_bits(&self) -> u8 {
        self.var
            .iter()
            .filter_map(|v| v.null_bit)
            .fold(0u8, |m, b| m | (1u8 << (b & 7)))
    }
}

/// One row of the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    pub id: i32,
    pub name: &'static str,
    /// The payload is one Zstandard frame (the length prefix counts compressed bytes).
    pub compressed: bool,
    /// Largest (uncompressed) payload the server accepts; `None` when the notes give none
    /// ([`GLOBAL_MAX`] then applies).
    pub max_size: Option<usize>,
    /// `None`: no layout known, the payload is shown raw.
    pub layout: Option<Layout>,
}

impl PacketSpec {
    const fn raw(id: i32, name: &'static str, compressed: bool, max: Option<usize>) -> Self {
        PacketSpec {
            id,
            name,
            compressed,
            max_size: max,
            layout: None,
        }
    }

    const fn laid(id: i32, name: &'static str, max: usize, layout: Layout) -> Self {
        PacketSpec {
            id,
            name,
            compressed: false,
            max_size: Some(max),
            layout: Some(layout),
        }
    }

    /// The largest payload length the frame header may state.
    pub fn max(&self) -> usize {
        self.max_size.unwrap_or(GLOBAL_MAX)
    }

    /// Bytes of the fixed part (0 when the layout is unknown).
    pub fn fixed_size(&self) -> usize {
        self.layout.map_or(0, |l| l.fixed_size)
    }
}

const fn fixed(name: &'static str, offset: usize, ty: FixedType) -> FixedField {
    FixedField { name, offset, ty }
}

const fn opt(name: &'static str, bit: u8, ty: VarType) -> VarField {
    VarField {
        name,
        null_bit: Some(bit),
        ty,
    }
}

const fn req(name: &'static str, ty: VarType) -> VarField {
    VarField {
        name,
        null_bit: None,
        ty,
    }
}

const fn utf8(max: usize) -> VarType {
    VarType::Str { max, ascii: false }
}

const fn ascii(max: usize) -> VarType {
    VarType::Str { max, ascii: true }
}

/// Two optional variable fields after the null bits: AuthGrant, AuthToken, ServerAuthToken.
const fn two_optional(a: VarField, b: VarField) -> [VarField; 2] {
    [a, b]
}

const CONNECT_FIXED: [FixedField; 5] = [
    fixed("protocolCrc", 1, FixedType::I32),
    fixed("protocolBuildNumber", 5, FixedType::I32),
    fixed("clientVersion", 9, FixedType::Ascii(20)),
    fixed("clientType", 29, FixedType::Enum8(&["game", "editor"])),
    fixed("uuid", 30, FixedType::UuidBe),
];
const CONNECT_VAR: [VarField; 5] = [
    req("username", ascii(16)),
    opt("identityToken", 0, utf8(8192)),
    req("language", ascii(16)),
    opt("referralData", 1, VarType::Referral { max: 4096 }),
    opt("referralSource", 2, VarType::HostPort { max_host: 256 }),
];
const AUTH_GRANT_VAR: [VarField; 2] = two_optional(
    opt("authorizationGrant", 0, utf8(4096)),
    opt("serverIdentityToken", 1, utf8(8192)),
);
const AUTH_TOKEN_VAR: [VarField; 2] = two_optional(
    opt("accessToken", 0, utf8(8192)),
    opt("serverAuthorizationGrant", 1, utf8(4096)),
);
const SERVER_AUTH_TOKEN_VAR: [VarField; 2] = two_optional(
    opt("serverAccessToken", 0, utf8(8192)),
    opt("passwordChallenge", 1, VarType::Bytes { max: 64 }),
);
const CONNECT_ACCEPT_VAR: [VarField; 1] = [opt("passwordChallenge", 0, VarType::Bytes { max: 64 })];
const CLIENT_REFERRAL_VAR: [VarField; 2] = two_optional(
    opt("hostTo", 0, VarType::HostPort { max_host: 256 }),
    opt("data", 1, VarType::Bytes { max: 4096 }),
);
const DISCONNECT_FIXED: [FixedField; 1] = [fixed(
    "reasonType",
    1,
    FixedType::Enum8(&["disconnect", "crash"]),
)];
const DISCONNECT_VAR: [VarField; 1] = [req("reason", utf8(4_096_000))];
const PING_FIXED: [FixedField; 5] = [
    fixed("id", 1, FixedType::I32),
    fixed("instant", 5, FixedType::Instant),
    fixed("lastPingRaw", 17, FixedType::I32),
    fixed("lastPingDirect", 21, FixedType::I32),
    fixed("lastPingTick", 25, FixedType::I32),
];
const PONG_FIXED: [FixedField; 4] = [
    fixed("id", 1, FixedType::I32),
    fixed("instant", 5, FixedType::Instant),
    fixed("type", 17, FixedType::U8),
    fixed("packetQueueSize", 18, FixedType::I16),
];
const CHAT_VAR: [VarField; 1] = [req("message", utf8(4_096_000))];
const PROXY_FIXED: [FixedField; 2] = [
    fixed("nonce", 0, FixedType::I64Be),
    fixed("timestamp", 8, FixedType::I64Be),
];

const fn layout(
    fixed_size: usize,
    fixed: &'static [FixedField],
    var: &'static [VarField],
) -> Layout {
    Layout {
        null_bits: true,
        fixed_size,
        fixed,
        var,
    }
}

const PROXY_LAYOUT: Layout = Layout {
    null_bits: false,
    fixed_size: 16,
    fixed: &PROXY_FIXED,
    var: &[],
};

/// Every registered id, sorted by id.
pub static PACKETS: &[PacketSpec] = &[
    PacketSpec::laid(
        0,
        "Connect",
        38_013,
        layout(46, &CONNECT_FIXED, &CONNECT_VAR),
    ),
    PacketSpec::laid(
        1,
        "Disconnect",
        16_384_007,
        layout(2, &DISCONNECT_FIXED, &DISCONNECT_VAR),
    ),
    PacketSpec::laid(2, "Ping", 29, layout(29, &PING_FIXED, &[])),
    PacketSpec::laid(3, "Pong", 20, layout(20, &PONG_FIXED, &[])),
    PacketSpec::raw(10, "Status", false, None),
    PacketSpec::laid(11, "AuthGrant", 49_171, layout(1, &[], &AUTH_GRANT_VAR)),
    PacketSpec::laid(12, "AuthToken", 49_171, layout(1, &[], &AUTH_TOKEN_VAR)),
    PacketSpec::laid(
        13,
        "ServerAuthToken",
        32_851,
        layout(1, &[], &SERVER_AUTH_TOKEN_VAR),
    ),
    PacketSpec::laid(14, "ConnectAccept", 70, layout(1, &[], &CONNECT_ACCEPT_VAR)),
    PacketSpec::raw(15, "PasswordResponse", false, None),
    PacketSpec::raw(16, "PasswordAccepted", false, None),
    PacketSpec::raw(17, "PasswordRejected", false, None),
    // The notes give only the sizes; this layout (host + referral bytes) is the one whose
    // maximum is exactly 5141.
    PacketSpec::laid(
        18,
        "ClientReferral",
        5_141,
        layout(1, &[], &CLIENT_REFERRAL_VAR),
    ),
    // Compressed ids the notes do not name.
    PacketSpec::raw(20, "Packet 20", true, None),
    PacketSpec::raw(23, "Packet 23", true, None),
    PacketSpec::raw(25, "Packet 25", true, None),
    PacketSpec::raw(40, "Packet 40", true, None),
    PacketSpec::raw(41, "Packet 41", true, None),
    PacketSpec::raw(42, "Packet 42", true, None),
    PacketSpec::raw(43, "Packet 43", true, None),
    PacketSpec::raw(44, "Packet 44", true, None),
    PacketSpec::raw(45, "Packet 45", true, None),
    PacketSpec::raw(46, "Packet 46", true, None),
    PacketSpec::raw(47, "Packet 47", true, None),
    PacketSpec::raw(48, "Packet 48", true, None),
    PacketSpec::raw(49, "Packet 49", true, None),
    PacketSpec::raw(50, "Packet 50", true, None),
    PacketSpec::raw(51, "Packet 51", true, None),
    PacketSpec::raw(52, "Packet 52", true, None),
    PacketSpec::raw(53, "Packet 53", true, None),
    PacketSpec::raw(54, "Packet 54", true, None),
    PacketSpec::raw(55, "Packet 55", true, None),
    PacketSpec::raw(56, "Packet 56", true, None),
    PacketSpec::raw(57, "Packet 57", true, None),
    PacketSpec::raw(58, "Packet 58", true, None),
    PacketSpec::raw(59, "Packet 59", true, None),
    PacketSpec::raw(60, "Packet 60", true, None),
    PacketSpec::raw(61, "Packet 61", true, None),
    PacketSpec::raw(62, "Packet 62", true, None),
    PacketSpec::raw(63, "Packet 63", true, None),
    PacketSpec::raw(64, "Packet 64", true, None),
    PacketSpec::raw(65, "Packet 65", true, None),
    PacketSpec::raw(66, "Packet 66", true, None),
    PacketSpec::raw(67, "Packet 67", true, None),
    PacketSpec::raw(100, "SetClientId", false, None),
    PacketSpec::raw(104, "JoinWorld", false, None),
    PacketSpec::raw(105, "ClientReady", false, None),
    PacketSpec::raw(108, "ClientMovement", false, None),
    PacketSpec::raw(117, "ClientPlaceBlock", false, None),
    PacketSpec::raw(131, "SetChunk", true, None),
    PacketSpec::raw(132, "Packet 132", true, None),
    PacketSpec::raw(133, "Packet 133", true, None),
    PacketSpec::raw(134, "Packet 134", true, None),
    PacketSpec::raw(135, "UnloadChunk", false, None),
    PacketSpec::raw(136, "Packet 136", true, None),
    PacketSpec::raw(177, "SetActiveSlot", false, None),
    PacketSpec::raw(210, "ServerMessage", false, None),
    PacketSpec::laid(211, "ChatMessage", 16_384_006, layout(1, &[], &CHAT_VAR)),
    PacketSpec {
        id: 998,
        name: "ProxyPing",
        compressed: false,
        max_size: Some(16),
        layout: Some(PROXY_LAYOUT),
    },
    PacketSpec {
        id: 999,
        name: "ProxyPong",
        compressed: false,
        max_size: Some(16),
        layout: Some(PROXY_LAYOUT),
    },
];

/// The registry row of a packet id.
pub fn lookup(id: i32) -> Option<&'static PacketSpec> {
    PACKETS
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .and_then(|i| PACKETS.get(i))
}

/// The registry row of a packet name (exact match).
pub fn by_name(name: &str) -> Option<&'static PacketSpec> {
    PACKETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_consistent() {
        assert!(PACKETS.windows(2).all(|w| w[0].id < w[1].id));
        for p in PACKETS {
            if let Some(l) = p.layout {
                for f in l.fixed {
                    assert!(
                        f.offset + f.ty.size() <= l.fixed_size,
                        "{} {}",
                        p.name,
                        f.name
                    );
                }
                let var_max: usize = l.var.iter().map(|v| v.ty.max_wire()).sum();
                assert!(l.var_block_start() + var_max >= p.max(), "{}", p.name);
                assert!(p.max() <= GLOBAL_MAX);
            }
        }
    }

    #[test]
    fn maxima_match_the_layouts() {
        for id in [0, 11, 12, 13, 14, 18] {
            let p = lookup(id).unwrap();
            let l = p.layout.unwrap();
            let var_max: usize = l.var.iter().map(|v| v.ty.max_wire()).sum();
            assert_eq!(l.var_block_start() + var_max, p.max(), "{}", p.name);
        }
    }

    #[test]
    fn compressed_ids() {
        let mut ids: Vec<i32> = PACKETS
            .iter()
            .filter(|p| p.compressed)
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        let mut want = vec![20, 23, 25];
        want.extend(40..=67);
        want.extend([131, 132, 133, 134, 136]);
        assert_eq!(ids, want);
        assert_eq!(lookup(131).map(|p| p.name), Some("SetChunk"));
        assert!(lookup(7).is_none());
    }
}
