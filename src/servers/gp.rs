//! The emulated GameSpy GP (presence) login server: `\lc\1\` challenge, `\login\` with the
//! ticket of FESL's GameSpyPreAuth as authtoken, `\lc\2\` with the proof, keep-alives.
//!
//! [`GpSession`] is the socket-free core; the login math is [`crate::dissect::gp`]'s, the
//! buffering, limits and connection loop are the shared ones of [`super::framed`] and
//! [`super::connection`]. `[servers.gp]` is [`GpConfig`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::connection::ConnectionConfig;
pub use super::connection::Flow;
use super::framed::{Framed, Limits, Protocol, Refusal, Verdict};
use super::registry::{EmulatedServer, Serve, Start, secs};
use crate::dissect::Framing;
use crate::dissect::gp as codec;
use crate::security::{Store, TicketError, TicketGrant, random_token};

/// GP error codes this server answers with (GameSpy's `GPErrorCode` values).
pub mod code {
    /// The message could not be parsed.
    pub const PARSE: u32 = 0x001;
    /// A command that needs a login came before it.
    pub const NOT_LOGGED_IN: u32 = 0x002;
    /// Generic login failure (missing fields, login twice).
    pub const LOGIN: u32 = 0x100;
    /// The response does not match: the client does not know the FESL challenge.
    pub const BAD_PASSWORD: u32 = 0x104;
    /// The authtoken is unknown, used or expired.
    pub const BAD_PREAUTH: u32 = 0x10A;
    /// Server-side failure.
    pub const GENERAL: u32 = 0x000;
}

/// `[servers.gp]`: timing and limits of the GP server (besides `enabled` and `listen`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpConfig {
    /// How often the server sends `\ka\` once the client logged in (0: never).
    #[serde(rename = "keep_alive_secs", with = "secs")]
    pub keep_alive: Duration,
    /// Read and idle timeouts, the largest message (at most the codec's 64 KiB), the
    /// bad-message limit (malformed messages are answered with a non-fatal `\error\`).
    #[serde(flatten)]
    pub connection: ConnectionConfig,
}

impl Default for GpConfig {
    fn default() -> Self {
        GpConfig {
            keep_alive: Duration::from_secs(30),
            connection: ConnectionConfig::default(),
        }
    }
}

/// Everything a GP connection needs.
#[derive(Clone)]
pub struct GpCtx {
    pub store: Store,
    pub config: Arc<GpConfig>,
}

impl GpCtx {
    pub fn new(store: Store, config: GpConfig) -> Self {
        GpCtx {
            store,
            config: Arc::new(config),
        }
    }
}

/// One connection's protocol state, message by message.
pub struct GpHandler {
    store: Store,
    config: Arc<GpConfig>,
    peer: String,
    server_chal: String,
    grant: Option<TicketGrant>,
}

/// A GP connection's socket-free core: client bytes in, reply bytes out.
pub type GpSession = Framed<GpHandler>;

/// The error GP answers a message it cannot parse with.
const PARSE_ERROR: &str = "There was an error parsing an incoming request.";

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn uppercase_letters(n: usize) -> String {
    (0..n)
        .map(|_| char::from(rand::random_range(b'A'..=b'Z')))
        .collect()
}

/// `\error\\err\N[\fatal\]\errmsg\TEXT\id\ID\final\`.
pub fn error_message(code: u32, fatal: bool, text: &str, id: &str) -> Vec<u8> {
    let code = code.to_string();
    let mut pairs = vec![("error", ""), ("err", code.as_str())];
    if fatal {
        pairs.push(("fatal", ""));
    }
    pairs.push(("errmsg", text));
    pairs.push(("id", id));
    codec::write_message(&pairs)
}

impl GpSession {
    pub fn new(store: Store, config: Arc<GpConfig>, peer: impl Into<String>) -> Self {
        Self::with_challenge(store, config, peer, uppercase_letters(10))
    }

    /// A session with a chosen server challenge (for test vectors).
    pub fn with_challenge(
        store: Store,
        config: Arc<GpConfig>,
        peer: impl Into<String>,
        server_chal: impl Into<String>,
    ) -> Self {
        let peer = peer.into();
        let handler = GpHandler {
            store,
            config,
            peer: peer.clone(),
            server_chal: server_chal.into(),
            grant: None,
        };
        Framed::wrap(handler, peer)
    }

    /// What the server says first: `\lc\1\challenge\...\id\1\final\`.
    pub fn greeting(&self) -> Vec<u8> {
        self.protocol().greeting_message()
    }

    pub fn keep_alive() -> Vec<u8> {
        codec::write_message(&[("ka", "")])
    }

    pub fn logged_in(&self) -> bool {
        self.protocol().grant.is_some()
    }
}

impl Protocol for GpHandler {
    const NAME: &'static str = "gp";

    fn limits(&self) -> Limits {
        Limits {
            max_message: self.config.connection.max_message.min(codec::MAX_MESSAGE),
            max_bad_messages: self.config.connection.max_bad_messages,
        }
    }

    fn frame(&self, buf: &[u8]) -> Framing {
        codec::frame(buf)
    }

    async fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Verdict {
        GpHandler::message(self, msg, out).await
    }

    fn refuse(&mut self, why: &Refusal, out: &mut Vec<u8>) {
        let text = match why {
            Refusal::TooLarge(_) => "Message too large",
            Refusal::Unframeable(_) => PARSE_ERROR,
        };
        out.extend(error_message(code::PARSE, true, text, "1"));
    }

    fn greeting(&mut self) -> Vec<u8> {
        self.greeting_message()
    }

    fn keep_alive(&self) -> Option<Vec<u8>> {
        self.grant.is_some().then(GpSession::keep_alive)
    }
}

impl GpHandler {
    fn greeting_message(&self) -> Vec<u8> {
        codec::write_message(&[
            ("lc", "1"),
            ("challenge", self.server_chal.as_str()),
            ("id", "1"),
        ])
    }

    async fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Verdict {
        let pairs = match codec::parse_message(msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "gp: malformed message");
                out.extend(error_message(code::PARSE, false, PARSE_ERROR, "1"));
                return Verdict::Bad;
            }
        };
        let id = get(&pairs, "id").unwrap_or("1").to_owned();
        let command = pairs.first().map(|(k, _)| k.as_str()).unwrap_or("");
        match command {
            "login" => self.login(&pairs, &id, out).await,
            "ka" => {
                out.extend(GpSession::keep_alive());
                Verdict::Ok
            }
            "logout" => Verdict::Close,
            _ if self.grant.is_none() => {
                out.extend(error_message(
                    code::NOT_LOGGED_IN,
                    false,
                    "This request cannot be processed because you are not logged in.",
                    &id,
                ));
                Verdict::Ok
            }
            // Presence updates after login have no answer in GP.
            "status" | "statusinfo" => Verdict::Ok,
            other => {
                tracing::info!(peer = %self.peer, command = other, "gp: unsupported command");
                out.extend(error_message(
                    code::GENERAL,
                    false,
                    "Unsupported request.",
                    &id,
                ));
                Verdict::Ok
            }
        }
    }

    async fn login(&mut self, pairs: &[(String, String)], id: &str, out: &mut Vec<u8>) -> Verdict {
        if self.grant.is_some() {
            out.extend(error_message(code::LOGIN, false, "Already logged in.", id));
            return Verdict::Ok;
        }
        let (Some(client_chal), Some(authtoken), Some(response)) = (
            get(pairs, "challenge"),
            get(pairs, "authtoken"),
            get(pairs, "response"),
        ) else {
            tracing::info!(peer = %self.peer, "gp: login without challenge, authtoken or response");
            out.extend(error_message(
                code::LOGIN,
                true,
                "Invalid login request.",
                id,
            ));
            return Verdict::Close;
        };
        let refuse = |out: &mut Vec<u8>, e: TicketError, peer: &str| {
            tracing::info!(peer, error = %e, "gp: login refused");
            tracing::info!(target: "gamewire::audit", kind = "login_failed", service = "gp", peer, error = %e, "login refused");
            let (code, text) = match e {
                TicketError::Store(_) => (code::GENERAL, "System error."),
                _ => (
                    code::BAD_PREAUTH,
                    "The pre-authentication ticket is invalid.",
                ),
            };
            out.extend(error_message(code, true, text, id));
            Verdict::Close
        };
        let grant = match self.store.peek_ticket(authtoken).await {
            Ok(g) => g,
            Err(e) => return refuse(out, e, &self.peer),
        };
        if !codec::check_response(
            &grant.challenge,
            authtoken,
            client_chal,
            &self.server_chal,
            response,
        ) {
            tracing::info!(peer = %self.peer, "gp: login response does not match");
            tracing::info!(target: "gamewire::audit", kind = "login_failed", service = "gp", peer = %self.peer, error = "response does not match", "login refused");
            out.extend(error_message(
                code::BAD_PASSWORD,
                true,
                "The password provided is incorrect.",
                id,
            ));
            return Verdict::Close;
        }
        let grant = match self.store.consume_ticket(authtoken).await {
            Ok(g) => g,
            Err(e) => return refuse(out, e, &self.peer),
        };
        let proof = codec::gp_proof(&grant.challenge, authtoken, client_chal, &self.server_chal);
        let sesskey = rand::random_range(10_000u32..1_000_000_000).to_string();
        let user_id = grant.user_id.to_string();
        let profile_id = grant.persona_id.to_string();
        let mut lt = random_token(22);
        lt.push_str("__");
        out.extend(codec::write_message(&[
            ("lc", "2"),
            ("sesskey", sesskey.as_str()),
            ("proof", proof.as_str()),
            ("userid", user_id.as_str()),
            ("profileid", profile_id.as_str()),
            ("uniquenick", grant.persona_name.as_str()),
            ("lt", lt.as_str()),
            ("id", id),
        ]));
        tracing::info!(peer = %self.peer, user = grant.user_id, persona = grant.persona_id, "gp: login");
        tracing::info!(target: "gamewire::audit", kind = "login", service = "gp", peer = %self.peer, who = %grant.persona_name, user = grant.user_id, "login accepted");
        self.grant = Some(grant);
        Verdict::Ok
    }
}

/// Serves GP on `listener` until `shutdown`; each connection runs in its own task.
pub async fn run(
    listener: TcpListener,
    ctx: GpCtx,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let timing = ctx.config.connection.timing(ctx.config.keep_alive);
    let session = move |peer: SocketAddr| {
        GpSession::new(ctx.store.clone(), ctx.config.clone(), peer.to_string())
    };
    super::connection::serve_all("gp", listener, None, timing, shutdown, session).await
}

/// The GP server's entry in [`super::registry::REGISTRY`].
pub struct GpServer;

impl EmulatedServer for GpServer {
    type Settings = GpConfig;

    fn start(&self, s: Start<GpConfig>) -> Result<Serve, String> {
        Ok(Box::pin(run(
            s.listener,
            GpCtx::new(s.ctx.store, s.settings),
            s.ctx.shutdown,
        )))
    }
}
