//! Writing packets: from key/value pairs (what the server and the client send) and from an
//! edited tree.

use super::frame::command_ok;
use super::parse::End;
use super::tree::element_count;
use super::*;

/// Appends `key=value` lines and the terminator: `\n\0` for a client, `\0` for a server.
pub fn write_payload<K: AsRef<str>, V: AsRef<str>>(
    out: &mut Vec<u8>,
    pairs: &[(K, V)],
    client_style: bool,
) {
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        let v = v.as_ref();
        push_value(out, v, needs_quotes(v));
    }
    out.extend_from_slice(if client_style { b"\n\0" } else { b"\0" });
}

fn put_header(out: &mut Vec<u8>, command: &[u8; 4], tag: u8, number: u32) {
    out.extend_from_slice(command);
    out.extend_from_slice(&((u32::from(tag) << 24) | (number & 0xFF_FFFF)).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn patch_size(out: &mut [u8]) {
    let size = u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(s) = out.get_mut(8..12) {
        s.copy_from_slice(&size);
    }
}

/// The server's answer to a Red Alert 3 client's `fsys Hello`, as retail servers send it
/// (the emulator and the sample captures both use it): `cur_time` like
/// `Aug-07-2025 22:53:52 UTC`, then where the theater is.
pub fn hello_reply<'a>(
    cur_time: &'a str,
    theater_ip: &'a str,
    theater_port: &'a str,
) -> [(&'static str, &'a str); 9] {
    [
        ("domainPartition.domain", "eagames"),
        ("messengerIp", "127.0.0.1"),
        ("messengerPort", "0"),
        ("domainPartition.subDomain", "CNCRA3"),
        ("TXN", "Hello"),
        ("activityTimeoutSecs", "0"),
        ("curTime", cur_time),
        ("theaterIp", theater_ip),
        ("theaterPort", theater_port),
    ]
}

/// One whole packet: header (size computed) and payload.
pub fn write_packet<K: AsRef<str>, V: AsRef<str>>(
    command: &[u8; 4],
    tag: Tag,
    number: u32,
    pairs: &[(K, V)],
    client_style: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + pairs.len() * 24);
    put_header(&mut out, command, tag.to_u8(), number);
    write_payload(&mut out, pairs, client_style);
    patch_size(&mut out);
    out
}

fn bad(field: &str, reason: impl Into<String>) -> EncodeError {
    EncodeError::BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn value_text<'a>(node: &'a Node, key: &str) -> Result<Cow<'a, str>, EncodeError> {
    Ok(match &node.value {
        Value::Text(s) => Cow::Borrowed(&**s),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if *b { "1" } else { "0" }),
        Value::Bytes(b) => {
            Cow::Borrowed(std::str::from_utf8(b).map_err(|_| bad(key, "value is not UTF-8 text"))?)
        }
        Value::None => Cow::Borrowed(""),
    })
}

fn emit_group(
    group: &Node,
    prefix: &mut String,
    out: &mut Vec<u8>,
    first: &mut bool,
) -> Result<(), EncodeError> {
    let count = group
        .children
        .iter()
        .any(|c| c.kind() == Some("count"))
        .then(|| element_count(group));
    for c in group.children.iter().filter(|c| !c.derived) {
        let kind = c.kind();
        let is_group = matches!(c.value, Value::None) && !matches!(kind, Some("raw" | "count"));
        if is_group {
            let len = prefix.len();
            prefix.push_str(&c.name);
            prefix.push('.');
            emit_group(c, prefix, out, first)?;
            prefix.truncate(len);
            continue;
        }
        if !*first {
            out.push(b'\n');
        }
        *first = false;
        if kind == Some("raw") {
            match &c.value {
                Value::Bytes(b) => out.extend_from_slice(b),
                _ => out.extend_from_slice(value_text(c, &c.name)?.as_bytes()),
            }
            continue;
        }
        let name: &str = &c.name;
        if name.bytes().any(|b| matches!(b, b'\n' | b'=' | 0)) || prefix.contains(['\n', '=', '\0'])
        {
            return Err(bad(name, "key contains '=', a newline or NUL"));
        }
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        if kind == Some("count") {
            let n = count.unwrap_or(0);
            out.extend_from_slice(n.to_string().as_bytes());
            continue;
        }
        let v = value_text(c, name)?;
        let quote = kind == Some("quoted") || (kind != Some("bare") && needs_quotes(&v));
        push_value(out, &v, quote);
    }
    Ok(())
}

/// Payload bytes (terminator included) from a `payload` node.
fn encode_payload(payload: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut prefix = String::new();
    let mut first = true;
    emit_group(payload, &mut prefix, out, &mut first)?;
    out.extend_from_slice(End::from_kind(payload.kind()).bytes());
    Ok(())
}

/// Rebuilds a packet from a tree as [`FeslDecoder`] produced it (size recomputed, counts
/// `.[]` recomputed, values re-escaped).
pub fn encode_tree(tree: &Node) -> Result<Vec<u8>, EncodeError> {
    let header = tree
        .child("header")
        .ok_or_else(|| EncodeError::Missing("header".into()))?;
    let field = |name: &str| {
        header
            .child(name)
            .ok_or_else(|| EncodeError::Missing(format!("header.{name}")))
    };
    let command = field("command")?;
    let cmd = value_text(command, "command")?;
    let cmd: [u8; 4] = cmd
        .as_bytes()
        .try_into()
        .ok()
        .filter(|c: &[u8; 4]| command_ok(c))
        .ok_or_else(|| bad("header.command", "must be 4 ASCII letters or digits"))?;
    let tag = field("type")?
        .value
        .as_u64()
        .and_then(|t| u8::try_from(t).ok())
        .and_then(Tag::from_u8)
        .ok_or_else(|| bad("header.type", "must be 0xc0, 0x80, 0xf0 or 0xb0"))?;
    let number = field("number")?
        .value
        .as_u64()
        .filter(|&n| n <= 0xFF_FFFF)
        .ok_or_else(|| bad("header.number", "must be a number below 2^24"))?;
    let payload = tree
        .child("payload")
        .ok_or_else(|| EncodeError::Missing("payload".into()))?;
    let mut out = Vec::with_capacity(tree.range.len().max(64));
    put_header(&mut out, &cmd, tag.to_u8(), number as u32);
    encode_payload(payload, &mut out)?;
    if out.len() > MAX_PACKET {
        return Err(bad("payload", format!("packet exceeds {MAX_PACKET} bytes")));
    }
    patch_size(&mut out);
    Ok(out)
}
