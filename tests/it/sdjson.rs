//! sd.json: exact field-by-field round trips and the seed's record shape.

use gamewire::capture::sdjson;
use proptest::prelude::*;
use serde_json::Value;

fn round_trip(text: &str) -> (Vec<Value>, Vec<Value>) {
    let imported = sdjson::import_slice(text.as_bytes(), false).unwrap();
    let mut out = Vec::new();
    sdjson::export(&imported.data, &mut out, |_| true).unwrap();
    let before: Vec<Value> = serde_json::from_str(text).unwrap();
    let after: Vec<Value> = serde_json::from_slice(&out).unwrap();
    (before, after)
}

const FIELDS: [&str; 7] = [
    "timestamp",
    "direction",
    "size",
    "type",
    "hex_data",
    "ascii_data",
    "connection",
];

#[test]
fn export_of_an_import_gives_back_the_same_records() {
    let text = r#"[
  {"timestamp": "2025-08-07T22:53:52.581782", "direction": "client->server", "size": 12,
   "type": "Service Discovery", "hex_data": "04000000efbeadde0a02ff00", "ascii_data": "............",
   "connection": "127.0.0.1:50639"},
  {"timestamp": "2025-08-07T22:53:52.000001", "direction": "server->client", "size": 3,
   "type": "Odd \"label\" \\ with escapes ✓", "hex_data": "414243", "ascii_data": "ABC",
   "connection": "[::1]:50640"},
  {"timestamp": "2025-08-07T22:53:51.999999", "direction": "client->server", "size": 0,
   "type": "", "hex_data": "", "ascii_data": "", "connection": "127.0.0.1:50639"}
]"#;
    let (before, after) = round_trip(text);
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        for f in FIELDS {
            assert_eq!(b[f], a[f], "record {i} field {f}");
        }
    }
}

#[test]
fn missing_ascii_data_is_filled_in_on_export() {
    let text = r#"[{"timestamp": "2025-08-07T22:54:02.579022", "direction": "client->server",
      "size": 6, "type": "Heartbeat", "hex_data": "3a000000efbe", "connection": "127.0.0.1:50639"}]"#;
    let (before, after) = round_trip(text);
    for f in FIELDS.iter().filter(|f| **f != "ascii_data") {
        assert_eq!(before[0][*f], after[0][*f]);
    }
    assert_eq!(after[0]["ascii_data"], ":.....");
}

#[test]
fn every_field_error_names_record_and_field() {
    let good = r#"{"timestamp":"2025-08-07T22:54:02.579022","direction":"client->server","size":1,"type":"a","hex_data":"00","connection":"127.0.0.1:1"}"#;
    let cases = [
        (
            "timestamp",
            good.replace("2025-08-07T22:54:02.579022", "yesterday"),
        ),
        (
            "timestamp",
            good.replace("\"2025-08-07T22:54:02.579022\"", "17"),
        ),
        ("direction", good.replace("client->server", "up")),
        ("size", good.replace("\"size\":1", "\"size\":\"1\"")),
        ("size", good.replace("\"size\":1", "\"size\":-1")),
        ("size", good.replace("\"size\":1", "\"size\":2")),
        ("type", good.replace("\"type\":\"a\",", "")),
        ("hex_data", good.replace("\"00\"", "\"0\"")),
        ("hex_data", good.replace("\"00\"", "\"0g\"")),
        ("connection", good.replace("127.0.0.1:1", "localhost")),
        ("ascii_data", good.replace("}", ",\"ascii_data\":5}")),
        ("(record)", "42".to_string()),
    ];
    for (field, bad) in cases {
        let text = format!("[{good},{good},{bad}]");
        match sdjson::import_slice(text.as_bytes(), false) {
            Err(sdjson::ImportError::BadRecord(b)) => {
                assert_eq!((b.index, b.field), (2, field), "{bad}");
            }
            other => panic!("{bad}: expected a bad record, got {:?}", other.map(|_| ())),
        }
        let kept = sdjson::import_slice(text.as_bytes(), true).unwrap();
        assert_eq!(kept.data.packet_count(), 2);
        assert_eq!(kept.bad.len(), 1);
    }
}

#[test]
fn not_an_array_is_a_syntax_error_with_an_offset() {
    for text in ["", "{}", "[1,", "nul", "[{\"timestamp\": }]"] {
        match sdjson::import_slice(text.as_bytes(), false) {
            Err(sdjson::ImportError::Syntax(s)) => assert!(s.offset as usize <= text.len()),
            Err(sdjson::ImportError::BadRecord(b)) => assert_eq!(b.index, 0, "{text}"),
            Ok(_) => panic!("{text:?} imported"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_files_round_trip(records in prop::collection::vec(
        (0i64..4_000_000_000, any::<bool>(), prop::collection::vec(any::<u8>(), 0..64), "[ -~]{0,16}", 1u16..65535),
        0..30,
    )) {
        let recs: Vec<Value> = records.iter().map(|(micros, c2s, bytes, label, port)| {
            let ts = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000 + micros).unwrap()
                .with_timezone(&chrono::Local).format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
            serde_json::json!({
                "timestamp": ts,
                "direction": if *c2s { "client->server" } else { "server->client" },
                "size": bytes.len(),
                "type": label,
                "hex_data": hex::encode(bytes),
                "ascii_data": gamewire::capture::ascii_preview(bytes),
                "connection": format!("127.0.0.1:{port}"),
            })
        }).collect();
        let text = serde_json::to_string(&recs).unwrap();
        let (before, after) = round_trip(&text);
        prop_assert_eq!(before, after);
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = sdjson::import_slice(&bytes, false);
        let _ = sdjson::import_slice(&bytes, true);
    }
}
