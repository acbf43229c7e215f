//! Bare JSON streams: where one top-level value ends, and its message.

use super::*;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Where the value starting at `buf[0]` (not whitespace) ends, if it is complete.
fn frame_value(buf: &[u8]) -> Framing {
    let Some(&first) = buf.first() else {
        return Framing::NeedMore(None);
    };
    match first {
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut in_str = false;
            let mut esc = false;
            for (i, &c) in buf.iter().enumerate() {
                if i >= MAX_MESSAGE {
                    return Framing::Unframeable {
                        skip: i,
                        reason: "JSON value larger than 16 MiB".into(),
                    };
                }
                if in_str {
                    if esc {
                        esc = false;
                    } else if c == b'\\' {
                        esc = true;
                    } else if c == b'"' {
                        in_str = false;
                    }
                    continue;
                }
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Framing::Complete(i + 1);
                        }
                    }
                    _ => {}
                }
            }
            Framing::NeedMore(None)
        }
        b'"' => {
            let mut esc = false;
            for (i, &c) in buf.iter().enumerate().skip(1) {
                if i >= MAX_MESSAGE {
                    return Framing::Unframeable {
                        skip: i,
                        reason: "JSON value larger than 16 MiB".into(),
                    };
                }
                if esc {
                    esc = false;
                } else if c == b'\\' {
                    esc = true;
                } else if c == b'"' {
                    return Framing::Complete(i + 1);
                }
            }
            Framing::NeedMore(None)
        }
        b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => {
            // A scalar ends at the first delimiter; without one it may still continue.
            match buf
                .iter()
                .position(|&c| is_ws(c) || matches!(c, b'{' | b'[' | b'"' | b',' | b']' | b'}'))
            {
                Some(n) if n > 0 => Framing::Complete(n),
                _ if buf.len() > 64 => Framing::Unframeable {
                    skip: buf.len(),
                    reason: "overlong JSON scalar".into(),
                },
                _ => Framing::NeedMore(None),
            }
        }
        _ => {
            let skip = buf
                .iter()
                .position(|&c| matches!(c, b'{' | b'[' | b'\n'))
                .map_or(
                    buf.len(),
                    |p| if buf[p] == b'\n' { p + 1 } else { p.max(1) },
                );
            Framing::Unframeable {
                skip: skip.max(1),
                reason: "not the start of a JSON value".into(),
            }
        }
    }
}

impl StreamDecoder for JsonDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        let lead = buf.iter().take_while(|&&c| is_ws(c)).count();
        if lead == buf.len() {
            return Framing::NeedMore(None);
        }
        match frame_value(&buf[lead..]) {
            Framing::Complete(n) => {
                let end = lead + n;
                let trail = buf[end..].iter().take_while(|&&c| is_ws(c)).count();
                Framing::Complete(end + trail)
            }
            Framing::NeedMore(n) => Framing::NeedMore(n.map(|n| n + lead)),
            Framing::Unframeable { skip, reason } => {
                if lead > 0 {
                    // Whitespace then garbage: drop the garbage on its own next time.
                    Framing::Unframeable {
                        skip: lead + skip,
                        reason,
                    }
                } else {
                    Framing::Unframeable { skip, reason }
                }
            }
        }
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        let tree = tree(msg, "json");
        let label = match tree.kind() {
            Some("object") => {
                let keys: Vec<&str> = tree
                    .children
                    .iter()
                    .filter(|c| c.error().is_none())
                    .take(3)
                    .map(|c| c.name.as_ref())
                    .collect();
                let mut l = format!("{{{}", keys.join(","));
                if tree.children.len() > 3 {
                    l.push_str(",…");
                }
                l.push('}');
                l
            }
            Some("array") => format!("[{} items]", tree.children.len()),
            Some(k) => k.to_string(),
            None => "invalid JSON".to_string(),
        };
        Message::new(label, tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_values_with_whitespace() {
        let mut d = JsonDecoder;
        assert_eq!(d.frame(b" {\"a\":\"}\"} \n{"), Framing::Complete(12));
        assert_eq!(d.frame(b"  "), Framing::NeedMore(None));
        assert_eq!(d.frame(b"12"), Framing::NeedMore(None));
        assert_eq!(d.frame(b"12\n"), Framing::Complete(3));
    }
}
