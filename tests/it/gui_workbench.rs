//! The decoded workbench driven headless through egui_kittest: packet labels from the
//! dissectors, the tree linked to the hex both ways, the servers panel, breakpoints held and
//! released from the window, and a message edited and resent to the real FESL emulator.
#![cfg(feature = "gui")]

use crate::common::free_port;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use gamewire::capture::{
    Connection, ConnectionId, Direction, NewPacket, PacketFlags, PacketId, StoreData, Timestamp,
    Transport,
};
use gamewire::dissect::fesl::{Tag, write_packet};
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{Engine, StartOptions};
use gamewire::gui::Viewer;
use gamewire::gui::decode::{Buffer, NodeRef};
use gamewire::gui::workbench::BenchAction;
use gamewire::security::{TEST_EMAIL, TEST_PASSWORD};

use crate::engine_taps::{engine_with, route_addr, tap_to};

fn login(number: u32, nuid: &str, password: &str) -> Vec<u8> {
    write_packet(
        b"acct",
        Tag::SingleClient,
        number,
        &[("TXN", "NuLogin"), ("nuid", nuid), ("password", password)],
        true,
    )
}

fn hello(number: u32) -> Vec<u8> {
    write_packet(
        b"fsys",
        Tag::SingleClient,
        number,
        gamewire::clients::ra3::HELLO,
        true,
    )
}

/// One FESL connection with unlabelled packets: a Hello, then a packet holding a ping and
/// the start of a login whose rest comes in the next packet.
fn fesl_capture(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let mut data = StoreData::new();
    let mut c = Connection::new(
        "127.0.0.1:50000".parse().expect("addr"),
        "127.0.0.1:18800".parse().expect("addr"),
        Transport::Tcp,
        Timestamp(1_754_607_232_000_000_000),
    );
    c.route = Some("fesl".into());
    let c = data.add_connection(c);
    let nu_login = login(2, "player@example.com", "secret");
    let ping = write_packet(b"fsys", Tag::SingleClient, 1, &[("TXN", "Ping")], true);
    let packets = [
        hello(1),
        [ping.as_slice(), &nu_login[..20]].concat(),
        nu_login[20..].to_vec(),
    ];
    for (i, bytes) in packets.into_iter().enumerate() {
        data.append(NewPacket::new(
            c,
            Direction::ClientToServer,
            Timestamp(1_754_607_232_000_000_000 + i as i64 * 1_000_000),
            bytes,
        ))
        .expect("append");
    }
    let path = dir.join("fesl.gwcap");
    crate::common::save(&data, &path);
    (path, ping)
}

fn harness(viewer: Viewer) -> Harness<'static, Viewer> {
    Harness::builder()
        .with_size([1500.0, 950.0])
        .with_max_steps(16)
        .build_ui_state(
            |ui, viewer: &mut Viewer| viewer.show(ui),
            // The log, audit and traffic panes are another file's subject; closed, they
            // leave these tests the room a small window would not.
            {
                let mut viewer = viewer;
                viewer.shell_mut().settings.watch_open = false;
                viewer
            },
        )
}

/// Steps frames until `cond` holds (the engine and the decoder work on their own threads).
fn step_until(h: &mut Harness<'_, Viewer>, what: &str, mut cond: impl FnMut(&Viewer) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        h.step();
        if cond(h.state()) {
            break;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

fn open_decoded(h: &mut Harness<'_, Viewer>, path: &Path) {
    h.state_mut().open(path);
    step_until(h, "the capture to load and decode", |v| {
        !v.is_loading() && v.state().capture().is_some() && !v.workbench().is_decoding()
    });
    h.run();
}

#[test]
fn packets_are_labelled_by_their_dissector_and_tree_and_hex_select_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, ping) = fesl_capture(dir.path());
    let mut h = harness(Viewer::new(None));
    open_decoded(&mut h, &path);

    // Labels from the FESL dissector; the second packet starts two messages.
    h.get_by_label("fsys Hello");
    h.get_by_label("fsys Ping +1");
    h.get_by_label_contains("fesl/tcp");

    h.get_by_label("fsys Ping +1").click();
    h.run();
    let decode = h.state().workbench().decode().expect("decoded");
    assert_eq!(decode.messages.len(), 2);
    assert_eq!(decode.messages[1].message.label, "acct NuLogin");
    assert_eq!(decode.messages[1].offset, ping.len());

    // Click the ping's TXN row in the tree pane: exactly its bytes light up.
    let txn = decode.messages[0]
        .message
        .tree
        .find(&["payload", "TXN"])
        .expect("TXN")
        .clone();
    let row = format!(
        "TXN: {}  [{}..{}]",
        txn.display_value(),
        txn.range.start,
        txn.range.end
    );
    h.get_by_label(&row).click();
    h.run();
    assert_eq!(h.state().workbench().highlight(), Some(txn.range.clone()));
    h.get_by_label(&format!("selected {}..{}", txn.range.start, txn.range.end));

    // The login's nuid, in the second message of the packet: its range is shifted by the
    // ping before it.
    let decode = h.state().workbench().decode().expect("decoded");
    let tree = decode.messages[1].message.tree.clone();
    let payload = tree
        .children
        .iter()
        .position(|c| c.name == "payload")
        .expect("payload");
    let nuid_at = tree.children[payload]
        .children
        .iter()
        .position(|c| c.name == "nuid")
        .expect("nuid");
    let nuid = tree.children[payload].children[nuid_at].range.clone();
    h.state_mut()
        .act(gamewire::gui::Action::Bench(BenchAction::SelectNode(
            NodeRef {
                message: 1,
                buffer: Buffer::Wire,
                path: vec![payload, nuid_at],
            },
        )));
    h.run();
    let want = ping.len() + nuid.start..ping.len() + nuid.end;
    assert_eq!(h.state().workbench().highlight(), Some(want.clone()));
    h.get_by_label(&format!("selected {}..{}", want.start, want.end));

    // Click the first byte of the ping's header in the hex dump: the deepest node there is
    // the ping's command field.
    let line = h.get_by_label_contains("00000000  66 73 79 73");
    let rect = line.rect();
    // A full line: offset, two spaces, 16 bytes of hex (48 columns), two spaces, 16 ASCII.
    let char_width = rect.width() / 76.0;
    // Byte 1 sits at character 13 ("00000000  66 73").
    let at = eframe::egui::pos2(rect.left() + char_width * 13.5, rect.center().y);
    h.hover_at(at);
    for pressed in [true, false] {
        h.event(eframe::egui::Event::PointerButton {
            pos: at,
            button: eframe::egui::PointerButton::Primary,
            pressed,
            modifiers: Default::default(),
        });
    }
    h.run();
    let selected = h
        .state()
        .workbench()
        .selected_node()
        .expect("a node")
        .clone();
    assert_eq!(selected.message, 0);
    assert_eq!(selected.buffer, Buffer::Wire);
    let node = h.state().workbench().node().expect("node");
    assert_eq!(node.name, "command");
    assert!(node.range.contains(&1));
    assert_eq!(h.state().workbench().highlight(), Some(node.range.clone()));
}

#[test]
fn the_servers_panel_shows_a_port_in_use_and_the_rest_keeps_running() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut blocked = tap_to("blocked", sink.local_addr().expect("addr"), None);
    blocked.listen = busy.local_addr().expect("addr");
    let (engine, _dir) = engine_with(
        vec![
            blocked,
            tap_to("fine", sink.local_addr().expect("addr"), None),
        ],
        vec![],
    );
    let fine = route_addr(&engine, "fine");
    let mut h = harness(Viewer::new(None).with_engine(engine));
    h.run();
    h.get_by_label("Servers");
    h.get_by_label_contains("the port is already in use");
    h.get_by_label_contains(&fine.to_string());
    assert_eq!(h.query_all_by_label("failed").count(), 1);
    assert_eq!(h.query_all_by_label("running").count(), 1);

    // Freeing the port and pressing Start brings the route up from the panel.
    drop(busy);
    // The Start button on the blocked route's row (the disabled proxy and servers are
    // listed, stopped, above it).
    let row = h.get_by_label("blocked").rect().top();
    let start = h
        .query_all_by_label("Start")
        .filter(|b| !b.accesskit_node().is_disabled())
        .min_by(|a, b| {
            (a.rect().top() - row)
                .abs()
                .total_cmp(&(b.rect().top() - row).abs())
        })
        .expect("an enabled Start button");
    start.click();
    h.run();
    assert_eq!(h.query_all_by_label("running").count(), 2);
    assert!(
        h.query_by_label_contains("already in use").is_none(),
        "{:?}",
        h.state().workbench().notice()
    );

    // Stop, then the route is listed as stopped.
    let stopped_before = h.query_all_by_label("stopped").count();
    h.query_all_by_label("Stop")
        .find(|b| !b.accesskit_node().is_disabled())
        .expect("an enabled Stop button")
        .click();
    h.run();
    assert_eq!(h.query_all_by_label("stopped").count(), stopped_before + 1);
}

/// A server that records every byte it receives.
fn sink_server() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(buf[..n].to_vec());
                }
            });
        }
    });
    (addr, rx)
}

fn received(rx: &std::sync::mpsc::Receiver<Vec<u8>>, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < want {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => got.extend(chunk),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_breakpoint_added_in_the_window_holds_a_login_until_forward_is_clicked() {
    let (server, rx) = sink_server();
    let (engine, _dir) = engine_with(vec![tap_to("fesl", server, Some("fesl"))], vec![]);
    let tap = route_addr(&engine, "fesl");
    let mut h = harness(Viewer::new(None).with_engine(engine));
    h.run();
    h.get_by_label("No rules: every message flows.");
    {
        let form = &mut h.state_mut().workbench_mut().rule_form;
        form.route = "fesl".into();
        form.field = "TXN".into();
        form.equals = "NuLogin".into();
    }
    h.get_by_label("Add rule").click();
    h.run();
    h.get_by_label("fesl both ways TXN == \"NuLogin\"");

    let mut client = TcpStream::connect(tap).expect("connect");
    let nu_login = login(1, "a@b.c", "pw");
    client.write_all(&nu_login).expect("write");
    step_until(&mut h, "the login to be held", |v| {
        v.engine().is_some_and(|e| !e.held().is_empty())
    });
    h.run();
    h.get_by_label("Held messages (1)");
    h.get_by_label_contains("fesl → acct NuLogin");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing reached the server while held"
    );

    h.get_by_label("Forward").click();
    h.run();
    assert_eq!(received(&rx, nu_login.len()), nu_login);
    h.get_by_label("Held messages (0)");

    // And the rule goes again from its Remove button.
    h.get_by_label("Remove").click();
    h.run();
    assert!(
        h.state()
            .engine()
            .is_some_and(|e| e.breakpoints().is_empty())
    );
}

/// The FESL emulator behind a tap, on free ports.
fn fesl_engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = free_port();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        certs_dir: dir.path().join("certs"),
        taps: vec![TapConfig {
            name: "fesl".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: server.to_string(),
            dissector: Some("fesl".into()),
            ..TapConfig::default()
        }],
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    assert!(config.servers.enable_at("fesl", server));
    let engine = Engine::start(config, StartOptions::default()).expect("engine");
    (engine, dir)
}

fn reply_with(
    engine: &gamewire::gui::EngineView,
    conn: ConnectionId,
    after: PacketId,
    needle: &str,
) -> bool {
    let data = engine.store().read();
    data.packets_of(conn).any(|p| {
        p.id > after
            && p.direction == Direction::ServerToClient
            && p.data.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn a_login_edited_in_the_window_is_resent_to_the_fesl_emulator_and_repeated() {
    let (engine, _dir) = fesl_engine();
    let tap = route_addr(&engine, "fesl");
    let mut client = TcpStream::connect(tap).expect("connect");
    // Pauses keep each message in a packet of its own, as a game client's would be.
    let pause = || std::thread::sleep(Duration::from_millis(150));
    client.write_all(&hello(1)).expect("hello");
    pause();
    let memcheck = write_packet(
        b"fsys",
        Tag::SingleServer,
        0,
        &[("TXN", "MemCheck"), ("result", "")],
        true,
    );
    client.write_all(&memcheck).expect("memcheck");
    pause();
    let wrong = login(2, "nobody@example.com", "wrong");
    client.write_all(&wrong).expect("login");

    let mut h = harness(Viewer::new(None).with_engine(engine));
    let conn = ConnectionId(0);
    let mut login_packet = None;
    step_until(&mut h, "the failed login and its answer", |v| {
        let Some(e) = v.engine() else { return false };
        let data = e.store().read();
        login_packet = data
            .packets_of(conn)
            .find(|p| p.direction == Direction::ClientToServer && p.data == wrong.as_slice())
            .map(|p| p.id);
        login_packet.is_some_and(|id| {
            data.packets_of(conn)
                .any(|p| p.id > id && p.direction == Direction::ServerToClient)
        })
    });
    let login_packet = login_packet.expect("the login was recorded");
    h.state_mut()
        .act(gamewire::gui::Action::SelectPacket(login_packet));
    h.run();
    h.get_by_label("Edit and resend…").click();
    h.run();
    h.get_by_label(gamewire::gui::editor::WINDOW_TITLE);
    {
        let editor = h
            .state_mut()
            .workbench_mut()
            .editor_mut()
            .expect("the editor is open");
        assert!(editor.set_field("payload.nuid", TEST_EMAIL));
        assert!(editor.set_field("payload.password", TEST_PASSWORD));
    }
    h.run();
    let expected = login(2, TEST_EMAIL, TEST_PASSWORD);
    h.get_by_label(&format!("Encoded: {} bytes", expected.len()));

    h.get_by_label("Send to server").click();
    h.run();
    let notice = h.state().workbench().notice().cloned().expect("a notice");
    assert!(!notice.error, "{}", notice.text);
    // The emulator got the edited login on the live connection: it answers with a login key.
    let last = PacketId(
        h.state()
            .engine()
            .expect("engine")
            .store()
            .read()
            .packet_count() as u64,
    );
    step_until(&mut h, "the emulator to accept the edited login", |v| {
        v.engine()
            .is_some_and(|e| reply_with(e, conn, login_packet, "lkey="))
    });
    {
        let engine = h.state().engine().expect("engine");
        let data = engine.store().read();
        let injected: Vec<Vec<u8>> = data
            .packets_of(conn)
            .filter(|p| p.flags.contains(PacketFlags::INJECTED))
            .map(|p| p.data.to_vec())
            .collect();
        assert_eq!(injected, vec![expected.clone()]);
        assert!(last.0 > login_packet.0);
    }

    // Repeater: the Hello, on a new connection straight to the emulator; its answer is
    // shown beside the edit.
    let hello_packet = {
        let engine = h.state().engine().expect("engine");
        let data = engine.store().read();
        data.packets_of(conn)
            .find(|p| p.direction == Direction::ClientToServer)
            .map(|p| p.id)
            .expect("the hello")
    };
    h.state_mut()
        .act(gamewire::gui::Action::SelectPacket(hello_packet));
    h.run();
    h.get_by_label("Edit and resend…").click();
    h.run();
    h.get_by_label("Repeat on new connection").click();
    step_until(&mut h, "the repeater's answer", |v| {
        v.workbench().editor().is_some_and(|e| e.answer().is_some())
    });
    h.run();
    let answer = h
        .state()
        .workbench()
        .editor()
        .and_then(|e| e.answer().cloned())
        .expect("an answer");
    let answer = answer.expect("the emulator answered");
    let labels: Vec<&str> = answer
        .messages
        .iter()
        .map(|m| m.message.label.as_str())
        .collect();
    assert!(labels.contains(&"fsys Hello"), "{labels:?}");
    assert!(labels.contains(&"fsys MemCheck"), "{labels:?}");
    // The repeater's connection bypasses the tap: the capture still has one connection.
    assert_eq!(
        h.state()
            .engine()
            .expect("engine")
            .store()
            .read()
            .connection_count(),
        1
    );
    drop(client);
}

#[test]
fn the_editor_offers_decoded_body_and_decompressed_payload_fields_and_encodes_them_back() {
    use gamewire::dissect::{Context, Registry};
    use gamewire::gui::editor::{EditSource, Editor};
    use std::sync::Arc;

    let registry = Registry::standard();
    let context = Arc::new(Context::default());
    let source = |direction| EditSource::Packet {
        packet: PacketId(0),
        route: None,
        connection: ConnectionId(0),
        direction,
    };

    // A gzip JSON response: the JSON fields are offered; the edit goes out gzip-compressed.
    let json = br#"{"displayname":"TestCommander"}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json).unwrap();
    let gz = gz.finish().unwrap();
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    response.extend_from_slice(&gz);
    let mut editor = Editor::new(
        &registry,
        context.clone(),
        source(Direction::ServerToClient),
        Some("http"),
        response.clone(),
    );
    assert_eq!(
        editor.encoded().unwrap(),
        &response[..],
        "unedited: as it came"
    );
    assert!(editor.set_field("body.json.displayname", "Renamed"));
    let out = editor.encoded().unwrap().to_vec();
    let http = registry.get("http").unwrap();
    let again = http
        .decoder(Direction::ServerToClient, &context)
        .decode(&out);
    assert!(!again.is_error(), "{:#?}", again.tree);
    let decoded = again
        .derived
        .iter()
        .find(|d| d.name == "body (decoded)")
        .expect("still gzip");
    assert_eq!(decoded.bytes, br#"{"displayname":"Renamed"}"#);

    // A zstd-compressed Hytale packet: its decompressed data is the field.
    let plain: Vec<u8> = (0..5_000u32).map(|i| (i % 11) as u8).collect();
    let packet = gamewire::dissect::hytale::packet(131, &plain).unwrap();
    let mut editor = Editor::new(
        &registry,
        context.clone(),
        source(Direction::ServerToClient),
        Some("hytale"),
        packet.clone(),
    );
    assert_eq!(editor.encoded().unwrap(), &packet[..]);
    assert!(editor.set_field("data", "0102030405"));
    let out = editor.encoded().unwrap().to_vec();
    let hytale = registry.get("hytale").unwrap();
    let again = hytale
        .decoder(Direction::ServerToClient, &context)
        .decode(&out);
    assert_eq!(again.derived[0].bytes, [1, 2, 3, 4, 5]);
    assert!(out != packet);
}
