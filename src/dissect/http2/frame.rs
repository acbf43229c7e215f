//! Framing: the 9-byte frame header, the names of frame types, flags, error codes and
//! settings, and where a frame (or the client preface) ends.

use super::*;

/// The name of a frame type.
pub fn frame_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        0xa => "ALTSVC",
        0xc => "ORIGIN",
        0x10 => "PRIORITY_UPDATE",
        _ => return None,
    })
}

/// The name of an HTTP/2 error code.
pub fn error_code_name(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .copied()
}

/// The name of a SETTINGS identifier.
pub fn setting_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "HEADER_TABLE_SIZE",
        2 => "ENABLE_PUSH",
        3 => "MAX_CONCURRENT_STREAMS",
        4 => "INITIAL_WINDOW_SIZE",
        5 => "MAX_FRAME_SIZE",
        6 => "MAX_HEADER_LIST_SIZE",
        8 => "ENABLE_CONNECT_PROTOCOL",
        9 => "NO_RFC7540_PRIORITIES",
        _ => return None,
    })
}

/// The flag names of a frame type's flags byte, `|`-joined; `none` when zero.
pub fn flag_names(t: u8, flags: u8) -> String {
    let known: &[(u8, &str)] = match t {
        DATA => &[(FLAG_END_STREAM, "END_STREAM"), (FLAG_PADDED, "PADDED")],
        HEADERS => &[
            (FLAG_END_STREAM, "END_STREAM"),
            (FLAG_END_HEADERS, "END_HEADERS"),
            (FLAG_PADDED, "PADDED"),
            (FLAG_PRIORITY, "PRIORITY"),
        ],
        SETTINGS | PING => &[(FLAG_ACK, "ACK")],
        PUSH_PROMISE => &[(FLAG_END_HEADERS, "END_HEADERS"), (FLAG_PADDED, "PADDED")],
        CONTINUATION => &[(FLAG_END_HEADERS, "END_HEADERS")],
        _ => &[],
    };
    let mut parts = Vec::new();
    let mut rest = flags;
    for &(bit, name) in known {
        if flags & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("0x{rest:02x}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("|")
    }
}

/// The 9-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; FRAME_HEADER] = b.get(..FRAME_HEADER)?.try_into().ok()?;
        let sid = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        Some(FrameHeader {
            length: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn unframeable(skip: usize, reason: impl Into<String>) -> Framing {
    Framing::Unframeable {
        skip: skip.max(1),
        reason: reason.into(),
    }
}

/// The payload length a frame type must have, when it is fixed.
fn fixed_length(kind: u8) -> Option<usize> {
    match kind {
        PRIORITY => Some(5),
        RST_STREAM | WINDOW_UPDATE => Some(4),
        PING => Some(8),
        _ => None,
    }
}

impl StreamDecoder for Http2Decoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        if !self.preface_done {
            if buf.starts_with(PREFACE) {
                return Framing::Complete(PREFACE.len());
            }
            if PREFACE.starts_with(buf) {
                return Framing::NeedMore(Some(PREFACE.len()));
            }
            // No preface: a capture that starts mid-connection. Read frames.
            self.preface_done = true;
        }
        let Some(h) = FrameHeader::parse(buf) else {
            return Framing::NeedMore(Some(FRAME_HEADER));
        };
        // Garbage reads as frames of any length; refuse to wait for what cannot be HTTP/2.
        // What is skipped is everything buffered: framing resumes at the next packet.
        if self.expect_settings {
            self.expect_settings = false;
            if h.kind != SETTINGS || h.stream != 0 || h.length % 6 != 0 {
                return unframeable(
                    buf.len(),
                    "the connection preface must be followed by a SETTINGS frame",
                );
            }
        }
        if h.length > MAX_FRAME_SIZE {
            return unframeable(buf.len(), "frame longer than 16 MiB");
        }
        let implausible = match h.kind {
            DATA | HEADERS | PUSH_PROMISE | CONTINUATION => false,
            SETTINGS | GOAWAY => h.length > DEFAULT_MAX_FRAME_SIZE,
            k => match fixed_length(k) {
                Some(n) => h.length != n && h.length > DEFAULT_MAX_FRAME_SIZE,
                None => h.length > DEFAULT_MAX_FRAME_SIZE,
            },
        };
        if implausible {
            let kind = frame_type_name(h.kind).map_or_else(
                || format!("frame of unknown type 0x{:02x}", h.kind),
                |n| format!("{n} frame"),
            );
            return unframeable(
                buf.len(),
                format!(
                    "{kind} with an implausible length of {} bytes: not HTTP/2",
                    h.length
                ),
            );
        }
        let total = FRAME_HEADER + h.length;
        if buf.len() >= total {
            Framing::Complete(total)
        } else {
            Framing::NeedMore(Some(total))
        }
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        if !self.preface_done {
            self.preface_done = true;
            if msg == PREFACE {
                self.expect_settings = true;
                return Message::new(
                    "h2 preface",
                    Node::group("h2 preface", 0..msg.len()).with_children(vec![Node::new(
                        "magic",
                        0..msg.len(),
                        Value::Text(String::from_utf8_lossy(msg).into()),
                    )]),
                );
            }
        }
        self.expect_settings = false;
        self.decode_frame(msg)
    }
}
