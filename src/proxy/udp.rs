//! UDP taps: one upstream socket per client address, each datagram relayed and recorded as
//! one packet. A client that goes quiet for the idle timeout ends its session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::capture::{Direction, Transport};

use super::record::ConnRecorder;
use super::tap::{TapSettings, TapShared};

/// Large enough for any datagram.
const MAX_DATAGRAM: usize = 65_536;

struct Session {
    upstream: Arc<UdpSocket>,
    conn: ConnRecorder,
    /// When the client last sent; the session is idle only when both sides are.
    last_sent: Arc<Mutex<Instant>>,
}

pub async fn run_udp(
    socket: UdpSocket,
    settings: Arc<TapSettings>,
    shared: TapShared,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let sessions: Arc<Mutex<HashMap<SocketAddr, Session>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP port-unreachable from an earlier send shows up here on some
                    // systems; it is about one peer, not the tap.
                    tracing::debug!(route = %settings.route, "receive: {e}");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let existing = sessions.lock().get(&client).map(|s| {
            *s.last_sent.lock() = Instant::now();
            (s.upstream.clone(), s.conn.clone())
        });
        let (upstream, conn) = match existing {
            Some(pair) => pair,
            None => match open_session(&socket, client, &settings, &shared, &sessions, &shutdown)
                .await
            {
                Some(pair) => pair,
                None => continue,
            },
        };
        conn.packet(Direction::ClientToServer, datagram);
        if let Err(e) = upstream.send(datagram).await {
            tracing::debug!(route = %settings.route, %client, "send upstream: {e}");
        }
    }
    for (_, s) in sessions.lock().drain() {
        s.conn.close("route stopped");
    }
}

async fn open_session(
    socket: &Arc<UdpSocket>,
    client: SocketAddr,
    settings: &Arc<TapSettings>,
    shared: &TapShared,
    sessions: &Arc<Mutex<HashMap<SocketAddr, Session>>>,
    shutdown: &CancellationToken,
) -> Option<(Arc<UdpSocket>, ConnRecorder)> {
    let up = &settings.upstream;
    let conn = shared.recorder.open(
        &settings.route,
        client,
        up.address.unwrap_or(crate::capture::UNKNOWN_ADDR),
        Transport::Udp,
    );
    if let Some(d) = &settings.dissector {
        conn.set_protocol(d.name());
    }
    let target = super::tap::upstream_addr(up, shared).await;
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            conn.close(format!("upstream: {e}"));
            return None;
        }
    };
    conn.set_server(target);
    let bind: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            conn.close(format!("upstream: cannot open a socket: {e}"));
            return None;
        }
    };
    if let Err(e) = upstream.connect(target).await {
        conn.close(format!("upstream {target}: {e}"));
        return None;
    }
    let upstream = Arc::new(upstream);
    let last_sent = Arc::new(Mutex::new(Instant::now()));
    sessions.lock().insert(
        client,
        Session {
            upstream: upstream.clone(),
            conn: conn.clone(),
            last_sent: last_sent.clone(),
        },
    );
    // Replies from the upstream go back to this client until the session goes idle.
    let (socket, sessions, settings, stop) = (
        socket.clone(),
        sessions.clone(),
        settings.clone(),
        shutdown.clone(),
    );
    let (reply_from, reply_conn) = (upstream.clone(), conn.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let idle: Duration = settings.idle_timeout;
        let reason = loop {
            let r = tokio::select! {
                _ = stop.cancelled() => break "route stopped".to_string(),
                r = tokio::time::timeout(idle, reply_from.recv(&mut buf)) => r,
            };
            match r {
                Err(_) if last_sent.lock().elapsed() < idle => continue,
                Err(_) => break format!("idle timeout ({} s without traffic)", idle.as_secs()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    break "upstream unreachable (ICMP port unreachable)".to_string();
                }
                Ok(Err(e)) => break format!("upstream receive failed: {e}"),
                Ok(Ok(n)) => {
                    reply_conn.packet(Direction::ServerToClient, &buf[..n]);
                    let _ = socket.send_to(&buf[..n], client).await;
                }
            }
        };
        sessions.lock().remove(&client);
        reply_conn.close(reason);
    });
    Some((upstream, conn))
}
