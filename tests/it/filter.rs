//! The filter language and text search over real sample captures, decoded by the real
//! dissectors; and `gamewire inspect --filter` as a process.

use crate::common;

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use gamewire::capture::{Direction, PacketId, StoreData};
use gamewire::dissect::filter::{
    FieldIndex, Filter, FilterError, PacketView, filter_ids, filter_ids_indexed, filter_packets,
    filter_packets_indexed, search_packets,
};
use gamewire::dissect::protobuf::schema;
use gamewire::dissect::session::{CaptureDecode, decode_capture};
use gamewire::dissect::{Context, Registry};
use proptest::prelude::*;

struct Decoded {
    data: StoreData,
    decode: CaptureDecode,
}

fn index() -> &'static FieldIndex<'static> {
    static CELL: OnceLock<FieldIndex<'static>> = OnceLock::new();
    CELL.get_or_init(|| {
        let s = samples();
        FieldIndex::build(&s.data, &s.decode)
    })
}

fn samples() -> &'static Decoded {
    static CELL: OnceLock<Decoded> = OnceLock::new();
    CELL.get_or_init(|| {
        let data = gamewire::clients::samples::all_samples();
        // The repository's schemas, as `inspect` loads them: Star Citizen's field names.
        let dirs = schema::schema_dirs(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &[]);
        let ctx = Context {
            schemas: Some(schema::load_schemas(&dirs).unwrap()),
            ..Context::default()
        };
        let decode = decode_capture(&Registry::standard(), &ctx, &data, None);
        Decoded { data, decode }
    })
}

/// Ids matched by evaluating `filter` packet by packet (no threads).
fn matching(filter: &Filter) -> Vec<u64> {
    let s = samples();
    s.data
        .packets()
        .filter(|p| {
            let view = PacketView::of(&s.data, Some(&s.decode), p.id).unwrap();
            filter.matches(&view)
        })
        .map(|p| p.id.0)
        .collect()
}

fn ids(expr: &str) -> Vec<u64> {
    let f = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}\n{}", e.caret(expr)));
    let seq = matching(&f);
    let s = samples();
    let par = filter_packets(
        &s.data,
        Some(&s.decode),
        &f,
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        par.iter().map(|p| p.0).collect::<Vec<_>>(),
        seq,
        "{expr}: threaded and sequential evaluation differ"
    );
    let indexed =
        filter_packets_indexed(&s.data, index(), &f, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(
        indexed.iter().map(|p| p.0).collect::<Vec<_>>(),
        seq,
        "{expr}: the field index and the trees disagree"
    );
    seq
}

/// Packets whose first message's tree has `path` with text `want`, found with the tree API.
fn with_text(path: &[&str], want: &str) -> Vec<u64> {
    let s = samples();
    s.data
        .packets()
        .filter(|p| {
            s.decode
                .of_packet(p.id)
                .iter()
                .any(|m| m.message.tree.find(path).and_then(|n| n.value.as_text()) == Some(want))
        })
        .map(|p| p.id.0)
        .collect()
}

#[test]
fn the_issue_examples_select_what_they_say() {
    let s = samples();
    let nulogin = ids(r#"fesl.txn == "NuLogin""#);
    assert_eq!(nulogin, with_text(&["payload", "TXN"], "NuLogin"));
    // The wrong password, its error, the right one and the session.
    assert_eq!(nulogin.len(), 4, "{nulogin:?}");

    let port = ids("conn.port == 18800");
    let expected: Vec<u64> = s
        .data
        .packets()
        .filter(|p| {
            let c = s.data.connection(p.connection).unwrap();
            c.client.port() == 18800 || c.server.port() == 18800
        })
        .map(|p| p.id.0)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(port, expected);

    let c2s = ids("dir == c2s");
    let expected: Vec<u64> = s
        .data
        .packets()
        .filter(|p| p.direction == Direction::ClientToServer)
        .map(|p| p.id.0)
        .collect();
    assert_eq!(c2s, expected);
    assert_eq!(ids("dir == s2c").len() + c2s.len(), s.data.packet_count());

    let lkey = ids(r#"bytes contains "lkey""#);
    let expected: Vec<u64> = s
        .data
        .packets()
        .filter(|p| p.data.windows(4).any(|w| w == b"lkey"))
        .map(|p| p.id.0)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(lkey, expected);

    let both = ids(r#"fesl.txn == "NuLogin" && dir == c2s && !(bytes contains "wrong")"#);
    assert_eq!(both.len(), 1, "{both:?}");
    let p = s.data.packet(PacketId(both[0])).unwrap();
    assert!(p.data.windows(8).any(|w| w == b"gamewire"));
}

#[test]
fn protocol_fields_by_natural_names() {
    // FESL values are text; numbers compare numerically with them.
    let err = ids("fesl.errorCode == 122");
    assert_eq!(err.len(), 1);
    assert_eq!(ids("fesl.errorCode > 100"), err);
    assert_eq!(ids("fesl.errorCode == \"122\""), err);
    assert_eq!(ids("error"), Vec::<u64>::new(), "samples decode cleanly");
    // Header aliases and displays.
    let client = ids("fesl.type == TAG_SINGLE_CLIENT");
    assert!(!client.is_empty());
    assert_eq!(
        client,
        ids("fesl && dir == c2s && fesl.type != TAG_SINGLE_SERVER")
    );
    assert_eq!(
        ids("fesl.command == acct").len(),
        ids("label matches \"^acct \"").len()
    );
    // A path below a list item, case-insensitive names.
    assert_eq!(
        ids("fesl.entitledGameFeatureWrappers.0.gameFeatureId == 6014"),
        ids("fesl.ENTITLEDGAMEFEATUREWRAPPERS.0.GAMEFEATUREID == \"6014\"")
    );
    assert_eq!(
        ids("fesl.entitledGameFeatureWrappers.0.gameFeatureId == 6014").len(),
        1
    );
    // GP: the command is the first key.
    let login = ids("gp.command == login");
    assert_eq!(login.len(), 1);
    assert_eq!(login, ids("gp.login"));
    assert_eq!(login, ids("gp.gamename == redalert3pc"));
    // Hytale: the packet name is the root's name; JWT claims are reachable.
    let connect = ids("hytale.packet == Connect");
    assert_eq!(connect.len(), 1);
    assert_eq!(connect, ids("hytale.username == Builder && hytale.id == 0"));
    assert_eq!(
        connect,
        ids("hytale.identityToken.claims.scope == \"hytale:client\"")
    );
    assert_eq!(connect, ids("jwt.claims.sub contains \"6f1d2c3b\""));
    // Star Citizen: repeated nodes match when any does.
    assert_eq!(ids("sc.services.port == 8001").len(), 1);
    assert_eq!(
        ids("sc.services.port == 8001"),
        ids("sc.services.name == diffusion_service")
    );
    assert!(ids("sc.message == \"diff.service.online\"").len() >= 2);
    assert_eq!(
        ids("sc.type == \"sc.diffusion.v1.ServiceList\"").len(),
        1,
        "the payload node displays the message type"
    );
    // Namespaces are per protocol; unknown paths match nothing.
    assert!(ids("gp.TXN").is_empty());
    assert!(ids("fesl.no.such.path").is_empty());
    assert_eq!(
        ids("fesl").len() + ids("gp").len() + ids("sc").len() + ids("hytale").len(),
        {
            let s = samples();
            s.data
                .packets()
                .filter(|p| !s.decode.of_packet(p.id).is_empty())
                .count()
        }
    );
}

#[test]
fn connection_and_packet_facts() {
    let s = samples();
    let tls = ids("conn.tls");
    assert!(!tls.is_empty());
    assert_eq!(
        tls,
        ids("conn.tls.sni contains hytale || conn.tls.sni contains robertsspaceindustries")
    );
    assert_eq!(ids("conn.transport == quic"), ids("conn.route == hytale"));
    assert_eq!(
        ids("conn.server.ip == 127.0.0.1").len(),
        s.data.packet_count()
    );
    assert_eq!(ids("conn.server == \"127.0.0.1:29900\""), ids("gp"));
    assert_eq!(ids("protocol == gp"), ids("gp"));
    let big = ids("size >= 200");
    assert!(
        big.iter()
            .all(|&i| s.data.packet(PacketId(i)).unwrap().data.len() >= 200)
    );
    assert_eq!(big.len() + ids("size < 200").len(), s.data.packet_count());
    assert_eq!(ids("id <= 2"), vec![0, 1, 2]);
    assert_eq!(ids("time < \"2025-08-07T22:53:52.004Z\""), vec![0, 1]);
    assert_eq!(
        ids("label == \"fsys MemCheck\""),
        vec![1, 2],
        "decoded labels count too"
    );
    assert!(ids("edited || injected || dropped || replayed || flags").is_empty());
    assert_eq!(ids("bytes == 5c:6c:63").len(), 0);
    assert_eq!(ids("bytes matches \"^\\\\\\\\lc\\\\\\\\1\"").len(), 1);
}

#[test]
fn filters_on_packet_facts_need_no_decode() {
    let s = samples();
    let f = Filter::parse("conn.port == 18800 && dir == c2s && bytes contains \"TXN\"").unwrap();
    assert!(!f.needs_decode());
    let without = filter_packets(&s.data, None, &f, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(
        without.iter().map(|p| p.0).collect::<Vec<_>>(),
        matching(&f)
    );
    assert!(Filter::parse("fesl.txn == NuLogin").unwrap().needs_decode());
    // Without a decode, a protocol field matches nothing and its negation everything.
    let f = Filter::parse("!fesl.txn").unwrap();
    let all = filter_packets(&s.data, None, &f, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(all.len(), s.data.packet_count());
}

#[test]
fn text_search_finds_decoded_values_ignoring_case() {
    let s = samples();
    let search = |needle: &str| -> Vec<u64> {
        let by_tree = search_packets(
            &s.data,
            Some(&s.decode),
            needle,
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap();
        let by_index = filter_packets_indexed(
            &s.data,
            index(),
            &Filter::search(needle),
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap();
        assert_eq!(
            by_tree, by_index,
            "{needle}: the field index and the trees disagree"
        );
        by_tree.into_iter().map(|p| p.0).collect()
    };
    assert_eq!(search("TESTPLAYER"), ids("fesl.displayName == testplayer"));
    // A JWT claim is not in the bytes as text (base64): only the decoded tree has it.
    let scope = search("HYTALE:CLIENT");
    assert_eq!(scope, ids("hytale.packet == Connect"));
    assert!(
        !s.data
            .packet(PacketId(scope[0]))
            .unwrap()
            .data
            .windows(13)
            .any(|w| w.eq_ignore_ascii_case(b"hytale:client"))
    );
    // Numbers are searched as the tree shows them; labels too.
    assert!(search("6014").len() == 1);
    assert_eq!(search("nugetpersonas"), ids("fesl.txn == NuGetPersonas"));
    assert_eq!(search("").len(), s.data.packet_count());
    assert!(search("no such text anywhere").is_empty());
    // Non-ASCII needles fold case by Unicode rules.
    assert!(search("ÜNÏCÖDÉ").is_empty());
}

#[test]
fn bad_expressions_say_where() {
    let cases: &[(&str, usize, &str)] = &[
        ("fesl.txn == ", 12, "expected a value"),
        ("conn.prot == 1", 0, "unknown connection field"),
        ("dir == c2s && foo", 14, "unknown field `foo`"),
        ("(dir == c2s", 11, "expected `)`"),
        ("dir == c2s)", 10, "without a matching"),
        ("size == \"big\"", 8, "compares with a number"),
        ("conn.port contains 1", 10, "is a number"),
        ("dir == up", 7, "c2s"),
        ("label = \"x\"", 6, "use `==`"),
        ("label == \"x\" & dir == c2s", 13, "use `&&`"),
        ("label == \"open", 9, "unterminated string"),
        ("label == \"\\q\"", 10, "unknown escape"),
        ("label matches \"(\"", 14, "bad regular expression"),
        ("conn.tls == maybe", 12, "true or false"),
        ("fesl.txn == \"x\" dir", 16, "expected `&&`"),
        ("é == 1 @", 7, "unexpected character"),
        ("!", 1, "expected a field"),
        ("label < \"x\"", 6, "use ==, !=, contains or matches"),
    ];
    for &(expr, position, text) in cases {
        let err: FilterError = Filter::parse(expr).expect_err(expr);
        assert_eq!(err.position, position, "{expr}: {err}");
        assert!(err.message.contains(text), "{expr}: {err}");
        assert!(err.to_string().contains(&format!("position {position}")));
    }
    let err = Filter::parse("dir == c2s && foo").unwrap_err();
    assert_eq!(
        err.caret("dir == c2s && foo"),
        "dir == c2s && foo\n              ^"
    );
    let deep = "(".repeat(10_000) + "dir == c2s" + &")".repeat(10_000);
    assert!(Filter::parse(&deep).unwrap_err().message.contains("nested"));
    let nots = "!".repeat(10_000) + "edited";
    assert!(Filter::parse(&nots).is_err());
    assert!(Filter::parse("  ").unwrap().is_match_all());
}

#[test]
fn threads_keep_order_and_cancel() {
    let data = gamewire::clients::samples::busy_capture(100_000, 7);
    let f = Filter::parse("conn.id == 3 || (dir == s2c && id > 90000)").unwrap();
    let mut last = 0;
    let got = filter_packets(&data, None, &f, &AtomicBool::new(false), |n| {
        assert!(n >= last);
        last = n;
    })
    .unwrap();
    assert_eq!(last, 100_000);
    let expected: Vec<PacketId> = data
        .packets()
        .filter(|p| {
            p.connection.0 == 3 || (p.direction == Direction::ServerToClient && p.id.0 > 90_000)
        })
        .map(|p| p.id)
        .collect();
    assert_eq!(got, expected);
    // Over a given order (reversed): the order is kept.
    let reversed: Vec<PacketId> = data.time_order().into_iter().rev().collect();
    let got = filter_ids(&data, None, &reversed, &f, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(got, expected.iter().rev().copied().collect::<Vec<_>>());
    // The indexed path over the same order, on a decoded capture big enough for threads.
    let s = samples();
    let order: Vec<PacketId> = s.data.time_order().into_iter().rev().collect();
    let f =
        Filter::parse("fesl.txn contains Nu || sc.services.port == 8001 || dir == s2c").unwrap();
    let by_index = filter_ids_indexed(
        &s.data,
        index(),
        &order,
        &f,
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap();
    let by_tree = filter_ids(
        &s.data,
        Some(&s.decode),
        &order,
        &f,
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap();
    assert_eq!(by_index, by_tree);
    let position = |id: &PacketId| order.iter().position(|o| o == id).unwrap();
    assert!(
        by_index
            .windows(2)
            .all(|w| position(&w[0]) < position(&w[1]))
    );
    assert!(!by_index.is_empty());
    let cancel = AtomicBool::new(true);
    assert!(filter_packets(&data, None, &f, &cancel, |_| {}).is_none());
}

const ATOMS: &[&str] = &[
    "dir == c2s",
    "conn.port == 18800",
    "fesl.txn == \"NuLogin\"",
    "bytes contains \"lkey\"",
    "size > 100",
    "label contains Nu",
    "gp.command == login",
    "hytale.packet == Connect",
    "sc.message contains diff",
    "conn.tls",
    "fesl.errorCode >= 100",
    "fesl",
    "id < 20",
    "sc.services.port != 8001",
    "label matches \"(?i)persona\"",
];

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(ATOMS).prop_map(str::to_string);
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn parse_never_panics(text in "\\PC{0,60}") {
        let _ = Filter::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_near_misses(
        parts in prop::collection::vec(
            prop::sample::select(&[
                "fesl", ".", "txn", "==", "\"", "\\", "(", ")", "!", "&&", "||", " ", "0x",
                "12", "de:ad", "contains", "matches", "conn", "port", "-", "'", "\\x4", "\\u{",
            ][..]),
            0..16,
        )
    ) {
        let text: String = parts.concat();
        if let Err(e) = Filter::parse(&text) {
            prop_assert!(e.position <= text.chars().count());
        }
    }

    #[test]
    fn not_is_the_complement(e in expr()) {
        let s = samples();
        let yes = ids(&e);
        let no = ids(&format!("!({e})"));
        let mut all: Vec<u64> = yes.iter().chain(&no).copied().collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..s.data.packet_count() as u64).collect::<Vec<_>>());
        prop_assert!(yes.iter().all(|i| !no.contains(i)));
    }

    #[test]
    fn de_morgan_holds(a in expr(), b in expr()) {
        prop_assert_eq!(ids(&format!("!(({a}) && ({b}))")), ids(&format!("!({a}) || !({b})")));
        prop_assert_eq!(ids(&format!("not (({a}) or ({b}))")), ids(&format!("!({a}) and !({b})")));
    }
}

#[test]
fn inspect_filter_prints_only_matching_packets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.gwcap");
    common::save(&gamewire::clients::samples::all_samples(), &path);
    let run = |args: &[&str]| {
        Command::new(common::gamewire_bin())
            .arg("inspect")
            .arg(&path)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let out = run(&[
        "--json",
        "--filter",
        "fesl.txn == \"NuLogin\" && dir == c2s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["label"] == "acct NuLogin"));
    assert!(lines.iter().all(|l| l["direction"] == "client->server"));
    assert!(
        lines.iter().all(|l| l.get("tree").is_none()),
        "--filter alone does not print trees"
    );

    let out = run(&["--filter", "conn.port == 29900"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("filter conn.port == 29900: 5 of 40 packets"),
        "{text}"
    );
    let packet_lines = text
        .lines()
        .filter(|l| l.contains("#1    →") || l.contains("#1    ←"))
        .count();
    assert_eq!(packet_lines, 5, "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.contains(" #0 ") && l.contains("fsys")),
        "{text}"
    );

    let out = run(&["--filter", "fesl.txn == && dir == c2s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("expected a value after `==`"), "{err}");
    assert!(err.contains("fesl.txn == && dir == c2s\n"), "{err}");
    assert!(err.contains(&format!("\n{}^", " ".repeat(12))), "{err}");
}
