//! Protobuf decoding with byte ranges (with and without a schema), re-encoding, schema
//! loading, and the raw `protobuf` dissector.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::dissect::protobuf::{
    MAX_DEPTH, Protobuf, SchemaError, decode_message, decode_message_in, encode_message,
    load_schemas, schema_dirs, top_level_string,
};
use gamewire::dissect::stream::decode_connection;
use gamewire::dissect::{Context, Dissector, Node, Value};
use proptest::prelude::*;
use prost_reflect::prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, Value as PValue};

const TEST_PROTO: &str = r#"
syntax = "proto3";
package test.v1;

enum Color {
  COLOR_UNSPECIFIED = 0;
  RED = 1;
  GREEN = 2;
}

message Inner {
  string name = 1;
  int32 id = 2;
  repeated sint64 deltas = 3;
}

message All {
  double d = 1;
  float f = 2;
  int32 i32 = 3;
  int64 i64 = 4;
  uint32 u32 = 5;
  uint64 u64 = 6;
  sint32 s32 = 7;
  sint64 s64 = 8;
  fixed32 fx32 = 9;
  fixed64 fx64 = 10;
  sfixed32 sfx32 = 11;
  sfixed64 sfx64 = 12;
  bool b = 13;
  string s = 14;
  bytes by = 15;
  Color color = 16;
  Inner inner = 17;
  repeated int32 packed_i32 = 18;
  repeated fixed32 packed_fx32 = 19;
  repeated double packed_d = 20;
  repeated string names = 21;
  repeated Inner inners = 22;
  map<string, int64> counts = 23;
  map<int32, Inner> by_id = 24;
  repeated Color colors = 25;
  repeated bool flags = 26;
  repeated int32 unpacked = 27 [packed = false];
}
"#;

fn test_pool() -> DescriptorPool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("test")).unwrap();
    std::fs::write(dir.path().join("test/all.proto"), TEST_PROTO).unwrap();
    load_schemas(&[dir.path().to_owned()]).unwrap()
}

fn all_desc(pool: &DescriptorPool) -> MessageDescriptor {
    pool.get_message_by_name("test.v1.All").unwrap()
}

/// The payload of the sample's client `diff.service.online` frame.
fn discovery_payload() -> Vec<u8> {
    hex::decode(concat!(
        "0a13646966662e736572766963652e6f6e6c696e65",
        "12290a185374617220436974697a656e2047616d6520436c69656e74120973635f636c69656e7418042001",
        "1801"
    ))
    .unwrap()
}

fn summary(
    n: &Node,
) -> (
    String,
    Value,
    std::ops::Range<usize>,
    Option<u32>,
    Option<String>,
) {
    (
        n.name.to_string(),
        n.value.clone(),
        n.range.clone(),
        n.tag,
        n.kind().map(str::to_owned),
    )
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn schemaless_discovery_request_has_exact_ranges() {
    let bytes = discovery_payload();
    let tree = decode_message(&bytes, None);
    assert!(!tree.has_error());
    assert_eq!(tree.range, 0..66);
    let f: Vec<_> = tree.children.iter().map(summary).collect();
    assert_eq!(
        f,
        vec![
            (
                "1".into(),
                text("diff.service.online"),
                0..21,
                Some(1),
                Some("string".into())
            ),
            (
                "2".into(),
                Value::None,
                21..64,
                Some(2),
                Some("message".into())
            ),
            (
                "3".into(),
                Value::UInt(1),
                64..66,
                Some(3),
                Some("varint".into())
            ),
        ]
    );
    let inner: Vec<_> = tree.children[1].children.iter().map(summary).collect();
    assert_eq!(
        inner,
        vec![
            (
                "1".into(),
                text("Star Citizen Game Client"),
                23..49,
                Some(1),
                Some("string".into())
            ),
            (
                "2".into(),
                text("sc_client"),
                49..60,
                Some(2),
                Some("string".into())
            ),
            (
                "3".into(),
                Value::UInt(4),
                60..62,
                Some(3),
                Some("varint".into())
            ),
            (
                "4".into(),
                Value::UInt(1),
                62..64,
                Some(4),
                Some("varint".into())
            ),
        ]
    );
    assert_eq!(encode_message(&tree).unwrap(), bytes);
    // A click on the byte of "sc_client" selects that field.
    assert_eq!(tree.deepest_at(52), Some(vec![1, 1]));
}

#[test]
fn decode_in_place_keeps_frame_offsets() {
    let mut frame = vec![0u8; 8];
    frame.extend_from_slice(&discovery_payload());
    let tree = decode_message_in(&frame, 8..frame.len(), None);
    assert_eq!(tree.range, 8..74);
    assert_eq!(tree.children[0].range, 8..29);
    assert_eq!(tree.children[1].children[1].range, 57..68);
    assert_eq!(encode_message(&tree).unwrap(), discovery_payload());
}

#[test]
fn schemaless_guesses_text_bytes_and_packed() {
    // field 1 "hello"; field 2 ff fe (bytes); field 3 01 96 01 05 (packed 1, 150, 5);
    // field 4 empty.
    let bytes = hex::decode("0a0568656c6c6f1202fffe1a04019601052200").unwrap();
    let tree = decode_message(&bytes, None);
    assert!(!tree.has_error());
    let c = &tree.children;
    assert_eq!(summary(&c[0]).1, text("hello"));
    assert_eq!(c[1].value, Value::Bytes(vec![0xff, 0xfe].into()));
    assert_eq!(c[1].kind(), Some("bytes"));
    assert_eq!(c[2].kind(), Some("packed varint"));
    let packed: Vec<_> = c[2]
        .children
        .iter()
        .map(|e| (e.name.to_string(), e.value.clone(), e.range.clone()))
        .collect();
    assert_eq!(
        packed,
        vec![
            ("[0]".into(), Value::UInt(1), 13..14),
            ("[1]".into(), Value::UInt(150), 14..16),
            ("[2]".into(), Value::UInt(5), 16..17),
        ]
    );
    assert_eq!(c[3].value, text(""));
    assert_eq!(c[3].range, 17..19);
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

/// The schemaless guess takes a body as packed varints or as a message only when every
/// varint in it is in its shortest form, since a longer one would re-encode shorter.
#[test]
fn schemaless_guess_refuses_varints_longer_than_needed() {
    // field 1: 05 80 01 (128, shortest) then 80 00 (0 in two bytes): not packed.
    // field 2: 08 80 80 00 (field 1 = 0 in three bytes): not a message.
    // field 3: 08 80 80 01: the same shape in shortest form (16384), a message.
    let bytes = hex::decode("0a0505800180001204088080001a0408808001").unwrap();
    let tree = decode_message(&bytes, None);
    assert!(!tree.has_error());
    let c = &tree.children;
    assert_eq!(c[0].kind(), Some("bytes"));
    assert_eq!(c[1].kind(), Some("bytes"));
    assert_eq!(c[2].kind(), Some("message"));
    assert_eq!(c[2].children[0].value, Value::UInt(16384));
    assert_eq!(c[2].children[0].range, 15..19);
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

#[test]
fn fixed_width_fields_without_schema() {
    // field 1 fixed64 = 1, field 2 fixed32 = 0x3f800000.
    let bytes = hex::decode("090100000000000000150000803f").unwrap();
    let tree = decode_message(&bytes, None);
    assert_eq!(summary(&tree.children[0]).1, Value::UInt(1));
    assert_eq!(tree.children[0].kind(), Some("fixed64"));
    assert_eq!(tree.children[0].range, 0..9);
    assert_eq!(tree.children[1].value, Value::UInt(0x3f80_0000));
    assert_eq!(tree.children[1].range, 9..14);
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

/// (input hex, index of the invalid node, its range, its reason).
const MALFORMED: &[(&str, usize, std::ops::Range<usize>, &str)] = &[
    ("0880", 0, 0..2, "truncated varint"),
    ("80", 0, 0..1, "truncated tag varint"),
    ("0a0561", 0, 0..3, "length beyond the end of the message"),
    ("0a", 0, 0..1, "truncated length varint"),
    ("0e01", 0, 0..2, "invalid wire type 6"),
    ("0f", 0, 0..1, "invalid wire type 7"),
    ("0001", 0, 0..2, "field number 0"),
    ("08010faa", 1, 2..4, "invalid wire type 7"),
    ("0d0102", 0, 0..3, "truncated fixed32 value"),
    ("09010203", 0, 0..4, "truncated fixed64 value"),
    (
        "0c",
        0,
        0..1,
        "end-group tag without a matching start-group",
    ),
    ("0b1005", 0, 0..3, "group without its end-group tag"),
    (
        "08ffffffffffffffffff7f",
        0,
        0..11,
        "varint longer than 10 bytes",
    ),
    ("f8ffffff7f01", 0, 0..6, "field number above 2^29-1"),
];

#[test]
fn malformed_input_gives_an_error_node_with_the_rest_raw() {
    for (hex_in, index, range, reason) in MALFORMED {
        let bytes = hex::decode(hex_in).unwrap();
        for tree in [decode_message(&bytes, None), {
            let pool = test_pool();
            decode_message(&bytes, Some(&all_desc(&pool)))
        }] {
            assert!(tree.has_error(), "{hex_in}");
            let bad = &tree.children[*index];
            assert_eq!(bad.name, "invalid", "{hex_in}");
            assert_eq!(bad.range, *range, "{hex_in}");
            assert_eq!(bad.error(), Some(*reason), "{hex_in}");
            assert_eq!(bad.value, Value::Bytes(bytes[range.clone()].into()));
            // The raw rest is written back as it was.
            assert_eq!(encode_message(&tree).unwrap(), bytes, "{hex_in}");
        }
    }
}

#[test]
fn groups_are_decoded_and_re_encoded() {
    // field 1 start group, field 2 = 5, end group 1, then field 3 = 1.
    let bytes = hex::decode("0b10050c1801").unwrap();
    let tree = decode_message(&bytes, None);
    assert!(!tree.has_error());
    let g = &tree.children[0];
    assert_eq!(g.kind(), Some("group"));
    assert_eq!(g.range, 0..4);
    assert_eq!(summary(&g.children[0]).1, Value::UInt(5));
    assert_eq!(g.children[0].range, 1..3);
    assert_eq!(tree.children[1].range, 4..6);
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

fn nest(levels: usize) -> Vec<u8> {
    let mut inner = vec![0x08, 0x01];
    for _ in 0..levels {
        let mut outer = vec![0x0a];
        let mut len = inner.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    inner
}

#[test]
fn hostile_nesting_is_bounded() {
    let bytes = nest(500);
    let tree = decode_message(&bytes, None);
    let depth = tree.walk().iter().map(|(d, _)| *d).max().unwrap();
    assert!(depth <= MAX_DEPTH + 2, "depth {depth}");
    assert_eq!(encode_message(&tree).unwrap(), bytes);
    // Deep groups: an error, not a stack overflow.
    let groups = vec![0x0b; 100_000];
    let tree = decode_message(&groups, None);
    assert!(tree.has_error());
    assert_eq!(encode_message(&tree).unwrap(), groups);
}

#[test]
fn schema_names_and_types_every_field() {
    let pool = test_pool();
    let desc = all_desc(&pool);
    let inner_desc = pool.get_message_by_name("test.v1.Inner").unwrap();
    let mut inner = DynamicMessage::new(inner_desc.clone());
    inner.set_field_by_name("name", PValue::String("x".into()));
    inner.set_field_by_name(
        "deltas",
        PValue::List(vec![PValue::I64(-1), PValue::I64(2)]),
    );
    let mut m = DynamicMessage::new(desc.clone());
    m.set_field_by_name("d", PValue::F64(1.5));
    m.set_field_by_name("f", PValue::F32(-2.25));
    m.set_field_by_name("i32", PValue::I32(-7));
    m.set_field_by_name("s32", PValue::I32(-3));
    m.set_field_by_name("sfx32", PValue::I32(-9));
    m.set_field_by_name("b", PValue::Bool(true));
    m.set_field_by_name("color", PValue::EnumNumber(2));
    m.set_field_by_name("inner", PValue::Message(inner.clone()));
    m.set_field_by_name(
        "packed_i32",
        PValue::List(vec![PValue::I32(1), PValue::I32(300)]),
    );
    let mut counts = HashMap::new();
    counts.insert(MapKey::String("k".into()), PValue::I64(5));
    m.set_field_by_name("counts", PValue::Map(counts));
    let mut bytes = m.encode_to_vec();
    // A repeated scalar written unpacked (one tag per element) is also valid.
    bytes.extend_from_slice(&[0xd8, 0x01, 0x04, 0xd8, 0x01, 0x05]);
    let tree = decode_message(&bytes, Some(&desc));
    assert!(!tree.has_error());
    assert_eq!(tree.display(), Some("test.v1.All"));
    let get = |name: &str| tree.child(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(get("d").value, Value::Float(1.5));
    assert_eq!(get("d").kind(), Some("double"));
    assert_eq!(get("d").range, 0..9);
    assert_eq!(get("f").value, Value::Float(-2.25));
    assert_eq!(get("f").range, 9..14);
    assert_eq!(get("i32").value, Value::Int(-7));
    assert_eq!(get("i32").range, 14..25, "negative int32 takes 10 bytes");
    assert_eq!(get("s32").value, Value::Int(-3));
    assert_eq!(get("s32").range, 25..27);
    assert_eq!(get("sfx32").value, Value::Int(-9));
    assert_eq!(get("b").value, Value::Bool(true));
    assert_eq!(get("color").value, Value::Int(2));
    assert_eq!(get("color").display(), Some("GREEN"));
    assert_eq!(get("color").kind(), Some("enum"));
    let inner_node = get("inner");
    assert_eq!(inner_node.kind(), Some("message"));
    assert_eq!(inner_node.child("name").unwrap().value, text("x"));
    let deltas = inner_node.child("deltas").unwrap();
    assert_eq!(deltas.kind(), Some("packed sint64"));
    assert_eq!(
        deltas
            .children
            .iter()
            .map(|c| c.value.clone())
            .collect::<Vec<_>>(),
        vec![Value::Int(-1), Value::Int(2)]
    );
    let packed = get("packed_i32");
    assert_eq!(packed.kind(), Some("packed int32"));
    let p0 = packed.range.start;
    assert_eq!(packed.children[0].range, p0 + 3..p0 + 4);
    assert_eq!(packed.children[1].range, p0 + 4..p0 + 6);
    assert_eq!(packed.children[1].value, Value::Int(300));
    let entry = get("counts");
    assert_eq!(entry.child("key").unwrap().value, text("k"));
    assert_eq!(entry.child("value").unwrap().value, Value::Int(5));
    let unpacked: Vec<_> = tree
        .children
        .iter()
        .filter(|c| c.name == "unpacked")
        .map(|c| (c.value.clone(), c.kind().map(str::to_owned)))
        .collect();
    assert_eq!(
        unpacked,
        vec![
            (Value::Int(4), Some("int32".into())),
            (Value::Int(5), Some("int32".into()))
        ]
    );
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

#[test]
fn schema_mismatches_and_unknown_fields_fall_back_to_schemaless() {
    let pool = test_pool();
    let desc = all_desc(&pool);
    // field 14 (string) sent as a varint; field 99 unknown; field 14 with invalid UTF-8.
    let bytes = hex::decode("70079a06036162637202ff00").unwrap();
    let tree = decode_message(&bytes, Some(&desc));
    assert_eq!(summary(&tree.children[0]).0, "14");
    assert_eq!(tree.children[0].kind(), Some("varint"));
    assert_eq!(summary(&tree.children[1]).0, "99");
    assert_eq!(tree.children[1].value, text("abc"));
    assert_eq!(tree.children[2].name, "s");
    assert_eq!(
        tree.children[2].value,
        Value::Bytes(vec![0xff, 0x00].into())
    );
    assert!(tree.children[2].error().is_some());
    assert_eq!(encode_message(&tree).unwrap(), bytes);
}

#[test]
fn editing_a_string_fixes_the_lengths() {
    let bytes = discovery_payload();
    let mut tree = decode_message(&bytes, None);
    let long = "A much longer client name than before, past 127 bytes ".repeat(3);
    tree.children[1].children[0].value = Value::Text(long.clone().into());
    tree.children[2].value = Value::UInt(300);
    let out = encode_message(&tree).unwrap();
    let again = decode_message(&out, None);
    assert!(!again.has_error());
    assert_eq!(
        again.children[1].children[0].value,
        Value::Text(long.clone().into())
    );
    assert_eq!(again.children[1].children[1].value, text("sc_client"));
    assert_eq!(again.children[2].value, Value::UInt(300));
    assert_eq!(again.range.end, out.len());
    // With the schema too: prost-reflect reads the edited bytes.
    let pool = load_schemas(&[repo_proto()]).unwrap();
    let desc = pool
        .get_message_by_name("sc.diffusion.v1.ServiceDiscoveryRequest")
        .unwrap();
    let m = DynamicMessage::decode(desc, out.as_slice()).unwrap();
    let client = m.get_field_by_name("client").unwrap();
    let name = client
        .as_message()
        .unwrap()
        .get_field_by_name("name")
        .unwrap();
    assert_eq!(name.as_str(), Some(long.as_str()));
}

#[test]
fn encode_reports_bad_edits() {
    let mut tree = decode_message(&discovery_payload(), None);
    tree.children[2].value = Value::Text("not a number".into());
    assert!(encode_message(&tree).is_err());
    let mut tree = decode_message(&discovery_payload(), None);
    tree.children[0].tag = None;
    assert!(encode_message(&tree).is_err());
    let mut tree = decode_message(&discovery_payload(), None);
    tree.children[0].set_kind(Some("nonsense".into()));
    assert!(encode_message(&tree).is_err());
}

#[test]
fn top_level_string_finds_the_message_name() {
    assert_eq!(
        top_level_string(&discovery_payload(), 1),
        Some("diff.service.online")
    );
    assert_eq!(top_level_string(&discovery_payload(), 7), None);
    assert_eq!(top_level_string(&[0x0a, 0x05, 0x61], 1), None);
}

fn repo_proto() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto")
}

#[test]
fn repo_schemas_load() {
    let pool = load_schemas(&[repo_proto()]).unwrap();
    for t in [
        "ServiceDiscoveryRequest",
        "ServiceList",
        "LobbyDestinationsRequest",
        "LobbyDestinations",
        "RegionSetup",
        "RegionConfirmation",
        "Heartbeat",
        "HeartbeatAck",
        "DiffusionMessage",
    ] {
        assert!(
            pool.get_message_by_name(&format!("sc.diffusion.v1.{t}"))
                .is_some(),
            "{t}"
        );
    }
}

#[test]
fn schema_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\n\nmessage Broken {\n  strin name = 1;\n}\n",
    )
    .unwrap();
    let err = load_schemas(&[dir.path().to_owned()]).unwrap_err();
    match &err {
        SchemaError::Compile { file, message } => {
            assert_eq!(file.as_deref(), Some("bad.proto"));
            assert!(message.starts_with("bad.proto:4:"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A syntax error.
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\nmessage {\n",
    )
    .unwrap();
    let err = load_schemas(&[dir.path().to_owned()])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("bad.proto:2:"), "{err}");
}

#[test]
fn missing_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        load_schemas(std::slice::from_ref(&missing)),
        Err(SchemaError::MissingDir(_))
    ));
    // The default proto/ is only used when it exists.
    assert!(schema_dirs(dir.path(), &[]).is_empty());
    std::fs::create_dir(dir.path().join("proto")).unwrap();
    assert_eq!(schema_dirs(dir.path(), &[]), vec![dir.path().join("proto")]);
    // An empty directory gives an empty pool.
    let pool = load_schemas(&schema_dirs(dir.path(), &[])).unwrap();
    assert_eq!(pool.all_messages().count(), 0);
}

fn one_connection(chunks: &[Vec<u8>]) -> StoreData {
    let mut data = StoreData::new();
    let c = data.add_connection(Connection::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Transport::Tcp,
        Timestamp(0),
    ));
    for (i, chunk) in chunks.iter().enumerate() {
        let dir = if i % 3 == 2 {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        data.append(NewPacket::new(c, dir, Timestamp(i as i64), chunk.clone()))
            .unwrap();
    }
    data
}

#[test]
fn protobuf_dissector_takes_each_packet_as_a_message() {
    let data = one_connection(&[discovery_payload(), vec![0x08, 0x96, 0x01]]);
    let out = decode_connection(&Protobuf, &Context::default(), data.packets());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].message.label, "protobuf");
    assert_eq!(out[0].message.tree.children.len(), 3);
    assert_eq!(out[1].message.tree.children[0].value, Value::UInt(150));
    assert_eq!(
        Protobuf.encode(&out[0].message.tree).unwrap(),
        discovery_payload()
    );
}

// ---- property tests ----

#[derive(Debug, Clone)]
struct InnerVals {
    name: String,
    id: i32,
    deltas: Vec<i64>,
}

fn arb_inner() -> impl Strategy<Value = InnerVals> {
    (
        ".{0,20}",
        any::<i32>(),
        prop::collection::vec(any::<i64>(), 0..5),
    )
        .prop_map(|(name, id, deltas)| InnerVals { name, id, deltas })
}

type Scalars = (
    (f64, f32, i32, i64, u32, u64),
    (i32, i64, u32, u64, i32, i64),
    (bool, String, Vec<u8>, i32),
);

fn arb_scalars() -> impl Strategy<Value = Scalars> {
    (
        (
            any::<f64>(),
            any::<f32>(),
            any::<i32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u64>(),
        ),
        (
            any::<i32>(),
            any::<i64>(),
            any::<u32>(),
            any::<u64>(),
            any::<i32>(),
            any::<i64>(),
        ),
        (
            any::<bool>(),
            "\\PC{0,40}",
            prop::collection::vec(any::<u8>(), 0..40),
            -2i32..5,
        ),
    )
}

type Repeated = (
    Option<InnerVals>,
    Vec<i32>,
    Vec<u32>,
    Vec<f64>,
    Vec<String>,
    Vec<InnerVals>,
    Vec<(String, i64)>,
    Vec<(i32, InnerVals)>,
    Vec<bool>,
    Vec<i32>,
);

fn arb_repeated() -> impl Strategy<Value = Repeated> {
    use prop::collection::vec;
    (
        prop::option::of(arb_inner()),
        vec(any::<i32>(), 0..6),
        vec(any::<u32>(), 0..4),
        vec(any::<f64>(), 0..4),
        vec("[a-z ]{0,12}", 0..4),
        vec(arb_inner(), 0..3),
        vec(("[a-z]{0,6}", any::<i64>()), 0..4),
        vec((any::<i32>(), arb_inner()), 0..3),
        vec(any::<bool>(), 0..4),
        vec(any::<i32>(), 0..4),
    )
}

fn inner_msg(desc: &MessageDescriptor, v: &InnerVals) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    m.set_field_by_name("name", PValue::String(v.name.clone()));
    m.set_field_by_name("id", PValue::I32(v.id));
    m.set_field_by_name(
        "deltas",
        PValue::List(v.deltas.iter().map(|d| PValue::I64(*d)).collect()),
    );
    m
}

fn build(pool: &DescriptorPool, s: &Scalars, r: &Repeated) -> Vec<u8> {
    let desc = all_desc(pool);
    let inner = pool.get_message_by_name("test.v1.Inner").unwrap();
    let mut m = DynamicMessage::new(desc);
    let ((d, f, i32v, i64v, u32v, u64v), (s32, s64, fx32, fx64, sfx32, sfx64), (b, st, by, color)) =
        s.clone();
    let set = |m: &mut DynamicMessage, n: &str, v: PValue| m.set_field_by_name(n, v);
    set(&mut m, "d", PValue::F64(d));
    set(&mut m, "f", PValue::F32(f));
    set(&mut m, "i32", PValue::I32(i32v));
    set(&mut m, "i64", PValue::I64(i64v));
    set(&mut m, "u32", PValue::U32(u32v));
    set(&mut m, "u64", PValue::U64(u64v));
    set(&mut m, "s32", PValue::I32(s32));
    set(&mut m, "s64", PValue::I64(s64));
    set(&mut m, "fx32", PValue::U32(fx32));
    set(&mut m, "fx64", PValue::U64(fx64));
    set(&mut m, "sfx32", PValue::I32(sfx32));
    set(&mut m, "sfx64", PValue::I64(sfx64));
    set(&mut m, "b", PValue::Bool(b));
    set(&mut m, "s", PValue::String(st));
    set(&mut m, "by", PValue::Bytes(by.into()));
    set(&mut m, "color", PValue::EnumNumber(color));
    let (opt_inner, pi32, pfx32, pd, names, inners, counts, by_id, flags, unpacked) = r.clone();
    if let Some(v) = &opt_inner {
        set(&mut m, "inner", PValue::Message(inner_msg(&inner, v)));
    }
    set(
        &mut m,
        "packed_i32",
        PValue::List(pi32.into_iter().map(PValue::I32).collect()),
    );
    set(
        &mut m,
        "packed_fx32",
        PValue::List(pfx32.into_iter().map(PValue::U32).collect()),
    );
    set(
        &mut m,
        "packed_d",
        PValue::List(pd.into_iter().map(PValue::F64).collect()),
    );
    set(
        &mut m,
        "names",
        PValue::List(names.into_iter().map(PValue::String).collect()),
    );
    set(
        &mut m,
        "inners",
        PValue::List(
            inners
                .iter()
                .map(|v| PValue::Message(inner_msg(&inner, v)))
                .collect(),
        ),
    );
    set(
        &mut m,
        "counts",
        PValue::Map(
            counts
                .into_iter()
                .map(|(k, v)| (MapKey::String(k), PValue::I64(v)))
                .collect(),
        ),
    );
    set(
        &mut m,
        "by_id",
        PValue::Map(
            by_id
                .iter()
                .map(|(k, v)| (MapKey::I32(*k), PValue::Message(inner_msg(&inner, v))))
                .collect(),
        ),
    );
    set(
        &mut m,
        "colors",
        PValue::List(vec![PValue::EnumNumber(1), PValue::EnumNumber(7)]),
    );
    set(
        &mut m,
        "flags",
        PValue::List(flags.into_iter().map(PValue::Bool).collect()),
    );
    set(
        &mut m,
        "unpacked",
        PValue::List(unpacked.into_iter().map(PValue::I32).collect()),
    );
    m.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_with_and_without_schema(s in arb_scalars(), r in arb_repeated()) {
        let pool = test_pool();
        let bytes = build(&pool, &s, &r);
        let desc = all_desc(&pool);
        let typed = decode_message(&bytes, Some(&desc));
        prop_assert!(!typed.has_error());
        prop_assert_eq!(encode_message(&typed).unwrap(), bytes.clone());
        let raw = decode_message(&bytes, None);
        prop_assert!(!raw.has_error());
        prop_assert_eq!(encode_message(&raw).unwrap(), bytes.clone());
        // Every field node lies within its parent and the message.
        for tree in [&typed, &raw] {
            check_ranges(tree, 0..bytes.len());
        }
    }

    #[test]
    fn edited_values_come_back(s in arb_scalars(), r in arb_repeated(), new in "\\PC{0,300}", n in any::<i64>()) {
        let pool = test_pool();
        let desc = all_desc(&pool);
        let bytes = build(&pool, &s, &r);
        let mut tree = decode_message(&bytes, Some(&desc));
        // Set (or add) the string and int64 fields.
        tree.children.retain(|c| c.name != "s" && c.name != "i64");
        tree.children.push(Node::new("s", 0..0, Value::Text(new.clone().into())).with_tag(14).with_kind("string"));
        tree.children.push(Node::new("i64", 0..0, Value::Int(n)).with_tag(4).with_kind("int64"));
        let out = encode_message(&tree).unwrap();
        let m = DynamicMessage::decode(desc.clone(), out.as_slice()).unwrap();
        let s_field = m.get_field_by_name("s").unwrap();
        prop_assert_eq!(s_field.as_str(), Some(new.as_str()));
        prop_assert_eq!(m.get_field_by_name("i64").unwrap().as_i64(), Some(n));
        let again = decode_message(&out, Some(&desc));
        prop_assert!(!again.has_error());
        prop_assert_eq!(encode_message(&again).unwrap(), out);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let pool = test_pool();
        let desc = all_desc(&pool);
        for tree in [decode_message(&bytes, None), decode_message(&bytes, Some(&desc))] {
            check_ranges(&tree, 0..bytes.len());
            let _ = encode_message(&tree);
        }
    }

    #[test]
    fn arbitrary_chunks_through_the_stream_driver(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let data = one_connection(&chunks);
        let out = decode_connection(&Protobuf, &Context::default(), data.packets());
        let total: usize = out.iter().map(|d| d.bytes.len()).sum();
        prop_assert_eq!(total, chunks.iter().map(Vec::len).sum::<usize>());
        for d in &out {
            check_ranges(&d.message.tree, 0..d.bytes.len());
        }
    }
}

/// Every node on the wire lies inside its parent; the root covers the message.
fn check_ranges(tree: &Node, outer: std::ops::Range<usize>) {
    assert_eq!(tree.range, outer);
    fn go(n: &Node) {
        for c in &n.children {
            assert!(
                c.range.start >= n.range.start && c.range.end <= n.range.end,
                "{} {:?} outside {} {:?}",
                c.name,
                c.range,
                n.name,
                n.range
            );
            go(c);
        }
    }
    go(tree);
}
