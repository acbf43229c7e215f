//! gRPC: length-prefixed protobuf messages carried in HTTP/2 DATA frames.
//!
//! A gRPC body is a sequence of `compressed u8 | length u32 BE | message`. The HTTP/2
//! dissector ([`super::http2`]) reassembles each stream's DATA and hands the complete
//! messages to [`decode_messages`], which shows the prefix, decompresses `gzip`, `deflate`
//! and `zstd` payloads into derived buffers, and decodes the protobuf payload with the
//! message type of the call's method when the loaded schemas have the service
//! (`/package.Service/Method` → input type for requests, output type for responses), or
//! schemaless otherwise.
//!
//! The [`Grpc`] dissector is HTTP/2 whose bodies are all taken as gRPC (unless a stream's
//! `content-type` says otherwise): what `--decode-as grpc` picks on a cleartext h2
//! connection. Message trees:
//!
//! ```text
//! message 1            (display: the protobuf type, or "no schema")
//!   compressed         0 / 1 (display no / yes (gzip))
//!   length             u32
//!   payload            the protobuf tree (compressed: the bytes; the decoded tree is in a
//!                      derived buffer "message 1 payload (gzip-decompressed)")
//! ```

use std::borrow::Cow;
use std::io::Read;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::capture::Direction;

use super::fields::{FieldDef, FieldPath, FieldType};

use super::{
    Context, DerivedBuffer, Dissector, EncodeError, Node, StreamDecoder, Value, http2, protobuf,
};

/// Largest message a length prefix may declare (the stream buffer cap of the HTTP/2
/// dissector); a longer one is reported, never waited for.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest payload decompression may produce.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// Bytes of the length prefix.
pub const PREFIX: usize = 5;

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "grpc";

/// The filter fields grpc registers.
const FIELDS: [FieldDef; 3] = [
    FieldDef {
        name: "grpc.method",
        aliases: &["grpc.path"],
        ty: FieldType::Text,
        help: "the called method (`/package.Service/Method`)",
        paths: &[FieldPath::Anywhere(":path")],
    },
    FieldDef {
        name: "grpc.status",
        aliases: &[],
        ty: FieldType::Number,
        help: "the `grpc-status` trailer",
        paths: &[FieldPath::Anywhere("grpc-status")],
    },
    FieldDef {
        name: "grpc.message",
        aliases: &[],
        ty: FieldType::Text,
        help: "the `grpc-message` trailer",
        paths: &[FieldPath::Anywhere("grpc-message")],
    },
];

/// gRPC over cleartext HTTP/2 (TLS already terminated by the tap).
pub struct Grpc;

impl Dissector for Grpc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fields(&self) -> &'static [FieldDef] {
        &FIELDS
    }

    fn filter_namespaces(&self) -> &'static [&'static str] {
        &["http", "h2", "http2"]
    }

    fn default_ports(&self) -> &'static [u16] {
        // The Star Citizen game server's gRPC port (the seed default).
        &[5678]
    }

    fn detect(&self, _first: &[u8], _dir: Direction) -> bool {
        // `h2` detects the preface and decodes `application/grpc` bodies the same way.
        false
    }

    fn decoder(&self, dir: Direction, ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(http2::Http2Decoder::new(dir, ctx, http2::BodyMode::Grpc))
    }

    fn connection_decoders(
        &self,
        ctx: &Context,
    ) -> (Box<dyn StreamDecoder>, Box<dyn StreamDecoder>) {
        http2::connection_decoders(ctx, http2::BodyMode::Grpc)
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        http2::encode_frame(tree)
    }
}

/// What [`decode_messages`] needs to know about the call.
#[derive(Clone, Debug, Default)]
pub struct Options<'a> {
    /// The request's `:path`, `/package.Service/Method`.
    pub path: Option<&'a str>,
    /// Client-to-server (the method's input type) or not (its output type).
    pub is_request: bool,
    /// The stream's `grpc-encoding` header.
    pub encoding: Option<&'a str>,
    /// Number of the first message in `body` within its stream (1-based), for names.
    pub first_index: usize,
}

/// Decoded messages of a body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Body {
    /// One node per message (`message N`), ranges within the body.
    pub nodes: Vec<Node>,
    /// Decompressed payloads, each with its protobuf tree.
    pub derived: Vec<DerivedBuffer>,
    /// The protobuf type of each whole message decoded with a schema.
    pub types: Vec<String>,
}

/// How many bytes at the start of `buf` are whole messages, and an error when the next
/// message declares a length beyond [`MAX_MESSAGE`] (it can never be buffered).
pub fn complete_prefix(buf: &[u8]) -> (usize, Option<String>) {
    let mut at = 0;
    while let Some(head) = buf.get(at..at + PREFIX) {
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_MESSAGE {
            return (
                at,
                Some(format!(
                    "gRPC message length {len} exceeds the {MAX_MESSAGE}-byte limit"
                )),
            );
        }
        if buf.len() - at - PREFIX < len {
            break;
        }
        at += PREFIX + len;
    }
    (at, None)
}

/// The request (`is_request`) or response message type of the method at `path`
/// (`/package.Service/Method`) in `pool`.
pub fn message_type(
    pool: &DescriptorPool,
    path: &str,
    is_request: bool,
) -> Option<MessageDescriptor> {
    let (service, method) = path.strip_prefix('/')?.rsplit_once('/')?;
    let service = pool.get_service_by_name(service)?;
    let method = service.methods().find(|m| m.name() == method)?;
    Some(if is_request {
        method.input()
    } else {
        method.output()
    })
}

/// Decodes the length-prefixed messages of `body` (ranges in the nodes are within `body`).
/// A trailing partial message becomes an error node.
pub fn decode_messages(body: &[u8], opts: &Options<'_>, ctx: &Context) -> Body {
    let desc = match (&ctx.schemas, opts.path) {
        (Some(pool), Some(path)) => message_type(pool, path, opts.is_request),
        _ => None,
    };
    let mut out = Body::default();
    let mut at = 0;
    let mut index = opts.first_index.max(1);
    while at < body.len() {
        let rest = &body[at..];
        let name = format!("message {index}");
        let Some(head) = rest.get(..PREFIX) else {
            out.nodes.push(
                Node::new(name, at..body.len(), Value::Bytes(rest.into())).with_error(format!(
                    "truncated gRPC message prefix: {} of 5 bytes",
                    rest.len()
                )),
            );
            break;
        };
        let flag = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut node = Node::group(name, at..body.len()).with_kind("grpc message");
        node.push(compressed_node(flag, opts.encoding, at));
        node.push(Node::new(
            "length",
            at + 1..at + PREFIX,
            Value::UInt(len as u64),
        ));
        let start = at + PREFIX;
        let have = body.len() - start;
        if len > MAX_MESSAGE || have < len {
            let reason = if len > MAX_MESSAGE {
                format!("gRPC message length {len} exceeds the {MAX_MESSAGE}-byte limit")
            } else {
                format!("truncated gRPC message: {have} of {len} bytes")
            };
            node.push(
                Node::new(
                    "payload",
                    start..body.len(),
                    Value::Bytes(body[start..].into()),
                )
                .with_error(reason),
            );
            out.nodes.push(node);
            break;
        }
        let end = start + len;
        node.range = at..end;
        node.set_display(Some(
            desc.as_ref()
                .map_or_else(|| "no schema".to_string(), |d| d.full_name().to_string()),
        ));
        match flag {
            0 => {
                let mut payload = protobuf::decode_message_in(body, start..end, desc.as_ref());
                payload.name = Cow::Borrowed("payload");
                node.push(payload);
            }
            1 => {
                let (payload, derived) = compressed_payload(
                    &body[start..end],
                    start..end,
                    opts.encoding,
                    desc.as_ref(),
                    index,
                );
                node.push(payload);
                out.derived.extend(derived);
            }
            _ => node.push(
                Node::new("payload", start..end, Value::Bytes(body[start..end].into()))
                    .with_error("not decoded: the compressed flag is neither 0 nor 1"),
            ),
        }
        if let Some(d) = &desc {
            out.types.push(d.full_name().to_string());
        }
        out.nodes.push(node);
        at = end;
        index += 1;
    }
    out
}

fn compressed_node(flag: u8, encoding: Option<&str>, at: usize) -> Node {
    let node = Node::new("compressed", at..at + 1, Value::UInt(u64::from(flag)));
    match flag {
        0 => node.with_display("no"),
        1 => node.with_display(format!("yes ({})", encoding.unwrap_or("encoding unknown"))),
        _ => node.with_error("the compressed flag must be 0 or 1"),
    }
}

/// The payload node of a compressed message, and the derived buffer with the decompressed
/// bytes and their protobuf tree.
fn compressed_payload(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    encoding: Option<&str>,
    desc: Option<&MessageDescriptor>,
    index: usize,
) -> (Node, Option<DerivedBuffer>) {
    let node = Node::new("payload", range, Value::Bytes(bytes.into()));
    // Without a grpc-encoding header, gzip's magic number still tells it apart.
    let encoding = match encoding {
        Some(e) => e.trim().to_ascii_lowercase(),
        None if bytes.starts_with(&[0x1f, 0x8b]) => "gzip".to_string(),
        None => {
            return (
                node.with_error("compressed, but the stream has no grpc-encoding header"),
                None,
            );
        }
    };
    match decompress(bytes, &encoding) {
        Ok(plain) => {
            let name = format!("message {index} payload ({encoding}-decompressed)");
            let mut tree = protobuf::decode_message(&plain, desc);
            tree.name = Cow::Borrowed("payload");
            let node = node
                .with_display(format!(
                    "{} B {encoding} → {} B (derived buffer \"{name}\")",
                    bytes.len(),
                    plain.len()
                ))
                .with_children(vec![
                    Node::new("decompressed size", 0..0, Value::UInt(plain.len() as u64)).derived(),
                ]);
            (
                node,
                Some(DerivedBuffer {
                    name,
                    bytes: plain,
                    tree,
                }),
            )
        }
        Err(reason) => (node.with_error(reason), None),
    }
}

/// Decompresses a gRPC payload, at most [`MAX_DECOMPRESSED`] bytes.
pub fn decompress(bytes: &[u8], encoding: &str) -> Result<Vec<u8>, String> {
    let limit = MAX_DECOMPRESSED as u64 + 1;
    let mut out = Vec::new();
    let read = match encoding {
        "gzip" => flate2::read::MultiGzDecoder::new(bytes)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(bytes)
            .take(limit)
            .read_to_end(&mut out),
        "zstd" => match zstd::stream::read::Decoder::new(bytes) {
            Ok(d) => d.take(limit).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        "identity" => {
            return Err("flagged compressed, but grpc-encoding is identity".into());
        }
        other => return Err(format!("unsupported grpc-encoding {other:?}")),
    };
    match read {
        Ok(_) if out.len() > MAX_DECOMPRESSED => Err(format!(
            "decompressed payload exceeds the {MAX_DECOMPRESSED}-byte limit"
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(format!("{encoding} decompression failed: {e}")),
    }
}

/// The name of a gRPC status code.
pub fn status_name(code: u64) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .copied()
        .unwrap_or("unknown status")
}

/// Decodes the percent-encoding of `grpc-message`; invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn complete_prefix_counts_whole_messages_only() {
        let mut b = msg(0, b"\x08\x01");
        b.extend(msg(0, b"\x08\x02\x10"));
        let whole = b.len();
        b.extend_from_slice(&[0, 0, 0, 0, 9, 1]);
        assert_eq!(complete_prefix(&b), (whole, None));
        assert_eq!(complete_prefix(&b[..3]), (0, None));
        let (n, err) = complete_prefix(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(n, 0);
        assert!(err.is_some());
    }

    #[test]
    fn schemaless_message_has_prefix_and_payload_ranges() {
        let b = msg(0, b"\x08\x96\x01");
        let body = decode_messages(&b, &Options::default(), &Context::default());
        assert_eq!(body.nodes.len(), 1);
        let m = &body.nodes[0];
        assert_eq!(m.name, "message 1");
        assert_eq!(m.range, 0..8);
        assert_eq!(m.child("compressed").map(|n| n.range.clone()), Some(0..1));
        let len = m.child("length").unwrap();
        assert_eq!((len.range.clone(), len.value.as_u64()), (1..5, Some(3)));
        let payload = m.child("payload").unwrap();
        assert_eq!(payload.range, 5..8);
        assert_eq!(payload.children[0].value.as_u64(), Some(150));
        assert_eq!(payload.children[0].range, 5..8);
        assert!(!m.has_error());
    }

    #[test]
    fn truncated_and_bad_flag_are_errors() {
        let b = msg(0, b"\x08\x01");
        let body = decode_messages(&b[..6], &Options::default(), &Context::default());
        assert!(body.nodes[0].has_error());
        let body = decode_messages(&b[..2], &Options::default(), &Context::default());
        assert!(body.nodes[0].error().is_some());
        let body = decode_messages(
            &msg(7, b"\x08\x01"),
            &Options::default(),
            &Context::default(),
        );
        assert!(body.nodes[0].has_error());
    }

    #[test]
    fn deflate_and_zstd_payloads_decompress() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"\x08\x2a").unwrap();
        let deflated = z.finish().unwrap();
        assert_eq!(decompress(&deflated, "deflate").unwrap(), b"\x08\x2a");
        let zs = zstd::encode_all(&b"\x08\x2a"[..], 1).unwrap();
        assert_eq!(decompress(&zs, "zstd").unwrap(), b"\x08\x2a");
        assert!(decompress(b"nope", "gzip").is_err());
        assert!(decompress(b"nope", "snappy").is_err());
    }

    #[test]
    fn status_names_and_percent_decoding() {
        assert_eq!(status_name(0), "OK");
        assert_eq!(status_name(16), "UNAUTHENTICATED");
        assert_eq!(status_name(99), "unknown status");
        assert_eq!(percent_decode("no%20such%20user%"), "no such user%");
        assert_eq!(percent_decode("%zz%E2%9C%93"), "%zz✓");
    }
}
