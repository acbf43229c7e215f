//! The front layer: accepts clients, answers `CONNECT`, terminates TLS and sniffs the
//! tunnel, then hands HTTP to hudsucker and anything else to the relay.

use super::prefixed::Prefixed;
use super::relay::{relay_plain, relay_recorded};
use super::*;

/// What the first bytes of a stream are.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Tls,
    Http,
    Other,
}

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT", b"PRI",
];

/// `None` while the bytes could still become either.
fn sniff(first: &[u8]) -> Option<Sniffed> {
    let &b0 = first.first()?;
    if b0 == 0x16 {
        return Some(Sniffed::Tls);
    }
    match first.iter().position(|&b| b == b' ') {
        Some(n) if METHODS.contains(&&first[..n]) => Some(Sniffed::Http),
        Some(_) => Some(Sniffed::Other),
        None if first.len() < 8 && METHODS.iter().any(|m| m.starts_with(first)) => None,
        None => Some(Sniffed::Other),
    }
}

/// Reads until the first bytes are classified, the stream ends, or the client stays
/// silent for `wait` (then the server is expected to speak first).
async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut first: Vec<u8>,
    wait: Duration,
) -> io::Result<(Vec<u8>, Sniffed)> {
    loop {
        if let Some(kind) = sniff(&first) {
            return Ok((first, kind));
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return Ok((first, Sniffed::Other)),
            Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Serves one client connection; returns why it ended.
pub(super) async fn front(shared: &Arc<Shared>, rec: &ConnRecorder, mut tcp: TcpStream) -> String {
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(n) = find_head_end(&buf) {
            break n;
        }
        if buf.len() > MAX_HEAD {
            return "client: request head over 64 KiB".into();
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => return "closed by client before a request".into(),
            Ok(0) => return "closed by client in the middle of a request head".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return format!("client: {e}"),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let target = match request.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) if request.method == Some("CONNECT") => {
            request.path.map(str::to_string)
        }
        Ok(httparse::Status::Complete(_)) => None,
        _ => {
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return "client: not an HTTP proxy request".into();
        }
    };
    let Some(authority) = target else {
        // A plain proxy request (`GET http://host/ ...`): hudsucker handles it as is.
        rec.set_protocol("http");
        return hand_over(shared, rec, Prefixed::new(buf, tcp), "http", None).await;
    };
    // An address target is the server even if it is never reached; names are resolved
    // only when connecting (the upstream address is recorded then).
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        rec.set_server(addr);
    }
    if let Err(e) = tcp
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
    {
        return format!("client: {e}");
    }
    let leftover = buf.split_off(head_len);
    let wait = shared.options.first_bytes_timeout;
    let (first, kind) = match read_first(&mut tcp, leftover, wait).await {
        Ok(pair) => pair,
        Err(e) => return format!("client: {e}"),
    };
    let client = Prefixed::new(first, tcp);
    match kind {
        Sniffed::Http => {
            rec.set_protocol("http");
            hand_over(shared, rec, client, "http", Some(authority)).await
        }
        Sniffed::Other => relay_plain(rec, client, &authority).await,
        Sniffed::Tls => terminate_tls(shared, rec, client, authority).await,
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|n| n + 4)
}

fn host_of(authority: &str) -> &str {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

pub(super) fn with_default_port(authority: &str, port: u16) -> String {
    match authority.rsplit_once(':') {
        Some((_, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']') => {
            authority.to_string()
        }
        _ => format!("{authority}:{port}"),
    }
}

async fn terminate_tls(
    shared: &Arc<Shared>,
    rec: &ConnRecorder,
    client: Prefixed<TcpStream>,
    authority: String,
) -> String {
    let start = match LazyConfigAcceptor::new(Acceptor::default(), client).await {
        Ok(start) => start,
        Err(e) => return format!("client TLS: {e}"),
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let offered: Vec<Vec<u8>> = hello
        .alpn()
        .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    // HTTP clients get h2 or HTTP/1.1 (hudsucker speaks both); anything else gets its own
    // first choice, passed through to the server.
    let http: [Vec<u8>; 2] = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let alpn: Vec<Vec<u8>> = if offered.is_empty() || offered.iter().any(|p| http.contains(p)) {
        http.to_vec()
    } else {
        offered[..1].to_vec()
    };
    let host = host_of(&authority).to_string();
    let config = shared.ca.server_config_for(&alpn, Some(&host));
    let mut tls = match start.into_stream(config).await {
        Ok(tls) => tls,
        Err(e) => return format!("client TLS: {e}"),
    };
    let (_, conn) = tls.get_ref();
    let negotiated = conn.alpn_protocol().map(<[u8]>::to_vec);
    rec.set_tls(TlsInfo {
        sni: sni.clone(),
        alpn: negotiated
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        version: conn.protocol_version().map(version_name),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
    });
    let wait = shared.options.first_bytes_timeout;
    let (first, kind) = match read_first(&mut tls, Vec::new(), wait).await {
        Ok(pair) => pair,
        Err(e) => return format!("client: {e}"),
    };
    let client = Prefixed::new(first, tls);
    if kind == Sniffed::Http {
        rec.set_protocol("http");
        return hand_over(shared, rec, client, "https", Some(authority)).await;
    }
    // Not HTTP inside the TLS: connect with TLS upstream ourselves and relay, offering the
    // protocol the client chose.
    let target = with_default_port(&authority, 443);
    let upstream = match TcpStream::connect(&target).await {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream: connect to {target}: {e}"),
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(addr) = upstream.peer_addr() {
        rec.set_server(addr);
    }
    let mut config = (*shared.upstream_tls).clone();
    config.alpn_protocols = negotiated.into_iter().collect();
    let name = sni.unwrap_or(host);
    let server_name = match ServerName::try_from(name.clone()) {
        Ok(name) => name,
        Err(e) => return format!("upstream: bad server name {name:?}: {e}"),
    };
    let upstream = match TlsConnector::from(Arc::new(config))
        .connect(server_name, upstream)
        .await
    {
        Ok(upstream) => upstream,
        Err(e) => return format!("upstream TLS to {target}: {e}"),
    };
    relay_recorded(rec, client, upstream).await
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Passes a client stream, already past `CONNECT` and TLS, to hudsucker over loopback.
async fn hand_over<S>(
    shared: &Arc<Shared>,
    rec: &ConnRecorder,
    mut client: S,
    scheme: &'static str,
    authority: Option<String>,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inner = match TcpStream::connect(shared.internal).await {
        Ok(inner) => inner,
        Err(e) => return format!("proxy: internal connection: {e}"),
    };
    let _ = inner.set_nodelay(true);
    let local = match inner.local_addr() {
        Ok(local) => local,
        Err(e) => return format!("proxy: internal connection: {e}"),
    };
    // Registered before any byte is passed on, so hudsucker's handlers always find it.
    shared.links.lock().insert(
        local,
        Link {
            rec: rec.clone(),
            scheme,
            authority,
            server_known: Arc::new(AtomicBool::new(false)),
        },
    );
    let result = tokio::io::copy_bidirectional(&mut client, &mut inner).await;
    shared.links.lock().remove(&local);
    match result {
        Ok(_) => "closed".into(),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "closed".into(),
        Err(e) => format!("client: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x16\x03\x01"), Some(Sniffed::Tls));
        assert_eq!(sniff(b"GET / HTTP/1.1"), Some(Sniffed::Http));
        assert_eq!(sniff(b"PRI * HTTP/2.0"), Some(Sniffed::Http));
        assert_eq!(sniff(b"PO"), None);
        assert_eq!(sniff(b"HELLO world"), Some(Sniffed::Other));
        assert_eq!(
            sniff(b"\x00\x01\x02\x03\x04\x05\x06\x07"),
            Some(Sniffed::Other)
        );
    }

    #[test]
    fn authority_parts() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(with_default_port("example.com", 443), "example.com:443");
        assert_eq!(with_default_port("example.com:80", 443), "example.com:80");
    }
}
