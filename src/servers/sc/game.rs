//! The Star Citizen gRPC game server (cleartext HTTP/2 here; the TLS tap at 5678 in front
//! of it terminates the client's TLS and records the decoded calls).
//!
//! `LoginService.InitiateLogin` checks the bearer JWT of the call's metadata and returns the
//! account; `PushService.Listen` then pushes the login progression, `LoginCompleted`, the
//! character's status and the reconcile-account sequence (each phase EXECUTING then
//! COMPLETE). `CharacterService` returns the configured character. Reflection and health are
//! served so stock tools (grpcurl, grpc_health_probe) can list and probe the services.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::pb::character::character_service_server::{CharacterService, CharacterServiceServer};
use super::pb::character::{
    Character, CharacterState, CharacterStatusNotification, GetCharactersRequest,
    GetCharactersResponse,
};
use super::pb::entitlement::{
    ReconcileAccountPhase, ReconcileAccountStatus, ReconcileAccountUpdateNotification,
};
use super::pb::login::login_service_server::{LoginService, LoginServiceServer};
use super::pb::login::{
    CancelLoginRequest, CancelLoginResponse, InitiateLoginRequest, InitiateLoginResponse,
    LoginCompletedNotification, LoginProgressNotification, LoginRequestStatus,
};
use super::pb::push::listen_response::Payload;
use super::pb::push::push_service_server::{PushService, PushServiceServer};
use super::pb::push::{ListenRequest, ListenResponse};
use super::{FILE_DESCRIPTOR_SET, ScCtx, login::check_token};
use crate::security::expiring::Expiring;
use crate::security::jwt::{Claims, now};
use crate::servers::registry::{EmulatedServer, NoSettings, Serve, Start};

#[derive(Debug, thiserror::Error)]
pub enum GameError {
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("serving: {0}")]
    Serve(String),
}

/// The services, sharing the logins in progress.
#[derive(Clone)]
pub struct Game {
    ctx: ScCtx,
    /// Claims of each InitiateLogin session, by session id, until the token expires.
    logins: Arc<Mutex<Expiring<Claims>>>,
}

impl Game {
    pub fn new(ctx: ScCtx) -> Self {
        Game {
            ctx,
            logins: Arc::new(Mutex::new(Expiring::new())),
        }
    }

    async fn authenticate<T>(&self, req: &Request<T>) -> Result<Claims, Status> {
        let md = req.metadata();
        let token = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(super::login::bearer)
            .or_else(|| md.get("x-auth-token").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
                Status::unauthenticated("no token: send `authorization: Bearer <jwt>`")
            })?;
        check_token(&self.ctx, token).await.map_err(|e| {
            tracing::info!("SC game server refused a token: {e}");
            Status::unauthenticated(e.to_string())
        })
    }

    fn character(&self, claims: &Claims) -> Character {
        let c = &self.ctx.settings.character;
        Character {
            id: c.id.clone(),
            name: c.name.clone(),
            location: c.location.clone(),
            universe: c.universe.clone(),
            account_id: claims.account_id.parse().unwrap_or(0),
        }
    }

    /// Every notification of a login, in the order they are pushed.
    pub fn notifications(&self, claims: &Claims) -> Vec<Payload> {
        use LoginRequestStatus as L;
        let mut out = Vec::new();
        for (i, status) in [
            L::InQueue,
            L::Authenticating,
            L::LoadingAccount,
            L::LoadingCharacters,
            L::Done,
        ]
        .into_iter()
        .enumerate()
        {
            out.push(Payload::LoginProgress(LoginProgressNotification {
                status: status as i32,
                message: format!("{status:?}"),
                queue_position: if i == 0 { 1 } else { 0 },
            }));
        }
        let account_id = claims.account_id.parse().unwrap_or(0);
        out.push(Payload::LoginCompleted(LoginCompletedNotification {
            account_id,
            nickname: claims.displayname.clone(),
            displayname: claims.displayname.clone(),
            citizen_id: claims.citizen_id.clone(),
            character_id: self.ctx.settings.character.id.clone(),
        }));
        for state in [CharacterState::Loading, CharacterState::Ready] {
            out.push(Payload::CharacterStatus(CharacterStatusNotification {
                character: Some(self.character(claims)),
                state: state as i32,
            }));
        }
        let command_id = format!("reconcile_{}", claims.jti);
        for phase in [
            ReconcileAccountPhase::Ltp,
            ReconcileAccountPhase::Platform,
            ReconcileAccountPhase::Entitlement,
        ] {
            for status in [
                ReconcileAccountStatus::Executing,
                ReconcileAccountStatus::Complete,
            ] {
                out.push(Payload::ReconcileAccountUpdate(
                    ReconcileAccountUpdateNotification {
                        command_id: command_id.clone(),
                        phase: phase as i32,
                        details: format!("{} {}", phase.as_str_name(), status.as_str_name()),
                        account_urn: format!("urn:sc:account:{}", claims.account_id),
                        player_urn: format!("urn:sc:player:{}", claims.citizen_id),
                        status: status as i32,
                    },
                ));
            }
        }
        out
    }
}

#[tonic::async_trait]
impl LoginService for Game {
    async fn initiate_login(
        &self,
        request: Request<InitiateLoginRequest>,
    ) -> Result<Response<InitiateLoginResponse>, Status> {
        let claims = self.authenticate(&request).await?;
        let req = request.into_inner();
        let session_id = if req.session_id.is_empty() {
            super::new_session_id()
        } else {
            req.session_id
        };
        tracing::info!(user = %claims.sub, session = %session_id, "SC InitiateLogin");
        let response = InitiateLoginResponse {
            account_id: claims.account_id.parse().unwrap_or(0),
            nickname: claims.displayname.clone(),
            displayname: claims.displayname.clone(),
            badges: Vec::new(),
            status: LoginRequestStatus::InQueue as i32,
            tracking_metrics_id: session_id.clone(),
        };
        let exp = claims.exp;
        self.logins.lock().insert(session_id, exp, claims, now());
        Ok(Response::new(response))
    }

    async fn cancel_login(
        &self,
        request: Request<CancelLoginRequest>,
    ) -> Result<Response<CancelLoginResponse>, Status> {
        let claims = self.authenticate(&request).await?;
        let session = request.into_inner().session_id;
        let mut logins = self.logins.lock();
        let cancelled = logins
            .get(&session, now())
            .is_some_and(|c| c.sub == claims.sub);
        if cancelled {
            logins.remove(&session);
        }
        Ok(Response::new(CancelLoginResponse { cancelled }))
    }
}

type ListenStream = Pin<Box<dyn Stream<Item = Result<ListenResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PushService for Game {
    type ListenStream = ListenStream;

    async fn listen(
        &self,
        request: Request<Streaming<ListenRequest>>,
    ) -> Result<Response<ListenStream>, Status> {
        let claims = self.authenticate(&request).await?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<ListenResponse, Status>>(32);
        let notifications = self.notifications(&claims);
        let interval = Duration::from_millis(self.ctx.settings.push_interval_ms);
        let logins = self.logins.clone();
        tokio::spawn(async move {
            // The first request names the session; a client may also send none and just
            // listen, which is taken as the latest login of the token's account.
            let first = match inbound.message().await {
                Ok(m) => m,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            if let Some(req) = &first
                && !req.session_id.is_empty()
                && !logins.lock().contains(&req.session_id, now())
            {
                let _ = tx
                    .send(Err(Status::failed_precondition(format!(
                        "no InitiateLogin for session {:?}",
                        req.session_id
                    ))))
                    .await;
                return;
            }
            tracing::info!(user = %claims.sub, "SC Listen: pushing the login sequence");
            for (n, payload) in notifications.into_iter().enumerate() {
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let msg = ListenResponse {
                    notification_id: format!("n{}", n + 1),
                    timestamp_ms: chrono::Utc::now().timestamp_millis(),
                    payload: Some(payload),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            // Acks until the client closes its side; the call then ends OK.
            loop {
                match inbound.message().await {
                    Ok(Some(_ack)) => {}
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl CharacterService for Game {
    async fn get_characters(
        &self,
        request: Request<GetCharactersRequest>,
    ) -> Result<Response<GetCharactersResponse>, Status> {
        let claims = self.authenticate(&request).await?;
        Ok(Response::new(GetCharactersResponse {
            characters: vec![self.character(&claims)],
        }))
    }
}

pub async fn run(
    listener: TcpListener,
    ctx: ScCtx,
    shutdown: CancellationToken,
) -> Result<(), GameError> {
    let game = Game::new(ctx);
    let reflection_err = |e: tonic_reflection::server::Error| GameError::Reflection(e.to_string());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(reflection_err)?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(reflection_err)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LoginServiceServer<Game>>().await;
    health.set_serving::<PushServiceServer<Game>>().await;
    health.set_serving::<CharacterServiceServer<Game>>().await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(LoginServiceServer::new(game.clone()))
        .add_service(PushServiceServer::new(game.clone()))
        .add_service(CharacterServiceServer::new(game))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|e| GameError::Serve(e.to_string()))
}

/// The game server's entry in [`crate::servers::registry::REGISTRY`].
pub struct GameServer;

impl EmulatedServer for GameServer {
    type Settings = NoSettings;
    const USES_SC_SIGNER: bool = true;

    fn start(&self, s: Start<NoSettings>) -> Result<Serve, String> {
        let (sc, stop) = (s.ctx.sc_ctx()?, s.ctx.shutdown);
        let serve = run(s.listener, sc, stop);
        Ok(Box::pin(async {
            serve.await.map_err(std::io::Error::other)
        }))
    }
}
