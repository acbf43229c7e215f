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

mod encode;
mod frame;
mod parse;

pub use encode::{encode_tree, to_value};
pub use parse::{is_valid, tree};

use std::borrow::Cow;

use crate::capture::Direction;

use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value};

/// Deepest nesting of objects/arrays the parser follows before giving up with an error.
pub const MAX_DEPTH: usize = 128;
/// Largest bare JSON message the stream dissector frames.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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
