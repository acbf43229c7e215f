//! GameSpy GP (presence / login), as Red Alert 3 uses it after FESL's GameSpyPreAuth:
//! `\key\value\key\value...\final\` text messages over TCP.
//!
//! Tree of one message:
//!
//! ```text
//! gp                        whole message
//!   lc       "1"            the value bytes of `\lc\1` (node name = key; first = command)
//!   challenge "ABCDEFGHIJ"  value bytes
//!   id       "1"
//!   final                   the `\final\` bytes, kind "final"
//!   error (derived)         code, fatal and message of an `\error\` message
//! ```
//!
//! Each pair node's range is exactly its value's bytes (empty at the value's position for an
//! empty value). A trailing key without value is a node of kind `key-only` with an error.
//! The login math of the protocol notes is in [`gp_response`] and [`gp_proof`]; a `login`
//! message alone cannot be checked because the password (FESL's challenge) is not in it.

use std::borrow::Cow;

use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};

use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value};

/// Largest message accepted, `\final\` included.
pub const MAX_MESSAGE: usize = 64 * 1024;
const FINAL: &[u8] = b"\\final\\";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpError {
    #[error("message does not end with \\final\\")]
    NoFinal,
    #[error("message does not start with a backslash")]
    NoLeadingBackslash,
    #[error("key {0:?} has no value")]
    MissingValue(String),
    #[error("pair {0}: not UTF-8")]
    NotUtf8(usize),
    #[error("message exceeds {MAX_MESSAGE} bytes")]
    TooLarge,
}

fn find_final(buf: &[u8]) -> Option<usize> {
    buf.windows(FINAL.len()).position(|w| w == FINAL)
}

/// Where the message at the start of `buf` ends.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.first().is_some_and(|&b| b != b'\\') {
        let skip = buf.iter().position(|&b| b == b'\\').unwrap_or(buf.len());
        return Framing::Unframeable {
            skip: skip.max(1),
            reason: GpError::NoLeadingBackslash.to_string(),
        };
    }
    let window = &buf[..buf.len().min(MAX_MESSAGE)];
    match find_final(window) {
        Some(at) => Framing::Complete(at + FINAL.len()),
        None if buf.len() >= MAX_MESSAGE => Framing::Unframeable {
            // Keep the last bytes: they may be the start of a `\final\` that ends a
            // (too large) message, after which framing can resume.
            skip: (MAX_MESSAGE - (FINAL.len() - 1)).max(1),
            reason: GpError::TooLarge.to_string(),
        },
        None => Framing::NeedMore(None),
    }
}

/// One token of a message body, with its byte range.
struct Token<'a> {
    bytes: &'a [u8],
    start: usize,
}

/// The body's tokens (`\a\b\c` -> a, b, c); the body must start with `\` unless empty.
fn tokens(body: &[u8]) -> Result<Vec<Token<'_>>, GpError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body[0] != b'\\' {
        return Err(GpError::NoLeadingBackslash);
    }
    let mut out = Vec::with_capacity(16);
    let mut start = 1;
    for (i, &b) in body.iter().enumerate().skip(1) {
        if b == b'\\' {
            out.push(Token {
                bytes: &body[start..i],
                start,
            });
            start = i + 1;
        }
    }
    out.push(Token {
        bytes: &body[start..],
        start,
    });
    Ok(out)
}

/// Parses one whole message (`\final\` included) into its pairs, in order.
pub fn parse_message(msg: &[u8]) -> Result<Vec<(String, String)>, GpError> {
    if msg.len() > MAX_MESSAGE {
        return Err(GpError::TooLarge);
    }
    let body = msg.strip_suffix(FINAL).ok_or(GpError::NoFinal)?;
    let toks = tokens(body)?;
    let mut out = Vec::with_capacity(toks.len() / 2);
    for (i, pair) in toks.chunks(2).enumerate() {
        let key = std::str::from_utf8(pair[0].bytes).map_err(|_| GpError::NotUtf8(i))?;
        let Some(v) = pair.get(1) else {
            return Err(GpError::MissingValue(key.to_owned()));
        };
        let value = std::str::from_utf8(v.bytes).map_err(|_| GpError::NotUtf8(i))?;
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// `\k\v...\final\`. Keys and values must not contain a backslash (GP has no escaping).
pub fn write_message<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pairs.len() * 16);
    for (k, v) in pairs {
        out.push(b'\\');
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'\\');
        out.extend_from_slice(v.as_ref().as_bytes());
    }
    out.extend_from_slice(FINAL);
    out
}

fn key_name(s: &str) -> Cow<'static, str> {
    let known: &'static str = match s {
        "lc" => "lc",
        "login" => "login",
        "ka" => "ka",
        "error" => "error",
        "err" => "err",
        "fatal" => "fatal",
        "errmsg" => "errmsg",
        "challenge" => "challenge",
        "authtoken" => "authtoken",
        "partnerid" => "partnerid",
        "response" => "response",
        "firewall" => "firewall",
        "port" => "port",
        "productid" => "productid",
        "gamename" => "gamename",
        "namespaceid" => "namespaceid",
        "sdkrevision" => "sdkrevision",
        "quiet" => "quiet",
        "id" => "id",
        "sesskey" => "sesskey",
        "proof" => "proof",
        "userid" => "userid",
        "profileid" => "profileid",
        "uniquenick" => "uniquenick",
        "lt" => "lt",
        "logout" => "logout",
        "status" => "status",
        "statstring" => "statstring",
        "locstring" => "locstring",
        "bm" => "bm",
        "bdy" => "bdy",
        "list" => "list",
        "getprofile" => "getprofile",
        "pi" => "pi",
        "nick" => "nick",
        "email" => "email",
        "sig" => "sig",
        _ => return Cow::Owned(s.to_owned()),
    };
    Cow::Borrowed(known)
}

/// One direction's decoder (GP is stateless per message).
#[derive(Default)]
pub struct GpDecoder;

impl StreamDecoder for GpDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        frame(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        decode_message(msg)
    }
}

fn text_value(bytes: &[u8]) -> (Value, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Value::Text(s.into()), None),
        Err(_) => (Value::Bytes(bytes.into()), Some("not UTF-8".into())),
    }
}

/// Decodes one message that [`frame`] delimited.
pub fn decode_message(msg: &[u8]) -> Message {
    let mut root = Node::group("gp", 0..msg.len());
    let Some(body) = msg.strip_suffix(FINAL) else {
        root.set_error(Some(GpError::NoFinal.to_string()));
        return Message::new("gp", root);
    };
    let toks = match tokens(body) {
        Ok(t) => t,
        Err(e) => {
            root.push(
                Node::new("body", 0..body.len(), Value::Bytes(body.into()))
                    .with_error(e.to_string()),
            );
            return Message::new("gp", root);
        }
    };
    root.children.reserve(toks.len() / 2 + 2);
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(toks.len() / 2);
    for pair in toks.chunks(2) {
        let key = &pair[0];
        let name = match std::str::from_utf8(key.bytes) {
            Ok(k) => key_name(k),
            Err(_) => Cow::Owned(String::from_utf8_lossy(key.bytes).into_owned()),
        };
        let key_err = std::str::from_utf8(key.bytes)
            .is_err()
            .then(|| "key is not UTF-8".to_string());
        match pair.get(1) {
            Some(v) => {
                let (value, err) = text_value(v.bytes);
                let mut node = Node::new(name, v.start..v.start + v.bytes.len(), value);
                node.set_error(key_err.or(err));
                root.push(node);
                fields.push((key.bytes, v.bytes));
            }
            None => {
                let mut node = Node::new(
                    name,
                    key.start..key.start + key.bytes.len(),
                    Value::Bytes(key.bytes.into()),
                )
                .with_kind("key-only");
                node.set_error(Some(
                    GpError::MissingValue(String::from_utf8_lossy(key.bytes).into_owned())
                        .to_string(),
                ));
                root.push(node);
            }
        }
    }
    root.push(Node::group("final", body.len()..msg.len()).with_kind("final"));
    let get = |k: &[u8]| {
        fields
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| String::from_utf8_lossy(v))
    };
    let command = toks
        .first()
        .map(|t| String::from_utf8_lossy(t.bytes))
        .unwrap_or(Cow::Borrowed(""));
    let mut label = String::with_capacity(16);
    label.push_str("gp");
    if !command.is_empty() {
        label.push(' ');
        label.push_str(&command);
    }
    match command.as_ref() {
        "lc" => {
            if let Some(step) = get(b"lc") {
                label.push(' ');
                label.push_str(&step);
            }
        }
        "error" => {
            let code = get(b"err");
            let mut e = Node::group("error", 0..msg.len()).derived();
            if let Some(c) = &code {
                label.push(' ');
                label.push_str(c);
                let v = match c.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Text(c.clone().into()),
                };
                e.push(Node::new("code", 0..msg.len(), v).derived());
            }
            if fields.iter().any(|(k, _)| *k == b"fatal") {
                label.push_str(" fatal");
                e.push(Node::new("fatal", 0..msg.len(), Value::Bool(true)).derived());
            }
            if let Some(m) = get(b"errmsg") {
                e.push(Node::new("message", 0..msg.len(), Value::Text(m.into())).derived());
            }
            root.push(e);
        }
        _ => {}
    }
    Message::new(label, root)
}

fn bad(field: &str, reason: &str) -> EncodeError {
    EncodeError::BadField {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Rebuilds a message from a tree as [`decode_message`] produced it.
pub fn encode_tree(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(tree.range.len().max(32));
    for c in tree.children.iter().filter(|c| !c.derived) {
        let kind = c.kind();
        if kind == Some("final") {
            continue;
        }
        if c.name.contains('\\') {
            return Err(bad(&c.name, "key contains a backslash"));
        }
        out.push(b'\\');
        out.extend_from_slice(c.name.as_bytes());
        if kind == Some("key-only") {
            continue;
        }
        out.push(b'\\');
        let v: Cow<'_, [u8]> = match &c.value {
            Value::Text(s) => Cow::Borrowed(s.as_bytes()),
            Value::Bytes(b) => Cow::Borrowed(b),
            Value::UInt(u) => Cow::Owned(u.to_string().into_bytes()),
            Value::Int(i) => Cow::Owned(i.to_string().into_bytes()),
            Value::Float(f) => Cow::Owned(f.to_string().into_bytes()),
            Value::Bool(b) => Cow::Borrowed(if *b { b"1" } else { b"0" }),
            Value::None => Cow::Borrowed(b""),
        };
        if v.contains(&b'\\') {
            return Err(bad(&c.name, "value contains a backslash"));
        }
        out.extend_from_slice(&v);
    }
    out.extend_from_slice(FINAL);
    if out.len() > MAX_MESSAGE {
        return Err(bad("gp", "message exceeds 64 KiB"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Login math (see the protocol notes).

/// `md5hex(pwd + 48 spaces + authtoken + first + second + pwd)` with `pwd = md5hex(password)`.
fn login_hash(password: &str, authtoken: &str, first: &str, second: &str) -> String {
    let pwd = md5_hex(password.as_bytes());
    let mut s = String::with_capacity(64 + 48 + authtoken.len() + first.len() + second.len());
    s.push_str(&pwd);
    s.extend(std::iter::repeat_n(' ', 48));
    s.push_str(authtoken);
    s.push_str(first);
    s.push_str(second);
    s.push_str(&pwd);
    md5_hex(s.as_bytes())
}

/// The `response` a client sends in `\login\`: the FESL GameSpyPreAuth `challenge` is the
/// password, its `ticket` the authtoken.
pub fn gp_response(
    fesl_challenge: &str,
    authtoken: &str,
    client_chal: &str,
    server_chal: &str,
) -> String {
    login_hash(fesl_challenge, authtoken, client_chal, server_chal)
}

/// The `proof` the server answers in `\lc\2\`.
pub fn gp_proof(
    fesl_challenge: &str,
    authtoken: &str,
    client_chal: &str,
    server_chal: &str,
) -> String {
    login_hash(fesl_challenge, authtoken, server_chal, client_chal)
}

/// Whether a client's `response` is right; only its first 32 characters count (some clients
/// append bytes).
pub fn check_response(
    fesl_challenge: &str,
    authtoken: &str,
    client_chal: &str,
    server_chal: &str,
    response: &str,
) -> bool {
    let want = gp_response(fesl_challenge, authtoken, client_chal, server_chal);
    response
        .get(..32)
        .is_some_and(|r| r.eq_ignore_ascii_case(&want))
}

/// Lowercase hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::digest(data))
}

/// MD5 (RFC 1321), written here because the crate has no MD5 dependency; GP needs it only
/// for the short login strings.
mod md5 {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];

    fn k(i: usize) -> u32 {
        // floor(abs(sin(i + 1)) * 2^32), as the RFC defines the table.
        ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32
    }

    pub fn digest(data: &[u8]) -> [u8; 16] {
        let mut st: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
        let mut msg = data.to_vec();
        let bit_len = (data.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bit_len.to_le_bytes());
        let table: [u32; 64] = std::array::from_fn(k);
        for block in msg.chunks_exact(64) {
            let m: [u32; 16] = std::array::from_fn(|i| {
                u32::from_le_bytes([
                    block[4 * i],
                    block[4 * i + 1],
                    block[4 * i + 2],
                    block[4 * i + 3],
                ])
            });
            let [mut a, mut b, mut c, mut d] = st;
            for i in 0..64 {
                let (f, g) = match i / 16 {
                    0 => ((b & c) | (!b & d), i),
                    1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                    2 => (b ^ c ^ d, (3 * i + 5) % 16),
                    _ => (c ^ (b | !d), (7 * i) % 16),
                };
                let f = f.wrapping_add(a).wrapping_add(table[i]).wrapping_add(m[g]);
                a = d;
                d = c;
                c = b;
                b = b.wrapping_add(f.rotate_left(S[i]));
            }
            st[0] = st[0].wrapping_add(a);
            st[1] = st[1].wrapping_add(b);
            st[2] = st[2].wrapping_add(c);
            st[3] = st[3].wrapping_add(d);
        }
        let mut out = [0u8; 16];
        for (i, w) in st.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Keys a GP message starts with, for content detection.
const COMMANDS: &[&[u8]] = &[
    b"lc",
    b"login",
    b"ka",
    b"error",
    b"logout",
    b"status",
    b"bm",
    b"getprofile",
    b"pi",
    b"newuser",
    b"addbuddy",
    b"authadd",
    b"bdy",
    b"inviteto",
    b"updatepro",
];

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "gp";

/// The filter fields gp registers.
const FIELDS: [FieldDef; 1] = [FieldDef {
    name: "gp.command",
    aliases: &["gp.cmd"],
    ty: FieldType::Text,
    help: "the message's first key (`login`, `lc`, ...)",
    paths: &[FieldPath::FirstChildName],
}];

/// The GameSpy GP dissector.
pub struct Gp;

impl Dissector for Gp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
    }

    fn default_ports(&self) -> &'static [u16] {
        &[29900]
    }

    fn detect(&self, first: &[u8], _dir: Direction) -> bool {
        let Some(rest) = first.strip_prefix(b"\\") else {
            return false;
        };
        let Some(end) = rest.iter().position(|&b| b == b'\\') else {
            return false;
        };
        COMMANDS.contains(&&rest[..end])
    }

    fn decoder(&self, _dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(GpDecoder)
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_tree(tree)
    }
}
