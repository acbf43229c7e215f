//! Capture throughput and footprint, against the figures:
//! - append 1,000,000 packets of 100 bytes to the store and the .gwcap journal: >= 1 M/s;
//! - open a 1,000,000-packet .gwcap ready to list: <= 1 s, memory <= 2 x raw + 64 B/packet;
//! - import a 1,000,000-record sd.json: <= 3 s.
//!
//! Run with `cargo bench --bench capture`. The memory figure is printed before the timings;
//! it comes from a counting allocator, so it is what the process really holds.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gamewire::capture::files::{Format, Scope, Source};
use gamewire::capture::{
    CaptureStore, Connection, Direction, PacketFlags, StoreData, Timestamp, Transport, gwcap,
    sdjson,
};
use gamewire::dissect::export;

fn save(data: &StoreData, path: &std::path::Path, format: Format) {
    export::save(Source::Data(data), path, format, Scope::All, &|_| {}).expect("save");
}

/// Counts live bytes over the program's allocator (see `src/main.rs`).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PACKETS: usize = 1_000_000;
const SIZE: usize = 100;

fn append_with_journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("store");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(PACKETS as u64));
    let payload = [0x5au8; SIZE];
    group.bench_function("append_1M_x_100B_with_gwcap_journal", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let store = Arc::new(CaptureStore::new());
                let path = dir.path().join(format!("append-{i}.gwcap"));
                store
                    .journal_to(&path, Duration::from_millis(250))
                    .expect("journal");
                let conn = store.add_connection(Connection::new(
                    "127.0.0.1:1".parse().expect("addr"),
                    "127.0.0.1:2".parse().expect("addr"),
                    Transport::Tcp,
                    Timestamp(0),
                ));
                let start = Instant::now();
                {
                    let mut data = store.write();
                    for n in 0..PACKETS {
                        // One lock per packet is what a tap does; take it each time.
                        drop(data);
                        data = store.write();
                        data.append_parts(
                            conn,
                            Direction::ClientToServer,
                            Timestamp(n as i64),
                            &payload,
                            Some("acct NuLogin"),
                            PacketFlags::empty(),
                            None,
                        )
                        .expect("append");
                    }
                }
                store.stop_journal().expect("flush");
                total += start.elapsed();
                let _ = std::fs::remove_file(&path);
            }
            total
        })
    });
    group.finish();
}

fn open_gwcap(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.gwcap");
    {
        let data = gamewire::clients::samples::busy_capture(PACKETS, 64);
        save(&data, &path, Format::Gwcap);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let loaded = gwcap::load(&path).expect("load");
    let order = loaded.data.time_order();
    let held = LIVE.load(Ordering::Relaxed) - before;
    let raw = loaded.data.raw_bytes() as usize;
    let budget = 2 * raw + 64 * PACKETS;
    eprintln!(
        "gwcap open memory: {held} bytes held for {PACKETS} packets of {} B on average \
         ({:.2} x raw + {:.1} B/packet over raw); budget {budget} bytes: {}",
        raw / PACKETS,
        held as f64 / raw as f64,
        (held - raw) as f64 / PACKETS as f64,
        if held <= budget { "within" } else { "OVER" }
    );
    drop(order);
    drop(loaded);

    let mut group = c.benchmark_group("gwcap");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.bench_function("open_1M_packets_ready_to_list", |b| {
        b.iter(|| {
            let loaded = gwcap::load(&path).expect("load");
            black_box(loaded.data.time_order().len())
        })
    });
    group.finish();
}

fn import_sd_json(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.sd.json");
    {
        let data = gamewire::clients::samples::busy_capture(PACKETS, 64);
        save(&data, &path, Format::SdJson);
    }
    let mut group = c.benchmark_group("sdjson");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.bench_function("import_1M_records", |b| {
        b.iter(|| {
            let imported = sdjson::import_file(&path, false).expect("import");
            black_box(imported.data.packet_count())
        })
    });
    group.finish();
}

criterion_group!(benches, append_with_journal, open_gwcap, import_sd_json);
criterion_main!(benches);
