//! Expression grammar and field names; builds the compiled [`Expr`] directly, so every type
//! error and unknown field is found here, at its position, before any packet is looked at.
//!
//! ```text
//! expr    := and (("||" | "or") and)*
//! and     := unary (("&&" | "and") unary)*
//! unary   := ("!" | "not") unary | primary
//! primary := "(" expr ")" | field [op value]
//! op      := "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "matches"
//! ```

use memchr::memmem;

use crate::capture::{Direction, PacketFlags};

use super::FilterError;
use super::eval::{
    BoolField, BytesField, BytesTest, Expr, IntField, IntTest, Lit, Namespace, NodeTest, PathSpec,
    ProtoField, StrField, StrTest, Target,
};
use super::lexer::{CmpOp, Tok, Token, lex};

/// Parentheses and `!` deeper than this are refused: evaluation recurses once per level,
/// and no real filter comes close.
const MAX_DEPTH: usize = 64;

pub(super) fn parse(text: &str) -> Result<Expr, FilterError> {
    let toks = lex(text)?;
    if toks.len() == 1 {
        // An empty filter shows everything, as an empty filter box does.
        return Ok(Expr::And(Vec::new()));
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    let expr = p.or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let msg = match t.tok {
            Tok::RParen => "`)` without a matching `(`".to_string(),
            _ => format!("expected `&&`, `||` or the end, found {}", describe(&t.tok)),
        };
        return Err(FilterError::new(t.pos, msg));
    }
    Ok(expr)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // lex() always ends the list with End, and `next` never moves past it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and()?];
        while self.peek().tok == Tok::Or {
            self.next();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::Or(Vec::new()))
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.unary()?];
        while self.peek().tok == Tok::And {
            self.next();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(terms)
        })
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(pos, "expression is nested too deeply"));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let t = self.peek().clone();
        if t.tok == Tok::Not {
            self.next();
            self.enter(t.pos)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let t = self.next();
        match t.tok {
            Tok::LParen => {
                self.enter(t.pos)?;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(FilterError::new(
                        close.pos,
                        format!(
                            "expected `)` to close the `(` at position {}, found {}",
                            t.pos,
                            describe(&close.tok)
                        ),
                    ));
                }
                Ok(inner)
            }
            Tok::Field(segments) => {
                let field = resolve(&segments, t.pos)?;
                let op = self.peek().clone();
                let op_kind = match op.tok {
                    Tok::Cmp(c) => Op::Cmp(c),
                    Tok::Contains => Op::Contains,
                    Tok::Matches => Op::Matches,
                    _ => return Ok(field.present()),
                };
                self.next();
                let value = self.next();
                let lit = literal(&value.tok).ok_or_else(|| {
                    FilterError::new(
                        value.pos,
                        format!(
                            "expected a value after `{}`, found {}",
                            op_kind.symbol(),
                            describe(&value.tok)
                        ),
                    )
                })?;
                build(&field, &segments, op_kind, op.pos, lit, value.pos)
            }
            Tok::End => Err(FilterError::new(t.pos, "expected a field or `(`")),
            other => Err(FilterError::new(
                t.pos,
                format!("expected a field or `(`, found {}", describe(&other)),
            )),
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Cmp(CmpOp),
    Contains,
    Matches,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Cmp(c) => c.symbol(),
            Op::Contains => "contains",
            Op::Matches => "matches",
        }
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Field(s) => format!("`{}`", s.join(".")),
        Tok::Str(_) => "a string".into(),
        Tok::Int(n) => format!("the number {n}"),
        Tok::Bytes(_) => "a byte string".into(),
        Tok::Bare(w) => format!("`{w}`"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
        Tok::Not => "`!`".into(),
        Tok::Cmp(c) => format!("`{}`", c.symbol()),
        Tok::Contains => "`contains`".into(),
        Tok::Matches => "`matches`".into(),
        Tok::End => "the end of the filter".into(),
    }
}

fn literal(tok: &Tok) -> Option<Lit> {
    Some(match tok {
        Tok::Str(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Lit::Str(s.to_string()),
            Err(_) => Lit::Bytes(bytes.clone()),
        },
        Tok::Int(n) => Lit::Int(*n),
        Tok::Bytes(b) => Lit::Bytes(b.clone()),
        Tok::Bare(w) => Lit::Str(w.clone()),
        // Unquoted words on the right are strings (`dir == c2s`, `conn.route == fesl`).
        Tok::Field(segments) => match segments.join(".").as_str() {
            "true" => Lit::Bool(true),
            "false" => Lit::Bool(false),
            word => Lit::Str(word.to_string()),
        },
        _ => return None,
    })
}

/// What a field name refers to.
enum Field {
    Int(IntField),
    Time,
    Str(StrField),
    Bytes(BytesField),
    Bool(BoolField),
    Dir,
    Node(ProtoField),
}

impl Field {
    fn present(&self) -> Expr {
        match self {
            Field::Int(f) => Expr::Int(*f, IntTest::Present),
            Field::Time => Expr::Int(IntField::Time, IntTest::Present),
            Field::Str(f) => Expr::Str(*f, StrTest::Present),
            Field::Bytes(f) => Expr::Bytes(*f, BytesTest::Present),
            Field::Bool(f) => Expr::Bool(*f),
            Field::Dir => Expr::And(Vec::new()),
            Field::Node(p) => Expr::Node(p.clone(), NodeTest::Present),
        }
    }
}

/// The packet and connection fields, for error messages.
pub(super) const PACKET_FIELDS: &[&str] = &[
    "id", "size", "len", "time", "bytes", "original", "label", "dir", "flags", "edited",
    "injected", "dropped", "replayed", "error", "protocol",
];

pub(super) const CONN_FIELDS: &[&str] = &[
    "conn.id",
    "conn.port",
    "conn.client.port",
    "conn.server.port",
    "conn.client",
    "conn.server",
    "conn.client.ip",
    "conn.server.ip",
    "conn.route",
    "conn.protocol",
    "conn.transport",
    "conn.tls",
    "conn.tls.sni",
    "conn.tls.alpn",
    "conn.tls.version",
    "conn.tls.cipher",
    "conn.closed",
    "conn.close_reason",
];

/// Protocol namespaces: the dissector names whose connections they look at, and whether
/// their paths are also searched in every other protocol's trees (JSON, protobuf and JWT
/// trees sit inside HTTP bodies, FESL values and Hytale tokens).
const NAMESPACES: &[(&str, &[&str], bool)] = &[
    ("fesl", &["fesl"], false),
    ("gp", &["gp"], false),
    ("hytale", &["hytale"], false),
    ("sc", &["sc"], false),
    ("http", &["http", "h2", "grpc"], false),
    ("h2", &["h2", "grpc"], false),
    ("http2", &["h2", "grpc"], false),
    ("grpc", &["grpc"], false),
    ("json", &["json"], true),
    ("protobuf", &["protobuf"], true),
    ("jwt", &[], true),
    ("field", &[], true),
];

pub(super) fn namespace_names() -> impl Iterator<Item = &'static str> {
    NAMESPACES.iter().map(|(n, _, _)| *n)
}

fn resolve(segments: &[String], pos: usize) -> Result<Field, FilterError> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let names: Vec<&str> = lower.iter().map(String::as_str).collect();
    let rest = match names.as_slice() {
        ["packet" | "frame", rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let packet = match rest {
        ["id"] => Some(Field::Int(IntField::PacketId)),
        ["size" | "len" | "length"] => Some(Field::Int(IntField::Size)),
        ["time" | "timestamp"] => Some(Field::Time),
        ["bytes" | "data"] => Some(Field::Bytes(BytesField::Data)),
        ["original"] => Some(Field::Bytes(BytesField::Original)),
        ["label"] => Some(Field::Str(StrField::Label)),
        ["dir" | "direction"] => Some(Field::Dir),
        ["flags"] => Some(Field::Bool(BoolField::AnyFlag)),
        ["error"] => Some(Field::Bool(BoolField::Error)),
        ["protocol" | "proto"] => Some(Field::Str(StrField::Protocol)),
        [flag] | ["flags", flag] => {
            PacketFlags::from_name(flag).map(|f| Field::Bool(BoolField::Flag(f)))
        }
        _ => None,
    };
    if let Some(f) = packet {
        return Ok(f);
    }
    if let ["conn" | "connection", rest @ ..] = names.as_slice() {
        let f = match rest {
            ["id"] => Field::Int(IntField::ConnId),
            ["port"] => Field::Int(IntField::Port),
            ["client", "port"] => Field::Int(IntField::ClientPort),
            ["server", "port"] => Field::Int(IntField::ServerPort),
            ["client"] => Field::Str(StrField::Client),
            ["server"] => Field::Str(StrField::Server),
            ["client", "ip" | "addr"] => Field::Str(StrField::ClientIp),
            ["server", "ip" | "addr"] => Field::Str(StrField::ServerIp),
            ["route"] => Field::Str(StrField::Route),
            ["protocol" | "proto"] => Field::Str(StrField::Protocol),
            ["transport"] => Field::Str(StrField::Transport),
            ["tls"] => Field::Bool(BoolField::Tls),
            ["tls", "sni"] | ["sni"] => Field::Str(StrField::Sni),
            ["tls", "alpn"] | ["alpn"] => Field::Str(StrField::Alpn),
            ["tls", "version"] => Field::Str(StrField::TlsVersion),
            ["tls", "cipher"] => Field::Str(StrField::Cipher),
            ["closed"] => Field::Bool(BoolField::Closed),
            ["close_reason" | "reason"] => Field::Str(StrField::CloseReason),
            _ => {
                return Err(FilterError::new(
                    pos,
                    format!(
                        "unknown connection field `{}`; known: {}",
                        segments.join("."),
                        CONN_FIELDS.join(", ")
                    ),
                ));
            }
        };
        return Ok(f);
    }
    let ns_name = names[0];
    let Some(&(_, protocols, anywhere)) = NAMESPACES.iter().find(|(n, _, _)| *n == ns_name) else {
        return Err(FilterError::new(
            pos,
            format!(
                "unknown field `{}`; packet fields: {}; connection fields: conn.*; protocol fields: {}.*",
                segments.join("."),
                PACKET_FIELDS.join(", "),
                namespace_names().collect::<Vec<_>>().join(".*, ")
            ),
        ));
    };
    let path = &segments[1..];
    let target = if path.is_empty() {
        Target::Message
    } else {
        alias(ns_name, &names[1..]).unwrap_or_else(|| {
            Target::Paths(vec![PathSpec {
                anchored: false,
                segments: path.to_vec(),
            }])
        })
    };
    Ok(Field::Node(ProtoField {
        ns: Namespace {
            protocols,
            anywhere: anywhere && !path.is_empty(),
        },
        target,
    }))
}

/// Natural names for fields whose tree names are awkward or ambiguous.
fn alias(ns: &str, path: &[&str]) -> Option<Target> {
    let anchored = |s: &[&str]| PathSpec {
        anchored: true,
        segments: s.iter().map(|s| s.to_string()).collect(),
    };
    let anywhere = |s: &str| PathSpec {
        anchored: false,
        segments: vec![s.to_string()],
    };
    let [one] = path else { return None };
    let paths = match (ns, *one) {
        ("fesl", "txn") => vec![anchored(&["payload", "TXN"])],
        ("fesl", "command" | "cmd") => vec![anchored(&["header", "command"])],
        ("fesl", "type") => vec![anchored(&["header", "type"])],
        ("fesl", "number") => vec![anchored(&["header", "number"])],
        ("fesl", "size") => vec![anchored(&["header", "size"])],
        ("gp", "command" | "cmd") => return Some(Target::FirstChildName),
        ("hytale", "packet" | "name") => return Some(Target::RootName),
        ("sc", "message" | "name") => vec![anywhere("message_name")],
        ("sc", "type") => vec![anchored(&["payload"])],
        ("http" | "h2" | "http2", "method") => vec![anywhere("method"), anywhere(":method")],
        ("http" | "h2" | "http2", "path" | "target" | "uri") => {
            vec![anywhere("target"), anywhere(":path")]
        }
        ("http" | "h2" | "http2", "status" | "code") => {
            vec![anywhere("code"), anywhere(":status")]
        }
        ("http" | "h2" | "http2", "host") => vec![anywhere("host"), anywhere(":authority")],
        ("grpc", "method" | "path") => vec![anywhere(":path")],
        ("grpc", "status") => vec![anywhere("grpc-status")],
        ("grpc", "message") => vec![anywhere("grpc-message")],
        _ => return None,
    };
    Some(Target::Paths(paths))
}

fn build(
    field: &Field,
    segments: &[String],
    op: Op,
    op_pos: usize,
    lit: Lit,
    lit_pos: usize,
) -> Result<Expr, FilterError> {
    let name = segments.join(".");
    let negate = |e: Expr, op: Op| match op {
        Op::Cmp(CmpOp::Ne) => Expr::Not(Box::new(e)),
        _ => e,
    };
    let eq_only = |what: &str| -> Result<(), FilterError> {
        match op {
            Op::Cmp(CmpOp::Eq | CmpOp::Ne) => Ok(()),
            _ => Err(FilterError::new(
                op_pos,
                format!("`{name}` is {what}: use `==` or `!=`"),
            )),
        }
    };
    let regex_err = |e: regex::Error| {
        let text = e.to_string();
        let last = text.lines().last().unwrap_or("invalid regular expression");
        FilterError::new(lit_pos, format!("bad regular expression: {}", last.trim()))
    };
    match field {
        Field::Int(_) | Field::Time => {
            let f = match field {
                Field::Int(f) => *f,
                _ => IntField::Time,
            };
            let Op::Cmp(c) = op else {
                return Err(FilterError::new(
                    op_pos,
                    format!("`{name}` is a number: use == != < <= > >="),
                ));
            };
            let value = match (&lit, field) {
                (Lit::Int(n), _) => Some(*n),
                (Lit::Str(s), Field::Time) => chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .map(i128::from),
                (Lit::Str(s), _) => s.trim().parse::<i128>().ok(),
                _ => None,
            };
            let Some(value) = value else {
                let want = if matches!(field, Field::Time) {
                    "nanoseconds since 1970 or an RFC 3339 time such as \"2025-08-07T22:53:52Z\""
                } else {
                    "a number"
                };
                return Err(FilterError::new(
                    lit_pos,
                    format!("`{name}` compares with {want}"),
                ));
            };
            let cmp = if c == CmpOp::Ne { CmpOp::Eq } else { c };
            Ok(negate(Expr::Int(f, IntTest::Cmp(cmp, value)), op))
        }
        Field::Str(f) => {
            let text = match lit {
                Lit::Str(s) => s,
                Lit::Int(n) => n.to_string(),
                Lit::Bool(b) => b.to_string(),
                Lit::Bytes(_) => {
                    return Err(FilterError::new(
                        lit_pos,
                        format!("`{name}` is text: compare it with a string"),
                    ));
                }
            };
            let test = match op {
                Op::Cmp(CmpOp::Eq | CmpOp::Ne) => StrTest::Eq(text),
                Op::Cmp(_) => {
                    return Err(FilterError::new(
                        op_pos,
                        format!("`{name}` is text: use ==, !=, contains or matches"),
                    ));
                }
                Op::Contains => StrTest::Contains(text),
                Op::Matches => StrTest::Matches(regex::Regex::new(&text).map_err(regex_err)?),
            };
            Ok(negate(Expr::Str(*f, test), op))
        }
        Field::Bytes(f) => {
            let bytes = match lit {
                Lit::Str(s) => s.into_bytes(),
                Lit::Bytes(b) => b,
                Lit::Int(n) if matches!(op, Op::Contains) && (0..=255).contains(&n) => {
                    vec![n as u8]
                }
                _ => {
                    return Err(FilterError::new(
                        lit_pos,
                        format!("`{name}` compares with a string or bytes such as 0a:1b:2c"),
                    ));
                }
            };
            let test = match op {
                Op::Cmp(CmpOp::Eq | CmpOp::Ne) => BytesTest::Eq(bytes),
                Op::Cmp(_) => {
                    return Err(FilterError::new(
                        op_pos,
                        format!("`{name}` is bytes: use ==, !=, contains or matches"),
                    ));
                }
                Op::Contains => {
                    BytesTest::Contains(Box::new(memmem::Finder::new(&bytes).into_owned()))
                }
                Op::Matches => {
                    let pattern = String::from_utf8(bytes).map_err(|_| {
                        FilterError::new(lit_pos, "a regular expression must be text")
                    })?;
                    BytesTest::Matches(regex::bytes::Regex::new(&pattern).map_err(regex_err)?)
                }
            };
            Ok(negate(Expr::Bytes(*f, test), op))
        }
        Field::Bool(f) => {
            eq_only("true or false")?;
            let want = match lit {
                Lit::Bool(b) => b,
                Lit::Int(0) => false,
                Lit::Int(1) => true,
                _ => {
                    return Err(FilterError::new(
                        lit_pos,
                        format!("`{name}` is true or false"),
                    ));
                }
            };
            let expr = Expr::Bool(*f);
            let equal = matches!(op, Op::Cmp(CmpOp::Eq));
            Ok(if want == equal {
                expr
            } else {
                Expr::Not(Box::new(expr))
            })
        }
        Field::Dir => {
            eq_only("a direction")?;
            let dir = match &lit {
                Lit::Str(s) => match s.as_str() {
                    "→" | ">" => Some(Direction::ClientToServer),
                    "←" | "<" => Some(Direction::ServerToClient),
                    other => Direction::parse(&other.to_ascii_lowercase()),
                },
                _ => None,
            };
            let Some(dir) = dir else {
                return Err(FilterError::new(
                    lit_pos,
                    "a direction is c2s (client->server) or s2c (server->client)",
                ));
            };
            Ok(negate(Expr::Dir(dir), op))
        }
        Field::Node(p) => {
            let test = match op {
                Op::Cmp(c) => {
                    let cmp = if c == CmpOp::Ne { CmpOp::Eq } else { c };
                    NodeTest::Cmp(cmp, lit)
                }
                Op::Contains => match lit {
                    Lit::Int(n) => NodeTest::Contains(Lit::Str(n.to_string())),
                    Lit::Bool(b) => NodeTest::Contains(Lit::Str(b.to_string())),
                    other => NodeTest::Contains(other),
                },
                Op::Matches => {
                    let Lit::Str(pattern) = lit else {
                        return Err(FilterError::new(
                            lit_pos,
                            "a regular expression must be a string",
                        ));
                    };
                    NodeTest::Matches(regex::Regex::new(&pattern).map_err(regex_err)?)
                }
            };
            Ok(negate(Expr::Node(p.clone(), test), op))
        }
    }
}
