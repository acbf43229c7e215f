//! The command line as scripts use it: real binary, real files, exit codes and messages.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gamewire::capture::{files, gwcap, sdjson};

fn run(args: &[&str]) -> Output {
    Command::new(common::gamewire_bin())
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("gamewire runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn samples_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caps");
    let out = run(&["samples", "--out", p(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    (dir, path)
}

#[test]
fn inspect_json_has_the_documented_fields() {
    let (_d, caps) = samples_dir();
    let out = run(&["inspect", "--json", p(&caps.join("ra3-login.gwcap"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 20);
    for v in &lines {
        let conn = v["connection"].as_str().unwrap();
        assert!(conn.parse::<std::net::SocketAddr>().is_ok(), "{conn}");
        assert!(matches!(
            v["direction"].as_str(),
            Some("client->server" | "server->client")
        ));
        let hex = v["hex"].as_str().unwrap();
        assert_eq!(v["size"].as_u64().unwrap() as usize * 2, hex.len());
        chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
        assert!(v.get("label").is_some());
    }
    assert_eq!(lines[0]["label"], "fsys Hello");
    assert_eq!(lines[0]["connection"], "127.0.0.1:50123");
    assert!(
        lines[0]["hex"]
            .as_str()
            .unwrap()
            .starts_with("66737973c0000001")
    );
}

#[test]
fn inspect_text_lists_connections_and_packets() {
    let (_d, caps) = samples_dir();
    let out = run(&["inspect", p(&caps.join("ra3-login.gwcap"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2 connections, 20 packets"), "{text}");
    assert!(
        text.contains("127.0.0.1:50123 -> 127.0.0.1:18800"),
        "{text}"
    );
    assert!(text.contains("acct GameSpyPreAuth"), "{text}");
    assert!(text.contains("fsys........TXN="), "{text}");
}

#[test]
fn convert_between_gwcap_and_sd_json_keeps_the_traffic() {
    let (dir, caps) = samples_dir();
    let json = dir.path().join("ra3.sd.json");
    let back = dir.path().join("back.gwcap");
    let out = run(&["convert", p(&caps.join("ra3-login.gwcap")), p(&json)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["convert", p(&json), p(&back)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = gwcap::load(&caps.join("ra3-login.gwcap")).unwrap().data;
    let b = gwcap::load(&back).unwrap().data;
    // sd.json keeps bytes, direction, label, client address and microseconds.
    assert_eq!(a.packet_count(), b.packet_count());
    for (x, y) in a.packets().zip(b.packets()) {
        assert_eq!(x.data, y.data);
        assert_eq!(x.direction, y.direction);
        assert_eq!(x.label, y.label);
        assert_eq!(x.timestamp.0 / 1000, y.timestamp.0 / 1000);
        assert_eq!(
            a.connection(x.connection).unwrap().client,
            b.connection(y.connection).unwrap().client
        );
    }
}

#[test]
fn convert_exports_har_and_refuses_har_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = gamewire::capture::StoreData::new();
    let conn = data.add_connection(gamewire::capture::Connection::new(
        "127.0.0.1:50001".parse().unwrap(),
        "10.0.0.3:80".parse().unwrap(),
        gamewire::capture::Transport::Tcp,
        gamewire::capture::Timestamp(1_754_607_232_000_000_000),
    ));
    for (direction, ms, bytes) in [
        (
            gamewire::capture::Direction::ClientToServer,
            0,
            &b"PUT /save/7 HTTP/1.1\r\nHost: game.test\r\nContent-Length: 5\r\n\r\nlevel"[..],
        ),
        (
            gamewire::capture::Direction::ServerToClient,
            8,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsaved",
        ),
    ] {
        let at = gamewire::capture::Timestamp(1_754_607_232_000_000_000 + ms * 1_000_000);
        data.append(gamewire::capture::NewPacket::new(
            conn,
            direction,
            at,
            bytes.to_vec(),
        ))
        .unwrap();
    }
    let gwcap_in = dir.path().join("web.gwcap");
    common::save(&data, &gwcap_in);
    let har = dir.path().join("web.har");
    let out = run(&["convert", p(&gwcap_in), p(&har)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("(HAR)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 HTTP exchanges"),
        "{}",
        stderr(&out)
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&har).unwrap()).unwrap();
    let entries = parsed["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["request"]["method"], "PUT");
    assert_eq!(entries[0]["request"]["url"], "http://game.test/save/7");
    assert_eq!(entries[0]["request"]["postData"]["text"], "level");
    assert_eq!(entries[0]["response"]["status"], 200);
    assert_eq!(entries[0]["response"]["content"]["text"], "saved");
    assert!(!dir.path().join("web.har.part").exists());

    // HAR cannot be read back: one line naming the file, and nothing written.
    let back = dir.path().join("back.gwcap");
    let out = run(&["convert", p(&har), p(&back)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("web.har") && err.contains("export-only"),
        "{err}"
    );
    assert!(!back.exists());
    let out = run(&["inspect", p(&har)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("export-only"), "{}", stderr(&out));
}

#[test]
fn errors_are_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gwcap");
    let out = run(&["inspect", p(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("nope.gwcap"), "{err}");

    let empty = dir.path().join("empty.gwcap");
    std::fs::write(&empty, b"").unwrap();
    let err = stderr(&run(&["inspect", p(&empty)]));
    assert!(
        err.contains("empty.gwcap") && err.contains("empty file"),
        "{err}"
    );

    let garbage = dir.path().join("mystery.bin");
    std::fs::write(&garbage, b"\x7fELF\x02\x01").unwrap();
    let out = run(&["inspect", p(&garbage)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot tell the capture format"),
        "{}",
        stderr(&out)
    );

    // A .json that is really something else is reported with its offset, not a panic.
    let not_json = dir.path().join("capture.json");
    std::fs::write(&not_json, b"GWCAP\r\n\x1a garbage").unwrap();
    let out = run(&["inspect", p(&not_json)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offset 0"), "{}", stderr(&out));

    let out = run(&["convert", p(&missing), p(&dir.path().join("out.txt"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown output format"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_sd_json_record_is_named_and_skip_bad_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sd.json");
    std::fs::write(
        &path,
        r#"[
 {"timestamp":"2025-08-07T22:54:02.579022","direction":"client->server","size":2,"type":"Heartbeat","hex_data":"0a0b","connection":"127.0.0.1:50639"},
 {"timestamp":"2025-08-07T22:54:02.600000","direction":"client->server","size":2,"type":"Heartbeat","hex_data":"zz00","connection":"127.0.0.1:50639"},
 {"timestamp":"2025-08-07T22:54:02.700000","direction":"server->client","size":1,"type":"Ack","hex_data":"ff","connection":"127.0.0.1:50639"}
]"#,
    )
    .unwrap();
    let out = run(&["inspect", "--json", p(&path)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("record 1") && err.contains("\"hex_data\""),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = run(&["inspect", "--json", "--skip-bad", p(&path)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
    assert!(
        stderr(&out).contains("skipped record 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_gwcap_is_recovered_and_reported() {
    let (dir, caps) = samples_dir();
    let bytes = std::fs::read(caps.join("ra3-login.gwcap")).unwrap();
    let cut = dir.path().join("cut.gwcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let out = run(&["inspect", "--json", p(&cut)]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial read without --skip-bad"
    );
    assert_eq!(
        stdout(&out).lines().count(),
        19,
        "every whole packet is still listed"
    );
    let err = stderr(&out);
    assert!(err.contains("cut.gwcap") && err.contains("offset"), "{err}");
    let out = run(&["inspect", "--json", "--skip-bad", p(&cut)]);
    assert_eq!(out.status.code(), Some(0));

    // convert writes what was recovered.
    let fixed = dir.path().join("fixed.gwcap");
    let out = run(&["convert", "--skip-bad", p(&cut), p(&fixed)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(gwcap::load(&fixed).unwrap().data.packet_count(), 19);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["inspect", "--help"],
        vec!["convert", "--help"],
        vec!["samples", "--help"],
        vec!["gui", "--help"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let out = run(&["inspect"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("FILE"));
}

#[cfg(not(feature = "gui"))]
#[test]
fn without_the_gui_feature_no_arguments_says_what_to_run() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("gamewire inspect") && err.contains("gui"),
        "{err}"
    );
}

/// The committed samples are exactly what `gamewire samples` makes, so they never go stale.
#[test]
fn committed_samples_match_the_generator() {
    let (_d, fresh) = samples_dir();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    for name in gamewire::clients::samples::FILES {
        let a = committed.join(name);
        let b = fresh.join(name);
        if name.ends_with(".sd.json") {
            // sd.json holds local time, so compare what it means rather than its text.
            let x = sdjson::import_file(&a, false).unwrap().data;
            let y = sdjson::import_file(&b, false).unwrap().data;
            common::assert_same_capture(&x, &y);
        } else {
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "captures/{name} is stale: run `cargo run -- samples`"
            );
        }
        let opened = files::open(&a, &files::OpenOptions { skip_bad: false }).unwrap();
        assert!(opened.warnings.is_empty());
        assert!(opened.data.packet_count() > 0);
    }
}

#[test]
fn inspect_decode_json_gives_trees_with_packet_ranges() {
    let (_d, caps) = samples_dir();
    for (file, protocol) in [
        ("ra3-login.gwcap", "fesl"),
        ("hytale-connect.gwcap", "hytale"),
        ("sc-diffusion.sd.json", "sc"),
    ] {
        let out = run(&["inspect", "--json", "--decode", p(&caps.join(file))]);
        assert!(out.status.success(), "{}", stderr(&out));
        for line in stdout(&out).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let size = v["size"].as_u64().unwrap();
            let tree = &v["tree"];
            assert!(
                tree.is_object(),
                "{file}: every sample packet decodes: {line}"
            );
            // Every node's range lies within the packet, end exclusive.
            let mut stack = vec![tree];
            while let Some(node) = stack.pop() {
                let r = node["range"].as_array().unwrap();
                let (start, end) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
                assert!(start <= end && end <= size, "{file}: {node}");
                assert!(node["error"].is_null(), "{file}: error node {node}");
                stack.extend(node["children"].as_array().unwrap());
            }
        }
        let first: serde_json::Value =
            serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
        if protocol != "sc" {
            assert_eq!(first["protocol"], protocol);
        }
    }
    // The FESL Hello's TXN is found inside the payload with the exact bytes of its value.
    let out = run(&[
        "inspect",
        "--json",
        "--decode",
        p(&caps.join("ra3-login.gwcap")),
    ]);
    let hello: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    let hex = hex::decode(hello["hex"].as_str().unwrap()).unwrap();
    let text = hello["tree"].to_string();
    assert!(text.contains("\"TXN\""), "{text}");
    let txn = find(&hello["tree"], "TXN").expect("TXN node");
    let r = txn["range"].as_array().unwrap();
    let bytes = &hex[r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize];
    assert!(
        String::from_utf8_lossy(bytes).contains("Hello"),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
}

fn find<'a>(node: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

#[test]
fn decode_as_forces_a_dissector_and_rejects_unknown_names() {
    let (_d, caps) = samples_dir();
    let out = run(&[
        "inspect",
        "--decode-as",
        "gp",
        p(&caps.join("ra3-login.gwcap")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("decoded as gp"));
    assert!(!stdout(&out).contains("decoded as fesl"));
    let out = run(&[
        "inspect",
        "--decode-as",
        "nonsense",
        p(&caps.join("ra3-login.gwcap")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unknown protocol") && err.contains("fesl") && err.contains("hytale"),
        "{err}"
    );
}
