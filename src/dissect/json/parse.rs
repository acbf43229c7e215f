//! The span-tracking parser: a document into a tree with every member's exact byte range.

use super::*;

/// Parses `bytes` as one JSON document into a tree whose ranges are within `bytes`.
pub fn tree(bytes: &[u8], name: impl Into<Cow<'static, str>>) -> Node {
    let mut p = Parser { b: bytes, i: 0 };
    p.ws();
    let (mut root, ok) = p.value(name.into(), 0);
    if ok {
        p.ws();
        if p.i < bytes.len() {
            let at = p.i;
            root.push(error_node(
                at,
                bytes.len(),
                "trailing data after the JSON value",
            ));
        }
    }
    root.range = 0..bytes.len();
    root
}

/// Whether a tree (as `tree` made it) holds a parse error.
pub fn is_valid(node: &Node) -> bool {
    !node.has_error()
}

fn error_node(at: usize, len: usize, reason: &str) -> Node {
    let end = (at + 1).min(len).max(at);
    Node::new("error", at..end, Value::None).with_error(reason.to_string())
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn err(&self, at: usize, reason: &str) -> Node {
        error_node(at, self.b.len(), reason)
    }

    fn serr(&self, at: usize, reason: &str) -> Box<Node> {
        Box::new(self.err(at, reason))
    }

    /// Parses the value at `self.i` (whitespace already skipped). Returns the node and
    /// whether parsing may go on.
    fn value(&mut self, name: Cow<'static, str>, depth: usize) -> (Node, bool) {
        let start = self.i;
        match self.peek() {
            None => {
                let e = self.err(start, "unexpected end of JSON");
                (
                    Node::group(name, start..start).with_children(vec![e]),
                    false,
                )
            }
            Some(b'{') => self.object(name, depth),
            Some(b'[') => self.array(name, depth),
            Some(b'"') => match self.string() {
                Ok(s) => (
                    Node::new(name, start..self.i, Value::Text(s.into())).with_kind("string"),
                    true,
                ),
                Err(e) => (
                    Node::group(name, start..self.i).with_children(vec![*e]),
                    false,
                ),
            },
            Some(b't') => self.literal(name, b"true", Value::Bool(true), "bool"),
            Some(b'f') => self.literal(name, b"false", Value::Bool(false), "bool"),
            Some(b'n') => self.literal(name, b"null", Value::None, "null"),
            Some(b'-' | b'0'..=b'9') => self.number(name),
            Some(_) => {
                let e = self.err(start, "expected a JSON value");
                (
                    Node::group(name, start..start).with_children(vec![e]),
                    false,
                )
            }
        }
    }

    fn literal(
        &mut self,
        name: Cow<'static, str>,
        word: &[u8],
        value: Value,
        kind: &'static str,
    ) -> (Node, bool) {
        let start = self.i;
        if self.b.get(start..start + word.len()) == Some(word) {
            self.i += word.len();
            let mut n = Node::new(name, start..self.i, value).with_kind(kind);
            if kind == "null" {
                n.set_display(Some("null".into()));
            }
            (n, true)
        } else {
            let e = self.err(start, "invalid literal");
            (
                Node::group(name, start..start).with_children(vec![e]),
                false,
            )
        }
    }

    fn number(&mut self, name: Cow<'static, str>) -> (Node, bool) {
        let start = self.i;
        let fail = |p: &Parser, at: usize| {
            let e = p.err(at, "invalid number");
            (
                Node::group(name.clone(), start..at).with_children(vec![e]),
                false,
            )
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
            }
            _ => return fail(self, self.i),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return fail(self, self.i);
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return fail(self, self.i);
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
        }
        // Only ASCII digits, signs, '.', 'e' were consumed.
        let text = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        let range = start..self.i;
        let mut display = None;
        let value = if integer && text.starts_with('-') {
            match text.parse::<i64>() {
                Ok(v) => Value::Int(v),
                Err(_) => {
                    display = Some(text.clone());
                    Value::Float(text.parse::<f64>().unwrap_or(f64::NAN))
                }
            }
        } else if integer {
            match text.parse::<u64>() {
                Ok(v) => Value::UInt(v),
                Err(_) => {
                    display = Some(text.clone());
                    Value::Float(text.parse::<f64>().unwrap_or(f64::NAN))
                }
            }
        } else {
            let f = text.parse::<f64>().unwrap_or(f64::NAN);
            if f.to_string() != text {
                display = Some(text.clone());
            }
            Value::Float(f)
        };
        let mut n = Node::new(name, range, value).with_kind("number");
        n.set_display(display);
        (n, true)
    }

    /// Parses a string starting at the opening quote; on error the node says where.
    fn string(&mut self) -> Result<String, Box<Node>> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let run = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            match std::str::from_utf8(&self.b[run..self.i]) {
                Ok(s) => out.push_str(s),
                Err(e) => return Err(self.serr(run + e.valid_up_to(), "invalid UTF-8 in string")),
            }
            match self.peek() {
                None => return Err(self.serr(start, "unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc = self.i;
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let hi = self
                                .hex4()
                                .ok_or_else(|| self.serr(esc, "bad \\u escape"))?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.serr(esc, "lone surrogate in \\u escape"));
                                }
                                self.i += 2;
                                let lo = self
                                    .hex4()
                                    .ok_or_else(|| self.serr(esc, "bad \\u escape"))?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.serr(esc, "lone surrogate in \\u escape"));
                                }
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            } else {
                                char::from_u32(hi)
                            };
                            match c {
                                Some(c) => out.push(c),
                                None => {
                                    return Err(self.serr(esc, "lone surrogate in \\u escape"));
                                }
                            }
                            continue;
                        }
                        _ => return Err(self.serr(esc, "invalid escape")),
                    };
                    self.i += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.serr(self.i, "control character in string")),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    fn object(&mut self, name: Cow<'static, str>, depth: usize) -> (Node, bool) {
        let start = self.i;
        let mut node = Node::group(name, start..start).with_kind("object");
        if depth >= MAX_DEPTH {
            node.push(self.err(start, "JSON nested too deeply"));
            return (node, false);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            node.range = start..self.i;
            return (node, true);
        }
        loop {
            self.ws();
            let key_start = self.i;
            if self.peek() != Some(b'"') {
                node.push(self.err(self.i, "expected a member name"));
                break;
            }
            let key = match self.string() {
                Ok(k) => k,
                Err(e) => {
                    node.push(*e);
                    break;
                }
            };
            self.ws();
            if self.peek() != Some(b':') {
                node.push(self.err(self.i, "expected ':'"));
                break;
            }
            self.i += 1;
            self.ws();
            let (mut member, ok) = self.value(Cow::Owned(key), depth + 1);
            member.range = key_start..member.range.end.max(key_start);
            node.push(member);
            if !ok {
                break;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    node.range = start..self.i;
                    return (node, true);
                }
                _ => {
                    node.push(self.err(self.i, "expected ',' or '}'"));
                    break;
                }
            }
        }
        node.range = start..self.i.min(self.b.len()).max(start);
        (node, false)
    }

    fn array(&mut self, name: Cow<'static, str>, depth: usize) -> (Node, bool) {
        let start = self.i;
        let mut node = Node::group(name, start..start).with_kind("array");
        if depth >= MAX_DEPTH {
            node.push(self.err(start, "JSON nested too deeply"));
            return (node, false);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            node.range = start..self.i;
            return (node, true);
        }
        let mut index = 0usize;
        loop {
            self.ws();
            let (el, ok) = self.value(Cow::Owned(format!("[{index}]")), depth + 1);
            index += 1;
            node.push(el);
            if !ok {
                break;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    node.range = start..self.i;
                    return (node, true);
                }
                _ => {
                    node.push(self.err(self.i, "expected ',' or ']'"));
                    break;
                }
            }
        }
        node.range = start..self.i.min(self.b.len()).max(start);
        (node, false)
    }
}

/// Whether `s` is a whole JSON number literal.
pub(super) fn is_number_literal(s: &str) -> bool {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    let (n, ok) = p.number(Cow::Borrowed("n"));
    ok && n.error().is_none() && p.i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ranges_cover_key_and_value() {
        let src = br#"{"a": 1, "b": [true, null]}"#;
        let t = tree(src, "json");
        assert!(!t.has_error());
        let a = t.child("a").unwrap();
        assert_eq!(&src[a.range.clone()], br#""a": 1"#);
        assert_eq!(a.value, Value::UInt(1));
        let b = t.child("b").unwrap();
        assert_eq!(&src[b.children[1].range.clone()], b"null");
    }
}
