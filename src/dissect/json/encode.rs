//! A (possibly edited) tree back to JSON: a `serde_json::Value`, or compact bytes.

use super::parse::is_number_literal;
use super::*;

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
