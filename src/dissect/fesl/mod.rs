//! FESL, EA's Frontend Server Layer (Red Alert 3, Battlefield 2142 and other games of that
//! SDK generation): a 12-byte big-endian header (`command`, `type << 24 | number`, `size`),
//! then `key=value` lines ending in a NUL. Large messages are base64-encoded and sent as
//! fragments (types `0xF0`/`0xB0`) that the receiver joins before parsing.
//!
//! The pure functions here ([`parse_header`], [`parse_payload`], [`write_packet`],
//! [`fragment`], [`Reassembler`]) are what the emulated FESL server uses too, so the protocol
//! is written once; the dissector is built on them.
//!
//! Tree of one packet:
//!
//! ```text
//! fesl                      whole packet
//!   header                  0..12
//!     command  "acct"       0..4
//!     type     128 (TAG_SINGLE_SERVER) 4..5
//!     number   3            5..8
//!     size     215          8..12
//!   payload                 12..end, kind "client" (`\n\0`) or "server" (`\0`)
//!     TXN      "NuLogin"    the line `TXN=NuLogin`
//!     domainPartition       group of the dotted keys `domainPartition.*` (kind "record")
//!       domain "eagames"
//!     personas              kind "list"
//!       []     2            the count, kind "count" (recomputed on encode)
//!       0      "Commander"
//!   error (derived)         code and message of an error reply
//!   fragment (derived)      index/total of a fragment
//! ```
//!
//! Value nodes span their whole `key=value` line and hold the value unquoted and unescaped;
//! `kind` is `quoted` when the value was in double quotes (and `bare` when it had a space
//! without them). Dotted keys become nested groups, one group per run of consecutive lines,
//! so wire order is kept and every group covers a contiguous byte range. Malformed lines are
//! kept as `Bytes` nodes of kind `raw` (re-encoded verbatim) with an error.
//!
//! Re-encoding escapes values canonically: `%`, `"`, `:`, `=` and control characters become
//! lowercase `%xx`, values with a space are quoted. A non-canonical escape on the wire
//! (`%3A`, `%40`) therefore comes back canonical (`%3a`, `@`); every other byte is kept.

mod decode;
mod encode;
mod fragment;
mod frame;
mod parse;
mod tree;
mod value;

pub use decode::FeslDecoder;
pub use encode::{encode_tree, hello_reply, write_packet, write_payload};
pub use fragment::{Progress, Reassembler, fragment};
pub use frame::{FeslError, Header, Tag, frame, parse_header};
pub use parse::{joined_text, parse_payload, parse_text};
pub use tree::error_meaning;
pub use value::{UnescapeError, needs_quotes, push_value, unescape};

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};

use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
};

/// Bytes of the header.
pub const HEADER_LEN: usize = 12;
/// Largest packet accepted (header + payload). Retail peers fragment anything above the
/// client's `fragmentSize` (usually 8096); 1 MiB leaves room for emulators that never
/// fragment while keeping a corrupt size field from stalling the stream.
pub const MAX_PACKET: usize = 1 << 20;
/// Largest fragmented message, in base64 characters (the fragments' `size`).
pub const MAX_REASSEMBLED: usize = 16 << 20;
/// Fragmented messages collected at once per direction; the oldest is dropped beyond this.
const MAX_OPEN_REASSEMBLIES: usize = 8;
/// How much of a partly collected message is decoded to find its TXN for the label.
const PEEK_CHARS: usize = 4096;

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "fesl";

/// The filter fields fesl registers.
const FIELDS: [FieldDef; 5] = [
    FieldDef {
        name: "fesl.txn",
        aliases: &[],
        ty: FieldType::Text,
        help: "the transaction (`NuLogin`, `GetStats`, ...)",
        paths: &[FieldPath::Anchored(&["payload", "TXN"])],
    },
    FieldDef {
        name: "fesl.command",
        aliases: &["fesl.cmd"],
        ty: FieldType::Text,
        help: "the header command (`fsys`, `acct`, ...)",
        paths: &[FieldPath::Anchored(&["header", "command"])],
    },
    FieldDef {
        name: "fesl.type",
        aliases: &[],
        ty: FieldType::Number,
        help: "the header type, or its name (`TAG_SINGLE_CLIENT`, ...)",
        paths: &[FieldPath::Anchored(&["header", "type"])],
    },
    FieldDef {
        name: "fesl.number",
        aliases: &[],
        ty: FieldType::Number,
        help: "the header packet number",
        paths: &[FieldPath::Anchored(&["header", "number"])],
    },
    FieldDef {
        name: "fesl.size",
        aliases: &[],
        ty: FieldType::Number,
        help: "the header size",
        paths: &[FieldPath::Anchored(&["header", "size"])],
    },
];

/// The FESL dissector.
pub struct Fesl;

impl Dissector for Fesl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
    }

    /// 18840 is Red Alert 3's retail FESL port; 18800 gamewire's emulator default.
    fn default_ports(&self) -> &'static [u16] {
        &[18800, 18840]
    }

    fn detect(&self, first: &[u8], _dir: Direction) -> bool {
        match parse_header(first) {
            Ok(h) => {
                h.command.iter().all(u8::is_ascii_lowercase)
                    && first
                        .get(HEADER_LEN)
                        .is_none_or(|&b| b.is_ascii_alphabetic())
            }
            Err(_) => false,
        }
    }

    fn decoder(&self, _dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(FeslDecoder::new())
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_tree(tree)
    }
}
