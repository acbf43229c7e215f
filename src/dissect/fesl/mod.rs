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

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::capture::Direction;

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

/// The packet type tag (the high byte of the second header word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    /// `0xC0`: a single packet, normally from the client.
    SingleClient,
    /// `0x80`: a single packet from the server (and from old SDK clients).
    SingleServer,
    /// `0xF0`: a fragment, from the client.
    MultiClient,
    /// `0xB0`: a fragment, from the server.
    MultiServer,
}

impl Tag {
    pub fn from_u8(b: u8) -> Option<Tag> {
        match b {
            0xC0 => Some(Tag::SingleClient),
            0x80 => Some(Tag::SingleServer),
            0xF0 => Some(Tag::MultiClient),
            0xB0 => Some(Tag::MultiServer),
            _ => None,
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Tag::SingleClient => 0xC0,
            Tag::SingleServer => 0x80,
            Tag::MultiClient => 0xF0,
            Tag::MultiServer => 0xB0,
        }
    }

    /// The name shown in the tree.
    pub fn name(self) -> &'static str {
        match self {
            Tag::SingleClient => "TAG_SINGLE_CLIENT",
            Tag::SingleServer => "TAG_SINGLE_SERVER",
            Tag::MultiClient => "TAG_MULTI_CLIENT",
            Tag::MultiServer => "TAG_MULTI_SERVER",
        }
    }

    pub fn is_fragment(self) -> bool {
        matches!(self, Tag::MultiClient | Tag::MultiServer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeslError {
    #[error("shorter than the 12-byte header")]
    Short,
    #[error("command {0:02x?} is not 4 ASCII letters or digits")]
    BadCommand([u8; 4]),
    #[error("unknown type tag 0x{0:02x}")]
    BadTag(u8),
    #[error("size {0} is smaller than the 12-byte header")]
    SizeTooSmall(u32),
    #[error("size {0} exceeds the {MAX_PACKET}-byte maximum")]
    SizeTooLarge(u32),
    #[error("payload is not NUL-terminated")]
    NoTerminator,
    #[error("line {line}: not UTF-8")]
    NotUtf8 { line: usize },
    #[error("line {line}: NUL inside the payload")]
    EmbeddedNul { line: usize },
    #[error("line {line}: no '=' in the line")]
    NoEquals { line: usize },
    #[error("line {line}: bad percent escape")]
    BadEscape { line: usize },
    #[error("line {line}: escaped bytes are not UTF-8")]
    EscapedNotUtf8 { line: usize },
    #[error("fragment: {0}")]
    Fragment(String),
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub command: [u8; 4],
    pub tag: Tag,
    /// Packet number, 24 bits.
    pub number: u32,
    /// Header plus payload bytes.
    pub size: u32,
}

impl Header {
    pub fn command_str(&self) -> &str {
        std::str::from_utf8(&self.command).unwrap_or("????")
    }
}

fn command_ok(c: &[u8]) -> bool {
    c.iter().all(u8::is_ascii_alphanumeric)
}

/// Parses and checks the 12-byte header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Header, FeslError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(FeslError::Short);
    };
    let command = [h[0], h[1], h[2], h[3]];
    if !command_ok(&command) {
        return Err(FeslError::BadCommand(command));
    }
    let tag = Tag::from_u8(h[4]).ok_or(FeslError::BadTag(h[4]))?;
    let number = u32::from_be_bytes([0, h[5], h[6], h[7]]);
    let size = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if (size as usize) < HEADER_LEN {
        return Err(FeslError::SizeTooSmall(size));
    }
    if size as usize > MAX_PACKET {
        return Err(FeslError::SizeTooLarge(size));
    }
    Ok(Header {
        command,
        tag,
        number,
        size,
    })
}

/// Whether `b` could be the start of a packet, as far as its bytes go.
fn plausible_start(b: &[u8]) -> bool {
    if !command_ok(&b[..b.len().min(4)]) {
        return false;
    }
    if let Some(&t) = b.get(4)
        && Tag::from_u8(t).is_none()
    {
        return false;
    }
    match b.get(8..12) {
        Some(s) => {
            let size = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
            (HEADER_LEN..=MAX_PACKET).contains(&size)
        }
        None => true,
    }
}

/// Where the packet at the start of `buf` ends; on a bad header, how far to skip to the next
/// plausible header.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.len() < HEADER_LEN {
        return if plausible_start(buf) {
            Framing::NeedMore(None)
        } else {
            unframeable(buf, "not a FESL header".into())
        };
    }
    match parse_header(buf) {
        Ok(h) if buf.len() >= h.size as usize => Framing::Complete(h.size as usize),
        Ok(h) => Framing::NeedMore(Some(h.size as usize)),
        Err(e) => unframeable(buf, e.to_string()),
    }
}

fn unframeable(buf: &[u8], reason: String) -> Framing {
    let skip = (1..buf.len())
        .find(|&i| plausible_start(&buf[i..]))
        .unwrap_or(buf.len())
        .max(1);
    Framing::Unframeable { skip, reason }
}

// ---------------------------------------------------------------------------------------
// Values: quoting and percent-escaping.

/// Whether the canonical encoding escapes this byte.
fn must_escape(b: u8) -> bool {
    b < 0x20 || b == 0x7f || matches!(b, b'%' | b'"' | b':' | b'=')
}

/// Appends `value` escaped as retail servers do: `%xx` (lowercase) for `%`, `"`, `:`, `=`
/// and control characters, inside double quotes when `quote`.
pub fn push_value(out: &mut Vec<u8>, value: &str, quote: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if quote {
        out.push(b'"');
    }
    let bytes = value.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if must_escape(b) {
            out.extend_from_slice(&bytes[from..i]);
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            from = i + 1;
        }
    }
    out.extend_from_slice(&bytes[from..]);
    if quote {
        out.push(b'"');
    }
}

/// Whether a value is written in double quotes (it contains a space).
pub fn needs_quotes(value: &str) -> bool {
    value.contains(' ')
}

/// Undoes percent-escaping (either hex case). `None` for a malformed escape or escaped
/// bytes that are not UTF-8.
pub fn unescape(raw: &str) -> Result<Cow<'_, str>, UnescapeError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|&c| hex_digit(c));
            let lo = b.get(i + 2).and_then(|&c| hex_digit(c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(UnescapeError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| UnescapeError::NotUtf8)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnescapeError {
    BadEscape,
    NotUtf8,
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// How a value stood on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    /// No quotes, no space.
    Plain,
    /// In double quotes.
    Quoted,
    /// Has a space but no quotes.
    Bare,
}

// ---------------------------------------------------------------------------------------
// Payload lines.

/// One line of a payload text.
enum Line<'a> {
    Pair {
        key: &'a str,
        /// Where the key's last `.` is (its group path ends there).
        dot: Option<usize>,
        value: Cow<'a, str>,
        quoting: Quoting,
    },
    Bad {
        raw: &'a [u8],
        error: FeslError,
    },
}

/// Parses one line; `checked` is the line as text when the caller already validated UTF-8.
/// One pass over the bytes finds `=`, the key's last `.`, and what the value needs.
fn parse_line<'a>(raw: &'a [u8], checked: Option<&'a str>, line: usize) -> Line<'a> {
    let bad = |error| Line::Bad { raw, error };
    let (mut eq, mut dot) = (None, None);
    let (mut nul, mut space, mut pct) = (false, false, false);
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'=' if eq.is_none() => eq = Some(i),
            b'.' if eq.is_none() => dot = Some(i),
            b' ' => space |= eq.is_some(),
            b'%' => pct |= eq.is_some(),
            0 => nul = true,
            _ => {}
        }
    }
    let s = match checked {
        Some(s) => s,
        None => match std::str::from_utf8(raw) {
            Ok(s) => s,
            Err(_) => return bad(FeslError::NotUtf8 { line }),
        },
    };
    if nul {
        return bad(FeslError::EmbeddedNul { line });
    }
    let Some((key, raw_value)) = eq.and_then(|eq| Some((s.get(..eq)?, s.get(eq + 1..)?))) else {
        return bad(FeslError::NoEquals { line });
    };
    let v = raw_value.as_bytes();
    let (inner, quoting) = if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        (raw_value.get(1..v.len() - 1).unwrap_or(""), Quoting::Quoted)
    } else if space {
        (raw_value, Quoting::Bare)
    } else {
        (raw_value, Quoting::Plain)
    };
    let value = if pct {
        match unescape(inner) {
            Ok(v) => v,
            Err(UnescapeError::BadEscape) => return bad(FeslError::BadEscape { line }),
            Err(UnescapeError::NotUtf8) => return bad(FeslError::EscapedNotUtf8 { line }),
        }
    } else {
        Cow::Borrowed(inner)
    };
    Line::Pair {
        key,
        dot,
        value,
        quoting,
    }
}

/// How a payload text ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `\n\0`, what clients send.
    Client,
    /// `\0` straight after the last value, what retail servers send.
    Server,
    /// `\n` without NUL (a reassembled client message).
    Newline,
    /// Nothing.
    None,
}

impl End {
    fn of(payload: &[u8]) -> (End, usize) {
        let n = payload.len();
        if payload.ends_with(b"\n\0") {
            (End::Client, n - 2)
        } else if payload.ends_with(b"\0") {
            (End::Server, n - 1)
        } else if payload.ends_with(b"\n") {
            (End::Newline, n - 1)
        } else {
            (End::None, n)
        }
    }

    fn kind(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Server => "server",
            End::Newline => "newline",
            End::None => "none",
        }
    }

    fn from_kind(kind: Option<&str>) -> End {
        match kind {
            Some("server") => End::Server,
            Some("newline") => End::Newline,
            Some("none") => End::None,
            _ => End::Client,
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            End::Client => b"\n\0",
            End::Server => b"\0",
            End::Newline => b"\n",
            End::None => b"",
        }
    }
}

/// Calls `f(range, line)` for every line of `text` (split on `\n`; no line for empty text).
fn for_each_line<'a>(text: &'a [u8], mut f: impl FnMut(Range<usize>, &'a [u8])) {
    if text.is_empty() {
        return;
    }
    let mut start = 0;
    loop {
        match text[start..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                f(start..start + n, &text[start..start + n]);
                start += n + 1;
            }
            None => {
                f(start..text.len(), &text[start..]);
                return;
            }
        }
    }
}

/// Parses a payload (`key=value` lines, a final NUL with or without `\n` before it) into
/// unescaped pairs in wire order.
pub fn parse_payload(payload: &[u8]) -> Result<Vec<(String, String)>, FeslError> {
    let (end, text_len) = End::of(payload);
    if matches!(end, End::None | End::Newline) {
        return Err(FeslError::NoTerminator);
    }
    parse_text(&payload[..text_len])
}

/// Parses payload text without its terminator (e.g. a reassembled fragment payload).
pub fn parse_text(text: &[u8]) -> Result<Vec<(String, String)>, FeslError> {
    let mut out = Vec::new();
    let mut err = None;
    let mut n = 0;
    let whole = std::str::from_utf8(text).ok();
    for_each_line(text, |r, raw| {
        n += 1;
        if err.is_some() {
            return;
        }
        match parse_line(raw, whole.and_then(|w| w.get(r)), n) {
            Line::Pair { key, value, .. } => out.push((key.to_owned(), value.into_owned())),
            Line::Bad { error, .. } => err = Some(error),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Appends `key=value` lines and the terminator: `\n\0` for a client, `\0` for a server.
pub fn write_payload<K: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    pairs: &[(K, V)],
    client_style: bool,
) {
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        let v = v.as_ref();
        push_value(out, v, needs_quotes(v));
    }
    out.extend_from_slice(if client_style { b"\n\0" } else { b"\0" });
}

fn put_header(out: &mut Vec<u8>, command: &[u8; 4], tag: u8, number: u32) {
    out.extend_from_slice(command);
    out.extend_from_slice(&((u32::from(tag) << 24) | (number & 0xFF_FFFF)).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn patch_size(out: &mut [u8]) {
    let size = u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(s) = out.get_mut(8..12) {
        s.copy_from_slice(&size);
    }
}

/// One whole packet: header (size computed) and payload.
pub fn write_packet<K: AsRef<str>, V: AsRef<str>>(
    command: &[u8; 4],
    tag: Tag,
    number: u32,
    pairs: &[(K, V)],
    client_style: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + pairs.len() * 24);
    put_header(&mut out, command, tag.to_u8(), number);
    write_payload(&mut out, pairs, client_style);
    patch_size(&mut out);
    out
}

const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Splits a payload too large for one packet into fragment packets: `text` is the payload
/// without its final NUL, base64-encoded once and cut into chunks of `chunk_chars` base64
/// characters (at least 4), each sent as `data=..\ndecodedSize=..\nsize=..` with the same
/// packet number. `tag` should be [`Tag::MultiServer`] or [`Tag::MultiClient`].
pub fn fragment(
    command: &[u8; 4],
    tag: Tag,
    number: u32,
    text: &[u8],
    chunk_chars: usize,
    client_style: bool,
) -> Vec<Vec<u8>> {
    let b64 = B64.encode(text);
    let decoded = text.len().to_string();
    let size = b64.len().to_string();
    let chunk = chunk_chars.max(4);
    // Base64 is ASCII, so any byte offset is a char boundary.
    let mut packets = Vec::with_capacity(b64.len().div_ceil(chunk));
    let mut at = 0;
    while at < b64.len() {
        let piece = &b64[at..(at + chunk).min(b64.len())];
        let pairs = [
            ("data", piece),
            ("decodedSize", decoded.as_str()),
            ("size", size.as_str()),
        ];
        packets.push(write_packet(command, tag, number, &pairs, client_style));
        at += chunk;
    }
    packets
}

/// Collects the fragments of one direction's messages.
#[derive(Default)]
pub struct Reassembler {
    open: Vec<Assembly>,
}

struct Assembly {
    command: [u8; 4],
    number: u32,
    size: usize,
    data: String,
    count: u32,
    first_len: usize,
}

/// What a fragment did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More fragments are expected. `total` is estimated from the first fragment's length.
    Partial {
        index: u32,
        total: Option<u32>,
        collected: usize,
    },
    /// The message is complete: its decoded payload text.
    Done { index: u32, text: Vec<u8> },
}

impl Reassembler {
    pub fn new() -> Self {
        Reassembler::default()
    }

    /// Adds one fragment: `data` is the (unescaped) base64 chunk, `size` the announced total.
    pub fn push(
        &mut self,
        command: [u8; 4],
        number: u32,
        data: &str,
        size: usize,
    ) -> Result<Progress, FeslError> {
        if size > MAX_REASSEMBLED {
            return Err(FeslError::Fragment(format!(
                "size {size} exceeds the {MAX_REASSEMBLED}-character maximum"
            )));
        }
        let i = match self.find(command, number) {
            Some(i) => i,
            None => {
                if self.open.len() >= MAX_OPEN_REASSEMBLIES {
                    self.open.remove(0);
                }
                self.open.push(Assembly {
                    command,
                    number,
                    size,
                    data: String::new(),
                    count: 0,
                    first_len: data.len(),
                });
                self.open.len() - 1
            }
        };
        let a = &mut self.open[i];
        if a.size != size {
            return Err(FeslError::Fragment(format!(
                "size {size} differs from the first fragment's {}",
                a.size
            )));
        }
        if a.data.len() + data.len() > size {
            let got = a.data.len() + data.len();
            self.open.remove(i);
            return Err(FeslError::Fragment(format!(
                "fragments carry {got} base64 characters, size says {size}"
            )));
        }
        a.data.push_str(data);
        a.count += 1;
        let index = a.count;
        if a.data.len() < size {
            let total = (a.first_len > 0)
                .then(|| u32::try_from(size.div_ceil(a.first_len)).unwrap_or(u32::MAX));
            return Ok(Progress::Partial {
                index,
                total,
                collected: a.data.len(),
            });
        }
        let a = self.open.remove(i);
        match B64.decode(a.data.as_bytes()) {
            Ok(text) => Ok(Progress::Done { index, text }),
            Err(e) => Err(FeslError::Fragment(format!("base64: {e}"))),
        }
    }

    fn find(&self, command: [u8; 4], number: u32) -> Option<usize> {
        self.open
            .iter()
            .position(|a| a.command == command && a.number == number)
    }

    /// The TXN of a message still being collected, if its decoded start already shows it.
    pub fn peek_txn(&self, command: [u8; 4], number: u32) -> Option<String> {
        let a = &self.open[self.find(command, number)?];
        let usable = a.data.len().min(PEEK_CHARS) / 4 * 4;
        let text = B64.decode(&a.data.as_bytes()[..usable]).ok()?;
        let complete = usable == a.size;
        let mut found = None;
        for_each_line(&text, |r, line| {
            let whole = r.end < text.len() || complete;
            if found.is_none()
                && whole
                && let Some(v) = line.strip_prefix(b"TXN=")
            {
                found = std::str::from_utf8(v).ok().map(str::to_owned);
            }
        });
        found
    }
}

// ---------------------------------------------------------------------------------------
// The tree.

/// Static names for the keys of the usual transactions, so most nodes need no allocation.
fn key_name(s: &str) -> Cow<'static, str> {
    let known: &'static str = match s {
        "TXN" => "TXN",
        "0" => "0",
        "1" => "1",
        "2" => "2",
        "3" => "3",
        "[]" => "[]",
        "clientString" => "clientString",
        "sku" => "sku",
        "locale" => "locale",
        "clientPlatform" => "clientPlatform",
        "clientVersion" => "clientVersion",
        "SDKVersion" => "SDKVersion",
        "protocolVersion" => "protocolVersion",
        "fragmentSize" => "fragmentSize",
        "clientType" => "clientType",
        "theaterIp" => "theaterIp",
        "theaterPort" => "theaterPort",
        "messengerIp" => "messengerIp",
        "messengerPort" => "messengerPort",
        "activityTimeoutSecs" => "activityTimeoutSecs",
        "curTime" => "curTime",
        "domainPartition" => "domainPartition",
        "domain" => "domain",
        "subDomain" => "subDomain",
        "memcheck" => "memcheck",
        "type" => "type",
        "salt" => "salt",
        "result" => "result",
        "returnEncryptedInfo" => "returnEncryptedInfo",
        "encryptedInfo" => "encryptedInfo",
        "nuid" => "nuid",
        "password" => "password",
        "macAddr" => "macAddr",
        "profileId" => "profileId",
        "userId" => "userId",
        "displayName" => "displayName",
        "lkey" => "lkey",
        "entitledGameFeatureWrappers" => "entitledGameFeatureWrappers",
        "entitlementExpirationDate" => "entitlementExpirationDate",
        "entitlementExpirationDays" => "entitlementExpirationDays",
        "gameFeatureId" => "gameFeatureId",
        "message" => "message",
        "status" => "status",
        "namespace" => "namespace",
        "personas" => "personas",
        "name" => "name",
        "challenge" => "challenge",
        "ticket" => "ticket",
        "localizedMessage" => "localizedMessage",
        "errorContainer" => "errorContainer",
        "errorCode" => "errorCode",
        "fieldName" => "fieldName",
        "fieldError" => "fieldError",
        "value" => "value",
        "data" => "data",
        "decodedSize" => "decodedSize",
        "size" => "size",
        _ => return Cow::Owned(s.to_owned()),
    };
    Cow::Borrowed(known)
}

fn is_index(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

fn counted(c: &Node) -> bool {
    !c.derived && c.kind() != Some("raw") && is_index(&c.name)
}

/// Distinct array indices among a group's children.
fn element_count(group: &Node) -> u64 {
    // Usual case: indices strictly increasing, so all distinct; no allocation.
    let mut n = 0;
    let mut prev: Option<u64> = None;
    let mut increasing = true;
    for c in group.children.iter().filter(|c| counted(c)) {
        let v = c.name.parse::<u64>().ok();
        increasing &= match (prev, v) {
            (None, Some(_)) => true,
            (Some(p), Some(v)) => v > p,
            _ => false,
        };
        prev = v;
        n += 1;
    }
    if increasing {
        return n;
    }
    let mut idx: Vec<&str> = group
        .children
        .iter()
        .filter(|c| counted(c))
        .map(|c| c.name.as_ref())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.len() as u64
}

/// Top-level values the label and the fragment logic need.
#[derive(Default)]
struct Facts {
    error_code: Option<(String, Range<usize>)>,
    message: Option<String>,
    data: Option<String>,
    size: Option<String>,
    decoded_size: Option<String>,
}

/// Builds the nested groups of one payload.
struct Builder {
    /// Open groups; `stack[0]` is the payload node.
    stack: Vec<Node>,
}

impl Builder {
    fn close_one(&mut self) {
        if self.stack.len() < 2 {
            return;
        }
        if let Some(mut g) = self.stack.pop() {
            finish_group(&mut g);
            if let Some(parent) = self.stack.last_mut() {
                parent.children.push(g);
            }
        }
    }

    /// Makes the open groups match `path` (a dotted group path, may be empty).
    fn enter(&mut self, path: Option<&str>, at: usize) {
        let mut matched = 0;
        if let Some(path) = path {
            for (i, seg) in path.split('.').enumerate() {
                match self.stack.get(i + 1) {
                    Some(g) if g.name == seg => matched = i + 1,
                    _ => break,
                }
            }
        }
        while self.stack.len() > matched + 1 {
            self.close_one();
        }
        if let Some(path) = path {
            for seg in path.split('.').skip(matched) {
                self.stack.push(Node::group(key_name(seg), at..at));
            }
        }
    }

    fn push(&mut self, node: Node) {
        let end = node.range.end;
        if let Some(top) = self.stack.last_mut() {
            top.range.end = end;
            top.children.push(node);
        }
    }

    /// The payload node, and the emptied stack for reuse.
    fn finish(mut self) -> (Option<Node>, Vec<Node>) {
        while self.stack.len() > 1 {
            self.close_one();
        }
        let payload = self.stack.pop();
        (payload, self.stack)
    }
}

fn finish_group(g: &mut Node) {
    if let Some(last) = g.children.last() {
        g.range.end = last.range.end;
    }
    let count_at = g.children.iter().position(|c| c.kind() == Some("count"));
    let list = count_at.is_some() || g.children.iter().any(|c| is_index(&c.name));
    g.set_kind(Some(Cow::Borrowed(if list { "list" } else { "record" })));
    if let Some(i) = count_at {
        let have = element_count(g);
        if let Some(c) = g.children.get_mut(i)
            && let Some(said) = c.value.as_u64()
            && said != have
        {
            c.set_error(Some(format!(
                "count says {said} but {have} elements follow"
            )));
        }
    }
}

/// The tree of a payload (`bytes`, terminator included when `nul_expected`), ranges offset
/// by `base`.
fn payload_tree(
    bytes: &[u8],
    base: usize,
    nul_expected: bool,
    facts: &mut Facts,
    scratch: &mut Vec<Node>,
) -> Node {
    let (end, text_len) = End::of(bytes);
    let text = &bytes[..text_len];
    let mut payload = Node::group("payload", base..base + bytes.len()).with_kind(end.kind());
    if nul_expected && matches!(end, End::Newline | End::None) {
        payload.set_error(Some(FeslError::NoTerminator.to_string()));
    }
    payload.children.reserve((text.len() / 16 + 1).min(64));
    let whole = std::str::from_utf8(text).ok();
    let mut stack = std::mem::take(scratch);
    stack.clear();
    stack.push(payload);
    let mut b = Builder { stack };
    let mut n = 0;
    for_each_line(text, |r, raw| {
        n += 1;
        let range = base + r.start..base + r.end;
        match parse_line(raw, whole.and_then(|w| w.get(r)), n) {
            Line::Pair {
                key,
                dot,
                value,
                quoting,
            } => {
                let (path, leaf) = match dot.and_then(|d| Some((key.get(..d)?, key.get(d + 1..)?)))
                {
                    Some((p, l)) => (Some(p), l),
                    None => (None, key),
                };
                b.enter(path, range.start);
                if path.is_none() {
                    note_fact(facts, leaf, &value, &range);
                }
                let node = value_node(leaf, value, quoting, range);
                b.push(node);
            }
            Line::Bad { raw, error } => {
                b.enter(None, range.start);
                let name = match raw.iter().position(|&c| c == b'=') {
                    Some(i) => Cow::Owned(String::from_utf8_lossy(&raw[..i]).into_owned()),
                    None => Cow::Borrowed("line"),
                };
                b.push(
                    Node::new(name, range, Value::Bytes(raw.into()))
                        .with_display(String::from_utf8_lossy(raw))
                        .with_error(error.to_string())
                        .with_kind("raw"),
                );
            }
        }
    });
    let (payload, stack) = b.finish();
    *scratch = stack;
    let mut payload = payload.unwrap_or_else(|| Node::group("payload", base..base));
    payload.range = base..base + bytes.len();
    payload
}

fn note_fact(facts: &mut Facts, key: &str, value: &str, range: &Range<usize>) {
    let slot = match key {
        "errorCode" => {
            if facts.error_code.is_none() {
                facts.error_code = Some((value.to_owned(), range.clone()));
            }
            return;
        }
        "localizedMessage" => &mut facts.message,
        "data" => &mut facts.data,
        "size" => &mut facts.size,
        "decodedSize" => &mut facts.decoded_size,
        _ => return,
    };
    if slot.is_none() {
        *slot = Some(value.to_owned());
    }
}

fn value_node(leaf: &str, value: Cow<'_, str>, quoting: Quoting, range: Range<usize>) -> Node {
    let mut node = Node::group(key_name(leaf), range);
    if leaf == "[]" && quoting == Quoting::Plain {
        match value.parse::<u64>() {
            Ok(n) if n.to_string() == value => {
                node.value = Value::UInt(n);
                node.set_kind(Some(Cow::Borrowed("count")));
                return node;
            }
            _ => node.set_error(Some("array count is not a number".into())),
        }
    }
    node.set_kind(match quoting {
        Quoting::Plain => None,
        Quoting::Quoted => Some(Cow::Borrowed("quoted")),
        Quoting::Bare => Some(Cow::Borrowed("bare")),
    });
    node.value = Value::Text(value.into());
    node
}

fn header_nodes(msg: &[u8]) -> Node {
    let h = &msg[..HEADER_LEN];
    let mut command = Node::new(
        "command",
        0..4,
        Value::Text(String::from_utf8_lossy(&h[..4]).into()),
    );
    if !command_ok(&h[..4]) {
        command.set_error(Some(
            FeslError::BadCommand([h[0], h[1], h[2], h[3]]).to_string(),
        ));
    }
    let mut ty = Node::new("type", 4..5, Value::UInt(u64::from(h[4])));
    match Tag::from_u8(h[4]) {
        Some(t) => ty.set_display(Some(t.name().into())),
        None => ty.set_error(Some(FeslError::BadTag(h[4]).to_string())),
    }
    let number = Node::new(
        "number",
        5..8,
        Value::UInt(u64::from(u32::from_be_bytes([0, h[5], h[6], h[7]]))),
    );
    let size_v = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let mut size = Node::new("size", 8..12, Value::UInt(u64::from(size_v)));
    if size_v as usize != msg.len() {
        size.set_error(Some(format!(
            "size {size_v} but the packet has {} bytes",
            msg.len()
        )));
    }
    Node::group("header", 0..HEADER_LEN).with_children(vec![command, ty, number, size])
}

/// The TXN of a payload tree: a top-level key, wherever it stands.
fn txn_of(payload: &Node) -> Option<&str> {
    payload
        .children
        .iter()
        .find(|c| c.name == "TXN" && c.kind() != Some("raw"))
        .and_then(|c| c.value.as_text())
}

fn label_of(command: &str, txn: Option<&str>, facts: &Facts, is_ferr: bool) -> String {
    let mut label = String::with_capacity(command.len() + 24);
    label.push_str(command);
    if let Some(t) = txn.filter(|t| !t.is_empty()) {
        label.push(' ');
        label.push_str(t);
    }
    if facts.error_code.is_some() || is_ferr {
        label.push_str(" error");
        if let Some((c, _)) = &facts.error_code {
            label.push(' ');
            label.push_str(c);
        }
    }
    label
}

fn error_node(facts: &Facts) -> Option<Node> {
    let (code, range) = facts.error_code.as_ref()?;
    let code_v = match code.parse::<i64>() {
        Ok(n) => Value::Int(n),
        Err(_) => Value::Text(code.clone().into()),
    };
    let mut children = vec![Node::new("code", range.clone(), code_v).derived()];
    if let Some(m) = &facts.message {
        children.push(Node::new("message", range.clone(), Value::Text(m.clone().into())).derived());
    }
    let meaning = code.parse::<i64>().ok().and_then(error_meaning);
    let mut node = Node::group("error", range.clone())
        .with_children(children)
        .derived();
    if let Some(m) = meaning {
        node.set_display(Some(m.to_string()));
    }
    Some(node)
}

/// What the error codes seen across emulators mean.
pub fn error_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        20 => "not authenticated",
        99 => "system error",
        101 => "no such account",
        102 => "account disabled",
        103 => "banned",
        105 => "account not confirmed",
        121 => "too many attempts",
        122 => "bad password",
        123 => "game not registered",
        160 => "already exists",
        3012 => "no entitlement",
        _ => return None,
    })
}

/// One direction's decoder: frames packets and collects fragments.
#[derive(Default)]
pub struct FeslDecoder {
    fragments: Reassembler,
    /// The payload builder's stack, kept between messages to save an allocation.
    scratch: Vec<Node>,
}

impl FeslDecoder {
    pub fn new() -> Self {
        FeslDecoder::default()
    }

    fn fragment(
        &mut self,
        command: [u8; 4],
        number: u32,
        facts: &Facts,
        root: &mut Node,
        derived: &mut Vec<DerivedBuffer>,
    ) -> String {
        let cmd = std::str::from_utf8(&command).unwrap_or("????");
        let set_error =
            |root: &mut Node, key: &str, e: String| match root.find_mut(&["payload", key]) {
                Some(n) => n.set_error(Some(e)),
                None => {
                    if let Some(p) = root.child_mut("payload") {
                        p.set_error(Some(e));
                    }
                }
            };
        let (Some(data), Some(size)) = (&facts.data, &facts.size) else {
            set_error(root, "data", "fragment without data or size".into());
            return format!("{cmd} fragment");
        };
        let Ok(size) = size.parse::<usize>() else {
            set_error(root, "size", "fragment size is not a number".into());
            return format!("{cmd} fragment");
        };
        let progress = self.fragments.push(command, number, data, size);
        let mut info = Node::group("fragment", 0..0).derived();
        let (index, total, txn) = match progress {
            Err(e) => {
                let key = if e.to_string().contains("differs") || size > MAX_REASSEMBLED {
                    "size"
                } else {
                    "data"
                };
                set_error(root, key, e.to_string());
                return format!("{cmd} fragment");
            }
            Ok(Progress::Partial {
                index,
                total,
                collected,
            }) => {
                info.push(Node::new("collected", 0..0, Value::UInt(collected as u64)).derived());
                (index, total, self.fragments.peek_txn(command, number))
            }
            Ok(Progress::Done { index, text }) => {
                let mut rfacts = Facts::default();
                let mut tree = payload_tree(&text, 0, false, &mut rfacts, &mut self.scratch);
                if let Some(ds) = &facts.decoded_size
                    && ds.parse::<usize>().ok() != Some(text.len())
                {
                    tree.set_error(Some(format!(
                        "decodedSize {ds} but {} bytes were decoded",
                        text.len()
                    )));
                }
                if let Some(e) = error_node(&rfacts) {
                    tree.children.push(e);
                }
                let label = label_of(cmd, txn_of(&tree), &rfacts, cmd == "ferr");
                derived.push(DerivedBuffer {
                    name: "reassembled".into(),
                    bytes: text,
                    tree,
                });
                info.push(Node::new("index", 0..0, Value::UInt(u64::from(index))).derived());
                info.push(Node::new("of", 0..0, Value::UInt(u64::from(index))).derived());
                root.push(info);
                return format!("{label} fragment {index}/{index}");
            }
        };
        info.children.insert(
            0,
            Node::new("index", 0..0, Value::UInt(u64::from(index))).derived(),
        );
        if let Some(t) = total {
            info.children.insert(
                1,
                Node::new("of", 0..0, Value::UInt(u64::from(t))).derived(),
            );
        }
        root.push(info);
        let mut label = String::from(cmd);
        if let Some(t) = txn {
            label.push(' ');
            label.push_str(&t);
        }
        label.push_str(" fragment ");
        label.push_str(&index.to_string());
        if let Some(t) = total {
            label.push('/');
            label.push_str(&t.to_string());
        }
        label
    }

    /// Decodes one packet (what [`frame`] delimited).
    pub fn decode_packet(&mut self, msg: &[u8]) -> Message {
        let mut root = Node::group("fesl", 0..msg.len());
        if msg.len() < HEADER_LEN {
            root.push(
                Node::new("truncated", 0..msg.len(), Value::Bytes(msg.into()))
                    .with_error(FeslError::Short.to_string()),
            );
            return Message::new("fesl truncated", root);
        }
        let header = header_nodes(msg);
        let command = [msg[0], msg[1], msg[2], msg[3]];
        let cmd = String::from_utf8_lossy(&command);
        let tag = Tag::from_u8(msg[4]);
        let number = u32::from_be_bytes([0, msg[5], msg[6], msg[7]]);
        let mut facts = Facts::default();
        let payload = payload_tree(
            &msg[HEADER_LEN..],
            HEADER_LEN,
            true,
            &mut facts,
            &mut self.scratch,
        );
        root.children.reserve_exact(3);
        root.push(header);
        root.push(payload);
        let mut derived = Vec::new();
        let label = if tag.is_some_and(Tag::is_fragment) {
            self.fragment(command, number, &facts, &mut root, &mut derived)
        } else {
            if let Some(e) = error_node(&facts) {
                root.push(e);
            }
            let txn = root.child("payload").and_then(txn_of);
            label_of(&cmd, txn, &facts, cmd == "ferr")
        };
        Message {
            label,
            tree: root,
            derived,
        }
    }
}

impl StreamDecoder for FeslDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        frame(buf)
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        self.decode_packet(msg)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding a tree.

fn bad(field: &str, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn value_text<'a>(node: &'a Node, key: &str) -> Result<Cow<'a, str>, EncodeError> {
    Ok(match &node.value {
        Value::Text(s) => Cow::Borrowed(&**s),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if *b { "1" } else { "0" }),
        Value::Bytes(b) => {
            Cow::Borrowed(std::str::from_utf8(b).map_err(|_| bad(key, "value is not UTF-8 text"))?)
        }
        Value::None => Cow::Borrowed(""),
    })
}

fn emit_group(
    group: &Node,
    prefix: &mut String,
    out: &mut Vec<u8>,
    first: &mut bool,
) -> Result<(), EncodeError> {
    let count = group
        .children
        .iter()
        .any(|c| c.kind() == Some("count"))
        .then(|| element_count(group));
    for c in group.children.iter().filter(|c| !c.derived) {
        let kind = c.kind();
        let is_group = matches!(c.value, Value::None) && !matches!(kind, Some("raw" | "count"));
        if is_group {
            let len = prefix.len();
            prefix.push_str(&c.name);
            prefix.push('.');
            emit_group(c, prefix, out, first)?;
            prefix.truncate(len);
            continue;
        }
        if !*first {
            out.push(b'\n');
        }
        *first = false;
        if kind == Some("raw") {
            match &c.value {
                Value::Bytes(b) => out.extend_from_slice(b),
                _ => out.extend_from_slice(value_text(c, &c.name)?.as_bytes()),
            }
            continue;
        }
        let name: &str = &c.name;
        if name.bytes().any(|b| matches!(b, b'\n' | b'=' | 0)) || prefix.contains(['\n', '=', '\0'])
        {
            return Err(bad(name, "key contains '=', a newline or NUL"));
        }
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        if kind == Some("count") {
            let n = count.unwrap_or(0);
            out.extend_from_slice(n.to_string().as_bytes());
            continue;
        }
        let v = value_text(c, name)?;
        let quote = kind == Some("quoted") || (kind != Some("bare") && needs_quotes(&v));
        push_value(out, &v, quote);
    }
    Ok(())
}

/// Payload bytes (terminator included) from a `payload` node.
fn encode_payload(payload: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut prefix = String::new();
    let mut first = true;
    emit_group(payload, &mut prefix, out, &mut first)?;
    out.extend_from_slice(End::from_kind(payload.kind()).bytes());
    Ok(())
}

/// Rebuilds a packet from a tree as [`FeslDecoder`] produced it (size recomputed, counts
/// `.[]` recomputed, values re-escaped).
pub fn encode_tree(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    let header = tree
        .child("header")
        .ok_or_else(|| EncodeError::Missing("header".into()))?;
    let field = |name: &str| {
        header
            .child(name)
            .ok_or_else(|| EncodeError::Missing(format!("header.{name}")))
    };
    let command = field("command")?;
    let cmd = value_text(command, "command")?;
    let cmd: [u8; 4] = cmd
        .as_bytes()
        .try_into()
        .ok()
        .filter(|c: &[u8; 4]| command_ok(c))
        .ok_or_else(|| bad("header.command", "must be 4 ASCII letters or digits"))?;
    let tag = field("type")?
        .value
        .as_u64()
        .and_then(|t| u8::try_from(t).ok())
        .and_then(Tag::from_u8)
        .ok_or_else(|| bad("header.type", "must be 0xc0, 0x80, 0xf0 or 0xb0"))?;
    let number = field("number")?
        .value
        .as_u64()
        .filter(|&n| n <= 0xFF_FFFF)
        .ok_or_else(|| bad("header.number", "must be a number below 2^24"))?;
    let payload = tree
        .child("payload")
        .ok_or_else(|| EncodeError::Missing("payload".into()))?;
    let mut out = Vec::with_capacity(tree.range.len().max(64));
    put_header(&mut out, &cmd, tag.to_u8(), number as u32);
    encode_payload(payload, &mut out)?;
    if out.len() > MAX_PACKET {
        return Err(bad("payload", format!("packet exceeds {MAX_PACKET} bytes")));
    }
    patch_size(&mut out);
    Ok(out)
}

/// The FESL dissector.
pub struct Fesl;

impl Dissector for Fesl {
    fn name(&self) -> &'static str {
        "fesl"
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
