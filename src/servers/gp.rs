//! The emulated GameSpy GP (presence) login server: `\lc\1\` challenge, `\login\` with the
//! ticket of FESL's GameSpyPreAuth as authtoken, `\lc\2\` with the proof, keep-alives.
//!
//! [`GpSession`] is the socket-free core; the login math is [`crate::dissect::gp`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::fesl::Flow;
use super::{Ra3Config, ReadClock};
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

/// Everything a GP connection needs.
#[derive(Clone)]
pub struct GpCtx {
    pub store: Store,
    pub config: Arc<Ra3Config>,
}

impl GpCtx {
    pub fn new(store: Store, config: Ra3Config) -> Self {
        GpCtx {
            store,
            config: Arc::new(config),
        }
    }
}

/// One connection's protocol state.
pub struct GpSession {
    store: Store,
    config: Arc<Ra3Config>,
    peer: String,
    buf: Vec<u8>,
    server_chal: String,
    grant: Option<TicketGrant>,
    bad: u32,
}

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
    pub fn new(store: Store, config: Arc<Ra3Config>, peer: impl Into<String>) -> Self {
        Self::with_challenge(store, config, peer, uppercase_letters(10))
    }

    /// A session with a chosen server challenge (for test vectors).
    pub fn with_challenge(
        store: Store,
        config: Arc<Ra3Config>,
        peer: impl Into<String>,
        server_chal: impl Into<String>,
    ) -> Self {
        GpSession {
            store,
            config,
            peer: peer.into(),
            buf: Vec::new(),
            server_chal: server_chal.into(),
            grant: None,
            bad: 0,
        }
    }

    /// What the server says first: `\lc\1\challenge\...\id\1\final\`.
    pub fn greeting(&self) -> Vec<u8> {
        codec::write_message(&[
            ("lc", "1"),
            ("challenge", self.server_chal.as_str()),
            ("id", "1"),
        ])
    }

    pub fn keep_alive() -> Vec<u8> {
        codec::write_message(&[("ka", "")])
    }

    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn logged_in(&self) -> bool {
        self.grant.is_some()
    }

    /// Takes client bytes (any split) and appends the replies to `out`.
    pub async fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Flow {
        self.buf.extend_from_slice(data);
        let limit = self.config.max_message.min(codec::MAX_MESSAGE);
        let mut at = 0;
        let flow = loop {
            let rest = &self.buf[at..];
            if rest.is_empty() {
                break Flow::Continue;
            }
            match codec::frame(rest) {
                Framing::Complete(n) if n <= limit => {
                    let msg = rest[..n].to_vec();
                    at += n;
                    if self.message(&msg, out).await == Flow::Close {
                        break Flow::Close;
                    }
                }
                Framing::NeedMore(_) if rest.len() <= limit => break Flow::Continue,
                Framing::Complete(_) | Framing::NeedMore(_) => {
                    tracing::warn!(peer = %self.peer, "gp: message larger than the limit; closing");
                    out.extend(error_message(code::PARSE, true, "Message too large", "1"));
                    break Flow::Close;
                }
                Framing::Unframeable { reason, .. } => {
                    tracing::warn!(peer = %self.peer, %reason, "gp: unframeable input; closing");
                    out.extend(error_message(
                        code::PARSE,
                        true,
                        "There was an error parsing an incoming request.",
                        "1",
                    ));
                    break Flow::Close;
                }
            }
        };
        self.buf.drain(..at);
        if flow == Flow::Close {
            self.buf.clear();
        }
        flow
    }

    async fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Flow {
        let pairs = match codec::parse_message(msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "gp: malformed message");
                out.extend(error_message(
                    code::PARSE,
                    false,
                    "There was an error parsing an incoming request.",
                    "1",
                ));
                self.bad += 1;
                return if self.bad > self.config.max_bad_messages {
                    Flow::Close
                } else {
                    Flow::Continue
                };
            }
        };
        let id = get(&pairs, "id").unwrap_or("1").to_owned();
        let command = pairs.first().map(|(k, _)| k.as_str()).unwrap_or("");
        match command {
            "login" => self.login(&pairs, &id, out).await,
            "ka" => {
                out.extend(Self::keep_alive());
                Flow::Continue
            }
            "logout" => Flow::Close,
            _ if self.grant.is_none() => {
                out.extend(error_message(
                    code::NOT_LOGGED_IN,
                    false,
                    "This request cannot be processed because you are not logged in.",
                    &id,
                ));
                Flow::Continue
            }
            // Presence updates after login have no answer in GP.
            "status" | "statusinfo" => Flow::Continue,
            other => {
                tracing::info!(peer = %self.peer, command = other, "gp: unsupported command");
                out.extend(error_message(
                    code::GENERAL,
                    false,
                    "Unsupported request.",
                    &id,
                ));
                Flow::Continue
            }
        }
    }

    async fn login(&mut self, pairs: &[(String, String)], id: &str, out: &mut Vec<u8>) -> Flow {
        if self.grant.is_some() {
            out.extend(error_message(code::LOGIN, false, "Already logged in.", id));
            return Flow::Continue;
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
            return Flow::Close;
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
            Flow::Close
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
            return Flow::Close;
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
        Flow::Continue
    }
}

/// Serves GP on `listener` until `shutdown`; each connection runs in its own task.
pub async fn run(
    listener: TcpListener,
    ctx: GpCtx,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    super::accept_loop("gp", listener, shutdown.clone(), move |socket, peer| {
        serve(socket, peer, ctx.clone(), shutdown.clone())
    })
    .await
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, ctx: GpCtx, shutdown: CancellationToken) {
    let config = ctx.config.clone();
    let mut session = GpSession::new(ctx.store, ctx.config, peer.to_string());
    if stream.write_all(&session.greeting()).await.is_err() {
        return;
    }
    let mut clock = ReadClock::new();
    let start = tokio::time::Instant::now() + config.ping_interval;
    let mut ka = tokio::time::interval_at(start, config.ping_interval);
    let mut buf = vec![0u8; 8 * 1024];
    let mut out = Vec::new();
    let reason = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break "server shutting down".to_string(),
            _ = ka.tick() => {
                if session.logged_in() && stream.write_all(&GpSession::keep_alive()).await.is_err() {
                    break "write failed".into();
                }
            }
            read = clock.read(&mut stream, &mut buf, config.timeouts()) => match read {
                Ok(0) => break "client closed".into(),
                Ok(n) => {
                    let flow = session.feed(&buf[..n], &mut out).await;
                    clock.after_read(session.has_partial());
                    if !out.is_empty() {
                        if let Err(e) = stream.write_all(&out).await {
                            break format!("write failed: {e}");
                        }
                        out.clear();
                    }
                    if flow == Flow::Close {
                        break "closed by server".into();
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, "gp: {e}; closing");
                    break e.to_string();
                }
            }
        }
    };
    let _ = stream.shutdown().await;
    tracing::debug!(%peer, reason, "gp: connection ended");
}
