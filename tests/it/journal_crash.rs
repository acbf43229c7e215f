//! `kill -9` while a capture is being journaled loses at most the last second.
//!
//! The test re-runs its own executable as the writer process: `writer_child` does nothing
//! unless GW_CRASH_CHILD names a file, in which case it journals packets until killed and
//! reports its progress on stdout.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gamewire::capture::{
    CaptureStore, Connection, Direction, NewPacket, Timestamp, Transport, gwcap,
};

const CHILD_ENV: &str = "GW_CRASH_CHILD";

#[test]
fn writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Arc::new(CaptureStore::new());
    // The flush interval the engine uses; the guarantee under test depends on it.
    store
        .journal_to(std::path::Path::new(&path), Duration::from_millis(250))
        .unwrap();
    let c = store.add_connection(Connection::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Transport::Tcp,
        Timestamp::now(),
    ));
    let mut n: u64 = 0;
    let mut last_report = Instant::now();
    loop {
        store
            .append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp::now(),
                n.to_le_bytes().to_vec(),
            ))
            .unwrap();
        n += 1;
        if n.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if last_report.elapsed() >= Duration::from_millis(50) {
            println!("appended {n}");
            last_report = Instant::now();
        }
    }
}

#[test]
fn kill_9_loses_at_most_the_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.gwcap");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal_crash::writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // (when the parent saw it, how many packets the child had appended by then)
    let mut progress: Vec<(Instant, u64)> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(n) = line.strip_prefix("appended ") {
            progress.push((Instant::now(), n.trim().parse().unwrap()));
        }
    }
    // SIGKILL: no destructor, no flush.
    child.kill().unwrap();
    let killed_at = Instant::now();
    child.wait().unwrap();
    let safe = progress
        .iter()
        .rev()
        .find(|(t, _)| killed_at.duration_since(*t) >= Duration::from_secs(1))
        .map(|(_, n)| *n)
        .expect("the child ran for more than a second");
    let loaded = gwcap::load(&path).unwrap();
    let recovered = loaded.data.packet_count() as u64;
    assert!(
        recovered >= safe,
        "recovered {recovered} packets, but {safe} were appended more than a second before the kill"
    );
    // Whatever was recovered is intact and in order.
    for (i, p) in loaded.data.packets().enumerate() {
        assert_eq!(p.data, (i as u64).to_le_bytes());
    }
}
