//! Recording a message as it passes: its head in HTTP/1.1 wire form, and the body teed into
//! the capture when it ends.

use super::*;

/// A message head as it will be written into the capture.
pub(super) enum Head {
    Request {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
    },
    Response {
        status: StatusCode,
        headers: HeaderMap,
        head_request: bool,
    },
}

impl Head {
    /// HTTP/1.1 wire form with `body` framed so the `http` dissector finds its end.
    pub(super) fn serialize(&self, body: &[u8], trailers: Option<&HeaderMap>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + body.len());
        let headers = match self {
            Head::Request {
                method,
                uri,
                headers,
            } => {
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                let target = if *method == Method::CONNECT {
                    uri.authority().map_or(target, |a| a.as_str())
                } else {
                    target
                };
                out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
                if !headers.contains_key(HOST)
                    && let Some(authority) = uri.authority()
                {
                    out.extend_from_slice(format!("host: {authority}\r\n").as_bytes());
                }
                headers
            }
            Head::Response {
                status, headers, ..
            } => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 {} {}\r\n",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .as_bytes(),
                );
                headers
            }
        };
        let keep_length = matches!(
            self,
            Head::Response {
                head_request: true,
                ..
            }
        );
        let was_chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let chunked = was_chunked || trailers.is_some_and(|t| !t.is_empty());
        for (name, value) in headers {
            if !keep_length && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
                continue;
            }
            write_header(&mut out, name.as_str(), value.as_bytes());
        }
        let bodyless_status = match self {
            Head::Response { status, .. } => {
                status.is_informational()
                    || *status == StatusCode::NO_CONTENT
                    || *status == StatusCode::NOT_MODIFIED
            }
            Head::Request { .. } => false,
        };
        if keep_length || bodyless_status {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            return out;
        }
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            if !body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (name, value) in trailers.into_iter().flatten() {
                write_header(&mut out, name.as_str(), value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            return out;
        }
        let is_response = matches!(self, Head::Response { .. });
        if !body.is_empty() || is_response {
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Passes `body` on unchanged and records head + body as one packet when it ends (or is
/// dropped early, then with what arrived).
pub(super) fn tee(body: Body, head: Head, rec: ConnRecorder, dir: Direction) -> Body {
    if body.is_end_stream() {
        rec.packet(dir, &head.serialize(&[], None));
        return body;
    }
    Body::from(
        TeeBody {
            inner: body,
            recorded: Vec::new(),
            skipped: 0,
            trailers: None,
            pending: Some((head, rec, dir)),
        }
        .boxed(),
    )
}

struct TeeBody {
    inner: Body,
    recorded: Vec<u8>,
    skipped: u64,
    trailers: Option<HeaderMap>,
    pending: Option<(Head, ConnRecorder, Direction)>,
}

impl TeeBody {
    fn finish(&mut self) {
        if let Some((head, rec, dir)) = self.pending.take() {
            if self.skipped > 0 {
                tracing::warn!(
                    connection = rec.id().0,
                    skipped = self.skipped,
                    "body larger than the capture keeps; the end is not recorded"
                );
            }
            rec.packet(dir, &head.serialize(&self.recorded, self.trailers.as_ref()));
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_RECORDED_BODY.saturating_sub(this.recorded.len());
                    let keep = data.len().min(room);
                    this.recorded.extend_from_slice(&data[..keep]);
                    this.skipped += (data.len() - keep) as u64;
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.trailers = Some(trailers.clone());
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Some(Err(_)) | None => this.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_form_is_framed() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
        let head = Head::Response {
            status: StatusCode::OK,
            headers,
            head_request: false,
        };
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let bytes = head.serialize(b"abc", Some(&trailers));
        assert_eq!(
            bytes,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n"
        );
        let head = Head::Request {
            method: Method::POST,
            uri: "https://h.test:8443/p?q=1".parse().unwrap(),
            headers: HeaderMap::new(),
        };
        assert_eq!(
            head.serialize(b"xy", None),
            b"POST /p?q=1 HTTP/1.1\r\nhost: h.test:8443\r\ncontent-length: 2\r\n\r\nxy"
        );
    }
}
