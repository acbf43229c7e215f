//! The sample captures in `captures/`: short, realistic sessions of each emulated game built
//! from the wire facts in the protocol notes, so a new user (and the tests) have traffic to
//! look at before running any server. Everything is deterministic: the same bytes and
//! timestamps on every run, so the committed files can be checked against a fresh build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::capture::files::{Format, Scope, Source};
use crate::capture::{
    Connection, ConnectionId, Direction, NewPacket, PacketFlags, StoreData, Timestamp, TlsInfo,
    Transport,
};
use crate::dissect::export;
use crate::dissect::fesl as fesl_codec;
use crate::dissect::gp;
use crate::dissect::hytale;

/// 2025-08-07T22:53:52Z, the day of the Star Citizen tools' example capture.
const BASE_SECS: i64 = 1_754_607_232;

/// The files `gamewire samples` writes, in order.
pub const FILES: [&str; 4] = [
    "ra3-login.gwcap",
    "sc-diffusion.sd.json",
    "hytale-connect.gwcap",
    "all-samples.pcapng",
];

pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let builders: [fn(&mut StoreData); 3] = [ra3_login, sc_diffusion, hytale_connect];
    let mut written = Vec::new();
    for (name, build) in FILES.iter().zip(builders) {
        let mut data = StoreData::new();
        build(&mut data);
        written.push(save(&data, &dir.join(name))?);
    }
    written.push(save(&all_samples(), &dir.join(FILES[3]))?);
    Ok(written)
}

fn save(data: &StoreData, path: &Path) -> anyhow::Result<PathBuf> {
    let format = Format::of_output(path)?;
    export::save(Source::Data(data), path, format, Scope::All, &|_| {})?;
    Ok(path.to_owned())
}

/// Every sample session in one capture.
pub fn all_samples() -> StoreData {
    let mut data = StoreData::new();
    ra3_login(&mut data);
    sc_diffusion(&mut data);
    hytale_connect(&mut data);
    data
}

/// Appends a scripted conversation: a clock that advances a little per message.
struct Script<'a> {
    data: &'a mut StoreData,
    conn: ConnectionId,
    now: Timestamp,
}

impl<'a> Script<'a> {
    fn open(data: &'a mut StoreData, conn: Connection) -> Self {
        let now = conn.opened;
        let conn = data.add_connection(conn);
        Script { data, conn, now }
    }

    fn send(&mut self, dir: Direction, after_micros: i64, label: &str, bytes: Vec<u8>) {
        self.now = plus_micros(self.now, after_micros);
        let packet = NewPacket::new(self.conn, dir, self.now, bytes).with_label(label);
        // Sample connections are created just above, so the append cannot fail.
        let _ = self.data.append(packet);
    }

    fn close(self, after_micros: i64, reason: &str) {
        let at = Timestamp(self.now.0 + after_micros * 1000);
        let _ = self
            .data
            .close_connection(self.conn, at, Some(reason.to_string()));
    }
}

/// A connection as a tap configured for `protocol` on route `route` would record it.
fn labelled_connection(
    client: &str,
    server: &str,
    transport: Transport,
    opened: Timestamp,
    protocol: &str,
    route: &str,
) -> Connection {
    let mut conn = Connection::new(addr(client), addr(server), transport, opened);
    conn.protocol = Some(protocol.into());
    conn.route = Some(route.into());
    conn
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(crate::capture::UNKNOWN_ADDR)
}

fn at(offset_ms: i64) -> Timestamp {
    plus_micros(Timestamp::from_secs_nanos(BASE_SECS, 0), offset_ms * 1000)
}

fn plus_micros(t: Timestamp, micros: i64) -> Timestamp {
    Timestamp(t.0 + micros * 1000)
}

/// One GP message of a script: direction, delay in µs, label, key/value pairs.
type ScriptedGp<'a> = (Direction, i64, &'a str, &'a [(&'a str, &'a str)]);

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// One FESL packet, written by the FESL codec. `lines` are `key=value` as they read on the
/// wire (quoted, percent-escaped); the codec parses them and writes them back, so samples
/// and the emulator share one encoder.
fn fesl(cmd: &[u8; 4], tag: u8, number: u32, lines: &[&str], from_client: bool) -> Vec<u8> {
    let pairs = fesl_codec::parse_text(lines.join("\n").as_bytes()).unwrap_or_default();
    let tag = fesl_codec::Tag::from_u8(tag).unwrap_or(fesl_codec::Tag::SingleServer);
    fesl_codec::write_packet(cmd, tag, number, &pairs, from_client)
}

/// The Red Alert 3 login: FESL from Hello to GameSpyPreAuth (with one wrong password first),
/// then the GameSpy GP login using the published test vector of the protocol notes.
fn ra3_login(data: &mut StoreData) {
    let conn = labelled_connection(
        "127.0.0.1:50123",
        "127.0.0.1:18800",
        Transport::Tcp,
        at(0),
        "fesl",
        "fesl",
    );
    let mut s = Script::open(data, conn);
    s.send(
        C2S,
        1_200,
        "fsys Hello",
        fesl(
            b"fsys",
            0xC0,
            1,
            &[
                "TXN=Hello",
                "clientString=cncra3-pc",
                "sku=15299",
                "locale=en_US",
                "clientPlatform=PC",
                "clientVersion=1.0",
                "SDKVersion=4.3.4.0.0",
                "protocolVersion=2.0",
                "fragmentSize=8096",
                "clientType=",
            ],
            true,
        ),
    );
    // The server's Hello and MemCheck arrive in one read.
    let mut hello = fesl(
        b"fsys",
        0x80,
        1,
        &[
            "domainPartition.domain=eagames",
            "messengerIp=127.0.0.1",
            "messengerPort=0",
            "domainPartition.subDomain=CNCRA3",
            "TXN=Hello",
            "activityTimeoutSecs=0",
            "curTime=\"Aug-07-2025 22%3a53%3a52 UTC\"",
            "theaterIp=127.0.0.1",
            "theaterPort=18805",
        ],
        false,
    );
    hello.extend(fesl(
        b"fsys",
        0x80,
        0,
        &["TXN=MemCheck", "memcheck.[]=0", "type=0", "salt=1840327851"],
        false,
    ));
    s.send(S2C, 2_100, "fsys Hello, fsys MemCheck", hello);
    s.send(
        C2S,
        900,
        "fsys MemCheck",
        fesl(b"fsys", 0x80, 0, &["TXN=MemCheck", "result="], true),
    );
    s.send(
        C2S,
        35_000,
        "acct NuLogin",
        fesl(
            b"acct",
            0xC0,
            2,
            &[
                "TXN=NuLogin",
                "returnEncryptedInfo=1",
                "nuid=test@gamewire.local",
                "password=wrong-password",
                "macAddr=$0a1b2c3d4e5f",
            ],
            true,
        ),
    );
    s.send(
        S2C,
        4_000,
        "acct NuLogin (error 122)",
        fesl(
            b"acct",
            0x80,
            2,
            &[
                "TXN=NuLogin",
                "localizedMessage=\"The password the user specified is incorrect\"",
                "errorContainer.[]=0",
                "errorCode=122",
            ],
            false,
        ),
    );
    s.send(
        C2S,
        2_500_000,
        "acct NuLogin",
        fesl(
            b"acct",
            0xC0,
            3,
            &[
                "TXN=NuLogin",
                "returnEncryptedInfo=1",
                "nuid=test@gamewire.local",
                "password=gamewire",
                "macAddr=$0a1b2c3d4e5f",
            ],
            true,
        ),
    );
    s.send(
        S2C,
        5_200,
        "acct NuLogin",
        fesl(
            b"acct",
            0x80,
            3,
            &[
                "TXN=NuLogin",
                "nuid=1000001",
                "profileId=1000001",
                "userId=1000001",
                "displayName=testplayer",
                "lkey=T4QdgDQCFm83wYUMCn4qpAAAKDw.",
                "entitledGameFeatureWrappers.[]=1",
                "entitledGameFeatureWrappers.0.entitlementExpirationDate=",
                "entitledGameFeatureWrappers.0.entitlementExpirationDays=-1",
                "entitledGameFeatureWrappers.0.gameFeatureId=6014",
                "entitledGameFeatureWrappers.0.message=",
                "entitledGameFeatureWrappers.0.status=0",
            ],
            false,
        ),
    );
    s.send(
        C2S,
        3_000,
        "acct NuGetPersonas",
        fesl(b"acct", 0xC0, 4, &["TXN=NuGetPersonas", "namespace="], true),
    );
    s.send(
        S2C,
        2_000,
        "acct NuGetPersonas",
        fesl(
            b"acct",
            0x80,
            4,
            &[
                "TXN=NuGetPersonas",
                "personas.[]=2",
                "personas.0=Commander",
                "personas.1=AltCommander",
            ],
            false,
        ),
    );
    s.send(
        C2S,
        800_000,
        "acct NuLoginPersona",
        fesl(
            b"acct",
            0xC0,
            5,
            &["TXN=NuLoginPersona", "name=Commander"],
            true,
        ),
    );
    s.send(
        S2C,
        3_100,
        "acct NuLoginPersona",
        fesl(
            b"acct",
            0x80,
            5,
            &[
                "TXN=NuLoginPersona",
                "userId=1000001",
                "profileId=2000001",
                "lkey=Xy8KpQ2mRa7vLz1cWn4tBAAAKDw.",
            ],
            false,
        ),
    );
    s.send(
        C2S,
        2_000,
        "acct GameSpyPreAuth",
        fesl(b"acct", 0xC0, 6, &["TXN=GameSpyPreAuth"], true),
    );
    s.send(
        S2C,
        2_400,
        "acct GameSpyPreAuth",
        fesl(
            b"acct",
            0x80,
            6,
            &[
                "TXN=GameSpyPreAuth",
                "challenge=abcdefgh",
                "ticket=MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM%3d",
            ],
            false,
        ),
    );
    s.send(
        S2C,
        30_000_000,
        "fsys Ping",
        fesl(b"fsys", 0x80, 0, &["TXN=Ping"], false),
    );
    s.send(
        C2S,
        1_100,
        "fsys Ping",
        fesl(b"fsys", 0x80, 0, &["TXN=Ping"], true),
    );
    s.close(500_000, "client closed the connection");

    let gp = labelled_connection(
        "127.0.0.1:50124",
        "127.0.0.1:29900",
        Transport::Tcp,
        at(3_400),
        "gp",
        "gp",
    );
    let mut s = Script::open(data, gp);
    // The published test vector of the protocol notes: the FESL challenge is the password.
    let (fesl_challenge, ticket) = (
        "abcdefgh",
        "MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM=",
    );
    let (server_chal, client_chal) = ("ABCDEFGHIJ", "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6");
    let response = gp::gp_response(fesl_challenge, ticket, client_chal, server_chal);
    let proof = gp::gp_proof(fesl_challenge, ticket, client_chal, server_chal);
    let messages: [ScriptedGp; 5] = [
        (
            S2C,
            700,
            "gp lc 1",
            &[("lc", "1"), ("challenge", server_chal), ("id", "1")],
        ),
        (
            C2S,
            40_000,
            "gp login",
            &[
                ("login", ""),
                ("challenge", client_chal),
                ("authtoken", ticket),
                ("partnerid", "0"),
                ("response", &response),
                ("firewall", "1"),
                ("port", "0"),
                ("productid", "11419"),
                ("gamename", "redalert3pc"),
                ("namespaceid", "1"),
                ("sdkrevision", "3"),
                ("quiet", "0"),
                ("id", "1"),
            ],
        ),
        (
            S2C,
            6_000,
            "gp lc 2",
            &[
                ("lc", "2"),
                ("sesskey", "51437"),
                ("proof", &proof),
                ("userid", "1000001"),
                ("profileid", "2000001"),
                ("uniquenick", "Commander"),
                ("lt", "Rk9PQkFSYmF6cXV4MTIzNDU2Nzg5MA__"),
                ("id", "1"),
            ],
        ),
        (C2S, 60_000_000, "gp ka", &[("ka", "")]),
        (S2C, 900, "gp ka", &[("ka", "")]),
    ];
    for (dir, after, label, pairs) in messages {
        s.send(dir, after, label, gp::write_message(pairs));
    }
}

/// Minimal protobuf writer for the diffusion samples (field numbers from the notes).
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(mut self, field: u32, v: u64) -> Self {
        put_varint(&mut self.0, u64::from(field) << 3);
        put_varint(&mut self.0, v);
        self
    }

    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        put_varint(&mut self.0, (u64::from(field) << 3) | 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn string(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    fn message(self, field: u32, m: Pb) -> Self {
        self.bytes(field, &m.0)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A diffusion frame: payload length (u32 LE), the magic `ef be ad de`, then protobuf.
fn sc_frame(payload: Pb) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.0.len());
    out.extend_from_slice(&(payload.0.len() as u32).to_le_bytes());
    out.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    out.extend_from_slice(&payload.0);
    out
}

fn sc_service(name: &str, port: u64, protocols: &[&str]) -> Pb {
    let mut entry = Pb::default()
        .string(1, name)
        .string(2, "127.0.0.1")
        .varint(3, port);
    for p in protocols {
        entry = entry.string(4, p);
    }
    entry.string(5, "1.0.0")
}

/// Star Citizen diffusion: discovery, lobby destinations, region setup and heartbeats, on
/// the TLS entry point at 8000.
fn sc_diffusion(data: &mut StoreData) {
    let mut conn = labelled_connection(
        "127.0.0.1:50639",
        "127.0.0.1:8000",
        Transport::Tcp,
        at(10_000),
        "sc",
        "sc-diffusion",
    );
    conn.tls = Some(TlsInfo {
        sni: Some("diffusion.robertsspaceindustries.com".into()),
        alpn: None,
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
    });
    let mut s = Script::open(data, conn);
    let client_info = Pb::default()
        .string(1, "Star Citizen Game Client")
        .string(2, "sc_client")
        .varint(3, 4)
        .varint(4, 1);
    s.send(
        C2S,
        5_000,
        "Service Discovery",
        sc_frame(
            Pb::default()
                .string(1, "diff.service.online")
                .message(2, client_info)
                .varint(3, 1),
        ),
    );
    s.send(
        S2C,
        3_000,
        "Service List",
        sc_frame(
            Pb::default()
                .string(1, "diff.service.online")
                .message(2, sc_service("authentication_service", 9000, &["https"]))
                .message(
                    2,
                    sc_service("diffusion_service", 8001, &["websocket", "http2"]),
                )
                .message(2, sc_service("game_service", 5678, &["grpc", "http2"])),
        ),
    );
    s.send(
        C2S,
        120_000,
        "Lobby Destinations Request",
        sc_frame(Pb::default().string(1, "cmsg_ls_req_dests").varint(3, 2)),
    );
    s.send(
        S2C,
        2_000,
        "Lobby Destinations",
        sc_frame(
            Pb::default().string(1, "cmsg_ls_req_dests").message(
                2,
                Pb::default()
                    .varint(1, 1)
                    .string(2, "Persistent Universe - Stanton System")
                    .string(3, "127.0.0.1")
                    .varint(4, 5678)
                    .string(5, "stanton")
                    .string(6, "eu-west"),
            ),
        ),
    );
    s.send(
        C2S,
        80_000,
        "Region Setup",
        sc_frame(
            Pb::default()
                .string(1, "cmsg_set_region_id")
                .string(2, "eu-west"),
        ),
    );
    s.send(
        S2C,
        1_500,
        "Region Confirmed",
        sc_frame(
            Pb::default()
                .string(1, "cmsg_set_region_id")
                .string(2, "eu-west")
                .varint(3, 1),
        ),
    );
    for i in 0..3u64 {
        s.send(
            C2S,
            10_000_000,
            "Heartbeat",
            sc_frame(Pb::default().string(1, "heartbeat").varint(2, i + 1)),
        );
        s.send(
            S2C,
            900,
            "Heartbeat Ack",
            sc_frame(
                Pb::default()
                    .string(1, "heartbeat_ack")
                    .string(2, "sc_session_1754607242_9f3a1c7e")
                    .varint(3, i + 1),
            ),
        );
    }
    s.close(2_000, "server closed the connection");
}

/// Hytale frame: payload length (i32 LE), packet id (i32 LE), payload.
const HYTALE_UUID: [u8; 16] = [
    0x6f, 0x1d, 0x2c, 0x3b, 0x4a, 0x59, 0x4e, 0x68, 0x97, 0x86, 0x75, 0x64, 0x53, 0x42, 0x31, 0x20,
];

/// Hytale over QUIC: Connect, the mutual-authentication exchange, ping, chat and disconnect.
fn hytale_connect(data: &mut StoreData) {
    let mut conn = labelled_connection(
        "127.0.0.1:50200",
        "127.0.0.1:5520",
        Transport::Quic,
        at(20_000),
        "hytale",
        "hytale",
    );
    conn.tls = Some(TlsInfo {
        sni: Some("play.hytale.local".into()),
        alpn: Some("hytale/2".into()),
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
    });
    let mut s = Script::open(data, conn);
    let identity = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdhbWV3aXJlLTEifQ.eyJzdWIiOiI2ZjFkMmMzYi00YTU5LTRlNjgtOTc4Ni03NTY0NTM0MjMxMjAiLCJzY29wZSI6Imh5dGFsZTpjbGllbnQiLCJwcm9maWxlIjp7InVzZXJuYW1lIjoiQnVpbGRlciJ9fQ.c2lnbmF0dXJl";
    let connect = hytale::Connect {
        protocol_crc: 0x1B2C_3D4E,
        protocol_build_number: 25,
        client_version: "2026.01.15".into(),
        client_type: 0,
        uuid: HYTALE_UUID,
        username: "Builder".into(),
        identity_token: Some(identity.into()),
        language: "en_US".into(),
        referral_data: None,
        referral_source: None,
    };
    // The builders only fail on values over a field's limit, which these are not.
    let packets = [
        (C2S, 3_000, "Connect", connect.build()),
        (
            S2C,
            40_000,
            "AuthGrant",
            hytale::auth_grant(
                Some("grant.eyJhdWQiOiJnYW1ld2lyZSJ9"),
                Some("server-identity.eyJzdWIiOiJwcm94eSJ9"),
            ),
        ),
        (
            C2S,
            35_000,
            "AuthToken",
            hytale::auth_token(
                Some("access.eyJjbmYiOnsieDV0I1MyNTYiOiJhYmMifX0"),
                Some("server-grant.eyJhdWQiOiJwcm94eSJ9"),
            ),
        ),
        (
            S2C,
            30_000,
            "ServerAuthToken",
            hytale::server_auth_token(Some("server-access.eyJhdWQiOiJjbGllbnQifQ"), None),
        ),
        (
            S2C,
            500_000,
            "Ping",
            hytale::ping(1, BASE_SECS + 20, 125_000_000, [0, 0, 0]),
        ),
        (
            C2S,
            12_000,
            "Pong",
            hytale::pong(1, BASE_SECS + 20, 125_000_000, 0, 0),
        ),
        (
            C2S,
            2_000_000,
            "ChatMessage",
            hytale::chat_message("hello from gamewire ✓"),
        ),
        (
            C2S,
            5_000_000,
            "Disconnect",
            hytale::disconnect(0, "Client disconnected"),
        ),
    ];
    for (dir, after, label, bytes) in packets {
        s.send(dir, after, label, bytes.unwrap_or_default());
    }
    s.close(1_000, "client closed the connection");
}

/// A large synthetic capture for benchmarks and GUI load tests: `connections` TCP
/// connections taking turns, `packets` packets of `size` bytes, 100 µs apart.
pub fn busy_capture(packets: usize, size: usize, connections: usize) -> StoreData {
    let mut data = StoreData::new();
    let connections = connections.max(1);
    let ids: Vec<ConnectionId> = (0..connections)
        .map(|i| {
            let client = SocketAddr::from(([127, 0, 0, 1], 40_000 + (i % 20_000) as u16));
            let mut c = Connection::new(client, addr("127.0.0.1:18800"), Transport::Tcp, at(0));
            c.protocol = Some("fesl".into());
            data.add_connection(c)
        })
        .collect();
    let mut payload = vec![0u8; size];
    for i in 0..packets {
        for (j, b) in payload.iter_mut().enumerate() {
            *b = (i.wrapping_mul(31) + j) as u8;
        }
        let dir = if i % 2 == 0 { C2S } else { S2C };
        let label = if i % 2 == 0 {
            "acct NuLogin"
        } else {
            "acct NuGetPersonas"
        };
        let _ = data.append_parts(
            ids[i % connections],
            dir,
            plus_micros(at(0), i as i64 * 100),
            &payload,
            Some(label),
            PacketFlags::empty(),
            None,
        );
    }
    data
}
