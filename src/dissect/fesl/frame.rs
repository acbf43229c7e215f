//! The 12-byte header, the packet type tags, and framing.

use super::*;

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

pub(super) fn command_ok(c: &[u8]) -> bool {
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
