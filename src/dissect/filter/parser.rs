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

use crate::capture::Direction;
use crate::dissect::FilterFields;

use super::FilterError;
use super::eval::{BytesTest, Expr, IntField, IntTest, Lit, NodeTest, StrTest};
use super::lexer::{CmpOp, Tok, Token, lex};
use super::names::{Field, resolve};

/// Parentheses and `!` deeper than this are refused: evaluation recurses once per level,
/// and no real filter comes close.
const MAX_DEPTH: usize = 64;

pub(super) fn parse(text: &str, fields: &FilterFields) -> Result<Expr, FilterError> {
    let toks = lex(text)?;
    if toks.len() == 1 {
        // An empty filter shows everything, as an empty filter box does.
        return Ok(Expr::And(Vec::new()));
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
        fields,
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

struct Parser<'f> {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
    fields: &'f FilterFields,
}

impl Parser<'_> {
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
                let field = resolve(&segments, t.pos, self.fields)?;
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
