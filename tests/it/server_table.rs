//! The server table as the engine uses it: a `[servers.*]` section read from a
//! configuration file, the server started through its table entry on 127.0.0.1, and its
//! timing and bad-message limit taking effect on a real socket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gamewire::clients::ra3::HELLO;
use gamewire::dissect::fesl::{self as fcodec, Tag};
use gamewire::dissect::gp as gcodec;
use gamewire::engine::config::Config;
use gamewire::servers::registry::{self, ServerContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ra3_servers::{Env, cheap_store, fesl_messages, get, read_until_close};

/// FESL and GP started as the engine starts them: the file's section, the table entry.
async fn start(file: &str) -> Env {
    let config = Config::parse(file, Path::new("gamewire.toml")).expect("config");
    let (dir, store) = cheap_store().await;
    let shutdown = CancellationToken::new();
    let mut addrs = Vec::new();
    for section in ["fesl", "gp"] {
        let entry = registry::find(section).unwrap();
        let settings = &config.servers.get(section).unwrap().settings;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let ctx = ServerContext::new(store.clone(), shutdown.clone());
        tokio::spawn(entry.server.launch(settings, ctx, listener).unwrap());
    }
    Env {
        _dir: dir,
        store,
        fesl: addrs[0],
        gp: addrs[1],
        shutdown,
    }
}

/// How long (in tokio time) the server kept a client that wrote `bytes` and then went
/// silent, and what it sent meanwhile, each chunk with its arrival time.
async fn held(addr: SocketAddr, bytes: &[u8]) -> (Duration, Vec<(Duration, Vec<u8>)>) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return (start.elapsed(), got),
            Ok(n) => got.push((start.elapsed(), buf[..n].to_vec())),
        }
    }
}

fn within(d: Duration, secs: u64) -> bool {
    d >= Duration::from_secs(secs) && d < Duration::from_secs(secs + 1)
}

#[tokio::test]
async fn fesl_and_gp_timing_set_in_the_file_take_effect() {
    // Defaults are 30 s, 300 s and 30 s: other values show the file reached the servers.
    let servers = start(
        "[servers.fesl]\nread_timeout_secs = 3\nidle_timeout_secs = 7\nping_interval_secs = 2\n\
         [servers.gp]\nread_timeout_secs = 5\nidle_timeout_secs = 11\n",
    )
    .await;
    // Past the database's start-up, which runs on real time.
    tokio::time::pause();

    let (t, got) = held(servers.fesl, b"").await;
    assert!(within(t, 7) && got.is_empty(), "fesl idle: {t:?}");
    let hello = fcodec::write_packet(b"fsys", Tag::SingleClient, 1, HELLO, true);
    let (t, _) = held(servers.fesl, &hello[..5]).await;
    assert!(within(t, 3), "fesl read timeout: {t:?}");
    let (t, got) = held(servers.fesl, &hello).await;
    assert!(within(t, 7), "fesl idle after a Hello: {t:?}");
    let pings: Vec<Duration> = got
        .iter()
        .filter(|(_, bytes)| {
            fesl_messages(bytes)
                .iter()
                .any(|(_, p)| get(p, "TXN") == Some("Ping"))
        })
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(pings.len(), 3, "pings at 2, 4 and 6 s: {pings:?}");
    assert!(within(pings[0], 2), "{pings:?}");

    let (t, got) = held(servers.gp, b"").await;
    assert!(within(t, 11), "gp idle: {t:?}");
    assert!(got[0].1.starts_with(b"\\lc\\1\\"));
    let (t, _) = held(servers.gp, b"\\login\\\\challenge\\").await;
    assert!(within(t, 5), "gp read timeout: {t:?}");
}

/// Reads until `want` says the bytes so far are enough (or two seconds pass).
async fn read_until(s: &mut TcpStream, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while !want(&got) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_message_limit_set_in_the_file_closes_after_answering_each_in_kind() {
    let servers =
        start("[servers.fesl]\nmax_bad_messages = 2\n[servers.gp]\nmax_bad_messages = 2\n").await;

    // FESL: a packet without TXN is answered with error 99, echoing its number.
    let no_txn = |n| fcodec::write_packet(b"acct", Tag::SingleClient, n, &[("a", "b")], true);
    let errors = |bytes: &[u8]| -> Vec<u32> {
        fesl_messages(bytes)
            .iter()
            .filter(|(_, p)| get(p, "errorCode") == Some("99"))
            .map(|(h, _)| h.number)
            .collect()
    };
    let mut s = TcpStream::connect(servers.fesl).await.unwrap();
    s.write_all(&[no_txn(1), no_txn(2)].concat()).await.unwrap();
    let got = read_until(&mut s, |b| errors(b).len() == 2).await;
    assert_eq!(errors(&got), [1, 2]);
    // Still served after the tolerated two.
    let hello = fcodec::write_packet(b"fsys", Tag::SingleClient, 3, HELLO, true);
    s.write_all(&hello).await.unwrap();
    let got = read_until(&mut s, |b| {
        fesl_messages(b)
            .iter()
            .any(|(_, p)| get(p, "TXN") == Some("Hello"))
    })
    .await;
    assert!(!got.is_empty(), "no Hello answer after two bad packets");
    s.write_all(&no_txn(4)).await.unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert_eq!(errors(&got), [4], "the third bad packet is answered too");
    assert!(closed, "the third bad packet closes the connection");

    // GP: a message that does not parse gets a non-fatal `\error\` with code 1 (parse).
    let bad = b"\\login\\\\challenge\\\xff\\final\\";
    let parse_errors = |bytes: &[u8]| -> usize {
        let mut n = 0;
        let mut rest = bytes;
        while let gamewire::dissect::Framing::Complete(len) = gcodec::frame(rest) {
            let pairs = gcodec::parse_message(&rest[..len]).unwrap();
            if pairs[0].0 == "error" {
                assert_eq!(get(&pairs, "err"), Some("1"));
                assert!(get(&pairs, "fatal").is_none(), "{pairs:?}");
                n += 1;
            }
            rest = &rest[len..];
        }
        n
    };
    let mut g = TcpStream::connect(servers.gp).await.unwrap();
    let greeting = read_until(&mut g, |b| b.ends_with(b"\\final\\")).await;
    assert!(greeting.starts_with(b"\\lc\\1\\"));
    g.write_all(&[&bad[..], &bad[..]].concat()).await.unwrap();
    let got = read_until(&mut g, |b| parse_errors(b) == 2).await;
    assert_eq!(parse_errors(&got), 2);
    g.write_all(b"\\ka\\\\final\\").await.unwrap();
    let got = read_until(&mut g, |b| b.ends_with(b"\\ka\\\\final\\")).await;
    assert_eq!(
        got, b"\\ka\\\\final\\",
        "still served after two bad messages"
    );
    g.write_all(bad).await.unwrap();
    let (got, closed) = read_until_close(&mut g, Duration::from_secs(2)).await;
    assert_eq!(
        parse_errors(&got),
        1,
        "the third bad message is answered too"
    );
    assert!(closed, "the third bad message closes the connection");
}
