//! `sd.json`, the capture format of the Star Citizen local-services tools: a JSON array of
//! records `{timestamp, direction, size, type, hex_data, ascii_data, connection}`.
//!
//! Timestamps are local wall-clock time with microseconds and no zone; `connection` is the
//! client's address, the only endpoint the format records. Import parses records one at a
//! time straight into the store, so a bad record (or a file cut off mid-way) can be skipped
//! or reported by index without losing the records before it.

mod export;
mod records;
mod time;

pub use export::export;
pub use records::import_slice;
pub use time::{format_timestamp, parse_timestamp};

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
