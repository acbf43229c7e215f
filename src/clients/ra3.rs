//! A scripted Red Alert 3 client: the login sequence a real client runs (as in the sample
//! capture), step by step with timings. It is the GUI's demo, the integration tests' driver
//! and the load generator; its message builders ([`HELLO`], [`nu_login`], [`request_packet`],
//! [`gp_login_message`], ...) are also what the sample captures are made of.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::capture::Direction;
use crate::dissect::Framing;
use crate::dissect::fesl::{self as fesl_codec, HEADER_LEN, Progress, Reassembler, Tag};
use crate::dissect::gp as gp_codec;

/// How long the client waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One finished step of the flow.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    /// What came back (ids, persona names) or why the step failed.
    pub detail: String,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}")]
pub struct FlowError {
    pub step: &'static str,
    pub message: String,
    /// FESL error code when the server answered with one.
    pub fesl_code: Option<u32>,
    /// GP error code when the GP server answered with one.
    pub gp_code: Option<u32>,
}

/// The bytes of a session as the client saw them, in order.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub fesl: Vec<(Direction, Vec<u8>)>,
    pub gp: Vec<(Direction, Vec<u8>)>,
}

/// What a successful flow established.
#[derive(Clone, Debug)]
pub struct FlowResult {
    pub steps: Vec<Step>,
    pub user_id: i64,
    pub persona_id: i64,
    pub persona: String,
    pub display_name: String,
    pub total: Duration,
    pub transcript: Transcript,
}

type Pairs = Vec<(String, String)>;

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn fail(step: &'static str, message: impl Into<String>) -> FlowError {
    FlowError {
        step,
        message: message.into(),
        fesl_code: None,
        gp_code: None,
    }
}

/// A client-side FESL connection: numbered requests, reassembly, automatic Ping answers.
pub struct FeslClient {
    stream: TcpStream,
    buf: Vec<u8>,
    reassembler: Reassembler,
    next_number: u32,
    pub log: Vec<(Direction, Vec<u8>)>,
}

/// One received FESL message.
#[derive(Clone, Debug)]
pub struct Received {
    pub command: [u8; 4],
    pub number: u32,
    pub pairs: Pairs,
}

impl FeslClient {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<FeslClient> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(FeslClient {
            stream,
            buf: Vec::new(),
            reassembler: Reassembler::new(),
            next_number: 1,
            log: Vec::new(),
        })
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.log.push((Direction::ClientToServer, bytes.to_vec()));
        self.stream.write_all(bytes).await
    }

    /// Sends a request with the next packet number; returns the number.
    pub async fn send(
        &mut self,
        command: &[u8; 4],
        pairs: &[(&str, &str)],
    ) -> std::io::Result<u32> {
        let number = self.next_number;
        self.next_number += 1;
        self.write_raw(&request_packet(command, number, pairs))
            .await?;
        Ok(number)
    }

    /// The next message from the server (Pings are answered and skipped).
    pub async fn recv(&mut self) -> Result<Received, String> {
        loop {
            match fesl_codec::frame(&self.buf) {
                Framing::Complete(n) => {
                    let packet: Vec<u8> = self.buf.drain(..n).collect();
                    let header = fesl_codec::parse_header(&packet).map_err(|e| e.to_string())?;
                    let mut pairs = fesl_codec::parse_payload(&packet[HEADER_LEN..])
                        .map_err(|e| e.to_string())?;
                    if header.tag.is_fragment() {
                        let data = get(&pairs, "data").unwrap_or("").to_owned();
                        let size = get(&pairs, "size")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        match self
                            .reassembler
                            .push(header.command, header.number, &data, size)
                            .map_err(|e| e.to_string())?
                        {
                            Progress::Partial { .. } => continue,
                            Progress::Done { text, .. } => {
                                pairs = fesl_codec::parse_text(fesl_codec::joined_text(&text))
                                    .map_err(|e| e.to_string())?;
                            }
                        }
                    }
                    if &header.command == b"fsys" && get(&pairs, "TXN") == Some("Ping") {
                        let pong = answer_packet(b"fsys", PING);
                        self.write_raw(&pong).await.map_err(|e| e.to_string())?;
                        continue;
                    }
                    return Ok(Received {
                        command: header.command,
                        number: header.number,
                        pairs,
                    });
                }
                Framing::NeedMore(_) => {}
                Framing::Unframeable { reason, .. } => {
                    return Err(format!("unframeable reply: {reason}"));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err("server closed the connection".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no reply (timeout)".into()),
            };
            self.log
                .push((Direction::ServerToClient, chunk[..n].to_vec()));
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and waits for the reply with its number; an error reply is an `Err`.
    pub async fn request(
        &mut self,
        step: &'static str,
        command: &[u8; 4],
        pairs: &[(&str, &str)],
    ) -> Result<Pairs, FlowError> {
        let number = self
            .send(command, pairs)
            .await
            .map_err(|e| fail(step, e.to_string()))?;
        loop {
            let msg = self.recv().await.map_err(|e| fail(step, e))?;
            if msg.number != number || &msg.command != command {
                continue;
            }
            if let Some(code) = get(&msg.pairs, "errorCode") {
                let text = get(&msg.pairs, "localizedMessage").unwrap_or("");
                return Err(FlowError {
                    step,
                    message: format!("error {code}: {text}"),
                    fesl_code: code.parse().ok(),
                    gp_code: None,
                });
            }
            return Ok(msg.pairs);
        }
    }
}

/// The Hello a retail RA3 client sends.
pub const HELLO: &[(&str, &str)] = &[
    ("TXN", "Hello"),
    ("clientString", "cncra3-pc"),
    ("sku", "15299"),
    ("locale", "en_US"),
    ("clientPlatform", "PC"),
    ("clientVersion", "1.0"),
    ("SDKVersion", "4.3.4.0.0"),
    ("protocolVersion", "2.0"),
    ("fragmentSize", "8096"),
    ("clientType", ""),
];
/// The client's answer to the server's MemCheck.
pub const MEMCHECK_ANSWER: &[(&str, &str)] = &[("TXN", "MemCheck"), ("result", "")];
/// A keep-alive: the server asks, the client echoes it.
pub const PING: &[(&str, &str)] = &[("TXN", "Ping")];
pub const NU_GET_PERSONAS: &[(&str, &str)] = &[("TXN", "NuGetPersonas"), ("namespace", "")];
pub const GAMESPY_PRE_AUTH: &[(&str, &str)] = &[("TXN", "GameSpyPreAuth")];
/// The MAC address retail clients report (any will do; the server only logs it).
const MAC_ADDR: &str = "$0a1b2c3d4e5f";

/// The account login.
pub fn nu_login<'a>(email: &'a str, password: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("TXN", "NuLogin"),
        ("returnEncryptedInfo", "1"),
        ("nuid", email),
        ("password", password),
        ("macAddr", MAC_ADDR),
    ]
}

pub fn nu_add_persona(name: &str) -> [(&str, &str); 2] {
    [("TXN", "NuAddPersona"), ("name", name)]
}

pub fn nu_login_persona(name: &str) -> [(&str, &str); 2] {
    [("TXN", "NuLoginPersona"), ("name", name)]
}

/// A numbered request packet, as the client sends it.
pub fn request_packet<V: AsRef<str>>(
    command: &[u8; 4],
    number: u32,
    pairs: &[(&str, V)],
) -> Vec<u8> {
    fesl_codec::write_packet(command, Tag::SingleClient, number, pairs, true)
}

/// The client's answer to an unnumbered server message (MemCheck, Ping): the server's tag
/// and number 0, as retail clients send it.
pub fn answer_packet(command: &[u8; 4], pairs: &[(&str, &str)]) -> Vec<u8> {
    fesl_codec::write_packet(command, Tag::SingleServer, 0, pairs, true)
}

/// The GP login with FESL's challenge as password and its ticket as authtoken, answering
/// the server's `\lc\1\` challenge with the client's own.
pub fn gp_login_message(
    fesl_challenge: &str,
    ticket: &str,
    client_chal: &str,
    server_chal: &str,
) -> Vec<u8> {
    let response = gp_codec::gp_response(fesl_challenge, ticket, client_chal, server_chal);
    gp_codec::write_message(&[
        ("login", ""),
        ("challenge", client_chal),
        ("authtoken", ticket),
        ("partnerid", "0"),
        ("response", response.as_str()),
        ("firewall", "1"),
        ("port", "0"),
        ("productid", "11419"),
        ("gamename", "redalert3pc"),
        ("namespaceid", "1"),
        ("sdkrevision", "3"),
        ("quiet", "0"),
        ("id", "1"),
    ])
}

/// GP's keep-alive, the same both ways.
pub fn gp_keep_alive() -> Vec<u8> {
    gp_codec::write_message(&[("ka", "")])
}

struct Steps<F: FnMut(Step)> {
    steps: Vec<Step>,
    report: F,
    started: Instant,
}

impl<F: FnMut(Step)> Steps<F> {
    fn done(&mut self, name: &'static str, detail: String) {
        let step = Step {
            name,
            ok: true,
            detail,
            elapsed: self.started.elapsed(),
        };
        (self.report)(step.clone());
        self.steps.push(step);
        self.started = Instant::now();
    }

    fn failed(&mut self, e: FlowError) -> FlowError {
        let step = Step {
            name: e.step,
            ok: false,
            detail: e.message.clone(),
            elapsed: self.started.elapsed(),
        };
        (self.report)(step.clone());
        self.steps.push(step);
        e
    }
}

/// Hello → MemCheck → NuLogin → NuGetPersonas → NuAddPersona (if needed) → NuLoginPersona →
/// GameSpyPreAuth → GP login. With no `persona`, the account's first persona is used (one
/// is created from the display name if it has none). Stops at the first failure.
pub async fn run_fesl_flow(
    fesl_addr: SocketAddr,
    gp_addr: SocketAddr,
    email: &str,
    password: &str,
    persona: Option<&str>,
    report: impl FnMut(Step),
) -> Result<FlowResult, FlowError> {
    let total = Instant::now();
    let mut s = Steps {
        steps: Vec::new(),
        report,
        started: Instant::now(),
    };
    let mut transcript = Transcript::default();
    let result = flow(
        fesl_addr,
        gp_addr,
        email,
        password,
        persona,
        &mut s,
        &mut transcript,
    )
    .await;
    match result {
        Ok((user_id, persona_id, persona, display_name)) => Ok(FlowResult {
            steps: s.steps,
            user_id,
            persona_id,
            persona,
            display_name,
            total: total.elapsed(),
            transcript,
        }),
        Err(e) => Err(s.failed(e)),
    }
}

fn parse_id(step: &'static str, pairs: &[(String, String)], key: &str) -> Result<i64, FlowError> {
    get(pairs, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| fail(step, format!("reply has no numeric {key}")))
}

/// A persona name derived from a display name, within the server's rules.
fn persona_from(display_name: &str, user_id: i64) -> String {
    let mut name: String = display_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(16)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || name.len() < 3 {
        name = format!("P{user_id}");
    }
    name
}

async fn flow<F: FnMut(Step)>(
    fesl_addr: SocketAddr,
    gp_addr: SocketAddr,
    email: &str,
    password: &str,
    persona: Option<&str>,
    s: &mut Steps<F>,
    transcript: &mut Transcript,
) -> Result<(i64, i64, String, String), FlowError> {
    let mut c = FeslClient::connect(fesl_addr)
        .await
        .map_err(|e| fail("Hello", format!("connecting to FESL at {fesl_addr}: {e}")))?;
    let result = fesl_part(&mut c, email, password, persona, s).await;
    transcript.fesl = std::mem::take(&mut c.log);
    let (user_id, persona_id, persona, display_name, challenge, ticket) = result?;

    let mut gp_log = Vec::new();
    let gp = gp_login(gp_addr, &challenge, &ticket, &mut gp_log).await;
    transcript.gp = gp_log;
    let (uid, pid, nick) = gp?;
    if (uid, pid) != (user_id, persona_id) || !nick.eq_ignore_ascii_case(&persona) {
        return Err(fail(
            "GP login",
            format!(
                "GP says user {uid} profile {pid} {nick}, FESL said {user_id} {persona_id} {persona}"
            ),
        ));
    }
    s.done(
        "GP login",
        format!("userid={uid} profileid={pid} uniquenick={nick}"),
    );
    drop(c);
    Ok((user_id, persona_id, persona, display_name))
}

type FeslOutcome = (i64, i64, String, String, String, String);

async fn fesl_part<F: FnMut(Step)>(
    c: &mut FeslClient,
    email: &str,
    password: &str,
    persona: Option<&str>,
    s: &mut Steps<F>,
) -> Result<FeslOutcome, FlowError> {
    let number = c
        .send(b"fsys", HELLO)
        .await
        .map_err(|e| fail("Hello", e.to_string()))?;
    let (mut hello, mut memcheck) = (None, None);
    while hello.is_none() || memcheck.is_none() {
        let step = if hello.is_none() { "Hello" } else { "MemCheck" };
        let msg = c.recv().await.map_err(|e| fail(step, e))?;
        match get(&msg.pairs, "TXN") {
            Some("Hello") if msg.number == number => {
                if let Some(code) = get(&msg.pairs, "errorCode") {
                    return Err(fail("Hello", format!("error {code}")));
                }
                hello = Some(msg)
            }
            Some("MemCheck") if msg.number == 0 => memcheck = Some(msg),
            _ => {}
        }
    }
    let hello = hello.map(|m| m.pairs).unwrap_or_default();
    s.done(
        "Hello",
        format!("curTime={}", get(&hello, "curTime").unwrap_or("?")),
    );
    let salt = memcheck
        .as_ref()
        .and_then(|m| get(&m.pairs, "salt"))
        .unwrap_or("?")
        .to_owned();
    c.write_raw(&answer_packet(b"fsys", MEMCHECK_ANSWER))
        .await
        .map_err(|e| fail("MemCheck", e.to_string()))?;
    s.done("MemCheck", format!("salt={salt}"));

    let login = c
        .request("NuLogin", b"acct", &nu_login(email, password))
        .await?;
    let user_id = parse_id("NuLogin", &login, "userId")?;
    let display_name = get(&login, "displayName").unwrap_or("").to_owned();
    s.done(
        "NuLogin",
        format!("userId={user_id} displayName={display_name}"),
    );

    let list = c.request("NuGetPersonas", b"acct", NU_GET_PERSONAS).await?;
    let count: usize = get(&list, "personas.[]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = (0..count)
        .filter_map(|i| get(&list, &format!("personas.{i}")).map(str::to_owned))
        .collect();
    s.done("NuGetPersonas", format!("[{}]", names.join(", ")));

    let wanted = match persona {
        Some(p) => p.to_owned(),
        None => names
            .first()
            .cloned()
            .unwrap_or_else(|| persona_from(&display_name, user_id)),
    };
    if !names.iter().any(|n| n.eq_ignore_ascii_case(&wanted)) {
        c.request("NuAddPersona", b"acct", &nu_add_persona(&wanted))
            .await?;
        s.done("NuAddPersona", format!("name={wanted}"));
    }

    let chosen = c
        .request("NuLoginPersona", b"acct", &nu_login_persona(&wanted))
        .await?;
    let persona_id = parse_id("NuLoginPersona", &chosen, "profileId")?;
    s.done("NuLoginPersona", format!("profileId={persona_id}"));

    let pre = c
        .request("GameSpyPreAuth", b"acct", GAMESPY_PRE_AUTH)
        .await?;
    let challenge = get(&pre, "challenge").unwrap_or("").to_owned();
    let ticket = get(&pre, "ticket").unwrap_or("").to_owned();
    if challenge.len() != 8
        || !challenge.bytes().all(|b| b.is_ascii_lowercase())
        || ticket.is_empty()
    {
        return Err(fail(
            "GameSpyPreAuth",
            format!("bad challenge {challenge:?} or ticket {ticket:?}"),
        ));
    }
    s.done("GameSpyPreAuth", format!("challenge={challenge}"));
    Ok((user_id, persona_id, wanted, display_name, challenge, ticket))
}

/// Reads one GP message.
async fn gp_read(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    log: &mut Vec<(Direction, Vec<u8>)>,
) -> Result<Pairs, String> {
    loop {
        match gp_codec::frame(buf) {
            Framing::Complete(n) => {
                let msg: Vec<u8> = buf.drain(..n).collect();
                return gp_codec::parse_message(&msg).map_err(|e| e.to_string());
            }
            Framing::NeedMore(_) => {}
            Framing::Unframeable { reason, .. } => return Err(reason),
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(REPLY_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err("server closed the connection".into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no reply (timeout)".into()),
        };
        log.push((Direction::ServerToClient, chunk[..n].to_vec()));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The GP login with FESL's challenge as password and its ticket as authtoken; checks the
/// server's proof. Returns (userid, profileid, uniquenick).
pub async fn gp_login(
    addr: SocketAddr,
    fesl_challenge: &str,
    ticket: &str,
    log: &mut Vec<(Direction, Vec<u8>)>,
) -> Result<(i64, i64, String), FlowError> {
    const STEP: &str = "GP login";
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(STEP, format!("connecting to GP at {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let lc1 = gp_read(&mut stream, &mut buf, log)
        .await
        .map_err(|e| fail(STEP, e))?;
    let server_chal = match (get(&lc1, "lc"), get(&lc1, "challenge")) {
        (Some("1"), Some(c)) => c.to_owned(),
        _ => return Err(fail(STEP, "no \\lc\\1\\ challenge")),
    };
    let client_chal = crate::security::random_token(32);
    let login = gp_login_message(fesl_challenge, ticket, &client_chal, &server_chal);
    log.push((Direction::ClientToServer, login.clone()));
    stream
        .write_all(&login)
        .await
        .map_err(|e| fail(STEP, e.to_string()))?;
    let reply = gp_read(&mut stream, &mut buf, log)
        .await
        .map_err(|e| fail(STEP, e))?;
    if get(&reply, "error").is_some() {
        let code = get(&reply, "err").unwrap_or("?");
        return Err(FlowError {
            step: STEP,
            message: format!("error {code}: {}", get(&reply, "errmsg").unwrap_or("")),
            fesl_code: None,
            gp_code: code.parse().ok(),
        });
    }
    let want = gp_codec::gp_proof(fesl_challenge, ticket, &client_chal, &server_chal);
    if get(&reply, "lc") != Some("2") || get(&reply, "proof") != Some(want.as_str()) {
        return Err(fail(STEP, "the server's proof is wrong"));
    }
    let uid = parse_id(STEP, &reply, "userid")?;
    let pid = parse_id(STEP, &reply, "profileid")?;
    let nick = get(&reply, "uniquenick").unwrap_or("").to_owned();
    Ok((uid, pid, nick))
}
