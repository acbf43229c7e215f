//! The layout of pcapng blocks: their length fields (checked before anything else reads
//! them), section versions, interface descriptions, enhanced packet blocks and their options.

use pcap_file::Endianness;
use pcap_file::pcapng::PcapNgParser;

use crate::capture::model::Timestamp;

pub(super) const BLOCK_SHB: u32 = 0x0A0D_0D0A;
pub(super) const BLOCK_IDB: u32 = 1;
pub(super) const BLOCK_PB: u32 = 2;
pub(super) const BLOCK_SPB: u32 = 3;
pub(super) const BLOCK_EPB: u32 = 6;
/// Longest block a file cut short may have been writing. A declared length past the end of
/// the file above this is a damaged length field, not a cut.
const MAX_PLAUSIBLE_BLOCK: u64 = 16 << 20;

/// How a block's framing (lengths) is broken.
pub(super) enum Framing {
    /// The file ends inside the block: cut short.
    Cut(String),
    Corrupt(String),
}

pub(super) fn read_u32(bytes: &[u8], at: usize, endianness: Endianness) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    })
}

pub(super) fn read_u16(bytes: &[u8], at: usize, endianness: Endianness) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u16::from_be_bytes(b),
        Endianness::Little => u16::from_le_bytes(b),
    })
}

/// Checks a block's length fields before the parser sees it, so that damage is classified
/// (cut short or corrupt) and a block with bad contents but sound lengths can be skipped.
pub(super) fn block_len(rest: &[u8], section: Endianness) -> Result<usize, Framing> {
    let Some(kind) = read_u32(rest, 0, section) else {
        return Err(Framing::Cut(format!(
            "the file ends inside a block header ({} of 8 bytes)",
            rest.len()
        )));
    };
    let endianness = if kind == BLOCK_SHB {
        match rest.get(8..12) {
            Some([0x1A, 0x2B, 0x3C, 0x4D]) => Endianness::Big,
            Some([0x4D, 0x3C, 0x2B, 0x1A]) => Endianness::Little,
            Some(_) => return Err(Framing::Corrupt("bad byte-order magic".into())),
            None => {
                return Err(Framing::Cut("the file ends inside a section header".into()));
            }
        }
    } else {
        section
    };
    let Some(len) = read_u32(rest, 4, endianness) else {
        return Err(Framing::Cut(format!(
            "the file ends inside a block header ({} of 8 bytes)",
            rest.len()
        )));
    };
    if len < 12 || len % 4 != 0 {
        return Err(Framing::Corrupt(format!(
            "block of type {kind:#x} has an impossible length of {len} bytes"
        )));
    }
    let len = len as usize;
    if len > rest.len() {
        let reason = format!(
            "block of type {kind:#x} and {len} bytes runs past the end of the file ({} bytes left)",
            rest.len()
        );
        // A file cut inside its last block has no trailer after the cut; a length field
        // damaged in the middle of a file leaves the real trailer somewhere behind it.
        let cut = (len as u64) <= MAX_PLAUSIBLE_BLOCK && !has_trailer_within(rest, endianness);
        return Err(if cut {
            Framing::Cut(reason)
        } else {
            Framing::Corrupt(reason)
        });
    }
    let trailer = read_u32(rest, len - 4, endianness).unwrap_or(0);
    if trailer as usize != len {
        return Err(Framing::Corrupt(format!(
            "block length {len} does not match its trailing copy {trailer}"
        )));
    }
    Ok(len)
}

/// Whether some length `n` in the bytes at hand is followed by itself at `n - 4`, as a complete
/// block's trailer would be.
fn has_trailer_within(rest: &[u8], endianness: Endianness) -> bool {
    (12..=rest.len())
        .step_by(4)
        .any(|n| read_u32(rest, n - 4, endianness) == Some(n as u32))
}

pub(super) fn check_version(parser: &PcapNgParser) -> Result<(), String> {
    let major = parser.section().major_version;
    if major == 1 {
        Ok(())
    } else {
        Err(format!(
            "pcapng major version {major} is not supported (only version 1 is)"
        ))
    }
}

fn units_per_sec(resolution: u8) -> Option<u128> {
    let exponent = u32::from(resolution & 0x7F);
    if resolution & 0x80 == 0 {
        10u128.checked_pow(exponent)
    } else {
        1u128.checked_shl(exponent)
    }
}

pub(super) struct Interface {
    pub(super) linktype: u32,
    /// Units per second of the interface's timestamps.
    units_per_sec: Option<u128>,
    offset_secs: i64,
}

impl Interface {
    /// Reads an interface description block's body. Read here rather than by pcap-file,
    /// whose parser rejects valid files (it expects `if_tzone` to be 1 byte instead of 4),
    /// and only three fields matter.
    pub(super) fn parse(body: &[u8], e: Endianness) -> Result<Self, String> {
        let linktype = read_u16(body, 0, e).ok_or("interface description shorter than 8 bytes")?;
        let mut resolution = 6u8;
        let mut offset_secs = 0i64;
        for (code, value) in parse_options(body.get(8..).unwrap_or(&[]), e)? {
            match (code, value) {
                (9, [r]) => resolution = *r,
                (14, v) => {
                    if let Ok(b) = <[u8; 8]>::try_from(v) {
                        offset_secs = match e {
                            Endianness::Big => i64::from_be_bytes(b),
                            Endianness::Little => i64::from_le_bytes(b),
                        };
                    }
                }
                _ => {}
            }
        }
        Ok(Interface {
            linktype: u32::from(linktype),
            units_per_sec: units_per_sec(resolution),
            offset_secs,
        })
    }

    pub(super) fn timestamp(&self, raw: u64) -> Timestamp {
        let nanos = match self.units_per_sec {
            Some(units) if units > 0 => u128::from(raw) * 1_000_000_000 / units,
            _ => 0,
        };
        let total = i128::try_from(nanos).unwrap_or(i128::MAX)
            + i128::from(self.offset_secs) * 1_000_000_000;
        Timestamp(total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

pub(super) struct Epb<'a> {
    pub(super) interface: u32,
    pub(super) raw_ts: u64,
    pub(super) data: &'a [u8],
    pub(super) comments: Vec<&'a str>,
}

pub(super) fn parse_epb(body: &[u8], e: Endianness) -> Result<Epb<'_>, String> {
    let field = |at| read_u32(body, at, e).ok_or("enhanced packet block shorter than 20 bytes");
    let interface = field(0)?;
    let raw_ts = (u64::from(field(4)?) << 32) | u64::from(field(8)?);
    let captured = field(12)?;
    let past_end = || format!("captured length {captured} runs past the end of its block");
    let end = usize::try_from(captured)
        .ok()
        .and_then(|c| c.checked_add(20))
        .ok_or_else(past_end)?;
    let data = body.get(20..end).ok_or_else(past_end)?;
    let options = body.get(end.next_multiple_of(4)..).unwrap_or(&[]);
    Ok(Epb {
        interface,
        raw_ts,
        data,
        comments: parse_comments(options, e)?,
    })
}

/// The `opt_comment` values among a block's options. Comments that are not UTF-8 cannot be
/// ours, and are not worth losing the packet over.
fn parse_comments(options: &[u8], e: Endianness) -> Result<Vec<&str>, String> {
    Ok(parse_options(options, e)?
        .into_iter()
        .filter(|(code, _)| *code == 1)
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .collect())
}

/// A block's options as (code, value).
fn parse_options(mut options: &[u8], e: Endianness) -> Result<Vec<(u16, &[u8])>, String> {
    let mut found = Vec::new();
    while options.len() >= 4 {
        let code = read_u16(options, 0, e).unwrap_or(0);
        let len = usize::from(read_u16(options, 2, e).unwrap_or(0));
        if code == 0 {
            break;
        }
        let value = options.get(4..4 + len).ok_or_else(|| {
            format!("option {code} of {len} bytes runs past the end of its block")
        })?;
        found.push((code, value));
        options = options.get(4 + len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_interface_resolution() {
        let iface = |resol, offset| Interface {
            linktype: 1,
            units_per_sec: units_per_sec(resol),
            offset_secs: offset,
        };
        assert_eq!(iface(6, 0).timestamp(1_500_000).0, 1_500_000_000);
        assert_eq!(iface(9, 0).timestamp(7).0, 7);
        assert_eq!(iface(0x80 | 10, 2).timestamp(1024).0, 3_000_000_000);
        assert_eq!(iface(100, 0).timestamp(5).0, 0);
    }
}
