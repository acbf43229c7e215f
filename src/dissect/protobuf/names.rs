//! Names without allocation: field numbers and packed indices as node names, and the type
//! names a node's `kind` holds.

use std::borrow::Cow;

use prost_reflect::Kind;

use super::plan::Ty;
use super::wire::{WIRE_FIXED32, WIRE_FIXED64, WIRE_VARINT};

/// Names of fields 0..=32 without a schema, and of packed elements `[0]`..`[31]`, without
/// allocating.
pub(super) const NUMBERS: [&str; 33] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
];
pub(super) const INDICES: [&str; 32] = [
    "[0]", "[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]", "[8]", "[9]", "[10]", "[11]", "[12]",
    "[13]", "[14]", "[15]", "[16]", "[17]", "[18]", "[19]", "[20]", "[21]", "[22]", "[23]", "[24]",
    "[25]", "[26]", "[27]", "[28]", "[29]", "[30]", "[31]",
];

pub(super) fn number_name(n: u32) -> Cow<'static, str> {
    match usize::try_from(n).ok().and_then(|i| NUMBERS.get(i)) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(n.to_string()),
    }
}

/// The protobuf type name of a field kind (what `kind` holds).
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) => "message",
        Kind::Enum(_) => "enum",
    }
}

pub(super) fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Double => "double",
        Ty::Float => "float",
        Ty::Int32 => "int32",
        Ty::Int64 => "int64",
        Ty::Uint32 => "uint32",
        Ty::Uint64 => "uint64",
        Ty::Sint32 => "sint32",
        Ty::Sint64 => "sint64",
        Ty::Fixed32 => "fixed32",
        Ty::Fixed64 => "fixed64",
        Ty::Sfixed32 => "sfixed32",
        Ty::Sfixed64 => "sfixed64",
        Ty::Bool => "bool",
        Ty::String => "string",
        Ty::Bytes => "bytes",
        Ty::Message(_) => "message",
        Ty::Enum(_) => "enum",
    }
}

pub(super) fn packed_ty_name(ty: Ty) -> Option<&'static str> {
    Some(match ty {
        Ty::Double => "packed double",
        Ty::Float => "packed float",
        Ty::Int32 => "packed int32",
        Ty::Int64 => "packed int64",
        Ty::Uint32 => "packed uint32",
        Ty::Uint64 => "packed uint64",
        Ty::Sint32 => "packed sint32",
        Ty::Sint64 => "packed sint64",
        Ty::Fixed32 => "packed fixed32",
        Ty::Fixed64 => "packed fixed64",
        Ty::Sfixed32 => "packed sfixed32",
        Ty::Sfixed64 => "packed sfixed64",
        Ty::Bool => "packed bool",
        Ty::Enum(_) => "packed enum",
        Ty::String | Ty::Bytes | Ty::Message(_) => return None,
    })
}

/// The wire type a scalar type is written with (None for length-delimited types).
pub(super) fn scalar_wire(ty: Ty) -> Option<u8> {
    match ty {
        Ty::Int32
        | Ty::Int64
        | Ty::Uint32
        | Ty::Uint64
        | Ty::Sint32
        | Ty::Sint64
        | Ty::Bool
        | Ty::Enum(_) => Some(WIRE_VARINT),
        Ty::Fixed64 | Ty::Sfixed64 | Ty::Double => Some(WIRE_FIXED64),
        Ty::Fixed32 | Ty::Sfixed32 | Ty::Float => Some(WIRE_FIXED32),
        Ty::String | Ty::Bytes | Ty::Message(_) => None,
    }
}
