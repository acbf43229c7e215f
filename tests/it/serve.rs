//! `gamewire serve` as a user runs it: a real process, a config file, a capture file, and
//! `kill -9` part-way through.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn config_for(dir: &std::path::Path, upstream: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("gamewire.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{data}\"\ncerts_dir = \"{certs}\"\n\
             [proxy]\nenabled = false\n[servers.fesl]\nenabled = false\n[servers.gp]\nenabled = false\n\
             [servers.sc_diffusion]\nenabled = false\n[servers.sc_login]\nenabled = false\n\
             [servers.sc_game]\nenabled = false\n[servers.sc_catchall]\nenabled = false\n\
             [[tap]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n",
            data = dir.join("data").display(),
            certs = dir.join("certs").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn kill_9_during_serve_keeps_the_traffic_up_to_the_kill() {
    let upstream = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), upstream);
    let capture = dir.path().join("live.gwcap");
    let mut child = Command::new(crate::common::gamewire_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--capture")
        .arg(&capture)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("serve printed its routes").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for i in 0..20 {
        let msg = format!("message {i:02}");
        client.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // The journal is flushed every 250 ms; give it one full period, then pull the plug.
    thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(crate::common::gamewire_bin())
        .args(["inspect", "--json"])
        .arg(&capture)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The file may end mid-record; everything before the kill must be there.
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: usize = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|p| p["direction"] == "client->server")
        .map(|p| p["size"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(
        sent,
        20 * 10,
        "every byte the client sent is in the capture"
    );
    let listing = Command::new(crate::common::gamewire_bin())
        .arg("inspect")
        .arg(&capture)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("route echo"));
    // Each route also has its own log file.
    let log = std::fs::read_to_string(dir.path().join("data/logs/echo.log")).unwrap();
    assert!(log.contains("tap listening on"), "{log}");
}

#[test]
fn a_bad_config_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[proxy]\nlisten = 8080\n").unwrap();
    let out = Command::new(crate::common::gamewire_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("listen"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
