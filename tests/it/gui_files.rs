//! The workbench's files, watching panes, demo and settings, driven headless through
//! egui_kittest on the real `Viewer`: files are written through the menus and read back with
//! the capture readers (and tshark), log events come through a real tracing subscriber, and
//! the demo logs in through a real engine's taps.
#![cfg(feature = "gui")]

use crate::common::free_port;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui::{self, Key, Modifiers, accesskit::Role};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gamewire::capture::files::{self, Format, OpenOptions, Scope};
use gamewire::capture::{
    CaptureStore, Connection, Direction, NewPacket, StoreData, Timestamp, Transport,
};
use gamewire::dissect::registry::Registry;
use gamewire::dissect::session::decode_capture;
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::log_ring::LogRing;
use gamewire::engine::{Engine, StartOptions};
use gamewire::gui::Viewer;
use gamewire::gui::settings::{Settings, Theme, WatchTab};
use tracing_subscriber::layer::SubscriberExt;

const REQUEST: &[u8] = b"GET /status?v=2 HTTP/1.1\r\nHost: example.test\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/// A FESL connection and an HTTP one, two packets each.
fn sample() -> StoreData {
    let mut data = StoreData::new();
    let t0 = Timestamp::from_secs_nanos(1_754_607_232, 0);
    let at = |ms: i64| Timestamp(t0.0 + ms * 1_000_000);
    let mut fesl = Connection::new(
        "127.0.0.1:50000".parse().unwrap(),
        "10.0.0.2:18680".parse().unwrap(),
        Transport::Tcp,
        t0,
    );
    fesl.route = Some("fesl".into());
    let fesl = data.add_connection(fesl);
    let mut http = Connection::new(
        "127.0.0.1:50001".parse().unwrap(),
        "10.0.0.3:80".parse().unwrap(),
        Transport::Tcp,
        at(5),
    );
    http.protocol = Some("http".into());
    let http = data.add_connection(http);
    for (conn, dir, ms, bytes) in [
        (
            fesl,
            Direction::ClientToServer,
            10,
            b"acct\x00\x00\x00\x10NuLogin\x00".to_vec(),
        ),
        (
            fesl,
            Direction::ServerToClient,
            20,
            b"acct\x80\x00\x00\x0cNuLo".to_vec(),
        ),
        (http, Direction::ClientToServer, 30, REQUEST.to_vec()),
        (http, Direction::ServerToClient, 45, RESPONSE.to_vec()),
    ] {
        data.append(NewPacket::new(conn, dir, at(ms), bytes))
            .unwrap();
    }
    data
}

fn harness(viewer: Viewer) -> Harness<'static, Viewer> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(|ui, viewer: &mut Viewer| viewer.show(ui), viewer)
}

/// Steps frames until `done` holds (background threads wake the window, but the harness
/// only draws when stepped).
fn step_until(harness: &mut Harness<'_, Viewer>, what: &str, done: impl Fn(&Viewer) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    harness.step();
    while !done(harness.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
        harness.step();
    }
    harness.run_steps(3);
}

fn opened(dir: &Path) -> Harness<'static, Viewer> {
    let path = dir.join("session.gwcap");
    crate::common::save(&sample(), &path);
    let mut harness = harness(Viewer::new(Some(path)).with_log_ring(LogRing::new(100)));
    step_until(&mut harness, "the capture to load", |v| {
        !v.is_loading() && v.state().capture().is_some()
    });
    harness
}

/// File ▸ `item`, then the prompt's confirm button, then waits for the save to finish.
fn save_through_menu(harness: &mut Harness<'_, Viewer>, item: &str, confirm: &str) {
    harness.get_by_label("File").click();
    harness.run_steps(2);
    harness.get_by_label_contains(item).click();
    harness.run_steps(2);
    harness.get_by_role_and_label(Role::TextInput, "Capture path");
    harness.get_by_label(confirm).click();
    step_until(harness, "the save", |v| {
        !v.shell().is_saving() && v.shell().status().is_some()
    });
    let status = harness.state().shell().status().cloned();
    assert!(matches!(status, Some(Ok(_))), "save failed: {status:?}");
}

#[test]
fn save_as_gwcap_through_the_menu_writes_a_file_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = opened(dir.path());
    save_through_menu(&mut harness, "Save capture as .gwcap…", "Save");
    let saved = dir.path().join("capture.gwcap");
    let back = files::open(&saved, &OpenOptions { skip_bad: false }).unwrap();
    assert_eq!(back.data.packet_count(), 4);
    assert_eq!(back.data.connection_count(), 2);
    let original = sample();
    for (a, b) in original.packets().zip(back.data.packets()) {
        assert_eq!(
            (a.direction, a.timestamp, a.data),
            (b.direction, b.timestamp, b.data)
        );
    }
    harness.get_by_label_contains("Saved 2 connections, 4 packets");
    // The saved file joins the recent files, first.
    assert_eq!(
        harness.state().shell().settings.recent.first(),
        Some(&std::path::absolute(&saved).unwrap())
    );
    assert!(!dir.path().join("capture.gwcap.part").exists());
}

#[test]
fn pcapng_and_sd_json_exports_read_back_and_tshark_reads_the_pcapng() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = opened(dir.path());
    save_through_menu(&mut harness, "Export pcapng…", "Export");
    save_through_menu(&mut harness, "Export sd.json…", "Export");

    let pcapng = dir.path().join("capture.pcapng");
    let back = files::open(&pcapng, &OpenOptions { skip_bad: false }).unwrap();
    assert_eq!(back.data.packet_count(), 4);
    let json = files::open(
        &dir.path().join("capture.sd.json"),
        &OpenOptions { skip_bad: false },
    )
    .unwrap();
    assert_eq!(json.data.packet_count(), 4);

    if let Ok(out) = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&pcapng)
        .output()
    {
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("GET /status?v=2"), "tshark read:\n{text}");
    }
}

#[test]
fn har_export_of_the_shown_connection_pairs_request_and_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = opened(dir.path());
    // Show only the HTTP connection; the export then defaults to it alone.
    harness.get_by_label("127.0.0.1:50001").click();
    harness.run_steps(2);
    save_through_menu(&mut harness, "Export HAR…", "Export");
    harness.get_by_label_contains("Saved 1 connections, 2 packets");

    let text = std::fs::read_to_string(dir.path().join("capture.har")).unwrap();
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["request"]["method"], "GET");
    assert_eq!(e["request"]["url"], "http://example.test/status?v=2");
    assert_eq!(e["request"]["queryString"][0]["name"], "v");
    assert_eq!(e["response"]["status"], 200);
    assert_eq!(e["response"]["content"]["text"], "ok");
    assert_eq!(e["response"]["content"]["mimeType"], "text/plain");
    assert_eq!(e["time"], 15.0);
}

#[test]
fn a_save_to_a_missing_directory_is_reported_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = opened(dir.path());
    let target = dir.path().join("no/such/dir/out.gwcap");
    harness
        .state_mut()
        .save_as(target.clone(), Format::Gwcap, Scope::All);
    step_until(&mut harness, "the save", |v| !v.shell().is_saving());
    assert!(matches!(harness.state().shell().status(), Some(Err(_))));
    harness.get_by_label_contains("Could not save:");
    assert!(!target.exists());
}

#[test]
fn the_log_pane_shows_tracing_events_and_filters_by_level() {
    let ring = LogRing::new(100);
    let mut harness = harness(Viewer::new(None).with_log_ring(Arc::clone(&ring)));
    harness.run();
    harness.get_by_label_contains("No log lines yet");
    let subscriber = tracing_subscriber::registry().with(ring.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(
            route = "fesl",
            "upstream 10.0.0.9:18680 refused the connection"
        );
        tracing::info!("a quiet line");
    });
    harness.run();
    harness.get_by_label_contains("upstream 10.0.0.9:18680 refused the connection route=fesl");
    harness.get_by_label_contains("a quiet line");

    harness.state_mut().shell_mut().log.min_level = tracing::Level::WARN;
    harness.run();
    assert!(harness.query_by_label_contains("a quiet line").is_none());
    harness.get_by_label_contains("refused the connection");
}

#[test]
fn the_audit_pane_lists_logins_and_errors() {
    let ring = LogRing::new(100);
    let mut harness = harness(Viewer::new(None).with_log_ring(Arc::clone(&ring)));
    let subscriber = tracing_subscriber::registry().with(ring.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "gamewire::audit", kind = "login_failed", service = "fesl",
            who = "mallory@x", error = "wrong password", "login refused");
        tracing::info!(target: "gamewire::audit", kind = "login", service = "gp",
            who = "Alice", "login accepted");
        tracing::error!(target: "gamewire::servers::fesl", "accounts database is locked");
        tracing::warn!(target: "wgpu_hal", "display noise that is not an alert");
    });
    harness.run();
    harness
        .get_by_label("Audit & alerts (1 ok, 1 refused)")
        .click();
    harness.run();
    harness.get_by_label("login failed");
    harness.get_by_label("mallory@x");
    harness.get_by_label("login ok");
    harness.get_by_label_contains("accounts database is locked");
    assert!(harness.query_by_label_contains("display noise").is_none());
}

fn engine(dir: &Path) -> Engine {
    let (fesl_server, gp_server) = (free_port(), free_port());
    let tap = |name: &str, upstream: SocketAddr| TapConfig {
        name: name.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        dissector: Some(name.into()),
        ..TapConfig::default()
    };
    let mut config = Config {
        data_dir: dir.join("data"),
        certs_dir: dir.join("certs"),
        taps: vec![tap("fesl", fesl_server), tap("gp", gp_server)],
        ..Config::default()
    };
    config.proxy.enabled = false;
    assert!(config.servers.enable_at("fesl", fesl_server));
    assert!(config.servers.enable_at("gp", gp_server));
    Engine::start(config, StartOptions::default()).unwrap()
}

#[test]
fn f5_runs_the_demo_client_and_the_live_store_holds_a_decoded_fesl_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = harness(Viewer::new(None).with_engine(engine(dir.path())));
    harness.run_steps(2);
    // The empty live capture offers the demo.
    harness.get_by_label_contains("No traffic yet.");
    harness.key_press(Key::F5);
    step_until(&mut harness, "the demo", |v| {
        v.shell()
            .demo
            .progress()
            .is_some_and(|p| p.outcome.is_some())
    });
    let progress = harness.state().shell().demo.progress().unwrap();
    assert!(matches!(progress.outcome, Some(Ok(_))), "{progress:?}");
    assert!(progress.steps.iter().all(|s| s.ok));
    harness.get_by_label_contains("Demo finished: logged in as");
    assert!(harness.query_by_label_contains("No traffic yet.").is_none());

    let store = harness.state().engine().unwrap().store().clone();
    let data = store.read();
    let routes: Vec<_> = data
        .connections()
        .iter()
        .filter_map(|c| c.route.clone())
        .collect();
    assert!(routes.contains(&"fesl".to_string()) && routes.contains(&"gp".to_string()));
    let decoded = decode_capture(&Registry::standard(), &Default::default(), &data, None);
    let labels: Vec<&str> = decoded
        .messages
        .values()
        .flatten()
        .map(|d| d.message.label.as_str())
        .collect();
    for want in [
        "fsys Hello",
        "acct NuLogin",
        "acct NuLoginPersona",
        "gp login",
    ] {
        assert!(labels.contains(&want), "no {want} in {labels:?}");
    }
    drop(data);
    // The traffic plot counts the session per route.
    harness.state_mut().shell_mut().settings.watch_tab = WatchTab::Traffic;
    harness.run_steps(2);
    let totals = harness.state().shell().traffic.totals();
    assert!(
        totals.iter().any(|(r, m, _)| r == "fesl" && *m > 0),
        "{totals:?}"
    );
}

/// eframe's storage, in memory.
#[derive(Default)]
struct Memory(HashMap<String, String>);

impl eframe::Storage for Memory {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn settings_survive_a_restart_and_shortcuts_change_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = opened(dir.path());
    harness.key_combination_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, &[Key::T]);
    harness.key_combination_modifiers(Modifiers::COMMAND, &[Key::L]);
    harness.run();
    assert_eq!(harness.ctx.theme(), egui::Theme::Light);
    let before = harness.state().shell().settings.clone();
    assert_eq!(before.theme, Theme::Light);
    assert!(!before.watch_open);
    assert_eq!(before.recent.len(), 1);

    let mut storage = Memory::default();
    eframe::App::save(harness.state_mut(), &mut storage);
    let restarted = Viewer::new(None).with_storage(Some(&storage));
    assert_eq!(restarted.shell().settings, before);
    assert_eq!(Settings::load(&Memory::default()), Settings::default());

    // F1 lists the shortcuts.
    harness.key_press(Key::F1);
    harness.run();
    harness.get_by_label("Keyboard shortcuts");
    harness.get_by_label("Run the demo client");
}

#[test]
fn a_busy_live_store_saves_while_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CaptureStore::new());
    let conn = store.add_connection(Connection::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for i in 0..120_000 {
        store
            .append(NewPacket::new(
                conn,
                Direction::ClientToServer,
                Timestamp(i),
                vec![7; 64],
            ))
            .unwrap();
    }
    let mut viewer = Viewer::new(None).with_log_ring(LogRing::new(10));
    viewer.attach_store(Arc::clone(&store), "busy");
    let mut harness = harness(viewer);
    harness.run_steps(2);
    let target = dir.path().join("busy.gwcap");
    harness
        .state_mut()
        .save_as(target.clone(), Format::Gwcap, Scope::All);
    // Keep appending while it saves: the copy takes slices, so the writer is never stuck.
    let mut appended = 0;
    while harness.state().shell().is_saving() {
        store
            .append(NewPacket::new(
                conn,
                Direction::ServerToClient,
                Timestamp(200_000 + appended),
                vec![1],
            ))
            .unwrap();
        appended += 1;
        harness.step();
    }
    let back = files::open(&target, &OpenOptions { skip_bad: false }).unwrap();
    assert!(back.data.packet_count() >= 120_000);
    assert!(back.data.packet_count() <= 120_000 + appended as usize);
}
