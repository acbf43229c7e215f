//! Hytale over QUIC: Connect, the mutual-authentication exchange, ping, chat and disconnect,
//! every packet from the Hytale codec's builders.

use std::net::SocketAddr;

use super::{BASE_SECS, C2S, Line, S2C, Script, at, labelled_connection, line, local, over_tls};
use crate::capture::{Connection, StoreData, Timestamp, Transport};
use crate::dissect::hytale;

const UUID: [u8; 16] = [
    0x6f, 0x1d, 0x2c, 0x3b, 0x4a, 0x59, 0x4e, 0x68, 0x97, 0x86, 0x75, 0x64, 0x53, 0x42, 0x31, 0x20,
];

/// The builders only fail on values over a field's limit, which the samples' are not.
fn built(bytes: Result<Vec<u8>, crate::dissect::EncodeError>) -> Vec<u8> {
    bytes.unwrap_or_default()
}

pub(super) fn connect(data: &mut StoreData) {
    let mut s = Script::open(data, connection(local(50200), at(20_000)));
    s.play(handshake());
    s.play(ping(1));
    s.play([
        line(
            C2S,
            2_000_000,
            "ChatMessage",
            built(hytale::chat_message("hello from gamewire ✓")),
        ),
        line(
            C2S,
            5_000_000,
            "Disconnect",
            built(hytale::disconnect(0, "Client disconnected")),
        ),
    ]);
    s.close(1_000, "client closed the connection");
}

/// A game connection as the QUIC tap at 5520 records it.
pub(super) fn connection(client: SocketAddr, opened: Timestamp) -> Connection {
    over_tls(
        labelled_connection(
            client,
            local(5520),
            Transport::Quic,
            opened,
            "hytale",
            "hytale",
        ),
        "play.hytale.local",
        Some("hytale/2"),
        "TLS13_AES_128_GCM_SHA256",
    )
}

/// Connect and the mutual authentication.
pub(super) fn handshake() -> Vec<Line> {
    let identity = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdhbWV3aXJlLTEifQ.eyJzdWIiOiI2ZjFkMmMzYi00YTU5LTRlNjgtOTc4Ni03NTY0NTM0MjMxMjAiLCJzY29wZSI6Imh5dGFsZTpjbGllbnQiLCJwcm9maWxlIjp7InVzZXJuYW1lIjoiQnVpbGRlciJ9fQ.c2lnbmF0dXJl";
    let connect = hytale::Connect {
        protocol_crc: 0x1B2C_3D4E,
        protocol_build_number: 25,
        client_version: "2026.01.15".into(),
        client_type: 0,
        uuid: UUID,
        username: "Builder".into(),
        identity_token: Some(identity.into()),
        language: "en_US".into(),
        referral_data: None,
        referral_source: None,
    };
    vec![
        line(C2S, 3_000, "Connect", built(connect.build())),
        line(
            S2C,
            40_000,
            "AuthGrant",
            built(hytale::auth_grant(
                Some("grant.eyJhdWQiOiJnYW1ld2lyZSJ9"),
                Some("server-identity.eyJzdWIiOiJwcm94eSJ9"),
            )),
        ),
        line(
            C2S,
            35_000,
            "AuthToken",
            built(hytale::auth_token(
                Some("access.eyJjbmYiOnsieDV0I1MyNTYiOiJhYmMifX0"),
                Some("server-grant.eyJhdWQiOiJwcm94eSJ9"),
            )),
        ),
        line(
            S2C,
            30_000,
            "ServerAuthToken",
            built(hytale::server_auth_token(
                Some("server-access.eyJhdWQiOiJjbGllbnQifQ"),
                None,
            )),
        ),
    ]
}

/// The server's Ping `id` and the client's Pong, half a second apart.
pub(super) fn ping(id: i32) -> [Line; 2] {
    let secs = BASE_SECS + 20 + i64::from(id - 1) / 2;
    let nanos = 125_000_000;
    [
        line(
            S2C,
            500_000,
            "Ping",
            built(hytale::ping(id, secs, nanos, [0, 0, 0])),
        ),
        line(
            C2S,
            12_000,
            "Pong",
            built(hytale::pong(id, secs, nanos, 0, 0)),
        ),
    ]
}
