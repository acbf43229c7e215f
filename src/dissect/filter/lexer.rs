//! Tokens of the filter language. Positions are char offsets into the expression, so the
//! GUI can put a caret under the offending character whatever the script of the text.

use super::FilterError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// A dotted field name, one string per segment.
    Field(Vec<String>),
    /// A quoted literal: its bytes after escapes (valid UTF-8 unless `\xHH` made it not).
    Str(Vec<u8>),
    Int(i128),
    /// `0a:0b:0c`
    Bytes(Vec<u8>),
    /// An unquoted word starting with a digit that is no number (`127.0.0.1`, `1.0.0`).
    Bare(String),
    LParen,
    RParen,
    And,
    Or,
    Not,
    Cmp(CmpOp),
    Contains,
    Matches,
    End,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    /// Char offset of the token's first character.
    pub pos: usize,
}

fn is_segment_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = |a: char, b: char| c == a && chars.get(i + 1) == Some(&b);
        let (tok, len) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '(' {
            (Tok::LParen, 1)
        } else if c == ')' {
            (Tok::RParen, 1)
        } else if two('&', '&') {
            (Tok::And, 2)
        } else if two('|', '|') {
            (Tok::Or, 2)
        } else if two('=', '=') {
            (Tok::Cmp(CmpOp::Eq), 2)
        } else if two('!', '=') {
            (Tok::Cmp(CmpOp::Ne), 2)
        } else if two('<', '=') {
            (Tok::Cmp(CmpOp::Le), 2)
        } else if two('>', '=') {
            (Tok::Cmp(CmpOp::Ge), 2)
        } else if c == '<' {
            (Tok::Cmp(CmpOp::Lt), 1)
        } else if c == '>' {
            (Tok::Cmp(CmpOp::Gt), 1)
        } else if c == '!' {
            (Tok::Not, 1)
        } else if c == '"' || c == '\'' {
            let (bytes, end) = string(&chars, i)?;
            (Tok::Str(bytes), end - i)
        } else if let Some((bytes, end)) = hex_bytes(&chars, i) {
            (Tok::Bytes(bytes), end - i)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut end = i + 1;
            while end < chars.len() && is_word_char(chars[end]) {
                end += 1;
            }
            let word: String = chars[i..end].iter().collect();
            let tok = match number(&word) {
                Some(n) => Tok::Int(n),
                None => Tok::Bare(word),
            };
            (tok, end - i)
        } else if c.is_alphabetic() || c == '_' {
            let (segments, end) = field(&chars, i)?;
            let tok = match segments.as_slice() {
                [one] => keyword(one).unwrap_or(Tok::Field(segments)),
                _ => Tok::Field(segments),
            };
            (tok, end - i)
        } else if c == '=' {
            return Err(FilterError::new(i, "`=` is not an operator; use `==`"));
        } else if c == '&' || c == '|' {
            return Err(FilterError::new(
                i,
                format!("`{c}` is not an operator; use `{c}{c}`"),
            ));
        } else {
            return Err(FilterError::new(i, format!("unexpected character `{c}`")));
        };
        out.push(Token { tok, pos: start });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        pos: chars.len(),
    });
    Ok(out)
}

fn keyword(word: &str) -> Option<Tok> {
    Some(match word.to_ascii_lowercase().as_str() {
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "contains" => Tok::Contains,
        "matches" => Tok::Matches,
        _ => return None,
    })
}

/// Decimal (optionally negative) or `0x` hexadecimal.
fn number(word: &str) -> Option<i128> {
    let (neg, digits) = match word.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.len() <= 32 => i128::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<i128>().ok()?
        }
        None => return None,
    };
    Some(if neg { -value } else { value })
}

/// `aa:bb(:cc)*`, not followed by a word character (so `ab:cd.x` is no byte string).
fn hex_bytes(chars: &[char], at: usize) -> Option<(Vec<u8>, usize)> {
    let byte = |i: usize| -> Option<u8> {
        let hi = chars.get(i)?.to_digit(16)?;
        let lo = chars.get(i + 1)?.to_digit(16)?;
        Some((hi * 16 + lo) as u8)
    };
    let mut bytes = vec![byte(at)?];
    let mut i = at + 2;
    while chars.get(i) == Some(&':') {
        bytes.push(byte(i + 1)?);
        i += 3;
    }
    if bytes.len() < 2 || chars.get(i).is_some_and(|&c| is_word_char(c)) {
        return None;
    }
    Some((bytes, i))
}

/// A dotted name. Segments after the first may start with a digit (`wrappers.0.status`),
/// with `:` (`http.:path`), or be quoted (`http."request line".method`).
fn field(chars: &[char], at: usize) -> Result<(Vec<String>, usize), FilterError> {
    let mut segments = Vec::new();
    let mut i = at;
    let segment = |i: &mut usize| {
        let start = *i;
        if chars.get(*i) == Some(&':') {
            *i += 1;
        }
        while *i < chars.len() && is_segment_char(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    segments.push(segment(&mut i));
    while chars.get(i) == Some(&'.') {
        let dot = i;
        i += 1;
        match chars.get(i) {
            Some('"') | Some('\'') => {
                let (bytes, end) = string(chars, i)?;
                segments.push(String::from_utf8_lossy(&bytes).into_owned());
                i = end;
            }
            Some(&c) if is_segment_char(c) || c == ':' => {
                let s = segment(&mut i);
                if s == ":" {
                    return Err(FilterError::new(i, "expected a field name after `:`"));
                }
                segments.push(s);
            }
            _ => return Err(FilterError::new(dot, "expected a field name after `.`")),
        }
    }
    Ok((segments, i))
}

/// A quoted string starting at `at`; returns its bytes and the offset after the closing quote.
fn string(chars: &[char], at: usize) -> Result<(Vec<u8>, usize), FilterError> {
    let quote = chars[at];
    let mut out = Vec::new();
    let mut i = at + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(FilterError::new(at, "unterminated string"));
        };
        if c == quote {
            return Ok((out, i + 1));
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += 1;
            continue;
        }
        let escape_at = i;
        let bad = |msg: &str| FilterError::new(escape_at, msg.to_string());
        let Some(&e) = chars.get(i + 1) else {
            return Err(FilterError::new(at, "unterminated string"));
        };
        i += 2;
        match e {
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' | '"' | '\'' => out.push(e as u8),
            'x' => {
                let hi = chars.get(i).and_then(|c| c.to_digit(16));
                let lo = chars.get(i + 1).and_then(|c| c.to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(bad("`\\x` needs two hex digits")),
                }
                i += 2;
            }
            'u' => {
                if chars.get(i) != Some(&'{') {
                    return Err(bad("`\\u` needs braces: `\\u{e9}`"));
                }
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| i + p)
                    .ok_or_else(|| bad("`\\u{` is not closed"))?;
                let hex: String = chars[i + 1..close].iter().collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| !hex.is_empty() && hex.len() <= 6)
                    .and_then(char::from_u32)
                    .ok_or_else(|| bad("not a Unicode scalar value"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i = close + 1;
            }
            _ => {
                return Err(bad(
                    "unknown escape; use \\n \\r \\t \\0 \\\\ \\\" \\xHH \\u{H}",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn fields_numbers_and_bytes() {
        assert_eq!(
            toks("fesl.txn == \"Nu\\x41\" && conn.port>=0x10 or bytes contains de:ad"),
            vec![
                Tok::Field(vec!["fesl".into(), "txn".into()]),
                Tok::Cmp(CmpOp::Eq),
                Tok::Str(b"NuA".to_vec()),
                Tok::And,
                Tok::Field(vec!["conn".into(), "port".into()]),
                Tok::Cmp(CmpOp::Ge),
                Tok::Int(16),
                Tok::Or,
                Tok::Field(vec!["bytes".into()]),
                Tok::Contains,
                Tok::Bytes(vec![0xde, 0xad]),
                Tok::End,
            ]
        );
        assert_eq!(
            toks("x.0.\"a b\".:path 127.0.0.1 -5"),
            vec![
                Tok::Field(vec!["x".into(), "0".into(), "a b".into(), ":path".into()]),
                Tok::Bare("127.0.0.1".into()),
                Tok::Int(-5),
                Tok::End
            ]
        );
    }

    #[test]
    fn positions_are_char_offsets() {
        let err = lex("label == \"é\" @").unwrap_err();
        assert_eq!(err.position, 13);
        let err = lex("a == \"open").unwrap_err();
        assert_eq!(err.position, 5);
    }
}
