//! The compiled filter and its evaluation against one packet.
//!
//! The file stays whole (about 620 lines of code): the compiled expression types and the
//! one evaluation over them, whose match arms mirror those types one to one.

use std::fmt::Write as _;

use memchr::memmem;

use crate::capture::{Direction, PacketFlags};
use crate::dissect::tree::Value;
use crate::dissect::{Message, Node};

use super::PacketView;
use super::index::{BoundNode, BoundSearch, FieldIndex};
use super::lexer::CmpOp;

#[derive(Clone, Debug)]
pub(super) enum Expr {
    /// True when every term is; `And([])` is the empty filter.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Int(IntField, IntTest),
    Str(StrField, StrTest),
    Bytes(BytesField, BytesTest),
    Bool(BoolField),
    Dir(Direction),
    Node(ProtoField, NodeTest),
    Search(Needle),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum IntField {
    PacketId,
    Size,
    Time,
    ConnId,
    /// Either endpoint's port.
    Port,
    ClientPort,
    ServerPort,
}

#[derive(Clone, Debug)]
pub(super) enum IntTest {
    /// Known and not zero.
    Present,
    /// Never `Ne`: the parser turns `a != b` into `!(a == b)`.
    Cmp(CmpOp, i128),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum StrField {
    Label,
    Protocol,
    Route,
    Transport,
    Client,
    Server,
    ClientIp,
    ServerIp,
    Sni,
    Alpn,
    TlsVersion,
    Cipher,
    CloseReason,
}

#[derive(Clone, Debug)]
pub(super) enum StrTest {
    /// Known and not empty.
    Present,
    Eq(String),
    Contains(String),
    Matches(regex::Regex),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum BytesField {
    Data,
    Original,
}

#[derive(Clone, Debug)]
pub(super) enum BytesTest {
    Present,
    Eq(Vec<u8>),
    Contains(Box<memmem::Finder<'static>>),
    Matches(regex::bytes::Regex),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum BoolField {
    Tls,
    Closed,
    AnyFlag,
    Flag(PacketFlags),
    /// A message starting in the packet is malformed.
    Error,
}

#[derive(Clone, Debug)]
pub(super) enum Lit {
    Int(i128),
    Str(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

#[derive(Clone, Debug)]
pub(super) struct Namespace {
    /// Dissector names whose connections this namespace covers.
    pub protocols: Vec<&'static str>,
    /// Paths are looked for in every protocol's trees.
    pub anywhere: bool,
}

impl Namespace {
    pub(super) fn accepts(&self, protocol: Option<&str>) -> bool {
        self.anywhere || protocol.is_some_and(|p| self.protocols.contains(&p))
    }
}

#[derive(Clone, Debug)]
pub(super) struct PathSpec {
    /// From the root's children rather than from a node of that name anywhere.
    pub anchored: bool,
    pub segments: Vec<String>,
}

#[derive(Clone, Debug)]
pub(super) enum Target {
    /// The bare namespace: any message of that protocol.
    Message,
    /// Any of these paths (an alias may name several spellings, as HTTP/1 and HTTP/2 do).
    Paths(Vec<PathSpec>),
    /// The root node's name (Hytale names the root after the packet).
    RootName,
    /// The first field's name (a GP message's command).
    FirstChildName,
}

#[derive(Clone, Debug)]
pub(super) struct ProtoField {
    pub ns: Namespace,
    pub target: Target,
}

#[derive(Clone, Debug)]
pub(super) enum NodeTest {
    Present,
    /// Never `Ne`.
    Cmp(CmpOp, Lit),
    Contains(Lit),
    Matches(regex::Regex),
}

impl Expr {
    /// Whether evaluating this needs the packet's decoded messages.
    pub(super) fn needs_messages(&self) -> bool {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::needs_messages),
            Expr::Not(e) => e.needs_messages(),
            Expr::Node(..) | Expr::Search(_) | Expr::Bool(BoolField::Error) => true,
            // Labels are read from the decode too when there is one (a live capture's
            // packets often have none of their own).
            Expr::Str(StrField::Label, _) => true,
            _ => false,
        }
    }

    /// Whether evaluating this walks decoded trees even with a [`FieldIndex`] (search,
    /// labels and the error flag are not indexed).
    pub(super) fn needs_trees(&self) -> bool {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::needs_trees),
            Expr::Not(e) => e.needs_trees(),
            Expr::Node(..) | Expr::Search(_) => false,
            other => other.needs_messages(),
        }
    }

    /// This expression with its dissected-field tests bound to `index`, and the terms of
    /// each `&&` and `||` reordered cheapest first (they have no side effects, so only the
    /// time changes).
    pub(super) fn bind<'i, 'a>(&'i self, index: &'i FieldIndex<'a>) -> Bound<'i, 'a> {
        match self {
            Expr::And(v) | Expr::Or(v) => {
                let mut terms: Vec<Bound<'i, 'a>> = v.iter().map(|e| e.bind(index)).collect();
                terms.sort_by_key(Bound::cost);
                if matches!(self, Expr::And(_)) {
                    Bound::And(terms)
                } else {
                    Bound::Or(terms)
                }
            }
            Expr::Not(e) => Bound::Not(Box::new(e.bind(index))),
            Expr::Node(field, test) => Bound::Node(BoundNode::new(index, field, test)),
            Expr::Search(needle) => Bound::Search(BoundSearch::new(index, needle)),
            other => Bound::Plain(other),
        }
    }

    /// Whether this can only be answered from decoded trees (a label can fall back on the
    /// packet's own).
    pub(super) fn needs_decode(&self) -> bool {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::needs_decode),
            Expr::Not(e) => e.needs_decode(),
            Expr::Node(..) | Expr::Bool(BoolField::Error) => true,
            _ => false,
        }
    }

    pub(super) fn eval(&self, v: &PacketView<'_>) -> bool {
        match self {
            Expr::And(terms) => terms.iter().all(|t| t.eval(v)),
            Expr::Or(terms) => terms.iter().any(|t| t.eval(v)),
            Expr::Not(e) => !e.eval(v),
            Expr::Int(f, t) => int_values(*f, v, |n| match t {
                IntTest::Present => n != 0,
                IntTest::Cmp(op, want) => cmp_ord(*op, n.cmp(want)),
            }),
            Expr::Str(f, t) => str_values(*f, v, |s| match t {
                StrTest::Present => !s.is_empty(),
                StrTest::Eq(want) => s == want,
                StrTest::Contains(want) => s.contains(want.as_str()),
                StrTest::Matches(re) => re.is_match(s),
            }),
            Expr::Bytes(f, t) => {
                let bytes = match f {
                    BytesField::Data => Some(v.packet.data),
                    BytesField::Original => v.packet.original,
                };
                bytes.is_some_and(|b| match t {
                    BytesTest::Present => !b.is_empty(),
                    BytesTest::Eq(want) => b == want.as_slice(),
                    BytesTest::Contains(finder) => finder.find(b).is_some(),
                    BytesTest::Matches(re) => re.is_match(b),
                })
            }
            Expr::Bool(f) => match f {
                BoolField::Tls => v.connection.is_some_and(|c| c.tls.is_some()),
                BoolField::Closed => v.connection.is_some_and(|c| c.closed.is_some()),
                BoolField::AnyFlag => !v.packet.flags.is_empty(),
                BoolField::Flag(flag) => v.packet.flags.contains(*flag),
                BoolField::Error => v.messages.iter().any(|m| m.message.is_error()),
            },
            Expr::Dir(d) => v.packet.direction == *d,
            Expr::Node(field, test) => node_matches(field, test, v),
            Expr::Search(needle) => needle.in_packet(v),
        }
    }
}

fn cmp_ord(op: CmpOp, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    }
}

fn int_values(f: IntField, v: &PacketView<'_>, test: impl Fn(i128) -> bool) -> bool {
    let p = &v.packet;
    match f {
        IntField::PacketId => test(i128::from(p.id.0)),
        IntField::Size => test(p.data.len() as i128),
        IntField::Time => test(i128::from(p.timestamp.0)),
        IntField::ConnId => test(i128::from(p.connection.0)),
        IntField::Port => v.connection.is_some_and(|c| {
            test(i128::from(c.client.port())) || test(i128::from(c.server.port()))
        }),
        IntField::ClientPort => v
            .connection
            .is_some_and(|c| test(i128::from(c.client.port()))),
        IntField::ServerPort => v
            .connection
            .is_some_and(|c| test(i128::from(c.server.port()))),
    }
}

fn str_values(f: StrField, v: &PacketView<'_>, test: impl Fn(&str) -> bool) -> bool {
    let conn = v.connection;
    let opt = |s: Option<&str>| s.is_some_and(&test);
    let tls = |pick: fn(&crate::capture::TlsInfo) -> Option<&str>| {
        conn.and_then(|c| c.tls.as_ref())
            .and_then(pick)
            .is_some_and(&test)
    };
    match f {
        StrField::Label => opt(v.packet.label) || v.messages.iter().any(|m| test(&m.message.label)),
        StrField::Protocol => opt(v.protocol) || opt(conn.and_then(|c| c.protocol.as_deref())),
        StrField::Route => opt(conn.and_then(|c| c.route.as_deref())),
        StrField::Transport => opt(conn.map(|c| c.transport.as_str())),
        StrField::Client => conn.is_some_and(|c| test(&c.client.to_string())),
        StrField::Server => conn.is_some_and(|c| test(&c.server.to_string())),
        StrField::ClientIp => conn.is_some_and(|c| test(&c.client.ip().to_string())),
        StrField::ServerIp => conn.is_some_and(|c| test(&c.server.ip().to_string())),
        StrField::Sni => tls(|t| t.sni.as_deref()),
        StrField::Alpn => tls(|t| t.alpn.as_deref()),
        StrField::TlsVersion => tls(|t| t.version.as_deref()),
        StrField::Cipher => tls(|t| t.cipher.as_deref()),
        StrField::CloseReason => opt(conn.and_then(|c| c.close_reason.as_deref())),
    }
}

/// A node found by a field path, or a name standing in for a value.
#[derive(Clone, Copy)]
pub(super) enum Found<'a> {
    Node(&'a Node),
    Name(&'a str),
}

fn node_matches(field: &ProtoField, test: &NodeTest, v: &PacketView<'_>) -> bool {
    if v.messages.is_empty() || !field.ns.accepts(v.protocol) {
        return false;
    }
    let check = |f: Found<'_>| node_test(test, f);
    v.messages
        .iter()
        .any(|m| target_matches(&field.target, &m.message, &check))
}

/// Whether `target` finds something in `message` that passes `check`.
pub(super) fn target_matches(
    target: &Target,
    message: &Message,
    check: &dyn Fn(Found<'_>) -> bool,
) -> bool {
    let tree = &message.tree;
    match target {
        Target::Message => true,
        Target::RootName => check(Found::Name(&tree.name)),
        Target::FirstChildName => tree
            .children
            .first()
            .is_some_and(|c| check(Found::Name(&c.name))),
        Target::Paths(paths) => {
            let trees = std::iter::once(tree).chain(message.derived.iter().map(|d| &d.tree));
            trees
                .clone()
                .any(|t| paths.iter().any(|p| path_any(t, p, check)))
        }
    }
}

fn path_any(root: &Node, path: &PathSpec, check: &dyn Fn(Found<'_>) -> bool) -> bool {
    if path.anchored {
        return follow(root, &path.segments, check);
    }
    let Some((first, rest)) = path.segments.split_first() else {
        return false;
    };
    fn anywhere(n: &Node, first: &str, rest: &[String], check: &dyn Fn(Found<'_>) -> bool) -> bool {
        (n.name.eq_ignore_ascii_case(first) && follow(n, rest, check))
            || n.children.iter().any(|c| anywhere(c, first, rest, check))
    }
    anywhere(root, first, rest, check)
}

/// Every chain of children named by `path` below `n` (names repeat: `services`, list items).
fn follow(n: &Node, path: &[String], check: &dyn Fn(Found<'_>) -> bool) -> bool {
    match path.split_first() {
        None => check(Found::Node(n)),
        Some((name, rest)) => n
            .children
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(name) && follow(c, rest, check)),
    }
}

fn node_number(f: Found<'_>) -> Option<i128> {
    match f {
        Found::Node(n) => match &n.value {
            Value::Int(i) => Some(i128::from(*i)),
            Value::UInt(u) => Some(i128::from(*u)),
            Value::Bool(b) => Some(i128::from(*b)),
            Value::Text(s) => parse_number(s),
            _ => None,
        },
        Found::Name(s) => parse_number(s),
    }
}

fn parse_number(s: &str) -> Option<i128> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The texts a node answers to: its text value and its display.
fn node_texts<'a>(f: Found<'a>) -> [Option<&'a str>; 2] {
    match f {
        Found::Node(n) => [n.value.as_text(), n.display()],
        Found::Name(s) => [Some(s), None],
    }
}

pub(super) fn node_test(test: &NodeTest, f: Found<'_>) -> bool {
    match test {
        NodeTest::Present => true,
        NodeTest::Cmp(op, lit) => match lit {
            Lit::Int(want) => {
                node_number(f).is_some_and(|n| cmp_ord(*op, n.cmp(want)))
                    || float_value(f).is_some_and(|x| {
                        x.partial_cmp(&(*want as f64))
                            .is_some_and(|o| cmp_ord(*op, o))
                    })
            }
            Lit::Str(want) => {
                if let Some(n) = parse_number(want)
                    && node_number(f).is_some_and(|have| cmp_ord(*op, have.cmp(&n)))
                {
                    return true;
                }
                if let Found::Node(n) = f
                    && *op == CmpOp::Eq
                    && let Value::Float(x) = n.value
                    && want.parse::<f64>().is_ok_and(|w| w == x)
                {
                    return true;
                }
                node_texts(f)
                    .into_iter()
                    .flatten()
                    .any(|s| cmp_ord(*op, s.cmp(want.as_str())))
            }
            Lit::Bytes(want) => match f {
                Found::Node(n) => match &n.value {
                    Value::Bytes(b) => cmp_ord(*op, (**b).cmp(want.as_slice())),
                    Value::Text(s) => cmp_ord(*op, s.as_bytes().cmp(want.as_slice())),
                    _ => false,
                },
                Found::Name(s) => cmp_ord(*op, s.as_bytes().cmp(want.as_slice())),
            },
            Lit::Bool(want) => match f {
                Found::Node(n) => match &n.value {
                    Value::Bool(b) => cmp_ord(*op, b.cmp(want)),
                    Value::Text(s) => s.parse::<bool>().is_ok_and(|b| cmp_ord(*op, b.cmp(want))),
                    _ => false,
                },
                Found::Name(_) => false,
            },
        },
        NodeTest::Contains(lit) => {
            let want: &[u8] = match lit {
                Lit::Str(s) => s.as_bytes(),
                Lit::Bytes(b) => b,
                // The parser turns numbers and booleans into strings for `contains`.
                Lit::Int(_) | Lit::Bool(_) => return false,
            };
            let has = |hay: &[u8]| memmem::find(hay, want).is_some();
            if let Found::Node(n) = f
                && let Value::Bytes(b) = &n.value
                && has(b)
            {
                return true;
            }
            node_texts(f)
                .into_iter()
                .flatten()
                .any(|s| has(s.as_bytes()))
        }
        NodeTest::Matches(re) => node_texts(f).into_iter().flatten().any(|s| re.is_match(s)),
    }
}

fn float_value(f: Found<'_>) -> Option<f64> {
    match f {
        Found::Node(Node {
            value: Value::Float(x),
            ..
        }) => Some(*x),
        _ => None,
    }
}

/// Case-insensitive text search.
#[derive(Clone, Debug)]
pub(super) struct Needle {
    lower: String,
    ascii: bool,
}

impl Needle {
    pub(super) fn new(text: &str) -> Self {
        Needle {
            lower: text.to_lowercase(),
            ascii: text.is_ascii(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }

    pub(super) fn in_bytes(&self, hay: &[u8]) -> bool {
        if self.ascii {
            ascii_find(hay, self.lower.as_bytes())
        } else {
            String::from_utf8_lossy(hay)
                .to_lowercase()
                .contains(&self.lower)
        }
    }

    pub(super) fn in_str(&self, hay: &str) -> bool {
        if self.ascii {
            ascii_find(hay.as_bytes(), self.lower.as_bytes())
        } else {
            hay.to_lowercase().contains(&self.lower)
        }
    }

    /// Labels, the packet's bytes read as text, and every decoded value.
    fn in_packet(&self, v: &PacketView<'_>) -> bool {
        if self.is_empty() {
            return true;
        }
        if v.packet.label.is_some_and(|l| self.in_str(l)) || self.in_bytes(v.packet.data) {
            return true;
        }
        let mut scratch = String::new();
        v.messages.iter().any(|m| {
            self.in_str(&m.message.label)
                || self.in_tree(&m.message.tree, &mut scratch)
                || m.message
                    .derived
                    .iter()
                    .any(|d| self.in_tree(&d.tree, &mut scratch))
        })
    }

    fn in_tree(&self, n: &Node, scratch: &mut String) -> bool {
        self.in_value(n, scratch) || n.children.iter().any(|c| self.in_tree(c, scratch))
    }

    /// The node's own value and display, not its children's.
    pub(super) fn in_value(&self, n: &Node, scratch: &mut String) -> bool {
        let own = match &n.value {
            Value::None => false,
            Value::Text(s) => self.in_str(s),
            Value::Bytes(b) => self.in_bytes(b),
            other => {
                scratch.clear();
                let _ = match other {
                    Value::Bool(b) => write!(scratch, "{b}"),
                    Value::Int(i) => write!(scratch, "{i}"),
                    Value::UInt(u) => write!(scratch, "{u}"),
                    Value::Float(x) => write!(scratch, "{x}"),
                    _ => Ok(()),
                };
                self.in_str(scratch)
            }
        };
        own || n.display().is_some_and(|d| self.in_str(d))
    }
}

/// `needle` (already lower case ASCII) in `hay`, ignoring ASCII case.
fn ascii_find(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let upper = first.to_ascii_uppercase();
    let mut at = 0;
    while at <= last_start {
        let window = &hay[at..=last_start];
        let Some(i) = memchr::memchr2(first, upper, window) else {
            return false;
        };
        let start = at + i;
        if hay[start + 1..start + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        at = start + 1;
    }
    false
}

/// An expression bound to a [`FieldIndex`] for one run.
pub(super) enum Bound<'i, 'a> {
    And(Vec<Bound<'i, 'a>>),
    Or(Vec<Bound<'i, 'a>>),
    Not(Box<Bound<'i, 'a>>),
    Plain(&'i Expr),
    Node(BoundNode<'i, 'a>),
    Search(BoundSearch<'i, 'a>),
}

impl Bound<'_, '_> {
    fn cost(&self) -> u8 {
        match self {
            Bound::Plain(e) if !e.needs_messages() => 0,
            Bound::Node(_) => 1,
            Bound::Search(_) => 2,
            Bound::Not(inner) => inner.cost(),
            Bound::And(v) | Bound::Or(v) => v.iter().map(Bound::cost).max().unwrap_or(0),
            Bound::Plain(_) => 2,
        }
    }

    pub(super) fn eval(&self, v: &PacketView<'_>) -> bool {
        match self {
            Bound::And(terms) => terms.iter().all(|t| t.eval(v)),
            Bound::Or(terms) => terms.iter().any(|t| t.eval(v)),
            Bound::Not(inner) => !inner.eval(v),
            Bound::Plain(e) => e.eval(v),
            Bound::Node(n) => n.eval(v.packet.id, v.protocol),
            Bound::Search(n) => n.eval(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_find_ignores_case_and_edges() {
        assert!(ascii_find(b"xxLKEYyy", b"lkey"));
        assert!(ascii_find(b"lkey", b"lkey"));
        assert!(ascii_find(b"abc", b""));
        assert!(!ascii_find(b"lke", b"lkey"));
        assert!(!ascii_find(b"l-k-e-y", b"lkey"));
        assert!(ascii_find(b"LLkey", b"lkey"));
    }
}
