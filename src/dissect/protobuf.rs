//! Protobuf, with schemas loaded at run time from `.proto` files and without any schema.
//!
//! [`decode_message`] walks the wire format itself (prost-reflect's `DynamicMessage` keeps no
//! byte ranges) and gives one node per field occurrence, named from the schema where there is
//! one and by field number where not; [`encode_message`] writes such a tree back, with the
//! lengths of nested messages recomputed. Other dissectors (Star Citizen diffusion, gRPC)
//! decode their payloads with these.
//!
//! The [`Protobuf`] dissector is for raw protobuf on a connection: protobuf has no framing of
//! its own, so each packet is taken as one whole message.

mod decode;
mod encode;
mod names;
mod plan;
mod scan;
pub mod schema;
mod wire;

use prost_reflect::MessageDescriptor;

use crate::capture::Direction;

use super::{Context, Dissector, EncodeError, Framing, Message, Node, StreamDecoder};

pub use decode::{MAX_DEPTH, decode_message, decode_message_in, top_level_string};
pub use encode::encode_message;
pub use names::kind_name;
pub use schema::{DEFAULT_SCHEMA_DIR, SchemaError, load_schemas, schema_dirs};
pub use wire::MAX_FIELD_NUMBER;

/// The protocol name: the dissector's name and its filter namespace.
pub const NAME: &str = "protobuf";

/// Raw protobuf messages, one per packet, decoded without a schema.
pub struct Protobuf;

impl Dissector for Protobuf {
    fn name(&self) -> &'static str {
        NAME
    }

    fn nested(&self) -> bool {
        true
    }

    fn decoder(&self, _dir: Direction, _ctx: &Context) -> Box<dyn StreamDecoder> {
        Box::new(ProtobufDecoder::new(None))
    }

    fn encode(&self, tree: &Node) -> Result<Vec<u8>, EncodeError> {
        encode_message(tree)
    }
}

/// Decodes each buffer it is given as one message, of `desc`'s type when set (a type the user
/// chose), else schemaless.
pub struct ProtobufDecoder {
    desc: Option<MessageDescriptor>,
}

impl ProtobufDecoder {
    pub fn new(desc: Option<MessageDescriptor>) -> Self {
        ProtobufDecoder { desc }
    }
}

impl StreamDecoder for ProtobufDecoder {
    fn frame(&mut self, buf: &[u8]) -> Framing {
        if buf.is_empty() {
            Framing::NeedMore(None)
        } else {
            Framing::Complete(buf.len())
        }
    }

    fn decode(&mut self, msg: &[u8]) -> Message {
        let tree = decode_message(msg, self.desc.as_ref());
        let label = match &self.desc {
            Some(d) => d.name().to_owned(),
            None => "protobuf".to_owned(),
        };
        Message::new(label, tree)
    }
}
