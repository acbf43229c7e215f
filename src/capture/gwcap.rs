//! The native capture file, `.gwcap`.
//!
//! Layout (all integers little-endian; the README documents it for other tools):
//!
//! ```text
//! header   magic "GWCAP\r\n\x1a" (8) | version u16 | minor u16 | flags u32      16 bytes
//! record   kind u8 | body_len u32 | body | crc32 (IEEE) of kind, body_len and body
//! ```
//!
//! Record kinds: 1 connection (full state; a later record with the same id replaces it),
//! 2 label (id → text, ids from 1 in order), 3 packet. Readers skip kinds they do not know
//! if their checksum holds, so later minor versions can add records.
//!
//! The file is only ever appended to, and every record carries its own checksum, so a file
//! cut short by a crash or damaged on disk loads up to the first bad record, and the loader
//! reports that record's offset.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};

use super::model::{
    Connection, ConnectionId, Direction, PacketFlags, PacketId, Timestamp, TlsInfo, Transport,
};
use super::page_window::PageWindow;
use super::store::StoreData;

pub const MAGIC: &[u8; 8] = b"GWCAP\r\n\x1a";
pub const VERSION: u16 = 1;
pub const MINOR: u16 = 0;
pub const HEADER_LEN: u64 = 16;
const RECORD_HEAD: usize = 5;

const KIND_CONNECTION: u8 = 1;
const KIND_LABEL: u8 = 2;
const KIND_PACKET: u8 = 3;

const NONE_LEN: u32 = u32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write capture file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GwcapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: empty file, not a gamewire capture")]
    Empty { path: PathBuf },
    #[error("{path}: offset 0: not a gamewire capture (starts with {found})")]
    NotGwcap { path: PathBuf, found: String },
    #[error("{path}: offset {offset}: file ends inside the 16-byte header")]
    TruncatedHeader { path: PathBuf, offset: u64 },
    #[error(
        "{path}: offset 8: capture format version {found} is newer than this gamewire reads ({VERSION}); update gamewire"
    )]
    UnsupportedVersion { path: PathBuf, found: u16 },
}

/// Where a damaged file stops being readable, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.reason)
    }
}

pub struct Loaded {
    pub data: StoreData,
    /// Set when the file is damaged: every record before `offset` was recovered.
    pub damage: Option<Damage>,
}

/// Encodes records onto any writer; shared by the live journal and whole-file saves.
struct RecordWriter<W: Write> {
    out: W,
    body: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    fn new(out: W) -> Self {
        RecordWriter {
            out,
            body: Vec::with_capacity(256),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10..12].copy_from_slice(&MINOR.to_le_bytes());
        self.out.write_all(&h)
    }

    fn emit(&mut self, kind: u8) -> io::Result<()> {
        let len = u32::try_from(self.body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
        let mut head = [0u8; RECORD_HEAD];
        head[0] = kind;
        head[1..].copy_from_slice(&len.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&self.body);
        self.out.write_all(&head)?;
        self.out.write_all(&self.body)?;
        self.out.write_all(&crc.finalize().to_le_bytes())
    }

    fn connection(&mut self, c: &Connection) -> io::Result<()> {
        let b = &mut self.body;
        b.clear();
        b.extend_from_slice(&c.id.0.to_le_bytes());
        put_addr(b, c.client);
        put_addr(b, c.server);
        b.push(c.transport.to_u8());
        b.extend_from_slice(&c.opened.0.to_le_bytes());
        match c.closed {
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.0.to_le_bytes());
            }
            None => b.push(0),
        }
        put_opt_str(b, c.protocol.as_deref());
        put_opt_str(b, c.route.as_deref());
        put_opt_str(b, c.close_reason.as_deref());
        match &c.tls {
            Some(t) => {
                b.push(1);
                for s in [&t.sni, &t.alpn, &t.version, &t.cipher] {
                    put_opt_str(b, s.as_deref());
                }
            }
            None => b.push(0),
        }
        self.emit(KIND_CONNECTION)
    }

    fn label(&mut self, id: u32, name: &str) -> io::Result<()> {
        self.body.clear();
        self.body.extend_from_slice(&id.to_le_bytes());
        put_opt_str(&mut self.body, Some(name));
        self.emit(KIND_LABEL)
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        id: PacketId,
        conn: ConnectionId,
        direction: Direction,
        ts: Timestamp,
        label: u32,
        flags: PacketFlags,
        data: &[u8],
        original: Option<&[u8]>,
    ) -> io::Result<()> {
        let b = &mut self.body;
        b.clear();
        b.extend_from_slice(&id.0.to_le_bytes());
        b.extend_from_slice(&conn.0.to_le_bytes());
        b.extend_from_slice(&ts.0.to_le_bytes());
        b.push(match direction {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        });
        b.push(flags.0);
        b.extend_from_slice(&label.to_le_bytes());
        put_opt_bytes(b, Some(data));
        put_opt_bytes(b, original);
        self.emit(KIND_PACKET)
    }

    /// Writes everything in `data`: labels first, since packets refer to them.
    fn snapshot(&mut self, data: &StoreData) -> io::Result<()> {
        for (i, name) in data.label_names().iter().enumerate() {
            self.label(i as u32 + 1, name)?;
        }
        for c in data.connections() {
            self.connection(c)?;
        }
        for (i, p) in data.packets().enumerate() {
            self.packet(
                p.id,
                p.connection,
                p.direction,
                p.timestamp,
                data.packet_label_id(i),
                p.flags,
                p.data,
                p.original,
            )?;
        }
        Ok(())
    }
}

fn put_addr(b: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&a.port().to_le_bytes());
        }
        SocketAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&a.port().to_le_bytes());
            b.extend_from_slice(&a.flowinfo().to_le_bytes());
            b.extend_from_slice(&a.scope_id().to_le_bytes());
        }
    }
}

fn put_opt_bytes(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(bytes) => {
            // Store limits keep every packet far below 4 GiB.
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            b.extend_from_slice(bytes);
        }
        None => b.extend_from_slice(&NONE_LEN.to_le_bytes()),
    }
}

fn put_opt_str(b: &mut Vec<u8>, v: Option<&str>) {
    put_opt_bytes(b, v.map(str::as_bytes));
}

/// The live, append-only writer behind [`super::CaptureStore::journal_to`].
pub struct Journal {
    path: PathBuf,
    writer: RecordWriter<BufWriter<WindowedFile>>,
}

/// The journal's file, with only its newest bytes kept in the page cache (see
/// [`super::page_window`]): a long live capture is written once and read back later, if at
/// all, so there is no point crowding other programs' memory with it.
struct WindowedFile {
    file: File,
    written: u64,
    window: Option<PageWindow>,
}

impl Write for WindowedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if let Some(w) = &mut self.window {
            w.advance(self.written);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Journal {
    /// Creates (or truncates) `path` and writes everything `data` holds so far.
    pub fn create(path: &Path, data: &StoreData) -> Result<Self, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(io_err)?;
        let window = PageWindow::start(&file);
        let file = WindowedFile {
            file,
            written: 0,
            window,
        };
        let mut writer = RecordWriter::new(BufWriter::with_capacity(256 * 1024, file));
        writer.header().map_err(io_err)?;
        writer.snapshot(data).map_err(io_err)?;
        writer.out.flush().map_err(io_err)?;
        Ok(Journal {
            path: path.to_owned(),
            writer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wrap(&self, r: io::Result<()>) -> Result<(), JournalError> {
        r.map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn write_connection(&mut self, c: &Connection) -> Result<(), JournalError> {
        let r = self.writer.connection(c);
        self.wrap(r)
    }

    pub fn write_label(&mut self, id: u32, name: &str) -> Result<(), JournalError> {
        let r = self.writer.label(id, name);
        self.wrap(r)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn write_packet(
        &mut self,
        id: PacketId,
        conn: ConnectionId,
        direction: Direction,
        ts: Timestamp,
        label: u32,
        flags: PacketFlags,
        data: &[u8],
        original: Option<&[u8]>,
    ) -> Result<(), JournalError> {
        let r = self
            .writer
            .packet(id, conn, direction, ts, label, flags, data, original);
        self.wrap(r)
    }

    pub fn flush(&mut self) -> Result<(), JournalError> {
        let r = self.writer.out.flush();
        self.wrap(r)
    }

    /// Flushes and syncs to disk.
    pub fn finish(mut self) -> Result<(), JournalError> {
        self.flush()?;
        let r = self.writer.out.get_ref().file.sync_all();
        self.wrap(r)
    }
}

/// Writes the whole capture as a `.gwcap` byte stream.
pub fn write_to(data: &StoreData, out: impl Write) -> io::Result<()> {
    let mut w = RecordWriter::new(out);
    w.header()?;
    w.snapshot(data)?;
    w.out.flush()
}

/// Reads a `.gwcap` file. A damaged file is not an error: what comes before the damage is
/// returned together with where the damage starts.
pub fn load(path: &Path) -> Result<Loaded, GwcapError> {
    let io_err = |source| GwcapError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    read_from(BufReader::with_capacity(1 << 20, file), file_len, path)
}

/// Reads a capture from any byte source of known length (`path` only names it in errors).
pub fn read_from(mut input: impl Read, total_len: u64, path: &Path) -> Result<Loaded, GwcapError> {
    let io_err = |source| GwcapError::Io {
        path: path.to_owned(),
        source,
    };
    if total_len == 0 {
        return Err(GwcapError::Empty {
            path: path.to_owned(),
        });
    }
    let mut header = [0u8; HEADER_LEN as usize];
    let got = read_up_to(&mut input, &mut header).map_err(io_err)?;
    let magic_len = got.min(MAGIC.len());
    if header[..magic_len] != MAGIC[..magic_len] {
        return Err(GwcapError::NotGwcap {
            path: path.to_owned(),
            found: super::model::describe_start(&header[..got]),
        });
    }
    if got < header.len() {
        return Err(GwcapError::TruncatedHeader {
            path: path.to_owned(),
            offset: got as u64,
        });
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version > VERSION || version == 0 {
        return Err(GwcapError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }

    // Each packet record is about 40 bytes plus its data; reserving for the file's upper
    // bound of packets avoids regrowing the index while loading big captures.
    let mut data = StoreData::new();
    data.reserve((total_len / 64) as usize);
    let mut offset = HEADER_LEN;
    let mut body = Vec::with_capacity(4096);
    let damage = loop {
        let mut head = [0u8; RECORD_HEAD];
        let got = read_up_to(&mut input, &mut head).map_err(io_err)?;
        if got == 0 {
            break None;
        }
        if got < RECORD_HEAD {
            break Some(Damage {
                offset,
                reason: format!("file ends inside a record header ({got} of 5 bytes)"),
            });
        }
        let kind = head[0];
        let len = u64::from(u32::from_le_bytes([head[1], head[2], head[3], head[4]]));
        let available = total_len.saturating_sub(offset + RECORD_HEAD as u64);
        if len + 4 > available {
            break Some(Damage {
                offset,
                reason: format!(
                    "record of {len} bytes runs past the end of the file ({available} bytes left; the file was cut short)"
                ),
            });
        }
        body.resize(len as usize + 4, 0);
        if let Err(e) = input.read_exact(&mut body) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                break Some(Damage {
                    offset,
                    reason: "file ends inside a record".into(),
                });
            }
            return Err(io_err(e));
        }
        let (payload, crc_bytes) = body.split_at(len as usize);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        if crc.finalize() != stored {
            break Some(Damage {
                offset,
                reason: "checksum mismatch (corrupted record)".into(),
            });
        }
        let applied = match kind {
            KIND_CONNECTION => parse_connection(payload).and_then(|c| {
                if data.put_connection(c) {
                    Ok(())
                } else {
                    Err("connection id out of sequence".into())
                }
            }),
            KIND_LABEL => parse_label(payload, &mut data),
            KIND_PACKET => parse_packet(payload, &mut data),
            _ => Ok(()),
        };
        if let Err(reason) = applied {
            break Some(Damage {
                offset,
                reason: format!("bad record of kind {kind}: {reason}"),
            });
        }
        offset += RECORD_HEAD as u64 + len + 4;
    };
    data.shrink_to_fit();
    Ok(Loaded { data, damage })
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

type ParseResult<T> = Result<T, String>;

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> ParseResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field at body offset {} runs past the record", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> ParseResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> ParseResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> ParseResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> ParseResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn opt_bytes(&mut self) -> ParseResult<Option<&'a [u8]>> {
        match self.u32()? {
            NONE_LEN => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }

    fn opt_string(&mut self) -> ParseResult<Option<String>> {
        match self.opt_bytes()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| "text field is not UTF-8".to_string()),
        }
    }

    fn addr(&mut self) -> ParseResult<SocketAddr> {
        match self.u8()? {
            4 => {
                let ip = Ipv4Addr::from(self.array::<4>()?);
                Ok(SocketAddr::new(IpAddr::V4(ip), self.u16()?))
            }
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>()?);
                let port = self.u16()?;
                let flow = self.u32()?;
                let scope = self.u32()?;
                Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)))
            }
            other => Err(format!("unknown address family {other}")),
        }
    }
}

fn parse_connection(body: &[u8]) -> ParseResult<Connection> {
    let mut c = Cursor { buf: body, pos: 0 };
    let id = ConnectionId(c.u64()?);
    let client = c.addr()?;
    let server = c.addr()?;
    let transport = Transport::from_u8(c.u8()?).ok_or("unknown transport")?;
    let opened = Timestamp(c.i64()?);
    let closed = match c.u8()? {
        0 => None,
        _ => Some(Timestamp(c.i64()?)),
    };
    let protocol = c.opt_string()?;
    let route = c.opt_string()?;
    let close_reason = c.opt_string()?;
    let tls = match c.u8()? {
        0 => None,
        _ => Some(TlsInfo {
            sni: c.opt_string()?,
            alpn: c.opt_string()?,
            version: c.opt_string()?,
            cipher: c.opt_string()?,
        }),
    };
    Ok(Connection {
        id,
        client,
        server,
        transport,
        tls,
        protocol,
        route,
        opened,
        closed,
        close_reason,
    })
}

fn parse_label(body: &[u8], data: &mut StoreData) -> ParseResult<()> {
    let mut c = Cursor { buf: body, pos: 0 };
    let id = c.u32()?;
    let name = c.opt_string()?.ok_or("label without text")?;
    if data.define_label(id, &name) {
        Ok(())
    } else {
        Err(format!("label id {id} out of sequence or repeated"))
    }
}

fn parse_packet(body: &[u8], data: &mut StoreData) -> ParseResult<()> {
    let mut c = Cursor { buf: body, pos: 0 };
    let id = c.u64()?;
    let conn = ConnectionId(c.u64()?);
    let ts = Timestamp(c.i64()?);
    let direction = match c.u8()? {
        0 => Direction::ClientToServer,
        1 => Direction::ServerToClient,
        other => return Err(format!("unknown direction {other}")),
    };
    let flags = PacketFlags(c.u8()?);
    let label_id = c.u32()?;
    let payload = c.opt_bytes()?.ok_or("packet without data")?;
    let original = c.opt_bytes()?;
    if id != data.packet_count() as u64 {
        return Err(format!(
            "packet id {id} out of sequence (expected {})",
            data.packet_count()
        ));
    }
    data.append_with_label_id(conn, direction, ts, payload, label_id, flags, original)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
