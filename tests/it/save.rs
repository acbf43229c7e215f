//! The one save path (`dissect::export::save`): every format written to real files and read
//! back, saves of a store that keeps growing, and failed saves that must leave the old file
//! alone.

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gamewire::capture::files::{self, FileError, Format, OpenOptions, Saved, Scope, Source};
use gamewire::capture::{
    CaptureStore, Connection, ConnectionId, Direction, NewPacket, StoreData, Timestamp, Transport,
};
use gamewire::dissect::export;

const REQUEST: &[u8] = b"POST /login?lang=en HTTP/1.1\r\nHost: auth.example.test\r\n\
Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"user\":\"ann\"}\n";
const RESPONSE: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
Content-Length: 11\r\n\r\n{\"ok\":true}";
const SECOND: &[u8] = b"GET /motd HTTP/1.1\r\nHost: auth.example.test\r\n\r\n";
const SECOND_REPLY: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone";

fn at(ms: i64) -> Timestamp {
    Timestamp(Timestamp::from_secs_nanos(1_754_607_232, 0).0 + ms * 1_000_000)
}

fn connection(client: &str, server: &str, ms: i64) -> Connection {
    Connection::new(
        client.parse().unwrap(),
        server.parse().unwrap(),
        Transport::Tcp,
        at(ms),
    )
}

/// A FESL-looking connection and an HTTP/1 one with two exchanges, interleaved.
fn capture() -> StoreData {
    let mut data = StoreData::new();
    let fesl = data.add_connection(connection("127.0.0.1:50000", "10.0.0.2:18680", 0));
    let http = data.add_connection(Connection {
        protocol: Some("http".into()),
        ..connection("127.0.0.1:50001", "10.0.0.3:80", 5)
    });
    let mut send = |conn, ms, bytes: &[u8], reply_ms, reply: &[u8]| {
        for (dir, ms, bytes) in [
            (Direction::ClientToServer, ms, bytes),
            (Direction::ServerToClient, reply_ms, reply),
        ] {
            data.append(NewPacket::new(conn, dir, at(ms), bytes.to_vec()))
                .unwrap();
        }
    };
    send(
        fesl,
        10,
        b"fsys\xc0\x00\x00\x01",
        20,
        b"fsys\x80\x00\x00\x01",
    );
    send(http, 30, REQUEST, 42, RESPONSE);
    send(http, 50, SECOND, 51, SECOND_REPLY);
    data
}

/// Saves, and checks what every save promises: the share done only grows and ends at 1,
/// and no `.part` is left behind.
fn save(from: Source<'_>, path: &Path, format: Format, scope: Scope) -> Saved {
    let seen = Mutex::new(Vec::new());
    let saved = export::save(from, path, format, scope, &|p| seen.lock().unwrap().push(p))
        .unwrap_or_else(|e| panic!("saving {}: {e}", path.display()));
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&1.0));
    assert!(!part_of(path).exists());
    assert_eq!(saved.bytes, std::fs::metadata(path).unwrap().len());
    saved
}

fn part_of(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    name.into()
}

fn assert_same_packets(a: &StoreData, b: &StoreData, exact_time: bool) {
    assert_eq!(a.packet_count(), b.packet_count());
    for (x, y) in a.packets().zip(b.packets()) {
        assert_eq!((x.direction, x.data), (y.direction, y.data));
        if exact_time {
            assert_eq!(x.timestamp, y.timestamp);
        } else {
            assert_eq!(x.timestamp.0 / 1000, y.timestamp.0 / 1000);
        }
        let (cx, cy) = (
            a.connection(x.connection).unwrap(),
            b.connection(y.connection).unwrap(),
        );
        assert_eq!(cx.client, cy.client);
    }
}

fn read_har(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    har["log"]["entries"].as_array().unwrap().clone()
}

/// The two exchanges of [`capture`], as HAR must show them.
fn assert_har_entries(entries: &[serde_json::Value]) {
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let (first, second) = (&entries[0], &entries[1]);
    assert_eq!(first["request"]["method"], "POST");
    assert_eq!(
        first["request"]["url"],
        "http://auth.example.test/login?lang=en"
    );
    assert_eq!(first["request"]["postData"]["text"], "{\"user\":\"ann\"}\n");
    assert_eq!(first["request"]["postData"]["mimeType"], "application/json");
    assert_eq!(first["response"]["status"], 201);
    assert_eq!(first["response"]["statusText"], "Created");
    assert_eq!(first["response"]["content"]["text"], "{\"ok\":true}");
    assert_eq!(first["time"], 12.0);
    assert_eq!(second["request"]["method"], "GET");
    assert_eq!(second["request"]["url"], "http://auth.example.test/motd");
    assert_eq!(second["response"]["status"], 404);
    assert_eq!(second["response"]["content"]["text"], "gone");
}

#[test]
fn every_format_is_saved_by_the_one_function_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = capture();
    let store = CaptureStore::from_data(capture());
    for format in Format::ALL {
        for (how, from) in [
            ("data", Source::Data(&data)),
            ("live", Source::Live(&store)),
        ] {
            let path = format.with_extension(dir.path().join(format!("{how}-capture")));
            assert_eq!(Format::from_path(&path), Some(format));
            let saved = save(from, &path, format, Scope::All);
            assert_eq!(
                (saved.format, saved.connections, saved.packets),
                (format, 2, 6)
            );
            if format == Format::Har {
                assert_eq!(saved.http_exchanges, Some(2));
                assert_har_entries(&read_har(&path));
                continue;
            }
            assert_eq!(saved.http_exchanges, None);
            let back = files::open(&path, &OpenOptions { skip_bad: false }).unwrap();
            assert_eq!(back.format, format);
            assert!(back.warnings.is_empty(), "{:?}", back.warnings);
            assert_eq!(back.data.connection_count(), 2);
            // sd.json keeps microseconds, like the Star Citizen tools.
            assert_same_packets(&data, &back.data, format != Format::SdJson);
        }
    }
}

#[test]
fn one_connection_saves_alone_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = capture();
    let http = ConnectionId(1);
    for format in Format::ALL {
        let path = format.with_extension(dir.path().join("http-only"));
        let saved = save(Source::Data(&data), &path, format, Scope::Connection(http));
        assert_eq!((saved.connections, saved.packets), (1, 4), "{format}");
        if format == Format::Har {
            assert_har_entries(&read_har(&path));
            continue;
        }
        let back = files::open(&path, &OpenOptions { skip_bad: false }).unwrap();
        assert_eq!(back.data.connection_count(), 1);
        let conn = &back.data.connections()[0];
        assert_eq!(conn.client, "127.0.0.1:50001".parse().unwrap());
        let bytes: Vec<&[u8]> = back.data.packets().map(|p| p.data).collect();
        assert_eq!(bytes, [REQUEST, RESPONSE, SECOND, SECOND_REPLY], "{format}");
    }
}

#[test]
fn a_capture_without_http_exports_an_empty_har() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.har");
    let saved = save(
        Source::Data(&common::rich_capture()),
        &path,
        Format::Har,
        Scope::All,
    );
    assert_eq!(saved.http_exchanges, Some(0));
    assert!(read_har(&path).is_empty());
}

/// The bytes of the `n`th packet the appender writes: its number, so the saved file can be
/// checked packet by packet.
fn numbered(n: usize) -> Vec<u8> {
    let mut bytes = (n as u64).to_le_bytes().to_vec();
    bytes.resize(8 + n % 40, 0xA5);
    bytes
}

#[test]
fn a_live_save_copies_in_slices_while_packets_keep_arriving() {
    const BEFORE: usize = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CaptureStore::new());
    let first = store.add_connection(connection("127.0.0.1:40000", "127.0.0.1:9000", 0));
    for n in 0..BEFORE {
        let dir = if n % 2 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        store
            .append(NewPacket::new(first, dir, Timestamp(n as i64), numbered(n)))
            .unwrap();
    }
    let appended = Arc::new(AtomicUsize::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (store, appended, stop) = (store.clone(), appended.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conn = first;
            while !stop.load(Ordering::Relaxed) {
                let n = appended.load(Ordering::Relaxed);
                if n % 1000 == 0 {
                    conn = store.add_connection(connection("127.0.0.1:40001", "127.0.0.1:9000", 0));
                }
                let p = NewPacket::new(
                    conn,
                    Direction::ClientToServer,
                    Timestamp(n as i64),
                    numbered(n),
                );
                store.append(p).unwrap();
                appended.store(n + 1, Ordering::Relaxed);
            }
        })
    };
    // What the appender had done each time the copy reported progress (the first half of
    // the scale is the copy).
    let during_copy = Mutex::new(Vec::new());
    let path = dir.path().join("live.gwcap");
    let started = appended.load(Ordering::Relaxed);
    let saved = export::save(
        Source::Live(&store),
        &path,
        Format::Gwcap,
        Scope::All,
        &|p| {
            if p < 0.5 {
                during_copy
                    .lock()
                    .unwrap()
                    .push(appended.load(Ordering::Relaxed));
            }
        },
    )
    .unwrap();
    let ended = appended.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();

    // Recording went on between the slices of the copy, not only after it.
    let during_copy = during_copy.into_inner().unwrap();
    assert!(during_copy.len() >= 4, "{during_copy:?}");
    assert!(
        during_copy.last() > during_copy.first(),
        "no packet was recorded while the copy ran: {during_copy:?}"
    );
    // The file holds the packets there were when the save started, each exactly as stored.
    let back = files::open(&path, &OpenOptions { skip_bad: false }).unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    let count = back.data.packet_count();
    assert_eq!(count, saved.packets);
    assert!(
        (started..=ended).contains(&count),
        "{started} <= {count} <= {ended}"
    );
    let live = store.read();
    for (n, (a, b)) in live.packets().zip(back.data.packets()).enumerate() {
        assert_eq!(b.data, numbered(n), "packet {n}");
        assert_eq!((a.direction, a.timestamp), (b.direction, b.timestamp));
        let (ca, cb) = (
            live.connection(a.connection).unwrap(),
            back.data.connection(b.connection).unwrap(),
        );
        assert_eq!((ca.id, ca.client), (cb.id, cb.client), "packet {n}");
    }
}

#[test]
fn a_failed_save_leaves_the_old_file_and_no_part() {
    let dir = tempfile::tempdir().unwrap();
    let data = capture();
    let fail = |path: &Path, format| {
        let err = export::save(Source::Data(&data), path, format, Scope::All, &|_| {})
            .expect_err("the save should fail");
        assert!(matches!(err, FileError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(
            !part_of(path).exists(),
            "{} left behind",
            part_of(path).display()
        );
    };

    // A directory that does not exist.
    let missing = dir.path().join("no/such/dir/out.gwcap");
    fail(&missing, Format::Gwcap);
    assert!(!dir.path().join("no").exists());

    // Everything written, then the rename fails (the name is taken by a directory): the
    // `.part` goes and what was there stays.
    for format in Format::ALL {
        let taken = format.with_extension(dir.path().join("taken"));
        std::fs::create_dir_all(&taken).unwrap();
        std::fs::write(taken.join("keep"), b"mine").unwrap();
        fail(&taken, format);
        assert_eq!(std::fs::read(taken.join("keep")).unwrap(), b"mine");
    }

    // A directory we may not write to, with an earlier good save in it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        let old = locked.join("old.sd.json");
        save(Source::Data(&data), &old, Format::SdJson, Scope::All);
        let before = std::fs::read(&old).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root writes anywhere; the cases above cover it there.
        if std::fs::write(locked.join("probe"), b"").is_err() {
            fail(&old, Format::SdJson);
            assert_eq!(std::fs::read(&old).unwrap(), before);
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A good save over an existing file replaces it whole.
    let target = dir.path().join("again.gwcap");
    std::fs::write(
        &target,
        b"an older, longer file that is not a capture at all",
    )
    .unwrap();
    save(Source::Data(&data), &target, Format::Gwcap, Scope::All);
    let back = files::open(&target, &OpenOptions { skip_bad: false }).unwrap();
    assert_same_packets(&data, &back.data, true);
}

#[test]
fn har_is_export_only_and_opening_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("web.har");
    save(Source::Data(&capture()), &har, Format::Har, Scope::All);
    assert!(!Format::Har.can_open());
    // By name, and by content under a name that says nothing.
    let unnamed = dir.path().join("web.log");
    std::fs::copy(&har, &unnamed).unwrap();
    for path in [&har, &unnamed] {
        let err = files::open(path, &OpenOptions { skip_bad: false })
            .err()
            .expect("a HAR does not open");
        assert!(matches!(err, FileError::ExportOnly { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("export-only"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

#[test]
fn output_names_pick_the_format_and_unknown_ones_list_them_all() {
    for (name, want) in [
        ("a.gwcap", Format::Gwcap),
        ("a.sd.json", Format::SdJson),
        ("a.json", Format::SdJson),
        ("A.PCAPNG", Format::Pcapng),
        ("a.har", Format::Har),
    ] {
        assert_eq!(Format::of_output(Path::new(name)).unwrap(), want, "{name}");
    }
    let err = Format::of_output(Path::new("out.txt"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("out.txt: unknown output format"), "{err}");
    for ext in [".gwcap", ".sd.json", ".pcapng", ".har"] {
        assert!(err.contains(ext), "{err}");
    }
    // A name that already asks for the format keeps it.
    let kept = Format::SdJson.with_extension("x.json".into());
    assert_eq!(kept, Path::new("x.json"));
    assert_eq!(Format::Har.with_extension("x".into()), Path::new("x.har"));
}

#[test]
fn the_engine_save_command_writes_through_the_same_path_and_reports_progress() {
    use gamewire::engine::{Command, Event, Reply};
    let (engine, dir) = crate::engine_taps::engine_with(vec![], vec![]);
    let conn = engine
        .store()
        .add_connection(connection("127.0.0.1:40000", "127.0.0.1:9000", 0));
    for n in 0..60_000 {
        let p = NewPacket::new(
            conn,
            Direction::ClientToServer,
            Timestamp(n as i64),
            numbered(n),
        );
        engine.store().append(p).unwrap();
    }
    let mut events = engine.subscribe();
    let path = dir.path().join("engine.pcapng");
    let reply = engine.call(Command::Save { path: path.clone() }).unwrap();
    assert!(
        matches!(&reply, Reply::Done(text) if text.contains("pcapng")),
        "{reply:?}"
    );
    let mut progress = Vec::new();
    while let Some(event) = events.try_next() {
        if let Event::Progress { done, total, .. } = event {
            progress.push((done, total));
        }
    }
    assert!(progress.len() > 1, "{progress:?}");
    assert_eq!(progress.last(), Some(&(1000, 1000)));
    assert!(!part_of(&path).exists());
    let back = files::open(&path, &OpenOptions { skip_bad: false }).unwrap();
    assert_eq!(back.data.packet_count(), 60_000);
    assert_eq!(back.data.packets().last().unwrap().data, numbered(59_999));

    // An unknown extension is refused with the file named, and nothing is written.
    let bad = dir.path().join("engine.txt");
    let err = engine
        .call(Command::Save { path: bad.clone() })
        .unwrap_err();
    assert!(err.to_string().contains("engine.txt"), "{err}");
    assert!(!bad.exists());
    engine.shutdown().unwrap();
}
