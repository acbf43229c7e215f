//! Wire primitives shared by decoding, encoding and referral data: LE integers, VarInts, UUIDs.

pub(super) fn le_i32(p: &[u8], at: usize) -> Option<i32> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

pub(super) fn le_i64(p: &[u8], at: usize) -> Option<i64> {
    let b = p.get(at..at.checked_add(8)?)?;
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

pub(super) fn bit_of(bits: u8, bit: u8) -> bool {
    bits & (1u8 << (bit & 7)) != 0
}

/// Canonical lowercase UUID text of 16 big-endian bytes.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses UUID text (hyphens optional) into 16 big-endian bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let compact: String = s.chars().filter(|&c| c != '-').collect();
    if compact.len() != 32 {
        return None;
    }
    hex::decode(compact).ok()?.try_into().ok()
}

/// Reads a VarInt at `at`: `Ok((value, byte count))`, or the bytes it spans and the reason.
pub fn read_varint(p: &[u8], at: usize) -> Result<(usize, usize), (usize, String)> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let Some(&byte) = p.get(at + i) else {
            return Err((i, "VarInt runs past the end".into()));
        };
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return match i32::try_from(v) {
                Ok(n) => Ok((n as usize, i + 1)),
                Err(_) => Err((i + 1, format!("VarInt {v} is negative or above 2^31-1"))),
            };
        }
    }
    Err((5, "VarInt longer than 5 bytes".into()))
}

/// Appends a VarInt.
pub fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_limits() {
        let mut b = Vec::new();
        write_varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
        assert_eq!(read_varint(&b, 0), Ok((300, 2)));
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x07], 0).is_ok());
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0).map_err(|e| e.0),
            Err(5)
        );
        assert_eq!(read_varint(&[0x80; 6], 0).map_err(|e| e.0), Err(5));
        assert_eq!(read_varint(&[0x80], 0).map_err(|e| e.0), Err(1));
    }

    #[test]
    fn uuid_text_round_trip() {
        let u: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(parse_uuid(&uuid_text(&u)), Some(u));
        assert_eq!(uuid_text(&u), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
