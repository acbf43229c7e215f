//! hudsucker's HTTP and WebSocket handlers: they record each exchange on its front-layer
//! connection.

use super::recorded::{Head, tee};
use super::*;

/// hudsucker's handlers: they record, and fill in what the front layer consumed.
#[derive(Clone)]
pub(super) struct Handler {
    pub(super) shared: Arc<Shared>,
    /// The request this instance handles (hudsucker gives each exchange its own clone).
    pub(super) current: Option<Current>,
}

#[derive(Clone)]
pub(super) struct Current {
    link: Link,
    method: Method,
    uri: Uri,
}

impl HttpHandler for Handler {
    async fn handle_request(&mut self, ctx: &HttpContext, req: Request<Body>) -> RequestOrResponse {
        let Some(link) = self.shared.link(&ctx.client_addr) else {
            return req.into();
        };
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() {
            let authority = link.authority.clone().or_else(|| {
                parts
                    .headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
            if let Some(authority) = authority {
                let path = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                if let Ok(uri) = format!("{}://{authority}{path}", link.scheme).parse::<Uri>() {
                    parts.uri = uri;
                }
            }
        }
        self.current = Some(Current {
            link: link.clone(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        });
        let head = Head::Request {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        };
        let rec = link.rec.clone();
        if is_websocket_upgrade(&parts.headers) {
            rec.packet(Direction::ClientToServer, &head.serialize(&[], None));
            // hudsucker answers the upgrade itself before it connects upstream; record what
            // the client got.
            rec.packet(
                Direction::ServerToClient,
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
            );
            return Request::from_parts(parts, body).into();
        }
        let body = tee(body, head, rec, Direction::ClientToServer);
        Request::from_parts(parts, body).into()
    }

    async fn handle_response(&mut self, _ctx: &HttpContext, res: Response<Body>) -> Response<Body> {
        let Some(current) = &self.current else {
            return res;
        };
        if !current.link.server_known.swap(true, Ordering::Relaxed)
            && let Some(info) = res
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
        {
            current.link.rec.set_server(info.remote_addr());
        }
        let (parts, body) = res.into_parts();
        let head = Head::Response {
            status: parts.status,
            headers: parts.headers.clone(),
            head_request: current.method == Method::HEAD,
        };
        let body = tee(
            body,
            head,
            current.link.rec.clone(),
            Direction::ServerToClient,
        );
        Response::from_parts(parts, body)
    }

    async fn handle_error(
        &mut self,
        _ctx: &HttpContext,
        err: hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        let cause = error_chain(&err);
        let target = self
            .current
            .as_ref()
            .map_or_else(|| "the request".to_string(), |c| c.uri.to_string());
        let text = format!("gamewire proxy: could not forward {target}: {cause}\n");
        tracing::info!("{}", text.trim_end());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            hudsucker::hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(current) = &self.current {
            let head = Head::Response {
                status: StatusCode::BAD_GATEWAY,
                headers: headers.clone(),
                head_request: false,
            };
            current.link.rec.packet_with(
                Direction::ServerToClient,
                &head.serialize(text.as_bytes(), None),
                PacketFlags::INJECTED,
                None,
            );
            current.link.rec.close(format!("upstream: {cause}"));
        }
        let mut res = Response::new(Body::from(text));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        *res.headers_mut() = headers;
        res
    }
}

impl WebSocketHandler for Handler {
    async fn handle_message(
        &mut self,
        ctx: &WebSocketContext,
        message: Message,
    ) -> Option<Message> {
        let (addr, dir) = match ctx {
            WebSocketContext::ClientToServer { src, .. } => (src, Direction::ClientToServer),
            WebSocketContext::ServerToClient { dst, .. } => (dst, Direction::ServerToClient),
        };
        if let Some(link) = self.shared.link(addr) {
            link.rec.packet(dir, &websocket_frame(&message));
        }
        Some(message)
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(hudsucker::hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The message as an unmasked WebSocket frame (what a server would send), so its type
/// survives in the capture.
fn websocket_frame(message: &Message) -> Vec<u8> {
    let (opcode, payload): (u8, Vec<u8>) = match message {
        Message::Text(text) => (0x1, text.as_bytes().to_vec()),
        Message::Binary(data) => (0x2, data.to_vec()),
        Message::Ping(data) => (0x9, data.to_vec()),
        Message::Pong(data) => (0xA, data.to_vec()),
        Message::Close(frame) => {
            let mut payload = Vec::new();
            if let Some(frame) = frame {
                payload.extend_from_slice(&u16::from(frame.code).to_be_bytes());
                payload.extend_from_slice(frame.reason.as_bytes());
            }
            (0x8, payload)
        }
        Message::Frame(frame) => return frame.payload().to_vec(),
    };
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&payload);
    out
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frames() {
        assert_eq!(websocket_frame(&Message::text("hi")), b"\x81\x02hi");
        let big = Message::binary(vec![7u8; 300]);
        let frame = websocket_frame(&big);
        assert_eq!(&frame[..4], &[0x82, 126, 1, 44]);
        assert_eq!(frame.len(), 304);
    }
}
