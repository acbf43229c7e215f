//! The Red Alert 3 login: FESL from Hello to GameSpyPreAuth (with one wrong password first),
//! then the GameSpy GP login using the published test vector of the protocol notes. Client
//! messages come from the scripted client's builders; the server's from the FESL and GP
//! encoders, with the values a retail server sends.

use super::{C2S, Line, S2C, Script, at, labelled_connection, line, local};
use std::net::SocketAddr;

use crate::capture::{Connection, StoreData, Timestamp, Transport};
use crate::clients::ra3 as client;
use crate::dissect::fesl::{self as codec, Tag};
use crate::dissect::gp;

/// The test vector: the FESL challenge (GP's password) and ticket (GP's authtoken).
const FESL_CHALLENGE: &str = "abcdefgh";
const TICKET: &str = "MTAwMDAwMXwyMDAwMDAxfER1bW15U2VjcmV0VG9rZW4xMjM=";
const GP_SERVER_CHALLENGE: &str = "ABCDEFGHIJ";
const GP_CLIENT_CHALLENGE: &str = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
const EMAIL: &str = "test@gamewire.local";

/// A server packet (server tag and terminator).
fn reply(command: &[u8; 4], number: u32, pairs: &[(&str, &str)]) -> Vec<u8> {
    codec::write_packet(command, Tag::SingleServer, number, pairs, false)
}

pub(super) fn login(data: &mut StoreData) {
    let mut s = Script::open(data, fesl_connection(local(50123), at(0)));
    s.play(fesl_login());
    s.play(fesl_keep_alive());
    s.close(500_000, "client closed the connection");

    let mut s = Script::open(data, gp_connection(local(50124), at(3_400)));
    s.play(gp_login());
    s.play(gp_keep_alive());
}

/// A FESL connection as the tap at 18800 records it.
pub(super) fn fesl_connection(client: SocketAddr, opened: Timestamp) -> Connection {
    labelled_connection(client, local(18800), Transport::Tcp, opened, "fesl", "fesl")
}

/// A GP connection as the tap at 29900 records it.
pub(super) fn gp_connection(client: SocketAddr, opened: Timestamp) -> Connection {
    labelled_connection(client, local(29900), Transport::Tcp, opened, "gp", "gp")
}

/// FESL from the client's Hello to GameSpyPreAuth.
pub(super) fn fesl_login() -> Vec<Line> {
    // The server's Hello and MemCheck arrive in one read.
    let mut hello = reply(
        b"fsys",
        1,
        &codec::hello_reply("Aug-07-2025 22:53:52 UTC", "127.0.0.1", "18805"),
    );
    hello.extend(reply(
        b"fsys",
        0,
        &[
            ("TXN", "MemCheck"),
            ("memcheck.[]", "0"),
            ("type", "0"),
            ("salt", "1840327851"),
        ],
    ));
    vec![
        line(
            C2S,
            1_200,
            "fsys Hello",
            client::request_packet(b"fsys", 1, client::HELLO),
        ),
        line(S2C, 2_100, "fsys Hello, fsys MemCheck", hello),
        line(
            C2S,
            900,
            "fsys MemCheck",
            client::answer_packet(b"fsys", client::MEMCHECK_ANSWER),
        ),
        line(
            C2S,
            35_000,
            "acct NuLogin",
            client::request_packet(b"acct", 2, &client::nu_login(EMAIL, "wrong-password")),
        ),
        line(
            S2C,
            4_000,
            "acct NuLogin (error 122)",
            reply(
                b"acct",
                2,
                &[
                    ("TXN", "NuLogin"),
                    (
                        "localizedMessage",
                        "The password the user specified is incorrect",
                    ),
                    ("errorContainer.[]", "0"),
                    ("errorCode", "122"),
                ],
            ),
        ),
        line(
            C2S,
            2_500_000,
            "acct NuLogin",
            client::request_packet(b"acct", 3, &client::nu_login(EMAIL, "gamewire")),
        ),
        line(
            S2C,
            5_200,
            "acct NuLogin",
            reply(
                b"acct",
                3,
                &[
                    ("TXN", "NuLogin"),
                    ("nuid", "1000001"),
                    ("profileId", "1000001"),
                    ("userId", "1000001"),
                    ("displayName", "testplayer"),
                    ("lkey", "T4QdgDQCFm83wYUMCn4qpAAAKDw."),
                    ("entitledGameFeatureWrappers.[]", "1"),
                    (
                        "entitledGameFeatureWrappers.0.entitlementExpirationDate",
                        "",
                    ),
                    (
                        "entitledGameFeatureWrappers.0.entitlementExpirationDays",
                        "-1",
                    ),
                    ("entitledGameFeatureWrappers.0.gameFeatureId", "6014"),
                    ("entitledGameFeatureWrappers.0.message", ""),
                    ("entitledGameFeatureWrappers.0.status", "0"),
                ],
            ),
        ),
        line(
            C2S,
            3_000,
            "acct NuGetPersonas",
            client::request_packet(b"acct", 4, client::NU_GET_PERSONAS),
        ),
        line(
            S2C,
            2_000,
            "acct NuGetPersonas",
            reply(
                b"acct",
                4,
                &[
                    ("TXN", "NuGetPersonas"),
                    ("personas.[]", "2"),
                    ("personas.0", "Commander"),
                    ("personas.1", "AltCommander"),
                ],
            ),
        ),
        line(
            C2S,
            800_000,
            "acct NuLoginPersona",
            client::request_packet(b"acct", 5, &client::nu_login_persona("Commander")),
        ),
        line(
            S2C,
            3_100,
            "acct NuLoginPersona",
            reply(
                b"acct",
                5,
                &[
                    ("TXN", "NuLoginPersona"),
                    ("userId", "1000001"),
                    ("profileId", "2000001"),
                    ("lkey", "Xy8KpQ2mRa7vLz1cWn4tBAAAKDw."),
                ],
            ),
        ),
        line(
            C2S,
            2_000,
            "acct GameSpyPreAuth",
            client::request_packet(b"acct", 6, client::GAMESPY_PRE_AUTH),
        ),
        line(
            S2C,
            2_400,
            "acct GameSpyPreAuth",
            reply(
                b"acct",
                6,
                &[
                    ("TXN", "GameSpyPreAuth"),
                    ("challenge", FESL_CHALLENGE),
                    ("ticket", TICKET),
                ],
            ),
        ),
    ]
}

/// The server's Ping and the client's echo, every 30 s of an idle session.
pub(super) fn fesl_keep_alive() -> [Line; 2] {
    [
        line(
            S2C,
            30_000_000,
            "fsys Ping",
            reply(b"fsys", 0, client::PING),
        ),
        line(
            C2S,
            1_100,
            "fsys Ping",
            client::answer_packet(b"fsys", client::PING),
        ),
    ]
}

/// The GP login with the FESL challenge and ticket above.
pub(super) fn gp_login() -> Vec<Line> {
    let proof = gp::gp_proof(
        FESL_CHALLENGE,
        TICKET,
        GP_CLIENT_CHALLENGE,
        GP_SERVER_CHALLENGE,
    );
    vec![
        line(
            S2C,
            700,
            "gp lc 1",
            gp::write_message(&[("lc", "1"), ("challenge", GP_SERVER_CHALLENGE), ("id", "1")]),
        ),
        line(
            C2S,
            40_000,
            "gp login",
            client::gp_login_message(
                FESL_CHALLENGE,
                TICKET,
                GP_CLIENT_CHALLENGE,
                GP_SERVER_CHALLENGE,
            ),
        ),
        line(
            S2C,
            6_000,
            "gp lc 2",
            gp::write_message(&[
                ("lc", "2"),
                ("sesskey", "51437"),
                ("proof", proof.as_str()),
                ("userid", "1000001"),
                ("profileid", "2000001"),
                ("uniquenick", "Commander"),
                ("lt", "Rk9PQkFSYmF6cXV4MTIzNDU2Nzg5MA__"),
                ("id", "1"),
            ]),
        ),
    ]
}

/// GP's keep-alive: the client's, echoed by the server.
pub(super) fn gp_keep_alive() -> [Line; 2] {
    [
        line(C2S, 60_000_000, "gp ka", client::gp_keep_alive()),
        line(S2C, 900, "gp ka", client::gp_keep_alive()),
    ]
}
