//! The catch-all gRPC server (the seed's "Google APIs" role; 8443 by default, behind a TLS
//! tap): accepts any method, records the call, and answers from the configured table
//! (method → response message as JSON, or a status code). A method not in the table gets
//! UNIMPLEMENTED and a log line naming it, which is how a user learns what to model next.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost_reflect::{DescriptorPool, DynamicMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::CatchallRule;
use crate::servers::registry::{EmulatedServer, NoSettings, Serve, Start};

/// Largest request body read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// gRPC status codes used here.
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const INVALID_ARGUMENT: u32 = 3;

/// What the server answers (each call is logged, not kept: a long session must not grow).
#[derive(Clone)]
pub struct CatchAll {
    rules: Arc<Vec<CatchallRule>>,
    schemas: Option<DescriptorPool>,
}

/// An answer: a message (already encoded) or a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Message(Vec<u8>),
    Status(u32, String),
}

impl CatchAll {
    pub fn new(rules: Vec<CatchallRule>, schemas: Option<DescriptorPool>) -> Self {
        CatchAll {
            rules: Arc::new(rules),
            schemas,
        }
    }

    /// The answer to `method` per the table.
    pub fn answer(&self, method: &str) -> Answer {
        let Some(rule) = self.rules.iter().find(|r| r.method == method) else {
            return Answer::Status(
                UNIMPLEMENTED,
                format!("{method} is not modelled by gamewire (add it to [[servers.sc.catchall]])"),
            );
        };
        if let Some(code) = rule.status {
            return Answer::Status(code, rule.message.clone().unwrap_or_default());
        }
        let Some(json) = &rule.response_json else {
            return Answer::Message(Vec::new());
        };
        let desc = self
            .schemas
            .as_ref()
            .and_then(|p| crate::dissect::grpc::message_type(p, method, false));
        let Some(desc) = desc else {
            return Answer::Status(
                INTERNAL,
                format!("no schema for {method}: its response JSON cannot be encoded"),
            );
        };
        let mut de = serde_json::Deserializer::from_str(json);
        match DynamicMessage::deserialize(desc, &mut de) {
            Ok(m) => Answer::Message(prost::Message::encode_to_vec(&m)),
            Err(e) => Answer::Status(INTERNAL, format!("configured response for {method}: {e}")),
        }
    }
}

type Body = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn grpc_response(answer: &Answer) -> Response<Body> {
    let mut frames = Vec::new();
    let (status, message) = match answer {
        Answer::Message(bytes) => {
            let mut data = Vec::with_capacity(5 + bytes.len());
            data.push(0);
            data.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            data.extend_from_slice(bytes);
            frames.push(Ok(Frame::data(Bytes::from(data))));
            (0, String::new())
        }
        Answer::Status(code, message) => (*code, message.clone()),
    };
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from(status));
    if !message.is_empty()
        && let Ok(v) = hyper::header::HeaderValue::from_str(&percent_encode(&message))
    {
        trailers.insert("grpc-message", v);
    }
    frames.push(Ok(Frame::trailers(trailers)));
    let mut response = Response::new(StreamBody::new(futures::stream::iter(frames)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// `grpc-message` is percent-encoded (spec: everything outside printable ASCII, and `%`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn handle(
    server: CatchAll,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.uri().path().to_owned();
    let grpc = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"));
    let body = Limited::new(req.into_body(), MAX_BODY).collect().await;
    let (answer, body_len) = match body {
        Err(e) => (
            Answer::Status(INVALID_ARGUMENT, format!("request body: {e}")),
            0,
        ),
        Ok(_) if !grpc => (
            Answer::Status(
                INVALID_ARGUMENT,
                "content-type is not application/grpc".into(),
            ),
            0,
        ),
        Ok(b) => {
            let bytes = b.to_bytes();
            let (whole, err) = crate::dissect::grpc::complete_prefix(&bytes);
            if err.is_some() || whole != bytes.len() {
                (
                    Answer::Status(
                        INVALID_ARGUMENT,
                        "malformed gRPC body (bad length prefix)".into(),
                    ),
                    bytes.len(),
                )
            } else {
                (server.answer(&method), bytes.len())
            }
        }
    };
    let status = match &answer {
        Answer::Message(_) => 0,
        Answer::Status(c, _) => *c,
    };
    if status == UNIMPLEMENTED {
        tracing::warn!(%peer, body_len, "catch-all gRPC: unmodelled method {method}");
    } else {
        tracing::info!(%peer, body_len, "catch-all gRPC: {method} → status {status}");
    }
    Ok(grpc_response(&answer))
}

pub async fn run(
    listener: TcpListener,
    server: CatchAll,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    crate::servers::accept_loop(
        "sc-catchall",
        listener,
        shutdown.clone(),
        move |socket, peer| {
            let server = server.clone();
            let shutdown = shutdown.clone();
            async move {
                let service =
                    hyper::service::service_fn(move |req| handle(server.clone(), peer, req));
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(%peer, "catch-all connection: {e}");
                    },
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
        },
    )
    .await
}

/// The catch-all server's entry in [`crate::servers::registry::REGISTRY`].
pub struct CatchallServer;

impl EmulatedServer for CatchallServer {
    type Settings = NoSettings;

    fn start(&self, s: Start<NoSettings>) -> Result<Serve, String> {
        let server = CatchAll::new(s.ctx.sc.catchall.clone(), s.ctx.schemas);
        Ok(Box::pin(run(s.listener, server, s.ctx.shutdown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_answers_json_status_or_unimplemented() {
        let pool = super::super::descriptor_pool().unwrap();
        let server = CatchAll::new(
            vec![
                CatchallRule {
                    method: "/sc.external.services.login.v1.LoginService/CancelLogin".into(),
                    response_json: Some(r#"{"cancelled": true}"#.into()),
                    ..Default::default()
                },
                CatchallRule {
                    method: "/x.Y/Z".into(),
                    status: Some(5),
                    message: Some("nope".into()),
                    ..Default::default()
                },
            ],
            Some(pool),
        );
        assert_eq!(
            server.answer("/sc.external.services.login.v1.LoginService/CancelLogin"),
            Answer::Message(vec![8, 1])
        );
        assert_eq!(server.answer("/x.Y/Z"), Answer::Status(5, "nope".into()));
        assert!(matches!(server.answer("/a.B/C"), Answer::Status(12, _)));
    }
}
