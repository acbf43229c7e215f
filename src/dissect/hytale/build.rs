//! Builders of whole packets for the emulator, the proxy and tests.

use super::encode::{encode_payload, packet};
use super::frame::frame;
use super::wire::uuid_text;
use crate::dissect::{EncodeError, Node, Value};

fn int(name: &'static str, v: i64) -> Node {
    Node::new(name, 0..0, Value::Int(v))
}

fn text(name: &'static str, s: &str) -> Node {
    Node::new(name, 0..0, Value::Text(s.into()))
}

fn bytes(name: &'static str, b: &[u8]) -> Node {
    Node::new(name, 0..0, Value::Bytes(b.into()))
}

fn instant(secs: i64, nanos: i32) -> Node {
    Node::group("instant", 0..0)
        .with_children(vec![int("seconds", secs), int("nanos", nanos.into())])
}

fn build(id: i32, fields: Vec<Node>) -> Result<Vec<u8>, EncodeError> {
    let payload = encode_payload(id, &fields)?;
    packet(id, &payload)
}

/// The fields of a Connect packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    pub protocol_crc: i32,
    pub protocol_build_number: i32,
    /// ASCII, at most 20 bytes.
    pub client_version: String,
    /// 0 game, 1 editor.
    pub client_type: u8,
    pub uuid: [u8; 16],
    pub username: String,
    pub identity_token: Option<String>,
    pub language: String,
    pub referral_data: Option<Vec<u8>>,
    /// `(port, host)`.
    pub referral_source: Option<(u16, String)>,
}

impl Connect {
    /// The whole frame.
    pub fn build(&self) -> Result<Vec<u8>, EncodeError> {
        let mut f = vec![
            int("protocolCrc", self.protocol_crc.into()),
            int("protocolBuildNumber", self.protocol_build_number.into()),
            text("clientVersion", &self.client_version),
            int("clientType", self.client_type.into()),
            text("uuid", &uuid_text(&self.uuid)),
            text("username", &self.username),
            text("language", &self.language),
        ];
        if let Some(t) = &self.identity_token {
            f.push(text("identityToken", t));
        }
        if let Some(d) = &self.referral_data {
            f.push(bytes("referralData", d));
        }
        if let Some((port, host)) = &self.referral_source {
            f.push(Node::group("referralSource", 0..0).with_children(vec![
                Node::new("port", 0..0, Value::UInt((*port).into())),
                text("host", host),
            ]));
        }
        build(0, f)
    }
}

fn two_strings(
    id: i32,
    a: (&'static str, Option<&str>),
    b: (&'static str, Option<&str>),
) -> Result<Vec<u8>, EncodeError> {
    let f = [a, b]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| text(name, v)))
        .collect();
    build(id, f)
}

/// AuthGrant (11) frame.
pub fn auth_grant(
    authorization_grant: Option<&str>,
    server_identity_token: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    two_strings(
        11,
        ("authorizationGrant", authorization_grant),
        ("serverIdentityToken", server_identity_token),
    )
}

/// AuthToken (12) frame.
pub fn auth_token(
    access_token: Option<&str>,
    server_authorization_grant: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    two_strings(
        12,
        ("accessToken", access_token),
        ("serverAuthorizationGrant", server_authorization_grant),
    )
}

/// ServerAuthToken (13) frame.
pub fn server_auth_token(
    server_access_token: Option<&str>,
    password_challenge: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut f = Vec::new();
    if let Some(t) = server_access_token {
        f.push(text("serverAccessToken", t));
    }
    if let Some(c) = password_challenge {
        f.push(bytes("passwordChallenge", c));
    }
    build(13, f)
}

/// ConnectAccept (14) frame.
pub fn connect_accept(password_challenge: Option<&[u8]>) -> Result<Vec<u8>, EncodeError> {
    build(
        14,
        password_challenge
            .map(|c| bytes("passwordChallenge", c))
            .into_iter()
            .collect(),
    )
}

/// Disconnect (1) frame; `reason_type` 0 disconnect, 1 crash.
pub fn disconnect(reason_type: u8, reason: &str) -> Result<Vec<u8>, EncodeError> {
    build(
        1,
        vec![
            int("reasonType", reason_type.into()),
            text("reason", reason),
        ],
    )
}

/// ChatMessage (211) frame.
pub fn chat_message(message: &str) -> Result<Vec<u8>, EncodeError> {
    build(211, vec![text("message", message)])
}

/// Ping (2) frame; `last` = last ping raw, direct, tick.
pub fn ping(id: i32, secs: i64, nanos: i32, last: [i32; 3]) -> Result<Vec<u8>, EncodeError> {
    build(
        2,
        vec![
            int("id", id.into()),
            instant(secs, nanos),
            int("lastPingRaw", last[0].into()),
            int("lastPingDirect", last[1].into()),
            int("lastPingTick", last[2].into()),
        ],
    )
}

/// Pong (3) frame.
pub fn pong(
    id: i32,
    secs: i64,
    nanos: i32,
    pong_type: u8,
    queue_size: i16,
) -> Result<Vec<u8>, EncodeError> {
    build(
        3,
        vec![
            int("id", id.into()),
            instant(secs, nanos),
            int("type", pong_type.into()),
            int("packetQueueSize", queue_size.into()),
        ],
    )
}

/// The proxy's ProxyPing (998) frame.
pub fn proxy_ping(nonce: i64, timestamp: i64) -> Vec<u8> {
    proxy_frame(998, nonce, timestamp)
}

/// The proxy's ProxyPong (999) frame.
pub fn proxy_pong(nonce: i64, timestamp: i64) -> Vec<u8> {
    proxy_frame(999, nonce, timestamp)
}

fn proxy_frame(id: i32, nonce: i64, timestamp: i64) -> Vec<u8> {
    let mut p = nonce.to_be_bytes().to_vec();
    p.extend_from_slice(&timestamp.to_be_bytes());
    frame(id, &p)
}
