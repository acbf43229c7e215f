//! Decoding: turns one direction's byte stream of a connection into messages, each a field
//! tree whose nodes carry their byte ranges, and (where editing makes sense) encodes an
//! edited tree back to bytes.
//!
//! A protocol is one file (or a folder split by job) here implementing [`Dissector`],
//! registered in [`registry::Registry::standard`]. The [`stream`] driver does the buffering,
//! framing and resynchronisation that every protocol needs, so dissectors only say where a
//! message ends and what it contains. Each dissector also registers the filter fields it
//! offers ([`Dissector::fields`]); the filter language reads them from the registry.

pub mod export;
pub mod fesl;
pub mod fields;
pub mod filter;
pub mod gp;
pub mod grpc;
pub mod har;
pub mod http1;
pub mod http2;
pub mod hytale;
pub mod json;
pub mod jwt;
pub mod protobuf;
pub mod registry;
pub mod sc;
pub mod session;
pub mod stream;
pub mod tree;

use crate::capture::Direction;

pub use fields::{FieldDef, FieldPath, FieldType, FilterFields, FilterNamespace};
pub use registry::Registry;
pub use tree::{Node, Value};

/// Where the next message in a buffer ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The first `n` bytes are one whole message (`n > 0`).
    Complete(usize),
    /// The buffer holds the start of a message; wait for more bytes. `Some(n)` when the
    /// message is known to need `n` bytes in all.
    NeedMore(Option<usize>),
    /// The buffer does not start with a message this protocol can frame: the first `skip`
    /// bytes (`skip > 0`) become an undecodable span, then framing resumes after them.
    Unframeable { skip: usize, reason: String },
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Short summary for the packet table, e.g. `acct NuLogin`.
    pub label: String,
    /// The fields; ranges are within the message bytes.
    pub tree: Node,
    /// Bytes that are not on the wire as such (reassembled fragments, decompressed
    /// payloads), each with a tree whose ranges are within those bytes.
    pub derived: Vec<DerivedBuffer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DerivedBuffer {
    pub name: String,
    pub bytes: Vec<u8>,
    pub tree: Node,
}

impl Message {
    pub fn new(label: impl Into<String>, tree: Node) -> Self {
        Message {
            label: label.into(),
            tree,
            derived: Vec::new(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.tree.has_error()
    }
}

/// The state of one direction of one connection (HPACK tables, fragments being collected).
pub trait StreamDecoder: Send {
    /// Where the message at the start of `buf` ends. Must not panic on any input, and must
    /// not ask for more than the protocol's maximum message size.
    fn frame(&mut self, buf: &[u8]) -> Framing;

    /// Decodes one message that `frame` delimited. Never fails: malformed parts become
    /// nodes with `error` set.
    fn decode(&mut self, msg: &[u8]) -> Message;
    /// The stream ended (the connection closed) with `rest` not framed as a whole message.
    /// Protocols where the close ends a message, such as an HTTP response without a length,
    /// decode it here; `None` reports the bytes as an incomplete message.
    fn finish(&mut self, _rest: &[u8]) -> Option<Message> {
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("{0} messages cannot be edited")]
    NotEditable(&'static str),
    #[error("field {field}: {reason}")]
    BadField { field: String, reason: String },
    #[error("missing field {0}")]
    Missing(String),
}

/// Run-time settings dissectors may use: loaded schemas, secrets and keys.
#[derive(Clone, Default)]
pub struct Context {
    /// Shared secret of the Hytale proxy's referral HMAC, when the user configured one.
    pub hytale_referral_secret: Option<Vec<u8>>,
    /// Protobuf schemas loaded from `proto/` and the user's directories.
    pub schemas: Option<prost_reflect::DescriptorPool>,
    /// Keys JWTs found in messages are verified with.
    pub jwt_keys: jwt::JwtKeys,
}

/// A protocol.
pub trait Dissector: Send + Sync {
    /// The name used by `--decode-as`, routes and filters, e.g. `fesl`.
    fn name(&self) -> &'static str;

    /// Server ports the protocol usually runs on.
    fn default_ports(&self) -> &'static [u16] {
        &[]
    }

    /// Whether the first bytes a side sent look like this protocol (content heuristics).
    fn detect(&self, _first: &[u8], _dir: Direction) -> bool {
        false
    }

    /// A decoder for one direction of a new connection.
    fn decoder(&self, dir: Direction, ctx: &Context) -> Box<dyn StreamDecoder>;

    /// The decoders of both directions of one connection, client→server first. Protocols
    /// whose directions depend on each other (an HTTP/2 response is typed by its request's
    /// path) override this to give both the same shared state.
    fn connection_decoders(
        &self,
        ctx: &Context,
    ) -> (Box<dyn StreamDecoder>, Box<dyn StreamDecoder>) {
        (
            self.decoder(Direction::ClientToServer, ctx),
            self.decoder(Direction::ServerToClient, ctx),
        )
    }

    /// Encodes an edited message tree back to bytes, with lengths, sizes and counts
    /// recomputed from the tree.
    fn encode(&self, _tree: &Node) -> Result<Vec<u8>, EncodeError> {
        Err(EncodeError::NotEditable(self.name()))
    }

    /// The tree an editor offers for `msg`, which [`Dissector::encode`] takes back. Where a
    /// protocol rebuilds the wire bytes from a derived buffer (a decompressed payload is
    /// compressed again), the editable fields are that buffer's, so this tree holds them.
    fn edit_tree(&self, msg: &Message) -> Node {
        msg.tree.clone()
    }

    /// The filter fields this protocol offers (see [`fields`]).
    fn fields(&self) -> &'static [FieldDef] {
        &[]
    }

    /// Filter namespaces besides [`Dissector::name`] whose fields look at this protocol's
    /// connections (gRPC runs over HTTP/2, so `h2.*` and `http.*` cover it too).
    fn filter_namespaces(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether this protocol's trees also sit inside other protocols' messages (JSON
    /// bodies, protobuf payloads), so its namespace's paths are searched in every message.
    fn nested(&self) -> bool {
        false
    }
}
