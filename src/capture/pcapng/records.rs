//! Records carried in frame comments: the gamewire connection and packet records, the
//! comments that carry them (split into numbered parts when too long for one option), and
//! telling those comments apart from markers and from other tools' comments.

use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::capture::model::{Direction, Timestamp, TlsInfo, Transport};

/// Longest comment we write. pcapng option lengths are 16 bits and pcap-file truncates longer
/// ones silently; staying well under also keeps every block far below Wireshark's limit on
/// block size (about 384 KiB).
const MAX_COMMENT: usize = 60_000;
/// Room for the `gamewire[p18446744073709551615 123456/123456]:` header of a record part.
const PART_HEADER_ROOM: usize = 64;

pub(super) const PREFIX: &str = "gamewire";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Record {
    Connection(ConnRecord),
    Packet(PacketRecord),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ConnRecord {
    pub(super) id: u64,
    pub(super) transport: Transport,
    /// The real addresses; the frames may show placeholders or IPv4-mapped forms.
    pub(super) client: SocketAddr,
    pub(super) server: SocketAddr,
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) server_unknown: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tls: Option<TlsInfo>,
    pub(super) opened: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) closed: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) close_reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PacketRecord {
    pub(super) conn: u64,
    pub(super) id: u64,
    pub(super) dir: Direction,
    pub(super) len: usize,
    /// Frames whose payload holds the bytes; 0 when they travel in `data` (dropped packets).
    pub(super) segments: usize,
    /// Only when the frame's timestamp cannot hold it (before 1970).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ts: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) flags: Vec<String>,
    /// Flag bits this version has no name for, so that they survive a round trip.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) other_flags: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) original: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<String>,
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// The comments that carry one record: one when it fits, else numbered parts.
pub(super) fn record_comments(key: &str, record: &Record) -> io::Result<Vec<String>> {
    let json = serde_json::to_string(record).map_err(io::Error::other)?;
    if PREFIX.len() + 1 + json.len() <= MAX_COMMENT {
        return Ok(vec![format!("{PREFIX}:{json}")]);
    }
    let parts = split_at_chars(&json, MAX_COMMENT - PART_HEADER_ROOM);
    let count = parts.len();
    Ok(parts
        .iter()
        .enumerate()
        .map(|(i, part)| format!("{PREFIX}[{key} {}/{count}]:{part}", i + 1))
        .collect())
}

fn split_at_chars(s: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

pub(super) enum Comment<'a> {
    Whole(&'a str),
    Part {
        key: &'a str,
        index: u32,
        count: u32,
        text: &'a str,
    },
    Marker,
    BadPart,
    Foreign,
}

pub(super) fn classify_comment(comment: &str) -> Comment<'_> {
    let Some(rest) = comment.strip_prefix(PREFIX) else {
        return Comment::Foreign;
    };
    if let Some(json) = rest.strip_prefix(':') {
        return Comment::Whole(json);
    }
    if rest.starts_with('+') {
        return Comment::Marker;
    }
    let Some(rest) = rest.strip_prefix('[') else {
        return Comment::Foreign;
    };
    parse_part(rest).unwrap_or(Comment::BadPart)
}

fn parse_part(rest: &str) -> Option<Comment<'_>> {
    let (head, text) = rest.split_once("]:")?;
    let (key, numbers) = head.split_once(' ')?;
    let (index, count) = numbers.split_once('/')?;
    let index: u32 = index.parse().ok()?;
    let count: u32 = count.parse().ok()?;
    (index >= 1 && index <= count && !key.is_empty()).then_some(Comment::Part {
        key,
        index,
        count,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_split_into_numbered_parts_that_classify_back() {
        let record = Record::Packet(PacketRecord {
            conn: 1,
            id: 7,
            dir: Direction::ClientToServer,
            len: 0,
            segments: 1,
            ts: None,
            label: Some("é".repeat(40_000)),
            flags: vec![],
            other_flags: 0,
            original: None,
            data: None,
        });
        let comments = record_comments("p7", &record).unwrap();
        assert!(comments.len() > 1);
        let mut text = String::new();
        for (i, c) in comments.iter().enumerate() {
            assert!(c.len() <= MAX_COMMENT);
            match classify_comment(c) {
                Comment::Part {
                    key,
                    index,
                    count,
                    text: part,
                } => {
                    assert_eq!(
                        (key, index, count),
                        ("p7", i as u32 + 1, comments.len() as u32)
                    );
                    text.push_str(part);
                }
                _ => panic!("not a part: {}", &c[..40]),
            }
        }
        assert!(matches!(
            serde_json::from_str::<Record>(&text).unwrap(),
            Record::Packet(PacketRecord { id: 7, .. })
        ));
    }
}
