//! The native capture file: lossless round trips, and recovery from every kind of damage.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use gamewire::capture::files::{Format, Scope, Source};
use gamewire::capture::gwcap::{self, GwcapError};
use gamewire::capture::{
    CaptureStore, Connection, Direction, NewPacket, PacketFlags, StoreData, Timestamp, Transport,
};
use proptest::prelude::*;

fn saved(data: &StoreData) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.gwcap");
    common::save(data, &path);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// Every offset near record boundaries, and a sample inside the 100 kB packet, so the test
/// stays quick in debug builds.
fn interesting_offsets(len: usize) -> impl Iterator<Item = usize> {
    (gwcap::HEADER_LEN as usize..len).filter(move |&o| o < 4000 || o % 997 == 0 || o + 400 > len)
}

fn load_bytes(bytes: &[u8]) -> Result<gwcap::Loaded, GwcapError> {
    gwcap::read_from(bytes, bytes.len() as u64, std::path::Path::new("mem.gwcap"))
}

#[test]
fn save_and_load_is_lossless() {
    let data = common::rich_capture();
    let (_dir, path, _) = saved(&data);
    let loaded = gwcap::load(&path).unwrap();
    assert!(loaded.damage.is_none());
    common::assert_same_capture(&data, &loaded.data);
}

#[test]
fn live_journal_equals_a_snapshot_and_records_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.gwcap");
    let store = Arc::new(CaptureStore::new());
    // Some traffic before journaling starts, some after: both must be in the file.
    let c = store.add_connection(Connection::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Transport::Tcp,
        Timestamp(5),
    ));
    store
        .append(
            NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(6),
                b"before".to_vec(),
            )
            .with_label("x"),
        )
        .unwrap();
    store.journal_to(&path, Duration::from_millis(50)).unwrap();
    store
        .append(
            NewPacket::new(
                c,
                Direction::ServerToClient,
                Timestamp(7),
                b"after".to_vec(),
            )
            .with_label("y"),
        )
        .unwrap();
    store
        .update_connection(c, |conn| conn.protocol = Some("fesl".into()))
        .unwrap();
    store
        .close_connection(c, Timestamp(9), Some("done".into()))
        .unwrap();
    store.stop_journal().unwrap();
    let loaded = gwcap::load(&path).unwrap();
    assert!(loaded.damage.is_none());
    common::assert_same_capture(&store.read(), &loaded.data);
    assert_eq!(
        loaded.data.connections()[0].protocol.as_deref(),
        Some("fesl")
    );
}

#[test]
fn journal_is_readable_while_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.gwcap");
    let store = Arc::new(CaptureStore::new());
    store.journal_to(&path, Duration::from_millis(20)).unwrap();
    let c = store.add_connection(Connection::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Transport::Tcp,
        Timestamp(5),
    ));
    for i in 0..10u8 {
        store
            .append(NewPacket::new(
                c,
                Direction::ClientToServer,
                Timestamp(6),
                vec![i],
            ))
            .unwrap();
    }
    // No explicit flush: the background flusher must put everything on disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let loaded = gwcap::load(&path).unwrap();
        if loaded.data.packet_count() == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flusher never wrote the packets"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn truncation_at_every_offset_keeps_every_whole_record() {
    let data = common::rich_capture();
    let (_dir, _path, bytes) = saved(&data);
    let mut last_count = 0;
    for cut in interesting_offsets(bytes.len()) {
        let loaded = load_bytes(&bytes[..cut]).unwrap();
        // A cut exactly between two records looks like a shorter, whole file.
        if let Some(damage) = &loaded.damage {
            assert!(damage.offset <= cut as u64 && damage.offset >= gwcap::HEADER_LEN);
        }
        // Recovery only grows as more of the file is present, and what it recovers is right.
        let n = loaded.data.packet_count();
        assert!(n >= last_count);
        last_count = n;
        for (x, y) in loaded.data.packets().zip(data.packets()) {
            assert_eq!(x.to_packet(), y.to_packet());
        }
    }
    assert_eq!(
        last_count,
        data.packet_count() - 1,
        "all but the cut packet are kept"
    );
}

#[test]
fn a_flipped_byte_is_found_and_reported_at_its_record() {
    let data = common::rich_capture();
    let (_dir, _path, bytes) = saved(&data);
    for pos in interesting_offsets(bytes.len()).step_by(3) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x40;
        let loaded = load_bytes(&bad).unwrap();
        let damage = loaded.damage.expect("a flipped byte is detected");
        assert!(
            damage.offset <= pos as u64,
            "damage at {} reported after the flipped byte {pos}",
            damage.offset
        );
    }
}

#[test]
fn header_errors_name_the_problem() {
    assert!(matches!(load_bytes(b""), Err(GwcapError::Empty { .. })));
    let err = load_bytes(b"{\"not\": \"a capture\"}").err().unwrap();
    assert!(matches!(err, GwcapError::NotGwcap { .. }));
    assert!(err.to_string().contains("offset 0"), "{err}");
    assert!(matches!(
        load_bytes(&gwcap::MAGIC[..5]),
        Err(GwcapError::TruncatedHeader { offset: 5, .. })
    ));
    let mut future = gwcap::MAGIC.to_vec();
    future.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0]);
    let err = load_bytes(&future).err().unwrap();
    assert!(matches!(
        err,
        GwcapError::UnsupportedVersion { found: 9, .. }
    ));
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_huge_length_field_does_not_allocate_or_panic() {
    let (_dir, _path, mut bytes) = saved(&common::rich_capture());
    // Claim a 4 GiB body in the first record.
    let first = gwcap::HEADER_LEN as usize;
    bytes[first + 1..first + 5].copy_from_slice(&u32::MAX.to_le_bytes());
    let loaded = load_bytes(&bytes).unwrap();
    let damage = loaded.damage.unwrap();
    assert_eq!(damage.offset, gwcap::HEADER_LEN);
    assert!(damage.reason.contains("past the end"), "{}", damage.reason);
}

#[test]
fn unknown_record_kinds_with_good_checksums_are_skipped() {
    let data = common::rich_capture();
    let (_dir, _path, mut bytes) = saved(&data);
    // A record of kind 200 as a later minor version might write.
    let body = b"future";
    let mut rec = vec![200u8];
    rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
    rec.extend_from_slice(body);
    let crc = crc32(&rec);
    rec.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&rec);
    let loaded = load_bytes(&bytes).unwrap();
    assert!(loaded.damage.is_none());
    common::assert_same_capture(&data, &loaded.data);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

#[test]
fn a_failed_save_keeps_the_earlier_file() {
    let data = common::rich_capture();
    let (dir, path, before) = saved(&data);
    // Saving into a directory that does not exist fails without touching the good file.
    let missing = dir.path().join("missing/x.gwcap");
    let saved = gamewire::dissect::export::save(
        Source::Data(&data),
        &missing,
        Format::Gwcap,
        Scope::All,
        &|_| {},
    );
    assert!(saved.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_captures_round_trip(
        packets in prop::collection::vec(
            (0u8..3, any::<bool>(), any::<i64>(), prop::collection::vec(any::<u8>(), 0..300),
             prop::option::of("[ -~]{0,20}"), 0u8..16, prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
            0..40)
    ) {
        let mut data = StoreData::new();
        for i in 0..3u16 {
            data.add_connection(Connection::new(
                std::net::SocketAddr::from(([127, 0, 0, 1], 1000 + i)),
                std::net::SocketAddr::from(([127, 0, 0, 2], 2000 + i)),
                Transport::Tcp,
                Timestamp(i64::from(i)),
            ));
        }
        for (conn, c2s, ts, bytes, label, flags, original) in packets {
            let mut p = NewPacket::new(
                gamewire::capture::ConnectionId(u64::from(conn)),
                if c2s { Direction::ClientToServer } else { Direction::ServerToClient },
                Timestamp(ts),
                bytes,
            );
            p.label = label;
            p.flags = PacketFlags(flags);
            p.original = original;
            data.append(p).unwrap();
        }
        let (_dir, path, _) = saved(&data);
        let loaded = gwcap::load(&path).unwrap();
        prop_assert!(loaded.damage.is_none());
        common::assert_same_capture(&data, &loaded.data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = gwcap::MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&tail);
        let _ = load_bytes(&bytes);
        let _ = load_bytes(&tail);
    }
}
