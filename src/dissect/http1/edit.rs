//! The edit tree: a body edited as decoded (de-chunked, decompressed), then made wire bytes
//! again.

use super::decode::header_value;
use super::encode::{body_bytes, value_bytes};
use super::*;

/// The kinds a body node has in an edit tree where it holds the body decoded: the body's
/// content encoding, and whether the wire body is chunked.
pub(super) const EDIT_KINDS: [(&str, Option<&str>, bool); 5] = [
    ("dechunked", None, true),
    ("decoded gzip", Some("gzip"), false),
    ("decoded deflate", Some("deflate"), false),
    ("decoded gzip, chunked", Some("gzip"), true),
    ("decoded deflate, chunked", Some("deflate"), true),
];

/// The message's tree with its body replaced by the decoded (de-chunked, decompressed) body
/// and its JSON or form fields, so an edit there reaches [`encode`], which compresses and
/// chunks the body again. Two children not on the wire keep the original wire body and
/// decoded bytes, so an unchanged body goes out exactly as it came in.
pub fn edit_tree(msg: &Message) -> Node {
    let mut tree = msg.tree.clone();
    let decoded = msg
        .derived
        .iter()
        .find(|d| d.name == "body (decoded)")
        .or_else(|| msg.derived.iter().find(|d| d.name == "body"));
    let encoding = tree
        .child("headers")
        .and_then(|h| header_value(h, "content-encoding"))
        .map(|e| match e.trim().to_ascii_lowercase().as_str() {
            "x-gzip" => "gzip".to_owned(),
            other => other.to_owned(),
        });
    let Some(body) = tree
        .children
        .iter_mut()
        .find(|c| c.name == "body" && !c.derived)
    else {
        return tree;
    };
    let chunked = body.kind() == Some("chunked");
    // Trailers and chunk extensions have no place in the decoded body: such a body stays
    // edited as its chunks.
    let plain_end = body
        .child("trailers")
        .is_none_or(|t| t.children.is_empty() && t.kind().is_none())
        && body
            .child("last chunk")
            .is_none_or(|l| l.value.as_text() == Some("0\r\n"));
    let Some(decoded) = decoded.filter(|_| !body.has_error() && plain_end) else {
        return tree;
    };
    let Some(kind) = EDIT_KINDS
        .iter()
        .find(|(_, enc, ch)| *enc == encoding.as_deref() && *ch == chunked)
        .map(|(kind, _, _)| *kind)
    else {
        return tree;
    };
    let mut children = decoded.tree.children.clone();
    children.push(Node::new("wire body", 0..0, body.value.clone()).derived());
    children.push(
        Node::new(
            "decoded body",
            0..0,
            Value::Bytes(decoded.bytes.clone().into()),
        )
        .derived(),
    );
    *body = Node::new(
        "body",
        body.range.clone(),
        Value::Bytes(decoded.bytes.clone().into()),
    )
    .with_kind(kind)
    .with_children(children);
    tree
}

/// The wire bytes of a body from an edit tree (see [`edit_tree`]).
pub(super) fn decoded_body_wire(
    body: &Node,
    encoding: Option<&str>,
    chunked: bool,
) -> Result<Vec<u8>, EncodeError> {
    let plain = body_bytes(body)?;
    let original = body.children.iter().filter(|c| c.derived);
    let (mut wire, mut before) = (None, None);
    for c in original {
        match c.name.as_ref() {
            "wire body" => wire = Some(value_bytes(&c.value)),
            "decoded body" => before = Some(value_bytes(&c.value)),
            _ => {}
        }
    }
    if let (Some(wire), Some(before)) = (wire, before)
        && before == plain
    {
        return Ok(wire);
    }
    let packed = match encoding {
        None => plain,
        Some(enc) => compress(enc, &plain).map_err(|e| EncodeError::BadField {
            field: "body".into(),
            reason: format!("{enc}: {e}"),
        })?,
    };
    if !chunked {
        return Ok(packed);
    }
    // One chunk, then the last chunk.
    let mut out = format!("{:x}\r\n", packed.len()).into_bytes();
    if !packed.is_empty() {
        out.extend_from_slice(&packed);
        out.extend_from_slice(b"\r\n");
    } else {
        out.clear();
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Ok(out)
}

fn compress(encoding: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
        _ => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
    }
}
