//! The engine's TCP taps over real sockets: relaying and recording, servers that speak first,
//! half-close, breakpoints that edit and drop, injection, and a port already in use.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use gamewire::capture::{ConnectionId, Direction, PacketFlags};
use gamewire::dissect::fesl::{self, Tag};
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, RouteState, StartOptions};
use gamewire::proxy::intercept::{Decision, Rule};

/// An engine running only the given taps, with its data in a temporary directory.
pub fn engine_with(taps: Vec<TapConfig>, rules: Vec<Rule>) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps,
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    config.breakpoints.rules = rules;
    let engine = Engine::start(config, StartOptions::default()).unwrap();
    (engine, dir)
}

pub fn tap_to(name: &str, upstream: SocketAddr, dissector: Option<&str>) -> TapConfig {
    TapConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        dissector: dissector.map(str::to_string),
        ..TapConfig::default()
    }
}

pub fn route_addr(engine: &Engine, name: &str) -> SocketAddr {
    match engine
        .routes()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
        .state
    {
        RouteState::Running(addr) => addr,
        other => panic!("route {name} is not running: {other:?}"),
    }
}

/// Waits until `cond` holds, for at most 5 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A server that greets first, then echoes upper-cased, and reports what it received.
fn greeting_server() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                s.write_all(b"WELCOME\n").unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = tx.send(buf[..n].to_vec());
                            let _ = s.write_all(&buf[..n].to_ascii_uppercase());
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

pub fn recorded(engine: &Engine, conn: ConnectionId) -> Vec<(Direction, Vec<u8>, PacketFlags)> {
    let data = engine.store().read();
    data.packets_of(conn)
        .map(|p| (p.direction, p.data.to_vec(), p.flags))
        .collect()
}

pub fn joined(packets: &[(Direction, Vec<u8>, PacketFlags)], dir: Direction) -> Vec<u8> {
    packets
        .iter()
        .filter(|(d, _, _)| *d == dir)
        .flat_map(|(_, b, _)| b.clone())
        .collect()
}

#[test]
fn a_tcp_tap_relays_a_server_that_speaks_first_and_records_both_directions() {
    let (server, _rx) = greeting_server();
    let (engine, _dir) = engine_with(vec![tap_to("greet", server, None)], vec![]);
    let mut client = TcpStream::connect(route_addr(&engine, "greet")).unwrap();
    assert_eq!(read_exact_timeout(&mut client, 8), b"WELCOME\n");
    client.write_all(b"ping").unwrap();
    assert_eq!(read_exact_timeout(&mut client, 4), b"PING");
    // Half-close: the client stops sending, the server still gets to answer and close.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();

    eventually("the connection to close", || {
        engine
            .store()
            .read()
            .connection(ConnectionId(0))
            .is_some_and(|c| c.closed.is_some())
    });
    let data = engine.store().read();
    // Live bytes go to a temporary file (cheaper to fill than fresh memory); they read back
    // the same.
    assert!(data.keeps_bytes_in_temp_file());
    let conn = data.connection(ConnectionId(0)).unwrap().clone();
    drop(data);
    assert_eq!(conn.route.as_deref(), Some("greet"));
    assert_eq!(conn.server, server);
    assert_eq!(conn.close_reason.as_deref(), Some("closed by client"));
    let packets = recorded(&engine, ConnectionId(0));
    assert_eq!(
        packets[0].0,
        Direction::ServerToClient,
        "the server spoke first"
    );
    assert_eq!(
        joined(&packets, Direction::ServerToClient),
        b"WELCOME\nPING"
    );
    assert_eq!(joined(&packets, Direction::ClientToServer), b"ping");
    engine.shutdown().unwrap();
}

#[test]
fn a_refused_upstream_is_recorded_on_the_connection() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (engine, _dir) = engine_with(vec![tap_to("dead", dead, None)], vec![]);
    let mut client = TcpStream::connect(route_addr(&engine, "dead")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        client.read(&mut buf).unwrap_or(0),
        0,
        "the tap closes the client"
    );
    eventually("the failure to be recorded", || {
        engine
            .store()
            .read()
            .connection(ConnectionId(0))
            .is_some_and(|c| c.closed.is_some())
    });
    let reason = engine
        .store()
        .read()
        .connection(ConnectionId(0))
        .unwrap()
        .close_reason
        .clone();
    let reason = reason.unwrap();
    assert!(
        reason.contains("connect failed") && reason.contains(&dead.to_string()),
        "{reason}"
    );
}

#[test]
fn a_port_in_use_fails_only_its_route_with_a_message_naming_it() {
    let (server, _rx) = greeting_server();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut blocked = tap_to("blocked", server, None);
    blocked.listen = busy.local_addr().unwrap();
    let (engine, _dir) = engine_with(vec![blocked, tap_to("fine", server, None)], vec![]);
    let routes = engine.routes();
    let failed = routes.iter().find(|r| r.name == "blocked").unwrap();
    match &failed.state {
        RouteState::Failed(msg) => {
            assert!(msg.contains("blocked"), "{msg}");
            assert!(
                msg.contains(&busy.local_addr().unwrap().to_string()),
                "{msg}"
            );
            assert!(msg.contains("in use"), "{msg}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let mut client = TcpStream::connect(route_addr(&engine, "fine")).unwrap();
    assert_eq!(read_exact_timeout(&mut client, 8), b"WELCOME\n");
}

pub fn nu_login(email: &str, number: u32) -> Vec<u8> {
    fesl::write_packet(
        b"acct",
        Tag::SingleClient,
        number,
        &[("TXN", "NuLogin"), ("nuid", email), ("password", "secret")],
        true,
    )
}

pub fn fesl_ping(number: u32) -> Vec<u8> {
    fesl::write_packet(b"fsys", Tag::SingleClient, number, &[("TXN", "Ping")], true)
}

/// A server that records every byte it receives.
pub fn sink_server() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(buf[..n].to_vec());
                }
            });
        }
    });
    (addr, rx)
}

pub fn received_until(rx: &mpsc::Receiver<Vec<u8>>, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => got.extend(chunk),
            Err(_) => break,
        }
    }
    got
}

pub fn nu_login_rule() -> Rule {
    Rule {
        route: Some("fesl".into()),
        direction: Some(Direction::ClientToServer),
        field: Some("TXN".into()),
        equals: Some("NuLogin".into()),
        ..Rule::default()
    }
}

#[test]
fn a_breakpoint_edits_a_held_fesl_login_as_a_tree_with_lengths_fixed() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(
        vec![tap_to("fesl", server, Some("fesl"))],
        vec![nu_login_rule()],
    );
    let mut client = TcpStream::connect(route_addr(&engine, "fesl")).unwrap();
    let ping = fesl_ping(1);
    let login = nu_login("a@b.c", 2);
    client.write_all(&ping).unwrap();
    client.write_all(&login).unwrap();
    eventually("the login to be held", || !engine.held().is_empty());
    let held = engine.held().remove(0);
    assert_eq!(held.label, "acct NuLogin");
    assert_eq!(held.bytes, login);
    // The unmatched ping went through at once; the login waits.
    assert_eq!(received_until(&rx, ping.len()), ping);

    let mut decoded = gamewire::dissect::registry::Registry::standard()
        .get("fesl")
        .unwrap()
        .decoder(Direction::ClientToServer, &Default::default())
        .decode(&held.bytes);
    let nuid = decoded
        .tree
        .find_mut(&["payload", "nuid"])
        .expect("nuid field");
    nuid.value = gamewire::dissect::Value::Text("someone.else@example.com".into());
    engine.forward_edited_tree(held.id, &decoded.tree).unwrap();

    let expected = nu_login("someone.else@example.com", 2);
    assert_eq!(
        received_until(&rx, expected.len()),
        expected,
        "the server got the edit"
    );
    eventually("the edit to be recorded", || {
        recorded(&engine, ConnectionId(0))
            .iter()
            .any(|(_, _, f)| f.contains(PacketFlags::EDITED))
    });
    let data = engine.store().read();
    let edited = data
        .packets_of(ConnectionId(0))
        .find(|p| p.flags.contains(PacketFlags::EDITED))
        .unwrap();
    assert_eq!(edited.data, expected.as_slice());
    assert_eq!(edited.original, Some(login.as_slice()));
}

#[test]
fn a_breakpoint_drops_a_message_and_the_next_one_still_flows() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(
        vec![tap_to("fesl", server, Some("fesl"))],
        vec![nu_login_rule()],
    );
    let mut client = TcpStream::connect(route_addr(&engine, "fesl")).unwrap();
    let login = nu_login("a@b.c", 1);
    client.write_all(&login).unwrap();
    eventually("the login to be held", || !engine.held().is_empty());
    let id = engine.held()[0].id;
    engine.decide(id, Decision::Drop).unwrap();
    let ping = fesl_ping(2);
    client.write_all(&ping).unwrap();
    assert_eq!(
        received_until(&rx, ping.len()),
        ping,
        "only the ping reached the server"
    );
    let packets = recorded(&engine, ConnectionId(0));
    let dropped: Vec<_> = packets
        .iter()
        .filter(|(_, _, f)| f.contains(PacketFlags::DROPPED))
        .collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].1, login);
    assert!(
        engine.decide(id, Decision::Forward).is_err(),
        "a decision is final"
    );
}

#[test]
fn an_unanswered_hold_is_forwarded_after_the_timeout() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(
        vec![tap_to("fesl", server, Some("fesl"))],
        vec![nu_login_rule()],
    );
    engine.set_hold_timeout(Duration::from_millis(200));
    let mut client = TcpStream::connect(route_addr(&engine, "fesl")).unwrap();
    let login = nu_login("a@b.c", 1);
    client.write_all(&login).unwrap();
    assert_eq!(received_until(&rx, login.len()), login);
    assert!(engine.held().is_empty());
}

#[test]
fn injected_messages_reach_each_side_and_are_recorded_as_injected() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(vec![tap_to("inj", server, None)], vec![]);
    let mut client = TcpStream::connect(route_addr(&engine, "inj")).unwrap();
    client.write_all(b"hello").unwrap();
    assert_eq!(received_until(&rx, 5), b"hello");
    let conn = ConnectionId(0);
    assert_eq!(engine.live_connections(), vec![conn]);
    engine
        .inject(conn, Direction::ServerToClient, b"to client".to_vec())
        .unwrap();
    assert_eq!(read_exact_timeout(&mut client, 9), b"to client");
    engine
        .inject(conn, Direction::ClientToServer, b"to server".to_vec())
        .unwrap();
    assert_eq!(received_until(&rx, 9), b"to server");
    let injected: Vec<_> = recorded(&engine, conn)
        .into_iter()
        .filter(|(_, _, f)| f.contains(PacketFlags::INJECTED))
        .map(|(d, b, _)| (d, b))
        .collect();
    assert_eq!(
        injected,
        vec![
            (Direction::ServerToClient, b"to client".to_vec()),
            (Direction::ClientToServer, b"to server".to_vec())
        ]
    );
    drop(client);
    eventually("the connection to leave the live list", || {
        engine.live_connections().is_empty()
    });
    assert!(
        engine
            .inject(conn, Direction::ClientToServer, b"late".to_vec())
            .is_err()
    );
}

#[test]
fn a_stopped_route_refuses_new_clients_and_starts_again() {
    let (server, _rx) = greeting_server();
    let (engine, _dir) = engine_with(vec![tap_to("greet", server, None)], vec![]);
    let addr = route_addr(&engine, "greet");
    engine.stop_route("greet").unwrap();
    eventually("the listener to close", || {
        TcpStream::connect(addr).is_err()
    });
    let again = engine.start_route("greet").unwrap();
    let mut client = TcpStream::connect(again).unwrap();
    assert_eq!(read_exact_timeout(&mut client, 8), b"WELCOME\n");
    assert!(engine.start_route("nope").is_err());
}

#[cfg(target_os = "linux")]
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[cfg(target_os = "linux")]
#[test]
fn a_thousand_concurrent_connections_relay_without_errors_or_leaked_descriptors() {
    let (server, _rx) = greeting_server();
    let (engine, _dir) = engine_with(vec![tap_to("many", server, None)], vec![]);
    let addr = route_addr(&engine, "many");
    let before = open_fds();
    let mut clients = Vec::new();
    for i in 0..1000u32 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(format!("c{i:04}").as_bytes()).unwrap();
        clients.push(c);
    }
    // All 1,000 are open at once; each gets its greeting and its own echo.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_exact_timeout(c, 8), b"WELCOME\n");
        assert_eq!(read_exact_timeout(c, 5), format!("C{i:04}").as_bytes());
    }
    drop(clients);
    eventually("every connection to close", || {
        let data = engine.store().read();
        data.connection_count() == 1000 && data.connections().iter().all(|c| c.closed.is_some())
    });
    let reasons: Vec<String> = engine
        .store()
        .read()
        .connections()
        .iter()
        .filter_map(|c| c.close_reason.clone())
        .filter(|r| !r.starts_with("closed by"))
        .collect();
    assert!(
        reasons.is_empty(),
        "errors: {:?}",
        &reasons[..reasons.len().min(5)]
    );
    // The echo server's threads hold their own sockets until they notice; allow for them
    // to wind down, but the tap itself must give every descriptor back.
    eventually("descriptors to be released", || open_fds() <= before + 16);
}

#[test]
fn a_udp_tap_relays_datagrams_per_client_and_records_each_one() {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n].to_ascii_uppercase(), from);
        }
    });
    let mut tap = tap_to("udp", server_addr, None);
    tap.transport = gamewire::engine::config::TapTransport::Udp;
    let (engine, _dir) = engine_with(vec![tap], vec![]);
    let addr = route_addr(&engine, "udp");
    let mut clients = Vec::new();
    for name in ["one", "two"] {
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(name.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr, "replies come from the tap's address");
        assert_eq!(&buf[..n], name.to_ascii_uppercase().as_bytes());
        clients.push(c);
    }
    eventually("both sessions to be recorded", || {
        engine.store().read().packet_count() == 4
    });
    let data = engine.store().read();
    assert_eq!(
        data.connection_count(),
        2,
        "one recorded connection per client address"
    );
    for conn in data.connections() {
        assert_eq!(conn.transport, gamewire::capture::Transport::Udp);
        assert_eq!(conn.server, server_addr);
        let dirs: Vec<Direction> = data.packets_of(conn.id).map(|p| p.direction).collect();
        assert_eq!(dirs, [Direction::ClientToServer, Direction::ServerToClient]);
    }
}

/// A DNS server that answers every A query with `answer`.
fn fake_dns(answer: std::net::Ipv4Addr) -> SocketAddr {
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::A;
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                if q.query_type() == RecordType::A {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(answer)),
                    ));
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    addr
}

#[test]
fn an_upstream_name_is_resolved_by_the_configured_dns_servers() {
    // Only our DNS server knows this name (127.0.0.2, where the server is); the system
    // resolver and the hosts file would fail or, for a redirected game host, loop back.
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"via dns\n");
        }
    });
    let dns = fake_dns(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        taps: vec![TapConfig {
            name: "named".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: format!("theater.gamewire-test.example:{port}"),
            ..TapConfig::default()
        }],
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    config.dns.servers = vec![dns];
    let engine = Engine::start(config, StartOptions::default()).unwrap();
    let mut client = TcpStream::connect(route_addr(&engine, "named")).unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    let reason = engine
        .store()
        .read()
        .connection(ConnectionId(0))
        .unwrap()
        .close_reason
        .clone();
    assert_eq!(got, b"via dns\n", "close reason: {reason:?}");
    let server = engine
        .store()
        .read()
        .connection(ConnectionId(0))
        .unwrap()
        .server;
    assert_eq!(server, SocketAddr::from(([127, 0, 0, 2], port)));
}
