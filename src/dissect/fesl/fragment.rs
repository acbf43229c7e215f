//! Fragmented messages: base64 fragments on the way out, reassembly on the way in.

use super::parse::for_each_line;
use super::*;

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
