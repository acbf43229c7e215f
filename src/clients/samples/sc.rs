//! Star Citizen: diffusion (discovery, lobby destinations, region setup, heartbeats) on the
//! TLS entry point at 8000, and, for the busy capture, the login server's HTTP (a JSON login,
//! then token checks). Client requests come from the scripted client's builders, the
//! server's replies are the generated messages, framed by the diffusion codec.

use std::net::SocketAddr;

use base64::Engine as _;

use super::{C2S, Line, S2C, Script, at, labelled_connection, line, local, over_tls};
use crate::capture::{Connection, StoreData, Timestamp, Transport};
use crate::clients::sc as client;
use crate::dissect::http1;
use crate::dissect::sc::pb::diffusion as pb;
use crate::dissect::sc::write_message;

const SESSION_ID: &str = "sc_session_1754607242_9f3a1c7e";
const REGION: &str = "eu-west";
const LOGIN_HOST: &str = "127.0.0.1:9000";

pub(super) fn diffusion(data: &mut StoreData) {
    let mut s = Script::open(data, diffusion_connection(local(50639), at(10_000)));
    s.play(diffusion_opening());
    for sequence in 1..=3 {
        s.play(heartbeats(sequence));
    }
    s.close(2_000, "server closed the connection");
}

/// A diffusion connection as the TLS tap at 8000 records it.
pub(super) fn diffusion_connection(client: SocketAddr, opened: Timestamp) -> Connection {
    over_tls(
        labelled_connection(
            client,
            local(8000),
            Transport::Tcp,
            opened,
            "sc",
            "sc-diffusion",
        ),
        "diffusion.robertsspaceindustries.com",
        None,
        "TLS13_AES_256_GCM_SHA384",
    )
}

/// A diffusion message, framed by the codec.
fn framed(
    dir: crate::capture::Direction,
    after_micros: i64,
    label: &'static str,
    msg: &impl prost::Message,
) -> Line {
    line(dir, after_micros, label, write_message(msg))
}

fn service(name: &str, port: u32, protocols: &[&str]) -> pb::ServiceEntry {
    pb::ServiceEntry {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        version: "1.0.0".into(),
    }
}

/// Discovery, lobby destinations and region setup.
pub(super) fn diffusion_opening() -> Vec<Line> {
    let services = pb::ServiceList {
        message_name: "diff.service.online".into(),
        services: vec![
            service("authentication_service", 9000, &["https"]),
            service("diffusion_service", 8001, &["websocket", "http2"]),
            service("game_service", 5678, &["grpc", "http2"]),
        ],
    };
    let destinations = pb::LobbyDestinations {
        message_name: "cmsg_ls_req_dests".into(),
        destinations: vec![pb::LobbyDestination {
            server_id: 1,
            display_name: "Persistent Universe - Stanton System".into(),
            host: "127.0.0.1".into(),
            port: 5678,
            universe: "stanton".into(),
            region: REGION.into(),
        }],
    };
    let confirmation = pb::RegionConfirmation {
        message_name: "cmsg_set_region_id".into(),
        region_id: REGION.into(),
        confirmed: true,
    };
    let (discovery, lobby) = (client::discovery_request(1), client::lobby_request(2));
    vec![
        framed(C2S, 5_000, "Service Discovery", &discovery),
        framed(S2C, 3_000, "Service List", &services),
        framed(C2S, 120_000, "Lobby Destinations Request", &lobby),
        framed(S2C, 2_000, "Lobby Destinations", &destinations),
        framed(C2S, 80_000, "Region Setup", &client::region_setup(REGION)),
        framed(S2C, 1_500, "Region Confirmed", &confirmation),
    ]
}

/// Heartbeat `sequence` and its ack, 10 s after the previous pair.
pub(super) fn heartbeats(sequence: u64) -> [Line; 2] {
    let ack = pb::HeartbeatAck {
        message_name: "heartbeat_ack".into(),
        session_id: SESSION_ID.into(),
        sequence,
    };
    [
        framed(C2S, 10_000_000, "Heartbeat", &client::heartbeat(sequence)),
        framed(S2C, 900, "Heartbeat Ack", &ack),
    ]
}

/// A login server connection (plain HTTP at 9000).
pub(super) fn login_connection(client: SocketAddr, opened: Timestamp) -> Connection {
    labelled_connection(
        client,
        local(9000),
        Transport::Tcp,
        opened,
        "http",
        "sc-login",
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A token in the login server's shape (RS256 JWT; the signature is a stand-in, as no key
/// of the sample is published).
fn token() -> String {
    let header = b64(r#"{"alg":"RS256","typ":"JWT","kid":"gamewire-1"}"#);
    let claims = b64(&serde_json::json!({
        "iss": crate::security::jwt::DEFAULT_ISSUER,
        "sub": "test@gamewire.local",
        "account_id": 1_000_001,
        "citizen_id": "2001462951",
        "displayname": "TestPilot",
        "iat": super::BASE_SECS,
        "exp": super::BASE_SECS + 3600,
    })
    .to_string());
    format!("{header}.{claims}.{}", b64("signature"))
}

fn json_response(body: &serde_json::Value) -> Vec<u8> {
    http1::write_message(
        "HTTP/1.1 200 OK",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// The JSON login and the server's token.
pub(super) fn http_login() -> Vec<Line> {
    let token = token();
    let reply = serde_json::json!({
        "token": token,
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "account_id": 1_000_001,
        "citizen_id": "2001462951",
        "displayname": "TestPilot",
    });
    vec![
        line(
            C2S,
            2_000,
            "POST /login",
            client::login_request(LOGIN_HOST, "test@gamewire.local", "gamewire", false),
        ),
        line(S2C, 30_000, "200 OK", json_response(&reply)),
    ]
}

/// A token check and its answer.
pub(super) fn http_verify() -> [Line; 2] {
    let claims = serde_json::json!({"valid": true, "sub": "test@gamewire.local"});
    [
        line(
            C2S,
            5_000_000,
            "GET /verify",
            client::verify_request(LOGIN_HOST, &token()),
        ),
        line(S2C, 1_200, "200 OK", json_response(&claims)),
    ]
}
