//! The emulated FESL server of Red Alert 3: Hello/MemCheck, NuLogin, personas and
//! GameSpyPreAuth, over plain TCP or (optionally) modern TLS.
//!
//! [`FeslSession`] is the socket-free core: client bytes in, reply bytes out. It frames and
//! reassembles with the codec of [`crate::dissect::fesl`], so the wire format is written once;
//! buffering, limits and the connection loop are the shared ones of [`super::framed`] and
//! [`super::connection`]. `[servers.fesl]` is [`FeslConfig`].
//!
//! Over 600 lines because every transaction handler is here, each a few dozen lines of one
//! job (answering one FESL transaction); splitting them would scatter one state machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::connection::ConnectionConfig;
pub use super::connection::Flow;
use super::framed::{Framed, Limits, Protocol, Verdict};
use super::registry::{EmulatedServer, Serve, Start, secs};
use crate::dissect::Framing;
use crate::dissect::fesl::{self as codec, HEADER_LEN, Progress, Reassembler, Tag};
use crate::security::{LoginError, Persona, Store, StoreError, User};

/// FESL error codes this server answers with (see the protocol notes).
pub mod code {
    /// A transaction out of order (e.g. personas before login).
    pub const NOT_AUTHENTICATED: u32 = 20;
    /// A malformed field value (e.g. an invalid persona name).
    pub const INVALID_FIELD: u32 = 21;
    /// Server-side failure, a malformed message or an unknown transaction.
    pub const SYSTEM: u32 = 99;
    pub const NO_SUCH_ACCOUNT: u32 = 101;
    pub const DISABLED: u32 = 102;
    pub const BANNED: u32 = 103;
    pub const BAD_PASSWORD: u32 = 122;
    pub const ALREADY_EXISTS: u32 = 160;
}

/// Entitlement granted when the store has none for the user.
pub const DEFAULT_GAME_FEATURE: u32 = 6014;

/// `[servers.fesl]`: timing and limits of the FESL server (besides `enabled` and `listen`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeslConfig {
    /// How often the server sends a keep-alive `Ping` once the client said Hello (0: never).
    #[serde(rename = "ping_interval_secs", with = "secs")]
    pub ping_interval: Duration,
    /// How long a GameSpyPreAuth ticket stays valid for the GP login.
    #[serde(rename = "ticket_ttl_secs", with = "secs")]
    pub ticket_ttl: Duration,
    /// Fragment size used until the client's Hello names one.
    pub fragment_size: usize,
    /// Read and idle timeouts, the largest packet or reassembled message, the bad-message
    /// limit (malformed messages are answered with error 99).
    #[serde(flatten)]
    pub connection: ConnectionConfig,
    /// Where the Hello sends clients for the theater (not emulated yet).
    pub theater_ip: String,
    pub theater_port: u16,
}

impl Default for FeslConfig {
    fn default() -> Self {
        FeslConfig {
            ping_interval: Duration::from_secs(30),
            ticket_ttl: Duration::from_secs(300),
            fragment_size: 8096,
            connection: ConnectionConfig::default(),
            theater_ip: "127.0.0.1".into(),
            theater_port: 18805,
        }
    }
}

/// Everything a FESL connection needs.
#[derive(Clone)]
pub struct FeslCtx {
    pub store: Store,
    pub config: Arc<FeslConfig>,
    /// TLS on the FESL port (modern TLS only; retail SSLv3 is a later issue).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl FeslCtx {
    pub fn new(store: Store, config: FeslConfig) -> Self {
        FeslCtx {
            store,
            config: Arc::new(config),
            tls: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitMemCheck,
    Ready,
}

/// One connection's protocol state, message by message.
pub struct FeslHandler {
    store: Store,
    config: Arc<FeslConfig>,
    peer: String,
    reassembler: Reassembler,
    phase: Phase,
    fragment_size: usize,
    user: Option<User>,
    persona: Option<Persona>,
    lkey: Option<String>,
}

/// A FESL connection's socket-free core: client bytes in, reply bytes out.
pub type FeslSession = Framed<FeslHandler>;

type Pairs = Vec<(String, String)>;

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The TXN of a payload that failed to parse, if its `TXN=` line itself is readable.
fn lenient_txn(payload: &[u8]) -> Option<String> {
    payload
        .split(|&b| b == b'\n' || b == 0)
        .find_map(|line| line.strip_prefix(b"TXN="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

fn lowercase_letters(n: usize) -> String {
    (0..n)
        .map(|_| char::from(rand::random_range(b'a'..=b'z')))
        .collect()
}

fn new_lkey() -> String {
    // Retail lkeys are 27 base64url characters and a final '.'.
    let mut raw = [0u8; 20];
    rand::fill(&mut raw);
    use base64::Engine as _;
    let mut key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    key.push('.');
    key
}

impl FeslSession {
    pub fn new(store: Store, config: Arc<FeslConfig>, peer: impl Into<String>) -> Self {
        let peer = peer.into();
        let fragment_size = config.fragment_size;
        let handler = FeslHandler {
            store,
            config,
            peer: peer.clone(),
            reassembler: Reassembler::new(),
            phase: Phase::AwaitHello,
            fragment_size,
            user: None,
            persona: None,
            lkey: None,
        };
        Framed::wrap(handler, peer)
    }

    /// Whether the Hello exchange happened (keep-alives start then).
    pub fn greeted(&self) -> bool {
        self.protocol().greeted()
    }

    /// The server's keep-alive.
    pub fn ping_packet() -> Vec<u8> {
        codec::write_packet(b"fsys", Tag::SingleServer, 0, &[("TXN", "Ping")], false)
    }
}

impl Protocol for FeslHandler {
    const NAME: &'static str = "fesl";

    fn limits(&self) -> Limits {
        Limits {
            max_message: self.config.connection.max_message,
            max_bad_messages: self.config.connection.max_bad_messages,
        }
    }

    fn frame(&self, buf: &[u8]) -> Framing {
        codec::frame(buf)
    }

    async fn message(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Verdict {
        self.packet(packet, out).await
    }

    fn keep_alive(&self) -> Option<Vec<u8>> {
        self.greeted().then(FeslSession::ping_packet)
    }
}

impl FeslHandler {
    fn greeted(&self) -> bool {
        self.phase != Phase::AwaitHello
    }

    async fn packet(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Verdict {
        let header = match codec::parse_header(packet) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "fesl: bad header; closing");
                return Verdict::Close;
            }
        };
        let payload = &packet[HEADER_LEN..];
        let parsed = match codec::parse_payload(payload) {
            Ok(p) => p,
            Err(e) => {
                return self.malformed(header.command, header.number, payload, &e.to_string(), out);
            }
        };
        if !header.tag.is_fragment() {
            return self
                .message(header.command, header.number, parsed, out)
                .await;
        }
        let data = get(&parsed, "data").unwrap_or("");
        let size = get(&parsed, "size").and_then(|s| s.parse::<usize>().ok());
        let Some(size) =
            size.filter(|&s| s <= self.config.connection.max_message.div_ceil(3) * 4 + 4)
        else {
            tracing::warn!(peer = %self.peer, "fesl: fragment without a usable size; closing");
            return Verdict::Close;
        };
        match self
            .reassembler
            .push(header.command, header.number, data, size)
        {
            Ok(Progress::Partial { .. }) => Verdict::Ok,
            Ok(Progress::Done { text, .. }) => match codec::parse_text(codec::joined_text(&text)) {
                Ok(pairs) => {
                    self.message(header.command, header.number, pairs, out)
                        .await
                }
                Err(e) => self.malformed(header.command, header.number, &text, &e.to_string(), out),
            },
            Err(e) => {
                let reason = e.to_string();
                self.malformed(header.command, header.number, b"", &reason, out)
            }
        }
    }

    fn malformed(
        &mut self,
        command: [u8; 4],
        number: u32,
        payload: &[u8],
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Verdict {
        tracing::warn!(peer = %self.peer, %reason, "fesl: malformed message");
        let txn = lenient_txn(payload).unwrap_or_default();
        self.error(
            out,
            command,
            number,
            &txn,
            code::SYSTEM,
            &format!("Malformed message: {reason}"),
        );
        Verdict::Bad
    }

    /// Sends one message, fragmented when it exceeds the client's fragment size.
    fn send(&self, out: &mut Vec<u8>, command: &[u8; 4], number: u32, pairs: &[(&str, &str)]) {
        let packet = codec::write_packet(command, Tag::SingleServer, number, pairs, false);
        if packet.len() <= self.fragment_size {
            out.extend_from_slice(&packet);
            return;
        }
        let mut text = Vec::with_capacity(packet.len());
        codec::write_payload(&mut text, pairs, false);
        text.pop(); // the NUL: fragments carry the text without it
        // Room for the header and the `data=`, `decodedSize=`, `size=` lines around a chunk.
        let chunk = (self.fragment_size.saturating_sub(HEADER_LEN + 64) / 4 * 4).max(4);
        for p in codec::fragment(command, Tag::MultiServer, number, &text, chunk, false) {
            out.extend_from_slice(&p);
        }
    }

    fn error(
        &self,
        out: &mut Vec<u8>,
        command: [u8; 4],
        number: u32,
        txn: &str,
        code: u32,
        text: &str,
    ) {
        let code = code.to_string();
        self.send(
            out,
            &command,
            number,
            &[
                ("TXN", txn),
                ("localizedMessage", text),
                ("errorContainer.[]", "0"),
                ("errorCode", &code),
            ],
        );
    }

    fn field_error(&self, out: &mut Vec<u8>, number: u32, txn: &str, field: &str, why: &str) {
        let code = code::INVALID_FIELD.to_string();
        self.send(
            out,
            b"acct",
            number,
            &[
                ("TXN", txn),
                ("localizedMessage", "The data provided is invalid"),
                ("errorContainer.[]", "1"),
                ("errorContainer.0.fieldName", field),
                ("errorContainer.0.fieldError", why),
                ("errorCode", &code),
            ],
        );
    }

    fn store_failed(&self, out: &mut Vec<u8>, number: u32, txn: &str, e: &StoreError) {
        tracing::error!(peer = %self.peer, error = %e, txn, "fesl: accounts store failed");
        tracing::error!(target: "gamewire::audit", kind = "error", service = "fesl", peer = %self.peer, error = %e, txn, "accounts store failed");
        self.error(out, *b"acct", number, txn, code::SYSTEM, "System error");
    }

    async fn message(
        &mut self,
        command: [u8; 4],
        number: u32,
        pairs: Pairs,
        out: &mut Vec<u8>,
    ) -> Verdict {
        let Some(txn) = get(&pairs, "TXN").map(str::to_owned) else {
            self.error(out, command, number, "", code::SYSTEM, "Missing TXN");
            return Verdict::Bad;
        };
        match (&command, txn.as_str()) {
            (b"fsys", "Hello") => self.hello(number, &pairs, out),
            (b"fsys", "MemCheck") => {
                if self.phase == Phase::AwaitMemCheck {
                    self.phase = Phase::Ready;
                }
                Verdict::Ok
            }
            (b"fsys", "Ping") => Verdict::Ok,
            (b"fsys", "Goodbye") => {
                tracing::debug!(peer = %self.peer, "fesl: client said goodbye");
                Verdict::Close
            }
            (
                b"acct",
                "NuLogin" | "NuGetPersonas" | "NuAddPersona" | "NuLoginPersona" | "GameSpyPreAuth",
            ) if self.phase != Phase::Ready => self.out_of_order(out, command, number, &txn),
            (b"acct", "NuLogin") => self.nu_login(number, &pairs, out).await,
            (b"acct", "NuGetPersonas") => self.get_personas(number, out).await,
            (b"acct", "NuAddPersona") => self.add_persona(number, &pairs, out).await,
            (b"acct", "NuLoginPersona") => self.login_persona(number, &pairs, out).await,
            (b"acct", "GameSpyPreAuth") => self.preauth(number, out).await,
            _ => {
                tracing::info!(peer = %self.peer, command = %String::from_utf8_lossy(&command), txn, "fesl: unknown transaction");
                self.error(
                    out,
                    command,
                    number,
                    &txn,
                    code::SYSTEM,
                    &format!("Unknown transaction {txn}"),
                );
                Verdict::Ok
            }
        }
    }

    fn out_of_order(&self, out: &mut Vec<u8>, command: [u8; 4], number: u32, txn: &str) -> Verdict {
        tracing::info!(peer = %self.peer, txn, "fesl: transaction out of order");
        self.error(
            out,
            command,
            number,
            txn,
            code::NOT_AUTHENTICATED,
            "Transaction not allowed at this point",
        );
        Verdict::Ok
    }

    fn hello(&mut self, number: u32, pairs: &[(String, String)], out: &mut Vec<u8>) -> Verdict {
        if self.phase != Phase::AwaitHello {
            return self.out_of_order(out, *b"fsys", number, "Hello");
        }
        if let Some(size) = get(pairs, "fragmentSize").and_then(|s| s.parse::<usize>().ok()) {
            self.fragment_size = size.clamp(256, 65_536);
        }
        let now = chrono::Utc::now()
            .format("%b-%d-%Y %H:%M:%S UTC")
            .to_string();
        let theater_port = self.config.theater_port.to_string();
        self.send(
            out,
            b"fsys",
            number,
            &codec::hello_reply(&now, &self.config.theater_ip, &theater_port),
        );
        let salt = rand::random::<u32>().to_string();
        self.send(
            out,
            b"fsys",
            0,
            &[
                ("TXN", "MemCheck"),
                ("memcheck.[]", "0"),
                ("type", "0"),
                ("salt", &salt),
            ],
        );
        self.phase = Phase::AwaitMemCheck;
        Verdict::Ok
    }

    async fn nu_login(
        &mut self,
        number: u32,
        pairs: &[(String, String)],
        out: &mut Vec<u8>,
    ) -> Verdict {
        const TXN: &str = "NuLogin";
        let email = get(pairs, "nuid").unwrap_or("");
        let password = get(pairs, "password").unwrap_or("");
        self.user = None;
        self.persona = None;
        let user = match self.store.verify_login(email, password).await {
            Ok(u) => u,
            Err(e) => {
                let (code, text) = match &e {
                    LoginError::Unknown => (code::NO_SUCH_ACCOUNT, "The user was not found"),
                    LoginError::WrongPassword => (
                        code::BAD_PASSWORD,
                        "The password the user specified is incorrect",
                    ),
                    LoginError::Disabled => (code::DISABLED, "The account has been disabled"),
                    LoginError::Banned => (code::BANNED, "The account has been banned"),
                    LoginError::Store(se) => {
                        self.store_failed(out, number, TXN, se);
                        return Verdict::Ok;
                    }
                };
                tracing::info!(peer = %self.peer, email, error = %e, "fesl: login refused");
                let kind = if matches!(e, LoginError::Banned) {
                    "ban"
                } else {
                    "login_failed"
                };
                tracing::info!(target: "gamewire::audit", kind, service = "fesl", peer = %self.peer, who = email, error = %e, "login refused");
                self.error(out, *b"acct", number, TXN, code, text);
                return Verdict::Ok;
            }
        };
        let lkey = new_lkey();
        let id = user.id.to_string();
        let feature = DEFAULT_GAME_FEATURE.to_string();
        self.send(
            out,
            b"acct",
            number,
            &[
                ("TXN", TXN),
                ("nuid", &id),
                ("profileId", &id),
                ("userId", &id),
                ("displayName", &user.display_name),
                ("lkey", &lkey),
                ("entitledGameFeatureWrappers.[]", "1"),
                (
                    "entitledGameFeatureWrappers.0.entitlementExpirationDate",
                    "",
                ),
                (
                    "entitledGameFeatureWrappers.0.entitlementExpirationDays",
                    "-1",
                ),
                ("entitledGameFeatureWrappers.0.gameFeatureId", &feature),
                ("entitledGameFeatureWrappers.0.message", ""),
                ("entitledGameFeatureWrappers.0.status", "0"),
            ],
        );
        tracing::info!(peer = %self.peer, user = user.id, "fesl: login");
        tracing::info!(target: "gamewire::audit", kind = "login", service = "fesl", peer = %self.peer, who = email, user = user.id, "login accepted");
        self.user = Some(user);
        self.lkey = Some(lkey);
        Verdict::Ok
    }

    async fn get_personas(&mut self, number: u32, out: &mut Vec<u8>) -> Verdict {
        const TXN: &str = "NuGetPersonas";
        let Some(user) = &self.user else {
            return self.out_of_order(out, *b"acct", number, TXN);
        };
        let personas = match self.store.personas_of(user.id).await {
            Ok(p) => p,
            Err(e) => {
                self.store_failed(out, number, TXN, &e);
                return Verdict::Ok;
            }
        };
        let count = personas.len().to_string();
        let keys: Vec<String> = (0..personas.len())
            .map(|i| format!("personas.{i}"))
            .collect();
        let mut pairs: Vec<(&str, &str)> = vec![("TXN", TXN), ("personas.[]", &count)];
        for (k, p) in keys.iter().zip(&personas) {
            pairs.push((k, &p.name));
        }
        self.send(out, b"acct", number, &pairs);
        Verdict::Ok
    }

    async fn add_persona(
        &mut self,
        number: u32,
        pairs: &[(String, String)],
        out: &mut Vec<u8>,
    ) -> Verdict {
        const TXN: &str = "NuAddPersona";
        let Some(user) = &self.user else {
            return self.out_of_order(out, *b"acct", number, TXN);
        };
        let name = get(pairs, "name").unwrap_or("");
        match self.store.add_persona(user.id, name).await {
            Ok(_) => self.send(out, b"acct", number, &[("TXN", TXN)]),
            Err(StoreError::DuplicatePersona(_)) => self.error(
                out,
                *b"acct",
                number,
                TXN,
                code::ALREADY_EXISTS,
                "That account name is already taken",
            ),
            Err(StoreError::InvalidPersona(_, why)) => {
                self.field_error(out, number, TXN, "name", why)
            }
            Err(e) => self.store_failed(out, number, TXN, &e),
        }
        Verdict::Ok
    }

    async fn login_persona(
        &mut self,
        number: u32,
        pairs: &[(String, String)],
        out: &mut Vec<u8>,
    ) -> Verdict {
        const TXN: &str = "NuLoginPersona";
        let Some(user) = &self.user else {
            return self.out_of_order(out, *b"acct", number, TXN);
        };
        let name = get(pairs, "name").unwrap_or("");
        let personas = match self.store.personas_of(user.id).await {
            Ok(p) => p,
            Err(e) => {
                self.store_failed(out, number, TXN, &e);
                return Verdict::Ok;
            }
        };
        let Some(persona) = personas
            .into_iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        else {
            self.error(
                out,
                *b"acct",
                number,
                TXN,
                code::NO_SUCH_ACCOUNT,
                "The persona was not found",
            );
            return Verdict::Ok;
        };
        let lkey = new_lkey();
        let user_id = user.id.to_string();
        let profile_id = persona.id.to_string();
        self.send(
            out,
            b"acct",
            number,
            &[
                ("TXN", TXN),
                ("userId", &user_id),
                ("profileId", &profile_id),
                ("lkey", &lkey),
            ],
        );
        self.persona = Some(persona);
        self.lkey = Some(lkey);
        Verdict::Ok
    }

    async fn preauth(&mut self, number: u32, out: &mut Vec<u8>) -> Verdict {
        const TXN: &str = "GameSpyPreAuth";
        let (Some(user), Some(persona)) = (&self.user, &self.persona) else {
            return self.out_of_order(out, *b"acct", number, TXN);
        };
        let challenge = lowercase_letters(8);
        let ticket = match self
            .store
            .issue_ticket(user.id, persona.id, &challenge, self.config.ticket_ttl)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                self.store_failed(out, number, TXN, &e);
                return Verdict::Ok;
            }
        };
        self.send(
            out,
            b"acct",
            number,
            &[("TXN", TXN), ("challenge", &challenge), ("ticket", &ticket)],
        );
        Verdict::Ok
    }
}

/// Serves FESL on `listener` until `shutdown`; each connection runs in its own task.
pub async fn run(
    listener: TcpListener,
    ctx: FeslCtx,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let timing = ctx.config.connection.timing(ctx.config.ping_interval);
    let FeslCtx { store, config, tls } = ctx;
    let session =
        move |peer: SocketAddr| FeslSession::new(store.clone(), config.clone(), peer.to_string());
    super::connection::serve_all("fesl", listener, tls, timing, shutdown, session).await
}

/// The FESL server's entry in [`super::registry::REGISTRY`].
pub struct FeslServer;

impl EmulatedServer for FeslServer {
    type Settings = FeslConfig;

    fn start(&self, s: Start<FeslConfig>) -> Result<Serve, String> {
        let fesl = FeslCtx::new(s.ctx.store, s.settings);
        Ok(Box::pin(run(s.listener, fesl, s.ctx.shutdown)))
    }
}
