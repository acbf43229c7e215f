//! Protobuf decoding with byte ranges: a realistic nested message of a few KB (strings,
//! varints, nested messages, packed and map fields), decoded with its schema and without.
//! Target: at least 200 MB/s on one core.

/// The program's allocator (see `src/main.rs`), so figures are the program's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use gamewire::dissect::protobuf::{decode_message, encode_message, load_schemas};
use prost_reflect::prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value};

const PROTO: &str = r#"
syntax = "proto3";
package bench.v1;

message Stats {
  uint32 level = 1;
  double xp = 2;
  repeated uint32 inventory = 3;
  map<string, int64> counters = 4;
}

message Player {
  string name = 1;
  uint64 id = 2;
  repeated sint32 position = 3;
  repeated string tags = 4;
  Stats stats = 5;
  bool online = 6;
}

message World {
  string name = 1;
  uint64 tick = 2;
  repeated Player players = 3;
  bytes checksum = 4;
  repeated fixed32 seeds = 5;
}
"#;

fn pool() -> DescriptorPool {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("bench.proto"), PROTO).expect("write proto");
    load_schemas(&[dir.path().to_owned()]).expect("bench schema")
}

fn world(pool: &DescriptorPool) -> Vec<u8> {
    let desc = |n: &str| {
        pool.get_message_by_name(&format!("bench.v1.{n}"))
            .expect("bench type")
    };
    let mut world = DynamicMessage::new(desc("World"));
    world.set_field_by_name("name", Value::String("Stanton".into()));
    world.set_field_by_name("tick", Value::U64(1_754_607_232_123));
    let mut players = Vec::new();
    for i in 0..16u32 {
        let mut stats = DynamicMessage::new(desc("Stats"));
        stats.set_field_by_name("level", Value::U32(i * 3 + 1));
        stats.set_field_by_name("xp", Value::F64(f64::from(i) * 1234.5));
        stats.set_field_by_name(
            "inventory",
            Value::List((0..20).map(|k| Value::U32(k * 37 + i)).collect()),
        );
        let counters: HashMap<MapKey, Value> = ["kills", "deaths", "missions"]
            .iter()
            .enumerate()
            .map(|(k, n)| (MapKey::String((*n).into()), Value::I64(k as i64 * 100 + 7)))
            .collect();
        stats.set_field_by_name("counters", Value::Map(counters));
        let mut p = DynamicMessage::new(desc("Player"));
        p.set_field_by_name("name", Value::String(format!("Citizen{i:04}_TestPilot")));
        p.set_field_by_name("id", Value::U64(2_001_462_951 + u64::from(i)));
        p.set_field_by_name(
            "position",
            Value::List(vec![
                Value::I32(-1200 + i as i32),
                Value::I32(34_000),
                Value::I32(-7),
            ]),
        );
        p.set_field_by_name(
            "tags",
            Value::List(vec![
                Value::String("backer".into()),
                Value::String("citizen".into()),
            ]),
        );
        p.set_field_by_name("stats", Value::Message(stats));
        p.set_field_by_name("online", Value::Bool(i % 2 == 0));
        players.push(Value::Message(p));
    }
    world.set_field_by_name("players", Value::List(players));
    world.set_field_by_name("checksum", Value::Bytes(vec![0xa5; 32].into()));
    world.set_field_by_name(
        "seeds",
        Value::List((0..16).map(|k| Value::U32(k * 2_654_435_761)).collect()),
    );
    world.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let pool = pool();
    let bytes = world(&pool);
    let desc = pool
        .get_message_by_name("bench.v1.World")
        .expect("World type");
    let mut group = c.benchmark_group("protobuf");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function(format!("decode with schema ({} B)", bytes.len()), |b| {
        b.iter(|| decode_message(black_box(&bytes), Some(&desc)))
    });
    group.bench_function(format!("decode schemaless ({} B)", bytes.len()), |b| {
        b.iter(|| decode_message(black_box(&bytes), None))
    });
    let tree = decode_message(&bytes, Some(&desc));
    group.bench_function(format!("encode ({} B)", bytes.len()), |b| {
        b.iter(|| encode_message(black_box(&tree)))
    });
    group.finish();
}

/// CPU time this thread has used, from /proc (clock ticks of 10 ms); None off Linux.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Throughput per second of CPU time (not wall time), so the figure stays meaningful on a
/// machine shared with other work.
fn cpu_time_throughput() {
    let pool = pool();
    let bytes = world(&pool);
    let desc = pool
        .get_message_by_name("bench.v1.World")
        .expect("World type");
    let nodes = decode_message(&bytes, Some(&desc)).walk().len();
    println!(
        "message: {} bytes, {} nodes with schema, {} without",
        bytes.len(),
        nodes,
        decode_message(&bytes, None).walk().len()
    );
    for (name, with_schema) in [("with schema", true), ("schemaless", false)] {
        let Some(start) = thread_cpu_seconds() else {
            return;
        };
        let wall = std::time::Instant::now();
        let mut runs = 0u64;
        while wall.elapsed().as_secs_f64() < 3.0 {
            for _ in 0..100 {
                black_box(decode_message(
                    black_box(&bytes),
                    with_schema.then_some(&desc),
                ));
            }
            runs += 100;
        }
        let cpu = thread_cpu_seconds().unwrap_or(start) - start;
        if cpu > 0.0 {
            let mb = (runs as f64 * bytes.len() as f64) / 1e6;
            println!(
                "decode {name}: {:.0} MB per CPU-second ({:.2} µs per message, {:.1} s CPU of {:.1} s wall)",
                mb / cpu,
                cpu * 1e6 / runs as f64,
                cpu,
                wall.elapsed().as_secs_f64()
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    cpu_time_throughput();
    Criterion::default().configure_from_args().final_summary();
}
