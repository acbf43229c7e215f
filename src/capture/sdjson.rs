//! `sd.json`, the capture format of the Star Citizen local-services tools: a JSON array of
//! records `{timestamp, direction, size, type, hex_data, ascii_data, connection}`.
//!
//! Timestamps are local wall-clock time with microseconds and no zone; `connection` is the
//! client's address, the only endpoint the format records. Import parses records one at a
//! time straight into the store, so a bad record (or a file cut off mid-way) can be skipped
//! or reported by index without losing the records before it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{Local, NaiveDateTime, TimeZone};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::model::{
    Connection, ConnectionId, Direction, PacketFlags, Timestamp, Transport, UNKNOWN_ADDR,
    ascii_preview,
};
use super::store::StoreData;

/// Label written for packets that have none; sd.json requires a `type`.
pub const UNLABELLED: &str = "Data";

#[derive(Debug, thiserror::Error)]
pub enum SdJsonError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: record {index}: field \"{field}\": {reason}")]
    BadRecord {
        path: PathBuf,
        index: usize,
        field: &'static str,
        reason: String,
    },
    #[error("{path}: {error}")]
    Syntax { path: PathBuf, error: SyntaxError },
}

/// A JSON syntax error, located both as line/column and as a byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: u64,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// Records read completely before the error.
    pub records_before: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {} (line {}, column {}): invalid JSON: {}",
            self.offset, self.line, self.column, self.message
        )
    }
}

/// One record that could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    pub index: usize,
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {}: field \"{}\": {}",
            self.index, self.field, self.reason
        )
    }
}

pub struct Imported {
    pub data: StoreData,
    /// Records skipped with `skip_bad` (always empty otherwise).
    pub bad: Vec<BadRecord>,
    /// With `skip_bad`, a syntax error that ended the import early.
    pub syntax: Option<SyntaxError>,
}

pub fn import_file(path: &Path, skip_bad: bool) -> Result<Imported, SdJsonError> {
    let bytes = std::fs::read(path).map_err(|source| SdJsonError::Io {
        path: path.to_owned(),
        source,
    })?;
    import_slice(&bytes, skip_bad).map_err(|e| e.with_path(path))
}

/// An import error before a path is attached.
#[derive(Debug)]
pub enum ImportError {
    BadRecord(BadRecord),
    Syntax(SyntaxError),
}

impl ImportError {
    fn with_path(self, path: &Path) -> SdJsonError {
        match self {
            ImportError::BadRecord(b) => SdJsonError::BadRecord {
                path: path.to_owned(),
                index: b.index,
                field: b.field,
                reason: b.reason,
            },
            ImportError::Syntax(error) => SdJsonError::Syntax {
                path: path.to_owned(),
                error,
            },
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::BadRecord(b) => b.fmt(f),
            ImportError::Syntax(s) => s.fmt(f),
        }
    }
}

pub fn import_slice(bytes: &[u8], skip_bad: bool) -> Result<Imported, ImportError> {
    let mut importer = Importer {
        data: StoreData::new(),
        connections: HashMap::new(),
        clock: LocalClock::default(),
        last_client: None,
        bad: Vec::new(),
        skip_bad,
        next_index: 0,
        fatal: None,
        scratch: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de
        .deserialize_seq(RecordsVisitor {
            importer: &mut importer,
        })
        .and_then(|()| de.end());
    if let Some(bad) = importer.fatal.take() {
        return Err(ImportError::BadRecord(bad));
    }
    let mut syntax = None;
    if let Err(e) = parsed {
        let err = SyntaxError {
            offset: offset_of(bytes, e.line(), e.column()),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
            records_before: importer.next_index,
        };
        if !skip_bad || importer.next_index == 0 && importer.data.packet_count() == 0 {
            return Err(ImportError::Syntax(err));
        }
        syntax = Some(err);
    }
    importer.data.shrink_to_fit();
    Ok(Imported {
        data: importer.data,
        bad: importer.bad,
        syntax,
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde_json reports 1-based line and column; turn them back into a byte offset.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> u64 {
    let mut line_start = 0usize;
    if line > 1 {
        let mut seen = 1;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == line {
                    line_start = i + 1;
                    break;
                }
            }
        }
    }
    (line_start + column.saturating_sub(1)).min(bytes.len()) as u64
}

struct Importer {
    data: StoreData,
    connections: HashMap<SocketAddr, ConnectionId>,
    clock: LocalClock,
    last_client: Option<(String, SocketAddr)>,
    bad: Vec<BadRecord>,
    skip_bad: bool,
    next_index: usize,
    /// The first bad record when not skipping; stops the import.
    fatal: Option<BadRecord>,
    scratch: Vec<u8>,
}

/// The fields of one record, still as raw JSON so that each can be checked on its own.
#[derive(Default)]
struct RawRecord<'a> {
    is_object: bool,
    timestamp: Option<&'a RawValue>,
    direction: Option<&'a RawValue>,
    size: Option<&'a RawValue>,
    kind: Option<&'a RawValue>,
    hex_data: Option<&'a RawValue>,
    ascii_data: Option<&'a RawValue>,
    connection: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawRecordVisitor)
    }
}

struct RawRecordVisitor;

impl<'de> Visitor<'de> for RawRecordVisitor {
    type Value = RawRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an sd.json record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = RawRecord {
            is_object: true,
            ..Default::default()
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = match &*key {
                "timestamp" => &mut r.timestamp,
                "direction" => &mut r.direction,
                "size" => &mut r.size,
                "type" => &mut r.kind,
                "hex_data" => &mut r.hex_data,
                "ascii_data" => &mut r.ascii_data,
                "connection" => &mut r.connection,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(r)
    }

    // Anything else is a record of the wrong shape, reported by index rather than aborting.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawRecord::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RawRecord::default())
    }
}

/// A JSON string that borrows from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

struct RecordsVisitor<'s> {
    importer: &'s mut Importer,
}

impl<'de> Visitor<'de> for RecordsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of sd.json records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<RawRecord<'de>>()? {
            self.importer.take(record);
            if self.importer.fatal.is_some() {
                // Stop quietly; import_slice reports the bad record, not a JSON error.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for RecordsVisitor<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

fn field_err(field: &'static str, reason: impl Into<String>) -> (&'static str, String) {
    (field, reason.into())
}

fn string_field<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Cow<'a, str>, (&'static str, String)> {
    let raw = raw.ok_or_else(|| field_err(field, "missing"))?;
    let text = raw.get();
    // Most values have no escapes: take them straight from the input instead of parsing
    // the JSON string a second time.
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains('\\')
    {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<Key<'a>>(text)
        .map(|k| k.0)
        .map_err(|_| field_err(field, format!("expected a string, found {}", short(text))))
}

fn short(raw: &str) -> String {
    let mut s: String = raw.chars().take(40).collect();
    if s.len() < raw.len() {
        s.push('…');
    }
    s
}

/// Parses sd.json's local time (`2025-08-07T22:53:52.581782`); RFC 3339 with a zone is
/// accepted too.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    LocalClock::default().parse(s)
}

/// Turns local wall-clock times into UTC, remembering the zone offset of the last minute it
/// looked up: zone offsets change only at whole minutes, and a capture's records come
/// minutes apart at most, so a million records cost a handful of time-zone look-ups.
#[derive(Default)]
struct LocalClock {
    minute: Option<(i64, i64)>,
}

impl LocalClock {
    fn parse(&mut self, s: &str) -> Option<Timestamp> {
        let Some(naive) = parse_naive(s) else {
            let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
            return t.to_utc().timestamp_nanos_opt().map(Timestamp);
        };
        let naive_secs = naive.and_utc().timestamp();
        let minute = naive_secs.div_euclid(60);
        let offset = match self.minute {
            Some((m, offset)) if m == minute => offset,
            _ => {
                let offset = local_offset_secs(&naive);
                self.minute = Some((minute, offset));
                offset
            }
        };
        let nanos = naive.and_utc().timestamp_nanos_opt()?;
        nanos
            .checked_sub(offset.checked_mul(1_000_000_000)?)
            .map(Timestamp)
    }
}

/// Seconds east of UTC of the local zone at a wall-clock time. In a repeated hour the
/// earlier offset wins; a time skipped by a DST change is taken as UTC rather than dropped.
fn local_offset_secs(naive: &NaiveDateTime) -> i64 {
    use chrono::Offset;
    match Local.offset_from_local_datetime(naive) {
        chrono::LocalResult::Single(o) | chrono::LocalResult::Ambiguous(o, _) => {
            i64::from(o.fix().local_minus_utc())
        }
        chrono::LocalResult::None => 0,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` without chrono's general format parser, which is the
/// slowest step of importing a large file.
fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let mut nanos = 0u32;
    match b.get(19) {
        None => {}
        Some(b'.') => {
            let digits = &b[20..];
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            nanos = num(20..b.len())? * 10u32.pow(9 - digits.len() as u32);
        }
        Some(_) => return None,
    }
    let time =
        chrono::NaiveTime::from_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    Some(NaiveDateTime::new(date, time))
}

pub fn format_timestamp(t: Timestamp) -> String {
    t.to_datetime()
        .with_timezone(&Local)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

impl Importer {
    fn take(&mut self, record: RawRecord<'_>) {
        let index = self.next_index;
        self.next_index += 1;
        if let Err((field, reason)) = self.add(record) {
            let bad = BadRecord {
                index,
                field,
                reason,
            };
            if self.skip_bad {
                self.bad.push(bad);
            } else {
                self.fatal = Some(bad);
            }
        }
    }

    /// Parses the `connection` text, skipping the parse when it repeats the last record's.
    fn client_addr(&mut self, text: &str) -> Option<SocketAddr> {
        if let Some((last_text, addr)) = &self.last_client
            && last_text == text
        {
            return Some(*addr);
        }
        let addr: SocketAddr = text.parse().ok()?;
        self.last_client = Some((text.to_owned(), addr));
        Some(addr)
    }

    fn add(&mut self, r: RawRecord<'_>) -> Result<(), (&'static str, String)> {
        if !r.is_object {
            return Err(field_err("(record)", "expected a JSON object"));
        }
        let ts_text = string_field(r.timestamp, "timestamp")?;
        let timestamp = self.clock.parse(&ts_text).ok_or_else(|| {
            field_err(
                "timestamp",
                format!(
                    "\"{}\" is not a time like 2025-08-07T22:53:52.581782",
                    short(&ts_text)
                ),
            )
        })?;
        let dir_text = string_field(r.direction, "direction")?;
        let direction = match &*dir_text {
            "client->server" => Direction::ClientToServer,
            "server->client" => Direction::ServerToClient,
            other => {
                return Err(field_err(
                    "direction",
                    format!(
                        "\"{}\" is neither \"client->server\" nor \"server->client\"",
                        short(other)
                    ),
                ));
            }
        };
        let size_raw = r.size.ok_or_else(|| field_err("size", "missing"))?;
        let size: u64 = serde_json::from_str(size_raw.get()).map_err(|_| {
            field_err(
                "size",
                format!("expected a whole number, found {}", short(size_raw.get())),
            )
        })?;
        let label = string_field(r.kind, "type")?;
        let hex_text = string_field(r.hex_data, "hex_data")?;
        if hex_text.len() % 2 != 0 {
            return Err(field_err("hex_data", "odd number of hex digits"));
        }
        self.scratch.resize(hex_text.len() / 2, 0);
        hex::decode_to_slice(hex_text.as_bytes(), &mut self.scratch)
            .map_err(|e| field_err("hex_data", format!("not hex: {e}")))?;
        if size != self.scratch.len() as u64 {
            return Err(field_err(
                "size",
                format!(
                    "says {size} bytes but hex_data holds {}",
                    self.scratch.len()
                ),
            ));
        }
        if let Some(raw) = r.ascii_data
            && !raw.get().starts_with('"')
        {
            return Err(field_err(
                "ascii_data",
                format!("expected a string, found {}", short(raw.get())),
            ));
        }
        let conn_text = string_field(r.connection, "connection")?;
        let client = self.client_addr(&conn_text).ok_or_else(|| {
            field_err(
                "connection",
                format!("\"{}\" is not an ip:port address", short(&conn_text)),
            )
        })?;
        let connection = match self.connections.get(&client) {
            Some(&id) => id,
            None => {
                let id = self.data.add_connection(Connection::new(
                    client,
                    UNKNOWN_ADDR,
                    Transport::Tcp,
                    timestamp,
                ));
                self.connections.insert(client, id);
                id
            }
        };
        if let Some(conn) = self.data.connection(connection)
            && timestamp < conn.opened
        {
            let _ = self
                .data
                .update_connection(connection, |c| c.opened = timestamp);
        }
        self.data
            .append_parts(
                connection,
                direction,
                timestamp,
                &self.scratch,
                Some(&label),
                PacketFlags::empty(),
                None,
            )
            .map_err(|e| field_err("hex_data", e.to_string()))?;
        Ok(())
    }
}

#[derive(Serialize)]
struct OutRecord<'a> {
    timestamp: String,
    direction: &'static str,
    size: usize,
    #[serde(rename = "type")]
    kind: &'a str,
    hex_data: String,
    ascii_data: String,
    connection: String,
}

/// Writes the packets of `data` (optionally only those `keep` accepts) in id order, which
/// for an imported file is the file's own order.
pub fn export(
    data: &StoreData,
    out: impl Write,
    keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    out.write_all(b"[")?;
    let mut first = true;
    let mut client_text: HashMap<ConnectionId, String> = HashMap::new();
    for p in data.packets() {
        if !keep(p.connection) {
            continue;
        }
        let connection = client_text
            .entry(p.connection)
            .or_insert_with(|| {
                data.connection(p.connection)
                    .map(|c| c.client.to_string())
                    .unwrap_or_default()
            })
            .clone();
        let rec = OutRecord {
            timestamp: format_timestamp(p.timestamp),
            direction: p.direction.as_str(),
            size: p.data.len(),
            kind: p.label.unwrap_or(UNLABELLED),
            hex_data: hex::encode(p.data),
            ascii_data: ascii_preview(p.data),
            connection,
        };
        out.write_all(if first { b"\n  " } else { b",\n  " })?;
        first = false;
        write_pretty_indented(&mut out, &rec)?;
    }
    out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    out.flush()
}

/// Pretty-prints one record at the array's indentation, like Python's `json.dump(indent=2)`.
fn write_pretty_indented(out: &mut impl Write, rec: &OutRecord<'_>) -> io::Result<()> {
    let text = serde_json::to_string_pretty(rec).map_err(io::Error::other)?;
    let mut lines = text.split('\n');
    if let Some(first) = lines.next() {
        out.write_all(first.as_bytes())?;
    }
    for line in lines {
        out.write_all(b"\n  ")?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_RECORD: &str = r#"[{
      "timestamp": "2025-08-07T22:54:02.579022",
      "direction": "client->server",
      "size": 4,
      "type": "Heartbeat",
      "hex_data": "3a000000",
      "connection": "127.0.0.1:50639"
    }]"#;

    #[test]
    fn imports_a_record_without_ascii_data() {
        let imp = import_slice(SEED_RECORD.as_bytes(), false).unwrap();
        assert_eq!(imp.data.packet_count(), 1);
        let p = imp.data.packets().next().unwrap();
        assert_eq!(p.data, [0x3a, 0, 0, 0]);
        assert_eq!(p.label, Some("Heartbeat"));
        assert_eq!(format_timestamp(p.timestamp), "2025-08-07T22:54:02.579022");
        assert_eq!(
            imp.data
                .connection(p.connection)
                .unwrap()
                .client
                .to_string(),
            "127.0.0.1:50639"
        );
    }

    #[test]
    fn bad_record_names_index_and_field() {
        let text = r#"[{"timestamp":"2025-08-07T22:54:02.579022","direction":"client->server","size":1,"type":"a","hex_data":"00","connection":"127.0.0.1:1"},
                       {"timestamp":"2025-08-07T22:54:02.579022","direction":"sideways","size":1,"type":"a","hex_data":"00","connection":"127.0.0.1:1"}]"#;
        let Err(ImportError::BadRecord(bad)) = import_slice(text.as_bytes(), false) else {
            panic!("expected a bad record")
        };
        assert_eq!((bad.index, bad.field), (1, "direction"));
        let ok = import_slice(text.as_bytes(), true).unwrap();
        assert_eq!(ok.data.packet_count(), 1);
        assert_eq!(ok.bad.len(), 1);
    }

    #[test]
    fn size_must_match_hex_data() {
        let text = r#"[{"timestamp":"2025-08-07T22:54:02.579022","direction":"client->server","size":3,"type":"a","hex_data":"00","connection":"127.0.0.1:1"}]"#;
        let Err(ImportError::BadRecord(bad)) = import_slice(text.as_bytes(), false) else {
            panic!("expected a bad record")
        };
        assert_eq!(bad.field, "size");
    }

    #[test]
    fn truncated_json_keeps_complete_records_with_skip_bad() {
        let text = r#"[{"timestamp":"2025-08-07T22:54:02.579022","direction":"client->server","size":1,"type":"a","hex_data":"00","connection":"127.0.0.1:1"},{"timestamp":"2025-"#;
        let Err(ImportError::Syntax(s)) = import_slice(text.as_bytes(), false) else {
            panic!("expected a syntax error")
        };
        assert_eq!(s.records_before, 1);
        let ok = import_slice(text.as_bytes(), true).unwrap();
        assert_eq!(ok.data.packet_count(), 1);
        assert!(ok.syntax.is_some());
    }
}
