//! The protobuf wire format: varints, tags, zigzag.

/// Largest field number protobuf allows (2^29 - 1).
pub const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_START_GROUP: u8 = 3;
pub const WIRE_END_GROUP: u8 = 4;
pub const WIRE_FIXED32: u8 = 5;

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ends before the last byte of the varint.
    Truncated,
    /// More than ten bytes, or a tenth byte with bits above 2^64.
    Overlong,
}

impl VarintError {
    pub fn reason(self, what: &'static str) -> &'static str {
        match (self, what) {
            (VarintError::Truncated, "tag") => "truncated tag varint",
            (VarintError::Truncated, "length") => "truncated length varint",
            (VarintError::Truncated, _) => "truncated varint",
            (VarintError::Overlong, "tag") => "tag varint longer than 10 bytes",
            (VarintError::Overlong, "length") => "length varint longer than 10 bytes",
            (VarintError::Overlong, _) => "varint longer than 10 bytes",
        }
    }
}

/// Reads a varint at `pos`; returns the value and the position after it.
#[inline(always)]
pub fn read_varint(buf: &[u8], pos: usize) -> Result<(u64, usize), VarintError> {
    // Fast paths, inlined into every caller: one byte (most tags, lengths and small values)
    // and two (values below 16,384: counts, ids, packed elements).
    let Some(&b0) = buf.get(pos) else {
        return Err(VarintError::Truncated);
    };
    if b0 < 0x80 {
        return Ok((u64::from(b0), pos + 1));
    }
    // `pos` is inside `buf`, so `pos + 1` cannot overflow.
    if let Some(&b1) = buf.get(pos + 1)
        && b1 < 0x80
    {
        return Ok((u64::from(b0 & 0x7f) | (u64::from(b1) << 7), pos + 2));
    }
    read_varint_long(buf, pos)
}

#[inline(never)]
fn read_varint_long(buf: &[u8], pos: usize) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(pos + i) else {
            return Err(VarintError::Truncated);
        };
        if i == 9 && b > 1 {
            return Err(VarintError::Overlong);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((value, pos + i + 1));
        }
    }
    Err(VarintError::Overlong)
}

/// How many bytes the shortest encoding of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn put_tag(out: &mut Vec<u8>, number: u64, wire: u8) {
    put_varint(out, (number << 3) | u64::from(wire));
}

#[inline]
pub fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Reads `N` bytes at `pos` as a little-endian array.
#[inline]
pub fn read_fixed<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    buf.get(pos..pos.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_report_their_length() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&out, 0), Ok((v, out.len())));
        }
    }

    #[test]
    fn bad_varints_are_reported() {
        assert_eq!(read_varint(&[0x80, 0x80], 0), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[], 0), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x80], 0), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x01], 1), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0xff; 11], 0), Err(VarintError::Overlong));
        let mut ten = vec![0xff; 9];
        ten.push(0x02);
        assert_eq!(read_varint(&ten, 0), Err(VarintError::Overlong));
    }

    #[test]
    fn zigzag_matches_the_spec() {
        for (plain, zz) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
        ] {
            assert_eq!(zigzag_encode(plain), zz);
            assert_eq!(zigzag_decode(zz), plain);
        }
        assert_eq!(zigzag_encode(i64::MIN), u64::MAX);
    }
}
