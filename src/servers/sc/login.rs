//! The Star Citizen login server (HTTP, 9000 by default): a web login form, `POST /login`
//! (form or JSON), a status page of active sessions, `GET /verify`, `POST /logout` and the
//! signing key at `/.well-known/jwks.json`.
//!
//! A good login issues an ES256 JWT with the seed's claims and writes the client's
//! `loginData.json`. Every refusal is a 401 whose JSON names the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ScCtx, citizen_id};
use crate::security::LoginError;
use crate::security::expiring::Expiring;
use crate::security::jwt::{Claims, TokenError, now};
use crate::servers::registry::{EmulatedServer, NoSettings, Serve, Start};

/// A session the login server issued.
#[derive(Clone, Debug)]
pub struct Session {
    pub email: String,
    pub displayname: String,
    pub account_id: i64,
    pub issued: i64,
    pub expires: i64,
    pub peer: String,
}

#[derive(Clone)]
struct App {
    ctx: ScCtx,
    /// Active sessions by `jti`, until they expire; a logout removes one.
    sessions: Arc<Mutex<Expiring<Session>>>,
}

/// Why `/verify` or `/logout` refused a token.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("session logged out")]
    LoggedOut,
    #[error("account disabled")]
    Disabled,
    #[error("account banned")]
    Banned,
    #[error("no such account")]
    NoAccount,
    #[error("accounts database: {0}")]
    Store(String),
}

/// Checks a token against the signing key and the account's current state: what every
/// Star Citizen server accepts a bearer with.
pub async fn check_token(ctx: &ScCtx, token: &str) -> Result<Claims, VerifyError> {
    let claims = ctx.signer.verify(token, now())?;
    if ctx.logged_out.lock().contains(&claims.jti, now()) {
        return Err(VerifyError::LoggedOut);
    }
    match ctx.store.user_by_email(&claims.sub).await {
        Ok(Some(u)) if u.banned => Err(VerifyError::Banned),
        Ok(Some(u)) if !u.active => Err(VerifyError::Disabled),
        Ok(Some(_)) => Ok(claims),
        Ok(None) => Err(VerifyError::NoAccount),
        Err(e) => Err(VerifyError::Store(e.to_string())),
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn run(
    listener: TcpListener,
    ctx: ScCtx,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = App {
        ctx,
        sessions: Arc::new(Mutex::new(Expiring::new())),
    };
    let router = Router::new()
        .route("/", get(form_page))
        .route("/login", get(form_page).post(login))
        .route("/status", get(status_page))
        .route("/sessions", get(sessions_json))
        .route("/verify", get(verify))
        .route("/logout", post(logout))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(not_found)
        .with_state(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// The login server's entry in [`crate::servers::registry::REGISTRY`].
pub struct LoginServer;

impl EmulatedServer for LoginServer {
    type Settings = NoSettings;
    const USES_SC_SIGNER: bool = true;

    fn start(&self, s: Start<NoSettings>) -> Result<Serve, String> {
        let sc = s.ctx.sc_ctx()?;
        Ok(Box::pin(run(s.listener, sc, s.ctx.shutdown)))
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:2em auto}\
    label{display:block;margin:.5em 0}table{border-collapse:collapse}\
    td,th{border:1px solid #999;padding:.2em .5em}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn form_page() -> Html<String> {
    page(
        "Star Citizen login (gamewire)",
        "<form method=\"post\" action=\"/login\">\
         <label>Email <input name=\"username\" type=\"email\" autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\"></label>\
         <button type=\"submit\">Log in</button></form>\
         <p><a href=\"/status\">Active sessions</a></p>",
    )
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "reason": "no such page"})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(alias = "email", alias = "user")]
    username: String,
    password: String,
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "invalid_token", "reason": reason})),
    )
        .into_response()
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json");
    let parsed: Result<LoginForm, String> = if is_json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded_form(&body)
    };
    let reply_error = |status: StatusCode, error: &str, reason: &str| -> Response {
        if is_json {
            (status, Json(json!({"error": error, "reason": reason}))).into_response()
        } else {
            let body = format!(
                "<p class=\"error\">Login failed: {}</p><p><a href=\"/\">Try again</a></p>",
                escape(reason)
            );
            (status, page("Login failed", &body)).into_response()
        }
    };
    let form = match parsed {
        Ok(f) => f,
        Err(e) => {
            return reply_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("expected username and password: {e}"),
            );
        }
    };
    let user = match app
        .ctx
        .store
        .verify_login(&form.username, &form.password)
        .await
    {
        Ok(u) => u,
        Err(LoginError::Unknown | LoginError::WrongPassword) => {
            tracing::info!(%peer, user = %form.username, "SC login refused: bad credentials");
            return reply_error(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong email or password",
            );
        }
        Err(e @ (LoginError::Disabled | LoginError::Banned)) => {
            tracing::info!(%peer, user = %form.username, "SC login refused: {e}");
            return reply_error(
                StatusCode::UNAUTHORIZED,
                "account_unavailable",
                &e.to_string(),
            );
        }
        Err(LoginError::Store(e)) => {
            tracing::error!("SC login: {e}");
            return reply_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "accounts database unavailable",
            );
        }
    };
    let settings = &app.ctx.settings;
    let iat = now();
    let exp = iat.saturating_add(
        i64::try_from(settings.token_ttl_secs)
            .unwrap_or(3600)
            .max(1),
    );
    let jti = uuid_like();
    let claims = Claims {
        iss: app.ctx.signer.issuer().to_owned(),
        sub: user.email.clone(),
        account_id: user.id.to_string(),
        citizen_id: citizen_id(user.id),
        displayname: user.display_name.clone(),
        scope: ["game:access", "game:play", "game:chat"]
            .map(String::from)
            .to_vec(),
        roles: ["citizen", "backer", "player"].map(String::from).to_vec(),
        iat,
        exp,
        jti: jti.clone(),
    };
    let token = match app.ctx.signer.sign(&claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("SC login: {e}");
            return reply_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign the token",
            );
        }
    };
    let data = login_data(&app.ctx, &claims, &token);
    if let Err(e) = write_login_data(&app.ctx.login_data_path, &data) {
        tracing::warn!("could not write {}: {e}", app.ctx.login_data_path.display());
    }
    app.sessions.lock().insert(
        jti,
        exp,
        Session {
            email: user.email.clone(),
            displayname: user.display_name.clone(),
            account_id: user.id,
            issued: iat,
            expires: exp,
            peer: peer.to_string(),
        },
        now(),
    );
    tracing::info!(%peer, user = %user.email, account = user.id, "SC login: token issued");
    if is_json {
        Json(json!({
            "token": token,
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": exp - iat,
            "account_id": claims.account_id,
            "citizen_id": claims.citizen_id,
            "displayname": claims.displayname,
            "login_data": data,
        }))
        .into_response()
    } else {
        let body = format!(
            "<p>Welcome, {}. Your client's loginData.json was written.</p>\
             <p>Token:</p><textarea id=\"token\" readonly rows=\"6\" cols=\"70\">{}</textarea>\
             <p><a href=\"/status\">Active sessions</a></p>",
            escape(&user.display_name),
            escape(&token)
        );
        page("Logged in", &body).into_response()
    }
}

/// `application/x-www-form-urlencoded` without another crate: `+` and `%XX` decoding.
fn serde_urlencoded_form(body: &[u8]) -> Result<LoginForm, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let mut fields = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(form_decode(k), form_decode(v));
    }
    let username = ["username", "email", "user"]
        .iter()
        .find_map(|k| fields.get(*k))
        .cloned()
        .ok_or("missing username")?;
    let password = fields.get("password").cloned().ok_or("missing password")?;
    Ok(LoginForm { username, password })
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    crate::dissect::grpc::percent_decode(&s)
}

/// A random id shaped like the seed's `access_token` (8-4-4-4-12 hex).
fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The client's `loginData.json`: the real client's fields and the seed's game data.
pub fn login_data(ctx: &ScCtx, claims: &Claims, token: &str) -> Value {
    let settings = &ctx.settings;
    let game = settings.service("game_service");
    let host = game.map_or("127.0.0.1", |g| g.host.as_str());
    let port = game.map_or(super::GAME_PORT, |g| g.port);
    json!({
        "username": claims.sub,
        "token": token,
        "auth_token": token,
        "star_network": {
            "services_endpoint": format!("https://{host}:{port}"),
            "hostname": host,
            "port": port,
        },
        "access_token": claims.jti,
        "account_id": claims.account_id,
        "citizen_id": claims.citizen_id,
        "displayname": claims.displayname,
        "email": claims.sub,
        "character_id": settings.character.id,
        "location": settings.character.location,
        "universe": settings.character.universe,
    })
}

/// Writes whole or not at all (a client reading it mid-write sees the old file), owner-only
/// since it holds a live token.
fn write_login_data(path: &Path, data: &Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_vec_pretty(data).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&text)?;
    }
    std::fs::rename(&tmp, path)
}

fn token_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
        .or_else(|| query.get("token").cloned())
}

async fn verify(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(token) = token_of(&headers, &query) else {
        return unauthorized(&TokenError::Missing.to_string());
    };
    match check_session(&app, &token).await {
        Ok(claims) => Json(json!({"valid": true, "claims": claims})).into_response(),
        Err(e) => {
            tracing::info!("SC /verify refused a token: {e}");
            unauthorized(&e.to_string())
        }
    }
}

async fn check_session(app: &App, token: &str) -> Result<Claims, VerifyError> {
    let claims = check_token(&app.ctx, token).await?;
    if !app.sessions.lock().contains(&claims.jti, now()) {
        return Err(VerifyError::LoggedOut);
    }
    Ok(claims)
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(token) = token_of(&headers, &query) else {
        return unauthorized(&TokenError::Missing.to_string());
    };
    match check_session(&app, &token).await {
        Ok(claims) => {
            app.sessions.lock().remove(&claims.jti);
            app.ctx
                .logged_out
                .lock()
                .insert(claims.jti.clone(), claims.exp, (), now());
            tracing::info!(user = %claims.sub, "SC logout");
            Json(json!({"logged_out": true, "sub": claims.sub})).into_response()
        }
        Err(e) => unauthorized(&e.to_string()),
    }
}

fn active(app: &App) -> Vec<(String, Session)> {
    let sessions = app.sessions.lock();
    let mut list: Vec<_> = sessions
        .live(now())
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    list.sort_by_key(|(_, s)| s.issued);
    list
}

async fn status_page(State(app): State<App>) -> Html<String> {
    let list = active(&app);
    let mut rows = String::new();
    for (_, s) in &list {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.displayname),
            escape(&s.email),
            s.account_id,
            escape(&s.peer),
            chrono::DateTime::from_timestamp(s.expires, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default()
        ));
    }
    page(
        "Active sessions",
        &format!(
            "<p>{} active session(s).</p><table><tr><th>Display name</th><th>Email</th>\
             <th>Account</th><th>Client</th><th>Expires</th></tr>{rows}</table>\
             <p><a href=\"/\">Log in</a> · <a href=\"/.well-known/jwks.json\">JWKS</a></p>",
            list.len()
        ),
    )
}

async fn sessions_json(State(app): State<App>) -> Json<Value> {
    let list: Vec<Value> = active(&app)
        .into_iter()
        .map(|(_, s)| {
            json!({"email": s.email, "displayname": s.displayname, "account_id": s.account_id,
                   "issued": s.issued, "expires": s.expires, "peer": s.peer})
        })
        .collect();
    Json(json!({ "sessions": list }))
}

async fn jwks(State(app): State<App>) -> Json<Value> {
    Json(app.ctx.signer.jwks())
}
