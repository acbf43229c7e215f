//! Chunked transfer coding: the chunk boundaries of a body, found once for framing and for
//! decoding.

use super::*;

pub(super) struct Chunk {
    /// The size line without its line ending.
    pub(super) line: Range<usize>,
    pub(super) digits: Range<usize>,
    pub(super) size: usize,
    pub(super) data: Range<usize>,
    /// The whole chunk, size line to the line ending after the data.
    pub(super) all: Range<usize>,
    /// The line endings after the size line and after the data.
    pub(super) eols: (Range<usize>, Range<usize>),
}

pub(super) enum ChunkState {
    Done,
    NeedMore,
    Bad { at: usize, reason: String },
}

pub(super) struct Chunked {
    pub(super) chunks: Vec<Chunk>,
    /// `0` line with its line ending.
    pub(super) last: Option<Range<usize>>,
    /// Trailer lines (without line endings), then the final blank line.
    pub(super) trailers: Vec<Range<usize>>,
    pub(super) blank: Option<Range<usize>>,
    pub(super) end: usize,
    pub(super) state: ChunkState,
}

/// The next line from `at`: (content range without EOL, EOL range), or None if incomplete.
pub(super) fn line_at(buf: &[u8], at: usize) -> Option<(Range<usize>, Range<usize>)> {
    let p = buf.get(at..)?.iter().position(|&b| b == b'\n')?;
    let nl = at + p;
    let content_end = if nl > at && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((at..content_end, content_end..nl + 1))
}

pub(super) fn parse_chunked(buf: &[u8], start: usize) -> Chunked {
    let mut c = Chunked {
        chunks: Vec::new(),
        last: None,
        trailers: Vec::new(),
        blank: None,
        end: start,
        state: ChunkState::NeedMore,
    };
    let mut at = start;
    let mut total = 0usize;
    loop {
        let Some((line, eol)) = line_at(buf, at) else {
            if buf.len().saturating_sub(at) > 4096 {
                c.state = ChunkState::Bad {
                    at,
                    reason: "chunk size line too long".into(),
                };
            }
            return c;
        };
        let text = &buf[line.clone()];
        let ndigits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = text[ndigits..].trim_ascii_start();
        if ndigits == 0 || ndigits > 16 || !(rest.is_empty() || rest.starts_with(b";")) {
            c.state = ChunkState::Bad {
                at,
                reason: "invalid chunk size".into(),
            };
            c.end = eol.end;
            return c;
        }
        let digits = line.start..line.start + ndigits;
        let size = std::str::from_utf8(&buf[digits.clone()])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size.filter(|&s| total.saturating_add(s) <= MAX_BODY) else {
            c.state = ChunkState::Bad {
                at,
                reason: "chunked body exceeds 64 MiB".into(),
            };
            c.end = eol.end;
            return c;
        };
        total += size;
        if size == 0 {
            c.last = Some(line.start..eol.end);
            at = eol.end;
            // Trailers until a blank line.
            loop {
                let Some((tl, teol)) = line_at(buf, at) else {
                    if buf.len().saturating_sub(at) > MAX_HEAD {
                        c.state = ChunkState::Bad {
                            at,
                            reason: "trailers exceed 64 KiB".into(),
                        };
                    }
                    return c;
                };
                if tl.is_empty() {
                    c.blank = Some(teol.clone());
                    c.end = teol.end;
                    c.state = ChunkState::Done;
                    return c;
                }
                if tl.end - start > MAX_HEAD + MAX_BODY {
                    c.state = ChunkState::Bad {
                        at,
                        reason: "trailers too long".into(),
                    };
                    return c;
                }
                c.trailers.push(tl);
                at = teol.end;
            }
        }
        let data = eol.end..eol.end.saturating_add(size);
        if data.end > buf.len() {
            return c;
        }
        let data_eol = match buf.get(data.end..) {
            Some([b'\r', b'\n', ..]) => data.end..data.end + 2,
            Some([b'\n', ..]) => data.end..data.end + 1,
            Some([] | [b'\r']) => return c,
            _ => {
                c.state = ChunkState::Bad {
                    at: data.end,
                    reason: "chunk data not followed by a line ending".into(),
                };
                c.end = data.end;
                return c;
            }
        };
        c.chunks.push(Chunk {
            line: line.clone(),
            digits,
            size,
            data: data.clone(),
            all: line.start..data_eol.end,
            eols: (eol, data_eol.clone()),
        });
        at = data_eol.end;
        c.end = at;
    }
}
