//! One body's fields walked without descending: to size a children vector once, and as the
//! schemaless guess's test of whether bytes are a message.

use super::wire::{
    MAX_FIELD_NUMBER, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, read_varint,
};

/// What a scan of one body's fields found (see [`scan_fields`]).
pub(super) struct Scan {
    /// Fields whose tag could be read: the exact count when `complete`, else room for the
    /// fields before the bad one and the `invalid` node that ends the body.
    pub(super) fields: usize,
    /// Whether the fields parse to the end of the body with wire types 0, 1, 2 and 5 and
    /// valid numbers (and, when asked, every varint in its shortest form).
    pub(super) complete: bool,
}

/// Walks the fields of one body without descending into nested ones: to size a children
/// vector once, and (with `CANONICAL`) as the schemaless guess's test of whether bytes are
/// a message at all.
#[inline(always)]
pub(super) fn scan_fields<const CANONICAL: bool>(data: &[u8]) -> Scan {
    let read = |pos| {
        if CANONICAL {
            read_canonical(data, pos)
        } else {
            read_varint(data, pos).ok()
        }
    };
    let mut pos = 0;
    let mut fields = 0;
    while pos < data.len() {
        fields += 1;
        let next = read(pos).and_then(|(key, p)| {
            let number = key >> 3;
            if number == 0 || number > MAX_FIELD_NUMBER {
                return None;
            }
            match (key & 7) as u8 {
                WIRE_VARINT => read(p).map(|(_, next)| next),
                WIRE_FIXED64 => p.checked_add(8),
                WIRE_FIXED32 => p.checked_add(4),
                WIRE_LEN => {
                    let (len, next) = read(p)?;
                    next.checked_add(usize::try_from(len).ok()?)
                }
                // Groups: not counted past; the vector grows if needed.
                _ => None,
            }
        });
        match next.filter(|&e| e <= data.len()) {
            Some(e) => pos = e,
            None => {
                return Scan {
                    fields,
                    complete: false,
                };
            }
        }
    }
    Scan {
        fields,
        complete: true,
    }
}

/// Reads a varint only if it is in its shortest form (so re-encoding gives the same bytes):
/// a varint of more than one byte is longer than needed exactly when its last byte is 0.
#[inline(always)]
pub(super) fn read_canonical(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    let (v, next) = read_varint(data, pos).ok()?;
    (next - pos == 1 || data.get(next - 1) != Some(&0)).then_some((v, next))
}
