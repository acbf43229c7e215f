//! Framing: where a `[payload_len][packet_id][payload]` frame ends, and writing one.

use super::{GLOBAL_MAX, HEADER_LEN, lookup};
use crate::dissect::Framing;

pub(super) fn header(buf: &[u8]) -> Option<(i32, i32)> {
    let [a, b, c, d, e, f, g, h, ..] = *buf else {
        return None;
    };
    Some((
        i32::from_le_bytes([a, b, c, d]),
        i32::from_le_bytes([e, f, g, h]),
    ))
}

/// Whether a header with this length and id could start a registered packet.
pub(super) fn plausible(len: i32, id: i32) -> bool {
    let Some(spec) = lookup(id) else {
        return false;
    };
    usize::try_from(len).is_ok_and(|len| len >= spec.fixed_size() && len <= spec.max())
}

/// Where the frame at the start of `buf` ends.
#[inline]
pub fn frame_at(buf: &[u8]) -> Framing {
    let [a, b, c, d, ..] = *buf else {
        return Framing::NeedMore(Some(HEADER_LEN));
    };
    let len = i32::from_le_bytes([a, b, c, d]);
    let Ok(len) = usize::try_from(len) else {
        return Framing::Unframeable {
            skip: resync(buf),
            reason: format!("negative payload length {len}"),
        };
    };
    if len > GLOBAL_MAX {
        return Framing::Unframeable {
            skip: resync(buf),
            reason: format!("payload length {len} exceeds the {GLOBAL_MAX}-byte limit"),
        };
    }
    let total = HEADER_LEN + len;
    if buf.len() >= total {
        Framing::Complete(total)
    } else {
        Framing::NeedMore(Some(total))
    }
}

/// How many bytes to skip after an unframeable header: up to the next plausible header of
/// a registered packet, else all but the last 7 bytes (which may start a header).
fn resync(buf: &[u8]) -> usize {
    let limit = buf.len().saturating_sub(HEADER_LEN - 1);
    (1..limit)
        .find(|&k| {
            buf.get(k..)
                .and_then(header)
                .is_some_and(|(len, id)| plausible(len, id))
        })
        .unwrap_or(limit.max(1))
}

/// `[len i32 LE][id i32 LE][payload]`, the payload as given.
pub fn frame(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &i32::try_from(payload.len())
            .unwrap_or(i32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(payload);
    out
}
