//! `application/x-www-form-urlencoded` bodies: percent coding, the `form` tree, and encoding
//! it back.

use super::decode::{lossy, text_or_bytes};
use super::encode::value_bytes;
use super::*;

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn percent_encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `a=1&b=2` as a `form` group: one node per field, named by the decoded key, value the
/// decoded value, range the raw value.
pub(super) fn form_tree(bytes: &[u8]) -> Node {
    let mut node = Node::group("form", 0..bytes.len()).with_kind("form");
    let mut at = 0;
    for part in bytes.split(|&b| b == b'&') {
        let end = at + part.len();
        if !part.is_empty() {
            let (k, v, vr) = match part.iter().position(|&b| b == b'=') {
                Some(eq) => (&part[..eq], &part[eq + 1..], at + eq + 1..end),
                None => (part, &part[part.len()..], end..end),
            };
            let name = lossy(&percent_decode(k));
            let (value, _) = text_or_bytes(&percent_decode(v));
            let mut n = Node::new(Cow::Owned(name), vr, value);
            if !part.contains(&b'=') {
                n.set_kind(Some("novalue".into()));
            }
            node.push(n);
        }
        at = end + 1;
    }
    node
}

pub(super) fn form_fields(node: &Node) -> Vec<(String, Vec<u8>, bool)> {
    node.children
        .iter()
        .filter(|c| !c.derived)
        .map(|c| {
            let v = value_bytes(&c.value);
            (c.name.to_string(), v, c.kind() == Some("novalue"))
        })
        .collect()
}

pub(super) fn encode_form(node: &Node) -> Vec<u8> {
    form_fields(node)
        .iter()
        .map(|(k, v, novalue)| {
            if *novalue && v.is_empty() {
                percent_encode(k.as_bytes())
            } else {
                format!("{}={}", percent_encode(k.as_bytes()), percent_encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a+b%20c%zz%4"), b"a b c%zz%4");
    }
}
