//! Hytale frame splitting, against the target: finding frame boundaries in a long
//! stream of mixed-size frames with `StreamDecoder::frame` must run at >= 1 GB/s on one core.
//! Full decoding (tree building, zstd) is measured too, for information.
//!
//! Run with `cargo bench --no-default-features --bench hytale`.

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gamewire::dissect::hytale::{self, Connect, Hytale};
use gamewire::dissect::{Context, Dissector, Framing};

use gamewire::capture::Direction;

/// About `target` bytes of concatenated frames whose payload sizes are spread over
/// `0..max_payload` (plus the authentication packets and some compressed chunks).
fn stream(target: usize, max_payload: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(target + 70_000);
    let mut frames = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let connect = Connect {
        protocol_crc: 0x1B2C_3D4E,
        protocol_build_number: 25,
        client_version: "2026.01.15".into(),
        uuid: [7; 16],
        username: "Builder".into(),
        identity_token: Some("eyJ".repeat(60)),
        language: "en_US".into(),
        ..Connect::default()
    }
    .build()
    .unwrap_or_default();
    while out.len() < target {
        let r = next();
        let frame = match r % 16 {
            0 => connect.clone(),
            1 => hytale::ping(r as i32, 1_754_607_252, 0, [1, 2, 3]).unwrap_or_default(),
            2 => {
                let chunk: Vec<u8> = (0..next() % (4 * max_payload + 1))
                    .map(|i| (i / 5) as u8)
                    .collect();
                hytale::packet(131, &chunk).unwrap_or_default()
            }
            3..=9 => {
                let text = "x".repeat(next() % (max_payload + 1));
                hytale::chat_message(&text).unwrap_or_default()
            }
            _ => hytale::frame(108, &vec![0x5a; next() % (max_payload + 1)]),
        };
        out.extend_from_slice(&frame);
        frames += 1;
    }
    (out, frames)
}

fn split(buf: &[u8]) -> usize {
    let mut d = Hytale.decoder(Direction::ServerToClient, &Context::default());
    let mut at = 0;
    let mut frames = 0;
    while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
        match d.frame(rest) {
            Framing::Complete(n) => {
                at += n;
                frames += 1;
            }
            _ => break,
        }
    }
    frames
}

fn decode_all(buf: &[u8]) -> usize {
    let mut d = Hytale.decoder(Direction::ServerToClient, &Context::default());
    let mut at = 0;
    let mut nodes = 0;
    while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
        match d.frame(rest) {
            Framing::Complete(n) => {
                let m = d.decode(&rest[..n]);
                nodes += m.tree.children.len() + m.derived.len();
                at += n;
            }
            _ => break,
        }
    }
    nodes
}

fn benches(c: &mut Criterion) {
    for (name, max_payload) in [("mixed 0-4 KiB", 4096), ("small 0-256 B", 256)] {
        let (buf, frames) = stream(1 << 20, max_payload);
        assert_eq!(split(&buf), frames, "every frame found");
        println!(
            "{name}: {} bytes, {frames} frames, {:.0} bytes per frame",
            buf.len(),
            buf.len() as f64 / frames as f64
        );
        let mut g = c.benchmark_group(format!("hytale {name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("frame split", |b| b.iter(|| split(black_box(&buf))));
        g.bench_function("full decode", |b| b.iter(|| decode_all(black_box(&buf))));
        g.finish();
    }
}

criterion_group!(hytale_benches, benches);
criterion_main!(hytale_benches);
