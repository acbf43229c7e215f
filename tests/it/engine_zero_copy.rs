//! Plain TCP taps relay by splicing (on Linux) and switch to copying while breakpoints watch
//! the route: either way the far side gets every byte in order, and the capture holds
//! exactly what was forwarded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use gamewire::capture::{ConnectionId, Direction};
use gamewire::proxy::intercept::Decision;

use crate::engine_taps::{
    engine_with, eventually, fesl_ping, joined, nu_login, nu_login_rule, received_until, recorded,
    route_addr, sink_server, tap_to,
};

/// Bytes that differ at every position, so a lost, repeated or reordered chunk shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn a_plain_tap_relays_megabytes_each_way_with_half_close_and_records_exactly_that() {
    const UP: usize = 8 << 20;
    const DOWN: usize = 6 << 20;
    // Reads until the client half-closes, then answers with its own stream and closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        tx.send(got).unwrap();
        s.write_all(&pattern(DOWN, 2)).unwrap();
    });
    let (engine, _dir) = engine_with(vec![tap_to("bulk", server, None)], vec![]);
    let mut client = TcpStream::connect(route_addr(&engine, "bulk")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let sent = pattern(UP, 1);
    let mut writer = client.try_clone().unwrap();
    let up = sent.clone();
    let writing = thread::spawn(move || {
        writer.write_all(&up).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    writing.join().unwrap();

    let at_server = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        at_server == sent,
        "the server got other bytes than were sent"
    );
    assert!(answer == pattern(DOWN, 2), "the client got other bytes");
    eventually("the connection to close", || {
        engine
            .store()
            .read()
            .connection(ConnectionId(0))
            .is_some_and(|c| c.closed.is_some())
    });
    let packets = recorded(&engine, ConnectionId(0));
    let up_packets = packets
        .iter()
        .filter(|(d, _, _)| *d == Direction::ClientToServer)
        .count();
    assert!(up_packets > 1, "one packet per read, not one per stream");
    assert!(joined(&packets, Direction::ClientToServer) == sent);
    assert!(joined(&packets, Direction::ServerToClient) == answer);
    let data = engine.store().read();
    let conn = data.connection(ConnectionId(0)).unwrap();
    assert_eq!(conn.close_reason.as_deref(), Some("closed by client"));
    assert!(data.keeps_bytes_in_temp_file());
    drop(data);
    engine.shutdown().unwrap();
}

#[test]
fn breakpoints_set_mid_connection_hold_messages_and_clearing_them_lets_bytes_flow_again() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(vec![tap_to("fesl", server, Some("fesl"))], vec![]);
    let mut client = TcpStream::connect(route_addr(&engine, "fesl")).unwrap();
    let first = fesl_ping(1);
    client.write_all(&first).unwrap();
    assert_eq!(received_until(&rx, first.len()), first);

    engine.set_breakpoints(vec![nu_login_rule()]);
    let login = nu_login("a@b.c", 2);
    client.write_all(&login).unwrap();
    eventually("the login to be held", || !engine.held().is_empty());
    let held = engine.held().remove(0);
    assert_eq!(held.bytes, login);
    engine.decide(held.id, Decision::Forward).unwrap();
    assert_eq!(received_until(&rx, login.len()), login);

    engine.set_breakpoints(vec![]);
    let tail = [fesl_ping(3), fesl_ping(4)].concat();
    client.write_all(&tail).unwrap();
    assert_eq!(received_until(&rx, tail.len()), tail);

    let expected = [first, login, tail].concat();
    eventually("every read to be recorded", || {
        joined(
            &recorded(&engine, ConnectionId(0)),
            Direction::ClientToServer,
        )
        .len()
            == expected.len()
    });
    assert_eq!(
        joined(
            &recorded(&engine, ConnectionId(0)),
            Direction::ClientToServer
        ),
        expected
    );
    engine.shutdown().unwrap();
}
