//! HAR 1.2 export: the HTTP/1 exchanges of a capture as a browser's network log, for tools
//! that read HAR (browser devtools, Fiddler, mitmproxy). It lives in `dissect` because it
//! needs the HTTP dissector's parsing; the capture formats proper know nothing of HTTP.
//! Files are written through [`super::export::save`], like every other format.

use std::collections::VecDeque;
use std::io::{self, Write};

use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::capture::{Connection, ConnectionId, Direction, StoreData, Timestamp};

use super::stream::{Decoded, decode_connection};
use super::tree::{Node, Value};
use super::{Context, http1::Http1};

/// Writes the HTTP/1 exchanges of the connections `keep` selects; returns how many entries
/// were written. Connections that are not HTTP/1 give none. A request without a response
/// (the capture ended first) is written with status 0, as browsers do.
pub fn export(
    data: &StoreData,
    out: impl Write,
    keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<usize> {
    let ctx = Context::default();
    let mut entries = Vec::new();
    for conn in data.connections() {
        if !keep(conn.id) {
            continue;
        }
        entries.extend(connection_entries(data, conn, &ctx));
    }
    entries.sort_by_key(|e| e.0);
    let count = entries.len();
    let har = json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "gamewire", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        }
    });
    let mut out = io::BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, &har).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(count)
}

fn connection_entries(
    data: &StoreData,
    conn: &Connection,
    ctx: &Context,
) -> Vec<(Timestamp, Json)> {
    let decoded = decode_connection(&Http1, ctx, data.packets_of(conn.id));
    let mut requests: VecDeque<(Timestamp, &Decoded)> = VecDeque::new();
    let mut entries = Vec::new();
    let time_of = |d: &Decoded| {
        data.packet(d.packet)
            .map(|p| p.timestamp)
            .unwrap_or(conn.opened)
    };
    for d in &decoded {
        match d.direction {
            Direction::ClientToServer if d.message.tree.child("request line").is_some() => {
                requests.push_back((time_of(d), d));
            }
            Direction::ServerToClient if d.message.tree.child("status line").is_some() => {
                // A response without a request (capture started mid-stream) has nothing to
                // pair with and is left out.
                if let Some((at, request)) = requests.pop_front() {
                    entries.push((at, entry(conn, at, request, Some((time_of(d), d)))));
                }
            }
            _ => {}
        }
    }
    for (at, request) in requests {
        entries.push((at, entry(conn, at, request, None)));
    }
    entries
}

fn entry(
    conn: &Connection,
    at: Timestamp,
    request: &Decoded,
    response: Option<(Timestamp, &Decoded)>,
) -> Json {
    let tree = &request.message.tree;
    let line = tree.child("request line");
    let text = |node: Option<&Node>, name: &str| {
        node.and_then(|n| n.child(name))
            .map(|n| plain(&n.value))
            .unwrap_or_default()
    };
    let method = text(line, "method");
    let target = text(line, "target");
    let version = text(line, "version");
    let headers = header_pairs(tree);
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        target.clone()
    } else {
        let host = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or_else(|| conn.server.to_string(), |(_, v)| v.clone());
        let scheme = if conn.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}{target}")
    };
    let query: Vec<Json> = target
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    json!({ "name": n, "value": v })
                })
                .collect()
        })
        .unwrap_or_default();
    let body = body_of(request);
    let mut req = json!({
        "method": method,
        "url": url,
        "httpVersion": version,
        "cookies": [],
        "headers": header_list(&headers),
        "queryString": query,
        "headersSize": -1,
        "bodySize": body.len(),
    });
    if !body.is_empty() {
        req["postData"] = json!({
            "mimeType": header(&headers, "content-type"),
            "text": String::from_utf8_lossy(&body),
        });
    }
    let (res, wait) = match response {
        Some((when, d)) => {
            let tree = &d.message.tree;
            let line = tree.child("status line");
            let status = line
                .and_then(|l| l.child("code"))
                .and_then(|c| c.value.as_u64())
                .unwrap_or(0);
            let headers = header_pairs(tree);
            let body = body_of(d);
            let mut content = json!({
                "size": body.len(),
                "mimeType": header(&headers, "content-type"),
            });
            match std::str::from_utf8(&body) {
                Ok(text) => content["text"] = json!(text),
                Err(_) => {
                    content["text"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(&body));
                    content["encoding"] = json!("base64");
                }
            }
            let res = json!({
                "status": status,
                "statusText": text(line, "reason"),
                "httpVersion": text(line, "version"),
                "cookies": [],
                "headers": header_list(&headers),
                "content": content,
                "redirectURL": header(&headers, "location"),
                "headersSize": -1,
                "bodySize": body.len(),
            });
            (res, millis(when.0.saturating_sub(at.0)))
        }
        None => (
            json!({
                "status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
                "content": { "size": 0, "mimeType": "" }, "redirectURL": "",
                "headersSize": -1, "bodySize": -1,
            }),
            -1.0,
        ),
    };
    json!({
        "startedDateTime": at.to_rfc3339(),
        "time": wait.max(0.0),
        "request": req,
        "response": res,
        "cache": {},
        "timings": { "send": 0, "wait": wait, "receive": 0 },
        "serverIPAddress": conn.server.ip().to_string(),
        "connection": conn.id.0.to_string(),
    })
}

/// A field's value as text, without the quotes the tree pane puts around strings.
fn plain(value: &Value) -> String {
    match value {
        Value::Text(t) => t.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.render(),
    }
}

fn millis(nanos: i64) -> f64 {
    nanos as f64 / 1_000_000.0
}

fn header_pairs(tree: &Node) -> Vec<(String, String)> {
    tree.child("headers")
        .map(|h| {
            h.children
                .iter()
                .map(|n| (n.name.to_string(), plain(&n.value)))
                .collect()
        })
        .unwrap_or_default()
}

fn header(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn header_list(headers: &[(String, String)]) -> Vec<Json> {
    headers
        .iter()
        .map(|(n, v)| json!({ "name": n, "value": v }))
        .collect()
}

/// The body as the application sees it: de-chunked where the dissector did that.
fn body_of(d: &Decoded) -> Vec<u8> {
    if let Some(b) = d.message.derived.iter().find(|b| b.name == "body") {
        return b.bytes.clone();
    }
    match d.message.tree.child("body").map(|b| &b.value) {
        Some(Value::Bytes(b)) => b.to_vec(),
        Some(Value::Text(t)) => t.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}
