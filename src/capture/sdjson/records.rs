//! Reading records: each record's fields as raw JSON, checked one at a time, and the
//! importer that turns them into connections and packets.

use super::time::LocalClock;
use super::*;

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
