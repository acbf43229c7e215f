//! FESL framing + dissection throughput on typical login traffic: the FESL packets of
//! `captures/ra3-login.gwcap`, each direction concatenated many times into one stream, run
//! through a `FeslDecoder`'s `frame` and `decode` the way the stream driver does.
//! Target: >= 1,000,000 messages/s on one core.
//!
//! Run with `cargo bench --no-default-features --bench fesl`. Two figures: wall time, and
//! the benchmark thread's own CPU time (from `/proc/thread-self/schedstat`, Linux), which is
//! what "one core" means on a shared machine where the thread is not always running.

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gamewire::capture::{ConnectionId, Direction, gwcap};
use gamewire::dissect::fesl::FeslDecoder;
use gamewire::dissect::{Framing, StreamDecoder};

const REPEAT: usize = 2_000;

/// The two directions' byte streams of the sample login, each repeated `REPEAT` times.
fn streams() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/ra3-login.gwcap");
    let data = gwcap::load(&path).expect("sample capture").data;
    let conn = data
        .connections()
        .iter()
        .position(|c| c.protocol.as_deref() == Some("fesl"))
        .expect("a FESL connection");
    let mut c2s = Vec::new();
    let mut s2c = Vec::new();
    for p in data.packets_of(ConnectionId(conn as u64)) {
        match p.direction {
            Direction::ClientToServer => c2s.extend_from_slice(p.data),
            Direction::ServerToClient => s2c.extend_from_slice(p.data),
        }
    }
    [c2s, s2c].into_iter().map(|s| s.repeat(REPEAT)).collect()
}

/// Frames and decodes a whole stream; returns the number of messages.
fn dissect(stream: &[u8]) -> usize {
    let mut d = FeslDecoder::new();
    let mut at = 0;
    let mut n = 0;
    while at < stream.len() {
        match d.frame(&stream[at..]) {
            Framing::Complete(len) => {
                let m = d.decode(&stream[at..at + len]);
                black_box(&m);
                at += len;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

fn login_traffic(c: &mut Criterion) {
    let streams = streams();
    let messages: usize = streams.iter().map(|s| dissect(s)).sum();
    let bytes: usize = streams.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("fesl");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(messages as u64));
    group.bench_function(
        format!("frame_and_decode_{messages}_login_messages_{bytes}_bytes"),
        |b| {
            b.iter(|| {
                let n: usize = streams.iter().map(|s| dissect(s)).sum();
                black_box(n)
            })
        },
    );
    if cpu_nanos().is_some() {
        group.bench_function(
            format!("frame_and_decode_{messages}_login_messages_cpu_time"),
            |b| {
                b.iter_custom(|iters| {
                    let start = cpu_nanos().unwrap_or(0);
                    for _ in 0..iters {
                        let n: usize = streams.iter().map(|s| dissect(s)).sum();
                        black_box(n);
                    }
                    Duration::from_nanos(cpu_nanos().unwrap_or(0).saturating_sub(start))
                })
            },
        );
    }
    group.finish();
}

/// Nanoseconds this thread has spent running on a CPU.
fn cpu_nanos() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

criterion_group!(benches, login_traffic);
criterion_main!(benches);
