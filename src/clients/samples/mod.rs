//! The sample captures in `captures/`: short, realistic sessions of each emulated game, and
//! the busy capture of `gamewire samples --busy N`. Every message is built the way the game
//! builds it: client requests with the scripted clients' builders ([`super::ra3`],
//! [`super::sc`]), everything else with the codecs' encoders ([`crate::dissect`]), so a sample
//! decodes exactly as live traffic does. Everything is deterministic: the same bytes and
//! timestamps on every run, so the committed files can be checked against a fresh build.
//!
//! One file per game ([`ra3`], [`sc`], [`hytale`]) holds its conversation; [`busy`] replays
//! them on many connections at once.

mod busy;
mod hytale;
mod ra3;
mod sc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::capture::files::{Format, Scope, Source};
use crate::capture::{Connection, ConnectionId, Direction, NewPacket, StoreData, Timestamp};
use crate::dissect::export;

pub use busy::busy_capture;

/// 2025-08-07T22:53:52Z, the day of the Star Citizen tools' example capture.
const BASE_SECS: i64 = 1_754_607_232;

/// The files `gamewire samples` writes, in order.
pub const FILES: [&str; 4] = [
    "ra3-login.gwcap",
    "sc-diffusion.sd.json",
    "hytale-connect.gwcap",
    "all-samples.pcapng",
];

pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let builders: [fn(&mut StoreData); 3] = [ra3::login, sc::diffusion, hytale::connect];
    let mut written = Vec::new();
    for (name, build) in FILES.iter().zip(builders) {
        let mut data = StoreData::new();
        build(&mut data);
        written.push(save(&data, &dir.join(name))?);
    }
    written.push(save(&all_samples(), &dir.join(FILES[3]))?);
    Ok(written)
}

fn save(data: &StoreData, path: &Path) -> anyhow::Result<PathBuf> {
    let format = Format::of_output(path)?;
    export::save(Source::Data(data), path, format, Scope::All, &|_| {})?;
    Ok(path.to_owned())
}

/// Every sample session in one capture.
pub fn all_samples() -> StoreData {
    let mut data = StoreData::new();
    ra3::login(&mut data);
    sc::diffusion(&mut data);
    hytale::connect(&mut data);
    data
}

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

/// One message of a conversation: who sends it, how long after the previous message (µs),
/// the label a tap would give it, and its bytes.
struct Line {
    dir: Direction,
    after_micros: i64,
    label: &'static str,
    bytes: Vec<u8>,
}

fn line(dir: Direction, after_micros: i64, label: &'static str, bytes: Vec<u8>) -> Line {
    Line {
        dir,
        after_micros,
        label,
        bytes,
    }
}

/// Appends a scripted conversation: a clock that advances a little per message.
struct Script<'a> {
    data: &'a mut StoreData,
    conn: ConnectionId,
    now: Timestamp,
}

impl<'a> Script<'a> {
    fn open(data: &'a mut StoreData, conn: Connection) -> Self {
        let now = conn.opened;
        let conn = data.add_connection(conn);
        Script { data, conn, now }
    }

    fn play(&mut self, lines: impl IntoIterator<Item = Line>) {
        for l in lines {
            self.now = plus_micros(self.now, l.after_micros);
            let packet = NewPacket::new(self.conn, l.dir, self.now, l.bytes).with_label(l.label);
            // Sample connections are created just above, so the append cannot fail.
            let _ = self.data.append(packet);
        }
    }

    fn close(self, after_micros: i64, reason: &str) {
        let at = plus_micros(self.now, after_micros);
        let _ = self
            .data
            .close_connection(self.conn, at, Some(reason.to_string()));
    }
}

/// A connection as a tap configured for `protocol` on route `route` would record it.
fn labelled_connection(
    client: SocketAddr,
    server: SocketAddr,
    transport: crate::capture::Transport,
    opened: Timestamp,
    protocol: &str,
    route: &str,
) -> Connection {
    let mut conn = Connection::new(client, server, transport, opened);
    conn.protocol = Some(protocol.into());
    conn.route = Some(route.into());
    conn
}

/// `conn` behind a TLS tap that terminated TLS 1.3 with `cipher`.
fn over_tls(mut conn: Connection, sni: &str, alpn: Option<&str>, cipher: &str) -> Connection {
    conn.tls = Some(crate::capture::TlsInfo {
        sni: Some(sni.into()),
        alpn: alpn.map(Into::into),
        version: Some("TLSv1.3".into()),
        cipher: Some(cipher.into()),
    });
    conn
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn at(offset_ms: i64) -> Timestamp {
    plus_micros(Timestamp::from_secs_nanos(BASE_SECS, 0), offset_ms * 1000)
}

fn plus_micros(t: Timestamp, micros: i64) -> Timestamp {
    Timestamp(t.0 + micros * 1000)
}
