//! HTTP/1.x: requests on the client direction, responses on the server direction.
//!
//! Framing: the head is found and checked with `httparse` (at most [`MAX_HEAD`] bytes, else
//! the span is unframeable); the body is framed by `Transfer-Encoding: chunked` (to the end
//! of the trailers), else by `Content-Length` (at most [`MAX_BODY`]), else it is empty for
//! requests and for 1xx/204/304 responses. A response with neither length nor chunking runs
//! until the connection closes: it stays `NeedMore` until the driver reports the close
//! ([`StreamDecoder::finish`]), and is incomplete if the capture ends first. Responses to
//! `HEAD` carry a `Content-Length` but no body; the server-side decoder cannot see the
//! request, so when the bytes after such a head are the start of the next response
//! (`HTTP/1.x NNN `) the body is taken as empty. After `101 Switching Protocols` (server
//! side) or an `Upgrade` request whose next bytes are not HTTP (client side), the rest of
//! the direction is framed as opaque `upgraded data` messages.
//!
//! Tree (root `http`):
//! - `request line` {`method`, `target`, `version`} or `status line` {`version`, `code`,
//!   `reason`}; `kind` holds a line ending other than CRLF.
//! - `headers`: one node per header, named as written, value `Text` (`Bytes` plus an error
//!   when not UTF-8), range = the value bytes exactly; `kind` keeps unusual spacing/line
//!   ending (`<before>|<after>|<eol>`) for byte-exact re-encoding. Lines without a colon are
//!   error nodes named `header line`.
//! - `body` (when non-empty), value `Bytes` of the body as on the wire. A chunked body has
//!   `chunk` children {`size`, `data`}, then `last chunk` and `trailers`; the de-chunked
//!   bytes go to a derived buffer `body`. A gzip/deflate body is decompressed (at most
//!   [`MAX_DECODED`]) into a derived buffer `body (decoded)`. A JSON body is decoded with
//!   [`super::json::tree`] as a `json` child (inline, ranges in the message) or in the
//!   derived buffer's tree; an urlencoded form body becomes a `form` child with one node per
//!   field (value percent-decoded, range = the raw value).
//!
//! JWTs anywhere in the tree (bearer tokens, JSON members, form fields) are annotated by
//! [`super::jwt::annotate`] without keys; the driver may annotate again with keys.
//!
//! Encoding rebuilds the message from the tree: header spacing and line endings as decoded,
//! `Content-Length` recomputed when the body length changed, chunk sizes recomputed from
//! the chunk data. An edited `json` or `form` child replaces the body with its
//! serialization (compact JSON); unedited messages come back byte for byte. Edits inside
//! derived buffers (de-chunked or decompressed bodies) are not encoded.

mod chunked;
mod decode;
mod edit;
mod encode;
mod form;
mod frame;

pub use edit::edit_tree;
pub use encode::{encode, write_message};

use std::borrow::Cow;
use std::io::Read as _;
use std::ops::Range;

use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};

use super::jwt::{self, JwtKeys};
use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Framing, Message, Node, StreamDecoder, Value,
    json,
};
use frame::{is_tchar, request_line_ok, trim_cr};

/// Longest request/status line plus headers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest body (by Content-Length or chunked).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest decompressed body.
pub const MAX_DECODED: usize = 64 * 1024 * 1024;
/// Most headers in one head.
pub const MAX_HEADERS: usize = 1024;

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "http";

/// The filter fields http registers.
const FIELDS: [FieldDef; 4] = [
    FieldDef {
        name: "http.method",
        aliases: &[],
        ty: FieldType::Text,
        help: "the request method",
        paths: &[FieldPath::Anywhere("method")],
    },
    FieldDef {
        name: "http.path",
        aliases: &["http.target", "http.uri"],
        ty: FieldType::Text,
        help: "the request target",
        paths: &[FieldPath::Anywhere("target")],
    },
    FieldDef {
        name: "http.status",
        aliases: &["http.code"],
        ty: FieldType::Number,
        help: "the response status code",
        paths: &[FieldPath::Anywhere("code")],
    },
    FieldDef {
        name: "http.host",
        aliases: &[],
        ty: FieldType::Text,
        help: "the `Host` header",
        paths: &[FieldPath::Anywhere("host")],
    },
];

pub struct Http1;

impl Dissector for Http1 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
    }

    fn default_ports(&self) -> &'static [u16] {
        &[80, 8080, 9000]
    }

    fn detect(&self, first: &[u8], dir: Direction) -> bool {
        let line_end = first
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(first.len());
        let line = trim_cr(&first[..line_end]);
        if line.starts_with(b"HTTP/1.") {
            return dir == Direction::ServerToClient || line.len() > 12;
        }
        let method_len = first.iter().take_while(|&&b| is_tchar(b)).count();
        if method_len == 0 || method_len > 32 || first.get(method_len) != Some(&b' ') {
            return false;
        }
        // The first line must be complete to tell HTTP/1 from the HTTP/2 preface.
        line_end < first.len() && request_line_ok(line)
    }

    fn decoder(&self, dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(Http1Decoder {
            dir,
            upgraded: false,
            maybe_upgraded: false,
        })
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode(tree)
    }

    fn edit_tree(&self, msg: &Message) -> Node {
        edit_tree(msg)
    }
}

struct Http1Decoder {
    dir: Direction,
    /// The server switched protocols: everything after is opaque.
    upgraded: bool,
    /// The client asked for an upgrade: bytes that are not a request are opaque.
    maybe_upgraded: bool,
}
