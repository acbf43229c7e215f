//! The classic hex dump layout: offset, 16 bytes in two groups of 8, and their ASCII.
//!
//! Lines are formatted on demand, one per visible row, because a single packet may be
//! hundreds of megabytes and the pane must never format more than it shows.

use crate::capture::ascii_preview;

pub const BYTES_PER_LINE: usize = 16;

/// One line of a dump, split so the pane can colour the parts differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexLine {
    pub offset: String,
    /// Always the full width of 16 bytes, padded with spaces on the last line, so the ASCII
    /// column stays aligned.
    pub hex: String,
    pub ascii: String,
}

pub fn line_count(len: usize) -> usize {
    len.div_ceil(BYTES_PER_LINE)
}

/// Line `index` of the dump of `data`; `None` past the end.
pub fn line(data: &[u8], index: usize) -> Option<HexLine> {
    let start = index.checked_mul(BYTES_PER_LINE)?;
    if start >= data.len() {
        return None;
    }
    let chunk = &data[start..data.len().min(start + BYTES_PER_LINE)];
    let mut hex = String::with_capacity(BYTES_PER_LINE * 3 + 1);
    for i in 0..BYTES_PER_LINE {
        if i > 0 {
            hex.push(' ');
        }
        if i == BYTES_PER_LINE / 2 {
            hex.push(' ');
        }
        match chunk.get(i) {
            Some(b) => hex.push_str(&format!("{b:02x}")),
            None => hex.push_str("  "),
        }
    }
    Some(HexLine {
        offset: format!("{start:08x}"),
        hex,
        ascii: ascii_preview(chunk),
    })
}

/// Where byte `i` of a line starts in [`HexLine::hex`]: two digits and a space each, and one
/// more space between the two groups of eight.
pub fn hex_column(i: usize) -> usize {
    i * 3 + usize::from(i >= BYTES_PER_LINE / 2)
}

/// Width of the offset column and the gap after it, and of the gap before the ASCII column.
const OFFSET_WIDTH: usize = 8 + 2;
const HEX_WIDTH: usize = BYTES_PER_LINE * 3;

/// The byte under character `column` of a whole line (offset, hex, ASCII) holding `len`
/// bytes: a click on a hex digit pair or an ASCII character selects that byte.
pub fn byte_at_column(column: usize, len: usize) -> Option<usize> {
    let ascii = OFFSET_WIDTH + HEX_WIDTH + 2;
    let byte = if column >= ascii {
        column - ascii
    } else {
        let c = column.checked_sub(OFFSET_WIDTH)?;
        (0..BYTES_PER_LINE).find(|&i| c >= hex_column(i) && c < hex_column(i) + 2)?
    };
    (byte < len).then_some(byte)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_column_maps_to_its_byte_in_both_columns() {
        // "00000000  48 65 ..": byte 0 at columns 10-11, byte 8 after the group gap.
        assert_eq!(byte_at_column(10, 16), Some(0));
        assert_eq!(byte_at_column(11, 16), Some(0));
        assert_eq!(byte_at_column(12, 16), None);
        assert_eq!(byte_at_column(10 + 25, 16), Some(8));
        assert_eq!(byte_at_column(60, 16), Some(0));
        assert_eq!(byte_at_column(75, 16), Some(15));
        assert_eq!(byte_at_column(75, 4), None);
        assert_eq!(byte_at_column(3, 16), None);
    }

    use super::*;

    #[test]
    fn full_line_has_two_groups_and_ascii() {
        let data: Vec<u8> = b"Hello, world!\n\x00\xff".to_vec();
        let l = line(&data, 0).expect("one line");
        assert_eq!(l.offset, "00000000");
        assert_eq!(l.hex, "48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 ff");
        assert_eq!(l.ascii, "Hello, world!...");
        assert!(line(&data, 1).is_none());
    }

    #[test]
    fn short_last_line_is_padded_to_full_width() {
        let data = [0xAAu8; 18];
        let full = line(&data, 0).expect("first line");
        let last = line(&data, 1).expect("second line");
        assert_eq!(last.offset, "00000010");
        assert_eq!(last.hex.len(), full.hex.len());
        assert!(last.hex.starts_with("aa aa "));
        assert_eq!(last.ascii, "..");
        assert_eq!(line_count(data.len()), 2);
        assert_eq!(line_count(0), 0);
    }

    #[test]
    fn huge_index_is_none_not_overflow() {
        assert!(line(b"abc", usize::MAX).is_none());
    }
}
