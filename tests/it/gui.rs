//! The capture viewer driven headless through egui_kittest: real files written with the
//! capture API, opened through the viewer's background loader, clicked like a user would.
#![cfg(feature = "gui")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gamewire::capture::{
    CaptureStore, Connection, ConnectionId, Direction, NewPacket, PacketFlags, PacketId, StoreData,
    Timestamp, Transport,
};
use gamewire::gui::{Action, MessageKind, Viewer};

const LOGIN: &[u8] = b"acct\x00\x00\x00\x10NuLogin\x00";
const LOGIN_HEX: &str = "61 63 63 74 00 00 00 10  4e 75 4c 6f 67 69 6e 00";
const HTTP_CLIENT: &str = "127.0.0.1:50001";

/// Two connections of two packets each, with known bytes and labels, at fixed times so that
/// snapshots do not change from run to run.
fn sample_data() -> StoreData {
    let mut data = StoreData::new();
    let t0 = Timestamp::from_secs_nanos(1_754_607_232, 0);
    let at = |ms: i64| Timestamp(t0.0 + ms * 1_000_000);

    let mut fesl = Connection::new(
        "127.0.0.1:50000".parse().expect("addr"),
        "10.0.0.2:18680".parse().expect("addr"),
        Transport::Tcp,
        t0,
    );
    fesl.protocol = Some("fesl".into());
    fesl.route = Some("ra3-login".into());
    let fesl = data.add_connection(fesl);

    let mut http = Connection::new(
        "127.0.0.1:50001".parse().expect("addr"),
        "10.0.0.3:443".parse().expect("addr"),
        Transport::Tcp,
        at(5),
    );
    http.protocol = Some("http".into());
    let http = data.add_connection(http);

    let packets = [
        (
            fesl,
            Direction::ClientToServer,
            10,
            LOGIN.to_vec(),
            "acct NuLogin",
        ),
        (
            fesl,
            Direction::ServerToClient,
            20,
            b"acct\x80\x00\x00\x14NuLoginReply".to_vec(),
            "acct NuLoginReply",
        ),
        (
            http,
            Direction::ClientToServer,
            30,
            b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "GET /status",
        ),
        (
            http,
            Direction::ServerToClient,
            40,
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            "200 OK",
        ),
    ];
    for (conn, dir, ms, bytes, label) in packets {
        data.append(NewPacket::new(conn, dir, at(ms), bytes).with_label(label))
            .expect("append");
    }
    let mut edited = NewPacket::new(fesl, Direction::ClientToServer, at(50), b"ping 2".to_vec())
        .with_label("ping (edited)");
    edited.flags = PacketFlags::EDITED;
    edited.original = Some(b"ping 1".to_vec());
    data.append(edited).expect("append");
    data
}

fn write_sample(dir: &Path) -> PathBuf {
    let path = dir.join("session.gwcap");
    crate::common::save(&sample_data(), &path);
    path
}

fn harness(viewer: Viewer) -> Harness<'static, Viewer> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(|ui, viewer: &mut Viewer| viewer.show(ui), viewer)
}

/// Steps frames until the background loader is done (the spinner keeps asking for frames,
/// so `Harness::run` would not settle while it reads), then lets the ui settle.
fn wait_until_loaded(harness: &mut Harness<'_, Viewer>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    harness.step();
    // Labels come from the decoding thread once the file is in; wait for those too.
    while harness.state().is_loading() || harness.state().workbench().is_decoding() {
        assert!(
            Instant::now() < deadline,
            "the capture did not load in time"
        );
        std::thread::sleep(Duration::from_millis(5));
        harness.step();
    }
    harness.run();
}

fn open(harness: &mut Harness<'_, Viewer>, path: &Path) {
    harness.state_mut().open(path);
    wait_until_loaded(harness);
}

#[test]
fn empty_state_tells_a_new_user_what_to_do() {
    let nowhere = tempfile::tempdir().expect("tempdir");
    let mut harness = harness(Viewer::new(None).with_samples_dir(nowhere.path()));
    harness.run();
    harness.get_by_label("No capture open");
    harness.get_by_label("gamewire samples");
    harness.get_by_label_contains("start gamewire without a file");
    harness.get_by_label("Open…");
    harness.snapshot("empty_state");
}

#[test]
fn empty_state_offers_the_sample_captures_and_opens_one() {
    let samples = tempfile::tempdir().expect("tempdir");
    write_sample(samples.path());
    crate::common::save(&sample_data(), &samples.path().join("login.sd.json"));
    std::fs::write(samples.path().join("notes.txt"), "not a capture").expect("write");
    let mut harness = harness(Viewer::new(None).with_samples_dir(samples.path()));
    harness.run();
    assert!(harness.query_by_label("notes.txt").is_none());
    harness.get_by_label("login.sd.json");
    harness.get_by_label("session.gwcap").click();
    wait_until_loaded(&mut harness);
    assert_eq!(harness.state().state().rows().len(), 5);
}

#[test]
fn clicking_a_packet_shows_its_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = harness(Viewer::new(None));
    open(&mut harness, &path);
    assert!(harness.state().state().message().is_none());
    assert_eq!(harness.state().state().rows().len(), 5);
    harness.get_by_label_contains("session.gwcap · gwcap · 2 connections · 5 packets");
    harness.get_by_label(&packet_view_hint());

    harness.get_by_label("acct NuLogin").click();
    harness.run();

    harness.get_by_label_contains(LOGIN_HEX);
    harness.get_by_label_contains("acct....NuLogin.");
    harness.get_by_label("Packet 0");
    harness.get_by_label("2025-08-07T22:53:52.010000000Z");
    harness.get_by_label("16 bytes");
    // The field shows the opened path, which is a fresh temporary directory on every run.
    harness.state_mut().state_mut().path_input = "session.gwcap".into();
    harness.run();
    harness.snapshot("loaded_capture");
}

#[test]
fn an_edited_packet_shows_its_original_bytes_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = harness(Viewer::new(Some(path)));
    wait_until_loaded(&mut harness);

    harness.get_by_label("ping (edited)").click();
    harness.run();
    harness.get_by_label("6 bytes before the edit");
    harness.get_by_label_contains("70 69 6e 67 20 32");

    harness.get_by_label("Show original").click();
    harness.run();
    harness.get_by_label("Original bytes");
    harness.get_by_label_contains("70 69 6e 67 20 31");
}

#[test]
fn clicking_a_connection_filters_the_table_and_clicking_again_clears_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = harness(Viewer::new(None));
    open(&mut harness, &path);

    harness.get_by_label(HTTP_CLIENT).click();
    harness.run();
    assert_eq!(harness.state().state().filter(), Some(ConnectionId(1)));
    assert_eq!(harness.state().state().rows().len(), 2);
    harness.get_by_label("GET /status");
    harness.get_by_label("200 OK");
    assert!(harness.query_by_label("acct NuLogin").is_none());
    assert!(harness.query_by_label("acct NuLoginReply").is_none());
    assert!(harness.query_by_label("ping (edited)").is_none());

    harness.get_by_label(HTTP_CLIENT).click();
    harness.run();
    assert_eq!(harness.state().state().filter(), None);
    harness.get_by_label("acct NuLogin");
    harness.get_by_label("GET /status");

    // The "All connections" entry clears a filter too.
    harness.get_by_label(HTTP_CLIENT).click();
    harness.run();
    harness.get_by_label_contains("All connections").click();
    harness.run();
    assert_eq!(harness.state().state().filter(), None);
    harness.get_by_label("acct NuLogin");
}

#[test]
fn a_missing_file_is_reported_and_the_viewer_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.gwcap");
    let mut harness = harness(Viewer::new(None));
    open(&mut harness, &missing);

    let message = harness
        .state()
        .state()
        .message()
        .cloned()
        .expect("an error banner");
    assert_eq!(message.kind, MessageKind::Error);
    assert!(
        !harness
            .query_all_by_label_contains("missing.gwcap")
            .collect::<Vec<_>>()
            .is_empty(),
        "the banner names the file"
    );
    harness.get_by_label("No capture open");

    // Still alive: the next file opens, and the banner can be dismissed.
    let good = write_sample(dir.path());
    open(&mut harness, &good);
    assert_eq!(harness.state().state().rows().len(), 5);
    assert!(harness.state().state().message().is_none());
    harness.get_by_label("acct NuLogin");
}

#[test]
fn a_damaged_file_opens_with_a_warning_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let bytes = std::fs::read(&path).expect("read back");
    // Cut the last record in half: the reader keeps the packets before it.
    std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");

    let mut harness = harness(Viewer::new(Some(path)));
    wait_until_loaded(&mut harness);

    let message = harness
        .state()
        .state()
        .message()
        .cloned()
        .expect("a warning banner");
    assert_eq!(message.kind, MessageKind::Warning);
    assert!(
        message
            .lines
            .iter()
            .any(|l| l.contains("session.gwcap") && l.contains("offset"))
    );
    harness.get_by_label_contains("was read only in part");
    assert!(!harness.state().state().rows().is_empty());

    harness.get_by_label("Dismiss").click();
    harness.run();
    assert!(harness.state().state().message().is_none());
}

#[test]
fn arrow_keys_walk_the_packet_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = harness(Viewer::new(Some(path)));
    wait_until_loaded(&mut harness);

    harness.key_press(eframe::egui::Key::ArrowDown);
    harness.run();
    harness.key_press(eframe::egui::Key::ArrowDown);
    harness.run();
    assert_eq!(harness.state().state().selected(), Some(PacketId(1)));
    harness.get_by_label("Packet 1");
}

/// A million packets: only the rows on screen are laid out, and a frame stays cheap.
#[test]
fn a_million_packets_lay_out_only_the_visible_rows() {
    let mut data = StoreData::new();
    let conn = data.add_connection(Connection::new(
        "127.0.0.1:50000".parse().expect("addr"),
        "10.0.0.2:18680".parse().expect("addr"),
        Transport::Tcp,
        Timestamp(0),
    ));
    for i in 0..1_000_000i64 {
        let packet = NewPacket::new(conn, Direction::ClientToServer, Timestamp(i), vec![0; 8]);
        data.append(packet.with_label(format!("row {i}")))
            .expect("append");
    }
    let mut viewer = Viewer::new(None);
    viewer.attach_store(Arc::new(CaptureStore::from_data(data)), "a million");
    let mut harness = harness(viewer);
    wait_until_loaded(&mut harness);
    assert_eq!(harness.state().state().rows().len(), 1_000_000);
    harness.get_by_label("row 0");
    let laid_out = harness.query_all_by_label_contains("row ").count();
    assert!(laid_out < 100, "{laid_out} rows laid out");

    // Jump to the end with the keyboard: the table follows the selection.
    harness.key_press(eframe::egui::Key::ArrowUp);
    harness.run();
    harness.get_by_label("Packet 999999");
    // Its row in the table and its label in the details box.
    assert_eq!(harness.query_all_by_label("row 999999").count(), 2);
    let started = Instant::now();
    harness.step();
    // Generous, for debug builds on slow machines; a frame that laid out every row would
    // take seconds.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// The seam for the engine: a shared store that grows while it is shown.
#[test]
fn packets_appended_to_an_attached_store_appear() {
    let store = Arc::new(CaptureStore::from_data(sample_data()));
    let mut viewer = Viewer::new(None);
    viewer.attach_store(Arc::clone(&store), "ra3 session");
    let mut harness = harness(viewer);
    harness.run();
    harness.get_by_label_contains("ra3 session (live) · 2 connections · 5 packets");
    assert!(harness.query_by_label("late arrival").is_none());

    let packet = NewPacket::new(
        ConnectionId(1),
        Direction::ServerToClient,
        Timestamp::from_secs_nanos(1_754_607_300, 0),
        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
    );
    store
        .append(packet.with_label("late arrival"))
        .expect("append");
    // The engine will ask for the repaint; here the test steps the frame itself.
    wait_until_loaded(&mut harness);
    harness.get_by_label("late arrival");
    assert_eq!(harness.state().state().packets_in(ConnectionId(1)), 3);
}

fn packet_view_hint() -> String {
    "Select a packet in the table to see its bytes.".to_owned()
}

/// An idle window must stop repainting and stand still: with every packet selected, at the
/// smallest window size and at the default one, the ui settles and nothing moves between
/// frames (panels whose width followed their content once made the layout jump every frame).
#[test]
fn every_packet_settles_and_stands_still() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = Harness::builder().with_size([720.0, 480.0]).build_ui_state(
        |ui, viewer: &mut Viewer| viewer.show(ui),
        Viewer::new(Some(path)),
    );
    wait_until_loaded(&mut harness);
    harness.remove_cursor();
    for id in 0..5 {
        harness
            .state_mut()
            .state_mut()
            .apply(Action::SelectPacket(PacketId(id)));
        if let Err(e) = harness.try_run() {
            panic!("packet {id}: {e}");
        }
        // And nothing moves from one frame to the next once it has settled.
        let before = harness.get_by_label("Copy hex").rect();
        harness.step();
        assert_eq!(
            harness.get_by_label("Copy hex").rect(),
            before,
            "packet {id}"
        );
    }
}

/// Steps frames until the filter bar's background job is done.
fn wait_for_filter(harness: &mut Harness<'_, Viewer>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        harness.step();
        if !harness.state().filter_bar().is_busy()
            && harness.state().filter_bar().status().is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the filter never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.run();
}

fn shown_labels(harness: &Harness<'_, Viewer>) -> Vec<String> {
    let viewer = harness.state();
    let store = viewer.state().store().expect("a capture");
    let data = store.read();
    viewer
        .state()
        .rows()
        .iter()
        .filter_map(|&id| data.packet(id))
        .map(|p| p.label.unwrap_or("").to_owned())
        .collect()
}

#[test]
fn the_filter_bar_narrows_the_table_and_points_at_a_bad_expression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_sample(dir.path());
    let mut harness = harness(Viewer::new(None));
    open(&mut harness, &path);
    assert_eq!(shown_labels(&harness).len(), 5);

    // Connection facts only.
    harness.state_mut().filter_bar_mut().filter_text = "conn.port == 443 && dir == c2s".into();
    harness.get_by_label("Apply").click();
    wait_for_filter(&mut harness);
    assert_eq!(shown_labels(&harness), ["GET /status"]);
    harness.get_by_label("1 of 5 match");

    // A dissected field (the HTTP dissector's method), or a packet flag.
    harness.state_mut().filter_bar_mut().filter_text = "http.method == \"GET\" || edited".into();
    harness.get_by_label("Apply").click();
    wait_for_filter(&mut harness);
    assert_eq!(shown_labels(&harness), ["GET /status", "ping (edited)"]);

    // A bad expression says where, and the last good filter stays in force.
    harness.state_mut().filter_bar_mut().filter_text = "dir == c2s &&".into();
    harness.get_by_label("Apply").click();
    harness.run();
    harness.get_by_label_contains("(at position 13)");
    assert_eq!(shown_labels(&harness), ["GET /status", "ping (edited)"]);

    // Text search alone, then Clear shows everything again.
    harness.state_mut().filter_bar_mut().filter_text.clear();
    harness.state_mut().filter_bar_mut().search_text = "nuloginreply".into();
    harness.get_by_label("Apply").click();
    wait_for_filter(&mut harness);
    assert_eq!(shown_labels(&harness), ["acct NuLoginReply"]);
    harness.get_by_label("Clear filter").click();
    harness.run();
    assert_eq!(shown_labels(&harness).len(), 5);
}

#[test]
fn filters_on_dissected_fields_reuse_one_decode_until_the_capture_grows() {
    let store = Arc::new(CaptureStore::from_data(sample_data()));
    let mut viewer = Viewer::new(None);
    viewer.attach_store(store.clone(), "live");
    let mut harness = harness(viewer);
    harness.run();
    for (filter, want) in [
        ("http.method == \"GET\"", vec!["GET /status"]),
        ("http.method == \"POST\"", vec![]),
        ("http.method", vec!["GET /status"]),
    ] {
        harness.state_mut().filter_bar_mut().filter_text = filter.into();
        harness.get_by_label("Apply").click();
        wait_for_filter(&mut harness);
        assert_eq!(shown_labels(&harness), want, "{filter}");
    }
    assert_eq!(harness.state().filter_bar().decode_runs(), 1);

    // New traffic: the next run decodes again and sees it.
    {
        let mut data = store.write();
        data.append(
            NewPacket::new(
                ConnectionId(1),
                Direction::ClientToServer,
                Timestamp::from_secs_nanos(1_754_607_233, 0),
                b"GET /more HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            )
            .with_label("GET /more"),
        )
        .expect("append");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while shown_labels(&harness) != ["GET /status", "GET /more"] {
        assert!(Instant::now() < deadline, "{:?}", shown_labels(&harness));
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(harness.state().filter_bar().decode_runs(), 2);
}
