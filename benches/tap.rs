//! A TCP tap against direct loopback, in the same run, with recording on:
//! - bulk: one connection streaming 64 MiB into a sink; target >= 50% of direct;
//! - ping-pong: 64-byte request/response round trips; target: added p50 <= 100 µs;
//! - a bare relay (two threads copying, nothing recorded) runs beside them as a reference: what
//!   any relay reaches on this machine, since one more TCP hop and thread cost the same here
//!   whatever the relay does.
//!
//! Run with `cargo bench --no-default-features --bench tap`. The summary lines printed first
//! are the figures the issue asks for; criterion's numbers follow (`TAP_SUMMARY_ONLY=1` stops
//! after the summary).

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, RouteState, StartOptions};

const BULK: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// Reads everything, then writes one byte back so the sender knows it all arrived.
fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; CHUNK];
                let mut want = [0u8; 8];
                if s.read_exact(&mut want).is_err() {
                    return;
                }
                let total = u64::from_le_bytes(want);
                if total == 0 {
                    // Ping-pong mode: echo 64-byte messages.
                    let mut msg = [0u8; 64];
                    while s.read_exact(&mut msg).is_ok() {
                        if s.write_all(&msg).is_err() {
                            break;
                        }
                    }
                    return;
                }
                let mut got = 0u64;
                while got < total {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n as u64,
                    }
                }
                let _ = s.write_all(b"k");
            });
        }
    });
    addr
}

/// The simplest relay there is: per connection, one blocking thread per direction copying
/// through a 256 KiB buffer, nothing recorded.
fn bare_relay(upstream: SocketAddr) -> SocketAddr {
    fn pump(mut from: TcpStream, mut to: TcpStream) {
        let mut buf = vec![0u8; 256 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            thread::spawn(move || pump(client, server));
            thread::spawn(move || pump(s2, c2));
        }
    });
    addr
}

fn bulk(addr: SocketAddr, bytes: usize) -> Duration {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    let chunk = vec![0x5Au8; CHUNK];
    let start = Instant::now();
    s.write_all(&(bytes as u64).to_le_bytes()).expect("write");
    let mut sent = 0;
    while sent < bytes {
        let n = CHUNK.min(bytes - sent);
        s.write_all(&chunk[..n]).expect("write");
        sent += n;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).expect("ack");
    start.elapsed()
}

fn ping_pong(addr: SocketAddr, rounds: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    s.write_all(&0u64.to_le_bytes()).expect("mode");
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut back).expect("read");
        times.push(t.elapsed());
    }
    times
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i.min(times.len() - 1)]
}

fn engine_in_front_of(server: SocketAddr) -> (Engine, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps: vec![TapConfig {
            name: "bench".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: server.to_string(),
            ..TapConfig::default()
        }],
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    let engine = Engine::start(config, StartOptions::default()).expect("engine");
    let state = engine
        .routes()
        .into_iter()
        .find(|r| r.name == "bench")
        .map(|r| r.state);
    let addr = match state {
        Some(RouteState::Running(a)) => a,
        other => panic!("tap not running: {other:?}"),
    };
    (engine, addr, dir)
}

fn summary(server: SocketAddr, tap: SocketAddr, bare: SocketAddr) {
    // Direct, tapped and bare-relay runs alternate, so a drift in the machine's speed (a
    // shared virtual machine drifts by a factor of two within minutes) weighs on all alike;
    // each round gives one ratio per relay.
    const PAIRS: usize = 7;
    let mut direct = Vec::new();
    let mut tapped = Vec::new();
    let mut bare_runs = Vec::new();
    let mut ratios = Vec::new();
    let mut bare_ratios = Vec::new();
    for _ in 0..PAIRS {
        let d = bulk(server, BULK);
        let t = bulk(tap, BULK);
        let b = bulk(bare, BULK);
        ratios.push(100.0 * d.as_secs_f64() / t.as_secs_f64());
        bare_ratios.push(100.0 * d.as_secs_f64() / b.as_secs_f64());
        direct.push(d);
        tapped.push(t);
        bare_runs.push(b);
    }
    let mbps = |d: Duration| BULK as f64 / d.as_secs_f64() / 1e6;
    let in_order: Vec<String> = ratios.iter().map(|r| format!("{r:.0}%")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "bulk 64 MiB, {PAIRS} alternating runs: direct median {:.0} MB/s, through tap (recording) median {:.0} MB/s; tap/direct per pair: median {:.0}% (min {:.0}%, max {:.0}%; in run order {}) (target >= 50%)",
        mbps(percentile(&mut direct, 0.5)),
        mbps(percentile(&mut tapped, 0.5)),
        ratios[PAIRS / 2],
        ratios[0],
        ratios[PAIRS - 1],
        in_order.join(" "),
    );
    bare_ratios.sort_by(f64::total_cmp);
    println!(
        "reference, same runs: a bare relay (two threads copying, nothing recorded) median {:.0} MB/s, {:.0}% of direct (min {:.0}%, max {:.0}%)",
        mbps(percentile(&mut bare_runs, 0.5)),
        bare_ratios[PAIRS / 2],
        bare_ratios[0],
        bare_ratios[PAIRS - 1],
    );
    let mut d = ping_pong(server, 20_000);
    let mut t = ping_pong(tap, 20_000);
    let (d50, t50) = (percentile(&mut d, 0.5), percentile(&mut t, 0.5));
    let (d99, t99) = (percentile(&mut d, 0.99), percentile(&mut t, 0.99));
    println!(
        "ping-pong 64 B: p50 direct {:.1} µs, tap {:.1} µs, added {:.1} µs (target <= 100 µs); p99 direct {:.1} µs, tap {:.1} µs",
        d50.as_secs_f64() * 1e6,
        t50.as_secs_f64() * 1e6,
        (t50.saturating_sub(d50)).as_secs_f64() * 1e6,
        d99.as_secs_f64() * 1e6,
        t99.as_secs_f64() * 1e6,
    );
}

fn benches(c: &mut Criterion) {
    let server = sink_server();
    let (engine, tap, _dir) = engine_in_front_of(server);
    summary(server, tap, bare_relay(server));
    if std::env::var_os("TAP_SUMMARY_ONLY").is_some() {
        return;
    }
    let mut group = c.benchmark_group("tap_bulk_16MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(16 << 20));
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bulk(server, 16 << 20)).sum())
    });
    group.bench_function("through_tap", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bulk(tap, 16 << 20)).sum())
    });
    group.finish();
    // Each connection's packets stay in the store; drop it between runs of other benches.
    drop(engine);
}

criterion_group!(tap_benches, benches);
criterion_main!(tap_benches);
