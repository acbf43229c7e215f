//! Frame cost of the workbench with a big live capture: a Viewer over a 1,000,000-packet
//! store while another thread appends 5,000 packets/s, drawn headless through
//! `egui::Context::run_ui` and tessellated, as eframe does each frame. Prints the CPU time of
//! the UI thread per frame (target: at most 8 ms).
//!
//! `cargo bench --bench gui_frame` (release profile). Set GW_FRAMES to change the frame count.

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eframe::egui;
use gamewire::capture::{CaptureStore, ConnectionId, Direction, NewPacket, Timestamp};
use gamewire::engine::log_ring::LogRing;
use gamewire::gui::Viewer;

const PACKETS: usize = 1_000_000;
const RATE: u64 = 5_000;

/// CPU time of the calling thread, from /proc (no libc binding needed): utime + stime in
/// clock ticks of 10 ms is too coarse per frame, so this is taken over the whole run.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let frames: usize = std::env::var("GW_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let setup = Instant::now();
    let store = Arc::new(CaptureStore::from_data(
        gamewire::clients::samples::busy_capture(PACKETS, 64),
    ));
    eprintln!(
        "store of {PACKETS} packets built in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            let start = Instant::now();
            let mut t = Timestamp::now();
            while !stop.load(Ordering::Relaxed) {
                // 50 packets every 10 ms: 5,000 packets/s.
                let due = start.elapsed().as_millis() as u64 * RATE / 1000;
                while n < due {
                    t = Timestamp(t.0 + 200_000);
                    let conn = ConnectionId(n % 64);
                    let _ = store.append(NewPacket::new(
                        conn,
                        Direction::ClientToServer,
                        t,
                        vec![0x41; 100],
                    ));
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };

    let mut viewer = Viewer::new(None).with_log_ring(LogRing::new(1000));
    viewer.attach_store(Arc::clone(&store), "bench (live)");
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 1000.0),
        )),
        ..Default::default()
    };
    // Warm-up: fonts, the first row index over the million packets.
    for _ in 0..5 {
        let out = ctx.run_ui(input(), |ui| viewer.show(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
    }
    let mut walls = Vec::with_capacity(frames);
    let cpu_start = thread_cpu();
    let start = Instant::now();
    for _ in 0..frames {
        let t = Instant::now();
        let out = ctx.run_ui(input(), |ui| viewer.show(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        walls.push(t.elapsed());
        // A 60 Hz display: the appender runs between frames as it would.
        std::thread::sleep(Duration::from_millis(16).saturating_sub(t.elapsed()));
    }
    let elapsed = start.elapsed();
    let cpu = cpu_start.zip(thread_cpu()).map(|(a, b)| b - a);
    stop.store(true, Ordering::Relaxed);
    let appended = writer.join().unwrap_or(0);

    walls.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = walls.iter().map(|d| ms(*d)).sum::<f64>() / walls.len() as f64;
    println!(
        "gui_frame: {frames} frames over {:.1} s, {} packets appended ({:.0}/s), store now {} packets",
        elapsed.as_secs_f64(),
        appended,
        appended as f64 / elapsed.as_secs_f64(),
        store.read().packet_count()
    );
    println!(
        "gui_frame: wall per frame mean {mean:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms(walls[walls.len() / 2]),
        ms(walls[walls.len() * 95 / 100]),
        ms(walls[walls.len() - 1])
    );
    if let Some(cpu) = cpu {
        println!(
            "gui_frame: UI thread CPU per frame {:.2} ms (target <= 8 ms)",
            ms(cpu) / frames as f64
        );
    }
}
