//! The tree shape of a packet (see the module documentation): key names, dotted groups,
//! lists, value nodes, the header, the label and the error of a reply.

use super::frame::command_ok;
use super::parse::{End, Line, for_each_line, parse_line};
use super::value::Quoting;
use super::*;

/// Static names for the keys of the usual transactions, so most nodes need no allocation.
fn key_name(s: &str) -> Cow<'static, str> {
    let known: &'static str = match s {
        "TXN" => "TXN",
        "0" => "0",
        "1" => "1",
        "2" => "2",
        "3" => "3",
        "[]" => "[]",
        "clientString" => "clientString",
        "sku" => "sku",
        "locale" => "locale",
        "clientPlatform" => "clientPlatform",
        "clientVersion" => "clientVersion",
        "SDKVersion" => "SDKVersion",
        "protocolVersion" => "protocolVersion",
        "fragmentSize" => "fragmentSize",
        "clientType" => "clientType",
        "theaterIp" => "theaterIp",
        "theaterPort" => "theaterPort",
        "messengerIp" => "messengerIp",
        "messengerPort" => "messengerPort",
        "activityTimeoutSecs" => "activityTimeoutSecs",
        "curTime" => "curTime",
        "domainPartition" => "domainPartition",
        "domain" => "domain",
        "subDomain" => "subDomain",
        "memcheck" => "memcheck",
        "type" => "type",
        "salt" => "salt",
        "result" => "result",
        "returnEncryptedInfo" => "returnEncryptedInfo",
        "encryptedInfo" => "encryptedInfo",
        "nuid" => "nuid",
        "password" => "password",
        "macAddr" => "macAddr",
        "profileId" => "profileId",
        "userId" => "userId",
        "displayName" => "displayName",
        "lkey" => "lkey",
        "entitledGameFeatureWrappers" => "entitledGameFeatureWrappers",
        "entitlementExpirationDate" => "entitlementExpirationDate",
        "entitlementExpirationDays" => "entitlementExpirationDays",
        "gameFeatureId" => "gameFeatureId",
        "message" => "message",
        "status" => "status",
        "namespace" => "namespace",
        "personas" => "personas",
        "name" => "name",
        "challenge" => "challenge",
        "ticket" => "ticket",
        "localizedMessage" => "localizedMessage",
        "errorContainer" => "errorContainer",
        "errorCode" => "errorCode",
        "fieldName" => "fieldName",
        "fieldError" => "fieldError",
        "value" => "value",
        "data" => "data",
        "decodedSize" => "decodedSize",
        "size" => "size",
        _ => return Cow::Owned(s.to_owned()),
    };
    Cow::Borrowed(known)
}

fn is_index(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

fn counted(c: &Node) -> bool {
    !c.derived && c.kind() != Some("raw") && is_index(&c.name)
}

/// Distinct array indices among a group's children.
pub(super) fn element_count(group: &Node) -> u64 {
    // Usual case: indices strictly increasing, so all distinct; no allocation.
    let mut n = 0;
    let mut prev: Option<u64> = None;
    let mut increasing = true;
    for c in group.children.iter().filter(|c| counted(c)) {
        let v = c.name.parse::<u64>().ok();
        increasing &= match (prev, v) {
            (None, Some(_)) => true,
            (Some(p), Some(v)) => v > p,
            _ => false,
        };
        prev = v;
        n += 1;
    }
    if increasing {
        return n;
    }
    let mut idx: Vec<&str> = group
        .children
        .iter()
        .filter(|c| counted(c))
        .map(|c| c.name.as_ref())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.len() as u64
}

/// Top-level values the label and the fragment logic need.
#[derive(Default)]
pub(super) struct Facts {
    pub(super) error_code: Option<(String, Range<usize>)>,
    pub(super) message: Option<String>,
    pub(super) data: Option<String>,
    pub(super) size: Option<String>,
    pub(super) decoded_size: Option<String>,
}

/// Builds the nested groups of one payload.
struct Builder {
    /// Open groups; `stack[0]` is the payload node.
    stack: Vec<Node>,
}

impl Builder {
    fn close_one(&mut self) {
        if self.stack.len() < 2 {
            return;
        }
        if let Some(mut g) = self.stack.pop() {
            finish_group(&mut g);
            if let Some(parent) = self.stack.last_mut() {
                parent.children.push(g);
            }
        }
    }

    /// Makes the open groups match `path` (a dotted group path, may be empty).
    fn enter(&mut self, path: Option<&str>, at: usize) {
        let mut matched = 0;
        if let Some(path) = path {
            for (i, seg) in path.split('.').enumerate() {
                match self.stack.get(i + 1) {
                    Some(g) if g.name == seg => matched = i + 1,
                    _ => break,
                }
            }
        }
        while self.stack.len() > matched + 1 {
            self.close_one();
        }
        if let Some(path) = path {
            for seg in path.split('.').skip(matched) {
                self.stack.push(Node::group(key_name(seg), at..at));
            }
        }
    }

    fn push(&mut self, node: Node) {
        let end = node.range.end;
        if let Some(top) = self.stack.last_mut() {
            top.range.end = end;
            top.children.push(node);
        }
    }

    /// The payload node, and the emptied stack for reuse.
    fn finish(mut self) -> (Option<Node>, Vec<Node>) {
        while self.stack.len() > 1 {
            self.close_one();
        }
        let payload = self.stack.pop();
        (payload, self.stack)
    }
}

fn finish_group(g: &mut Node) {
    if let Some(last) = g.children.last() {
        g.range.end = last.range.end;
    }
    let count_at = g.children.iter().position(|c| c.kind() == Some("count"));
    let list = count_at.is_some() || g.children.iter().any(|c| is_index(&c.name));
    g.set_kind(Some(Cow::Borrowed(if list { "list" } else { "record" })));
    if let Some(i) = count_at {
        let have = element_count(g);
        if let Some(c) = g.children.get_mut(i)
            && let Some(said) = c.value.as_u64()
            && said != have
        {
            c.set_error(Some(format!(
                "count says {said} but {have} elements follow"
            )));
        }
    }
}

/// The tree of a payload (`bytes`, terminator included when `nul_expected`), ranges offset
/// by `base`.
pub(super) fn payload_tree(
    bytes: &[u8],
    base: usize,
    nul_expected: bool,
    facts: &mut Facts,
    scratch: &mut Vec<Node>,
) -> Node {
    let (end, text_len) = End::of(bytes);
    let text = &bytes[..text_len];
    let mut payload = Node::group("payload", base..base + bytes.len()).with_kind(end.kind());
    if nul_expected && matches!(end, End::Newline | End::None) {
        payload.set_error(Some(FeslError::NoTerminator.to_string()));
    }
    payload.children.reserve((text.len() / 16 + 1).min(64));
    let whole = std::str::from_utf8(text).ok();
    let mut stack = std::mem::take(scratch);
    stack.clear();
    stack.push(payload);
    let mut b = Builder { stack };
    let mut n = 0;
    for_each_line(text, |r, raw| {
        n += 1;
        let range = base + r.start..base + r.end;
        match parse_line(raw, whole.and_then(|w| w.get(r)), n) {
            Line::Pair {
                key,
                dot,
                value,
                quoting,
            } => {
                let (path, leaf) = match dot.and_then(|d| Some((key.get(..d)?, key.get(d + 1..)?)))
                {
                    Some((p, l)) => (Some(p), l),
                    None => (None, key),
                };
                b.enter(path, range.start);
                if path.is_none() {
                    note_fact(facts, leaf, &value, &range);
                }
                let node = value_node(leaf, value, quoting, range);
                b.push(node);
            }
            Line::Bad { raw, error } => {
                b.enter(None, range.start);
                let name = match raw.iter().position(|&c| c == b'=') {
                    Some(i) => Cow::Owned(String::from_utf8_lossy(&raw[..i]).into_owned()),
                    None => Cow::Borrowed("line"),
                };
                b.push(
                    Node::new(name, range, Value::Bytes(raw.into()))
                        .with_display(String::from_utf8_lossy(raw))
                        .with_error(error.to_string())
                        .with_kind("raw"),
                );
            }
        }
    });
    let (payload, stack) = b.finish();
    *scratch = stack;
    let mut payload = payload.unwrap_or_else(|| Node::group("payload", base..base));
    payload.range = base..base + bytes.len();
    payload
}

fn note_fact(facts: &mut Facts, key: &str, value: &str, range: &Range<usize>) {
    let slot = match key {
        "errorCode" => {
            if facts.error_code.is_none() {
                facts.error_code = Some((value.to_owned(), range.clone()));
            }
            return;
        }
        "localizedMessage" => &mut facts.message,
        "data" => &mut facts.data,
        "size" => &mut facts.size,
        "decodedSize" => &mut facts.decoded_size,
        _ => return,
    };
    if slot.is_none() {
        *slot = Some(value.to_owned());
    }
}

fn value_node(leaf: &str, value: Cow<'_, str>, quoting: Quoting, range: Range<usize>) -> Node {
    let mut node = Node::group(key_name(leaf), range);
    if leaf == "[]" && quoting == Quoting::Plain {
        match value.parse::<u64>() {
            Ok(n) if n.to_string() == value => {
                node.value = Value::UInt(n);
                node.set_kind(Some(Cow::Borrowed("count")));
                return node;
            }
            _ => node.set_error(Some("array count is not a number".into())),
        }
    }
    node.set_kind(match quoting {
        Quoting::Plain => None,
        Quoting::Quoted => Some(Cow::Borrowed("quoted")),
        Quoting::Bare => Some(Cow::Borrowed("bare")),
    });
    node.value = Value::Text(value.into());
    node
}

pub(super) fn header_nodes(msg: &[u8]) -> Node {
    let h = &msg[..HEADER_LEN];
    let mut command = Node::new(
        "command",
        0..4,
        Value::Text(String::from_utf8_lossy(&h[..4]).into()),
    );
    if !command_ok(&h[..4]) {
        command.set_error(Some(
            FeslError::BadCommand([h[0], h[1], h[2], h[3]]).to_string(),
        ));
    }
    let mut ty = Node::new("type", 4..5, Value::UInt(u64::from(h[4])));
    match Tag::from_u8(h[4]) {
        Some(t) => ty.set_display(Some(t.name().into())),
        None => ty.set_error(Some(FeslError::BadTag(h[4]).to_string())),
    }
    let number = Node::new(
        "number",
        5..8,
        Value::UInt(u64::from(u32::from_be_bytes([0, h[5], h[6], h[7]]))),
    );
    let size_v = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let mut size = Node::new("size", 8..12, Value::UInt(u64::from(size_v)));
    if size_v as usize != msg.len() {
        size.set_error(Some(format!(
            "size {size_v} but the packet has {} bytes",
            msg.len()
        )));
    }
    Node::group("header", 0..HEADER_LEN).with_children(vec![command, ty, number, size])
}

/// The TXN of a payload tree: a top-level key, wherever it stands.
pub(super) fn txn_of(payload: &Node) -> Option<&str> {
    payload
        .children
        .iter()
        .find(|c| c.name == "TXN" && c.kind() != Some("raw"))
        .and_then(|c| c.value.as_text())
}

pub(super) fn label_of(command: &str, txn: Option<&str>, facts: &Facts, is_ferr: bool) -> String {
    let mut label = String::with_capacity(command.len() + 24);
    label.push_str(command);
    if let Some(t) = txn.filter(|t| !t.is_empty()) {
        label.push(' ');
        label.push_str(t);
    }
    if facts.error_code.is_some() || is_ferr {
        label.push_str(" error");
        if let Some((c, _)) = &facts.error_code {
            label.push(' ');
            label.push_str(c);
        }
    }
    label
}

pub(super) fn error_node(facts: &Facts) -> Option<Node> {
    let (code, range) = facts.error_code.as_ref()?;
    let code_v = match code.parse::<i64>() {
        Ok(n) => Value::Int(n),
        Err(_) => Value::Text(code.clone().into()),
    };
    let mut children = vec![Node::new("code", range.clone(), code_v).derived()];
    if let Some(m) = &facts.message {
        children.push(Node::new("message", range.clone(), Value::Text(m.clone().into())).derived());
    }
    let meaning = code.parse::<i64>().ok().and_then(error_meaning);
    let mut node = Node::group("error", range.clone())
        .with_children(children)
        .derived();
    if let Some(m) = meaning {
        node.set_display(Some(m.to_string()));
    }
    Some(node)
}

/// What the error codes seen across emulators mean.
pub fn error_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        20 => "not authenticated",
        99 => "system error",
        101 => "no such account",
        102 => "account disabled",
        103 => "banned",
        105 => "account not confirmed",
        121 => "too many attempts",
        122 => "bad password",
        123 => "game not registered",
        160 => "already exists",
        3012 => "no entitlement",
        _ => return None,
    })
}
