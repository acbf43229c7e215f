//! JSON: a span-tracking parser that turns a document into a field tree (every object member
//! and array element with its exact byte range), and a dissector for bare JSON streams
//! (one message = one top-level value).
//!
//! Tree shape: the root node (named by the caller) covers the whole input, whitespace
//! included, and carries the top-level value. Objects and arrays are groups (`kind`
//! `object` / `array`) whose children are the members (named by their unescaped key; range
//! = key through value) or elements (named `[0]`, `[1]`, ...). Scalars carry typed values:
//! strings unescaped as `Text` (`kind` `string`), numbers as `UInt`/`Int`/`Float` (`kind`
//! `number`; numbers beyond 64 bits become `Float` with the literal as display), `Bool`,
//! and `null` as `Value::None` with `kind` `null`. Invalid JSON stops the parse: an `error`
//! node at the offending offset is added to the innermost open container, and everything
//! parsed before it is kept.
//!
//! Encoding serializes the tree back as compact JSON. It is not byte-exact for pretty or
//! unusually spelled input (whitespace, escapes and number spellings are normalised), but
//! it is valid JSON carrying the (possibly edited) values.

use std::borrow::Cow;

use crate::capture::Direction;

use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value};

/// Deepest nesting of objects/arrays the parser follows before giving up with an error.
pub const MAX_DEPTH: usize = 128;
/// Largest bare JSON message the stream dissector frames.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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

/// Converts a JSON tree (as [`tree`] made it, possibly edited) to a `serde_json::Value`.
/// Derived children (annotations such as decoded JWTs) are ignored.
pub fn to_value(node: &Node) -> Result<serde_json::Value, EncodeError> {
    to_value_depth(node, 0)
}

fn bad(node: &Node, reason: &str) -> EncodeError {
    EncodeError::BadField {
        field: node.name.to_string(),
        reason: reason.to_string(),
    }
}

fn kind_of(node: &Node) -> &str {
    if let Some(k) = node.kind() {
        return k;
    }
    match &node.value {
        Value::None if node.children.iter().any(|c| !c.derived) => {
            if node
                .children
                .iter()
                .filter(|c| !c.derived)
                .all(|c| c.name.starts_with('['))
            {
                "array"
            } else {
                "object"
            }
        }
        Value::None => "null",
        Value::Bool(_) => "bool",
        Value::Text(_) | Value::Bytes(_) => "string",
        _ => "number",
    }
}

fn to_value_depth(node: &Node, depth: usize) -> Result<serde_json::Value, EncodeError> {
    use serde_json::Value as J;
    if let Some(e) = node.error() {
        return Err(bad(node, e));
    }
    if depth > MAX_DEPTH {
        return Err(bad(node, "nested too deeply"));
    }
    let members = node.children.iter().filter(|c| !c.derived);
    Ok(match kind_of(node) {
        "object" => {
            let mut map = serde_json::Map::new();
            for c in members {
                map.insert(c.name.to_string(), to_value_depth(c, depth + 1)?);
            }
            J::Object(map)
        }
        "array" => J::Array(
            members
                .map(|c| to_value_depth(c, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        "null" => J::Null,
        _ => match &node.value {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => {
                // A literal kept as display (beyond 64 bits, or unusual spelling) is used
                // when it still denotes the value.
                if let Some(d) = node.display()
                    && d.parse::<f64>().ok() == Some(*f)
                    && let Ok(n) = d.parse::<serde_json::Number>()
                    && n.as_f64() == Some(*f)
                {
                    J::Number(n)
                } else {
                    serde_json::Number::from_f64(*f)
                        .map(J::Number)
                        .ok_or_else(|| bad(node, "not a finite number"))?
                }
            }
            Value::Text(s) => J::String(s.to_string()),
            Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        },
    })
}

/// Serializes a JSON tree back to compact JSON text. Number literals kept as display
/// (beyond 64 bits, unusual spellings) are written as they were when they still denote the
/// value.
pub fn encode_tree(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    write_node(node, &mut out, 0)?;
    Ok(out)
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Serializing a str cannot fail.
    if let Ok(text) = serde_json::to_string(s) {
        out.extend_from_slice(text.as_bytes());
    }
}

fn write_node(node: &Node, out: &mut Vec<u8>, depth: usize) -> Result<(), EncodeError> {
    if let Some(e) = node.error() {
        return Err(bad(node, e));
    }
    if depth > MAX_DEPTH {
        return Err(bad(node, "nested too deeply"));
    }
    let members = node.children.iter().filter(|c| !c.derived);
    match kind_of(node) {
        "object" => {
            out.push(b'{');
            for (i, c) in members.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&c.name, out);
                out.push(b':');
                write_node(c, out, depth + 1)?;
            }
            out.push(b'}');
        }
        "array" => {
            out.push(b'[');
            for (i, c) in members.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(c, out, depth + 1)?;
            }
            out.push(b']');
        }
        "null" => out.extend_from_slice(b"null"),
        _ => match &node.value {
            Value::None => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Value::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
            Value::Float(f) => {
                if let Some(d) = node.display()
                    && d.parse::<f64>().ok() == Some(*f)
                    && is_number_literal(d)
                {
                    out.extend_from_slice(d.as_bytes());
                } else if f.is_finite() {
                    let mut s = f.to_string();
                    if !s.contains(['.', 'e', 'E']) {
                        s.push_str(".0");
                    }
                    out.extend_from_slice(s.as_bytes());
                } else {
                    return Err(bad(node, "not a finite number"));
                }
            }
            Value::Text(s) => write_str(s, out),
            Value::Bytes(b) => write_str(&String::from_utf8_lossy(b), out),
        },
    }
    Ok(())
}

/// Whether `s` is a whole JSON number literal.
fn is_number_literal(s: &str) -> bool {
    let mut p = Parser {
        b: s.as_bytes(),
        i: 0,
    };
    let (n, ok) = p.number(Cow::Borrowed("n"));
    ok && n.error().is_none() && p.i == s.len()
}

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "json";

/// Bare JSON streams: one message per top-level value.
pub struct Json;

struct JsonDecoder;

impl Dissector for Json {
    fn name(&self) -> &'static str {
        NAME
    }

    fn nested(&self) -> bool {
        true
    }

    fn detect(&self, first: &[u8], _dir: Direction) -> bool {
        let t = first.trim_ascii_start();
        match t.first() {
            Some(b'{') => {
                let rest = t[1..].trim_ascii_start();
                matches!(rest.first(), Some(b'"' | b'}'))
            }
            Some(b'[') => {
                let rest = t[1..].trim_ascii_start();
                matches!(
                    rest.first(),
                    Some(b'{' | b'[' | b'"' | b']' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
                )
            }
            _ => false,
        }
    }

    fn decoder(&self, _dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(JsonDecoder)
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_tree(tree)
    }
}

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

    #[test]
    fn frames_values_with_whitespace() {
        let mut d = JsonDecoder;
        assert_eq!(d.frame(b" {\"a\":\"}\"} \n{"), Framing::Complete(12));
        assert_eq!(d.frame(b"  "), Framing::NeedMore(None));
        assert_eq!(d.frame(b"12"), Framing::NeedMore(None));
        assert_eq!(d.frame(b"12\n"), Framing::Complete(3));
    }
}
