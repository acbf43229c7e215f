//! One decoding session: the engine's live decoder, the window's labeller and tree pane, and
//! `inspect` choose the same dissector for every connection of every sample capture and give
//! the same labels and trees.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gamewire::capture::files::{OpenOptions, open};
use gamewire::capture::{ConnectionId, PacketId, StoreData};
use gamewire::dissect::session::{LiveDecode, decode_capture};
use gamewire::dissect::stream::Decoded;
use gamewire::dissect::{Context, Registry};
use gamewire::engine::config::Config;
use gamewire::engine::decoding::decode_context_for;
use gamewire::engine::live::LiveDecoder;
use gamewire::proxy::CaptureEvent;

/// A message as compared: where it starts, its label and its trees as JSON.
type Seen = (u64, usize, String, String);

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".gwcap") || name.ends_with(".pcapng") || name.ends_with(".sd.json")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the sample captures: {files:?}");
    files
}

fn context() -> Arc<Context> {
    Arc::new(decode_context_for(&Config::default(), None))
}

fn seen(d: &Decoded) -> Seen {
    let derived: Vec<_> = d.message.derived.iter().map(|b| b.tree.to_json()).collect();
    (
        d.packet.0,
        d.offset,
        d.message.label.clone(),
        format!("{} {:?}", d.message.tree.to_json(), derived),
    )
}

fn inspect_way(data: &StoreData, ctx: &Context) -> (Vec<Seen>, Vec<(ConnectionId, &'static str)>) {
    let decoded = decode_capture(&Registry::shared(), ctx, data, None);
    let mut out: Vec<Seen> = decoded.messages.values().flatten().map(seen).collect();
    out.sort();
    let mut protocols: Vec<_> = decoded.protocols.into_iter().collect();
    protocols.sort();
    (out, protocols)
}

fn packets(data: &StoreData) -> impl Iterator<Item = PacketId> + '_ {
    (0..data.packet_count() as u64).map(PacketId)
}

/// As the live log and the window's labeller decode: packet after packet, each connection
/// ended where it closed (or where the file ends).
fn live_way(
    data: &StoreData,
    ctx: &Arc<Context>,
) -> (Vec<Seen>, Vec<(ConnectionId, &'static str)>) {
    let mut live = LiveDecode::new(Registry::shared(), ctx.clone(), None);
    let mut out = Vec::new();
    for id in packets(data) {
        live.packet(data, id, &mut out);
    }
    let mut protocols = Vec::new();
    for conn in data.connections() {
        live.finish(data, conn.id, conn.closed.is_some(), &mut out);
        if let Some(p) = live.protocol(conn.id) {
            protocols.push((conn.id, p));
        }
    }
    let mut out: Vec<Seen> = out.iter().map(seen).collect();
    out.sort();
    protocols.sort();
    (out, protocols)
}

#[test]
fn inspect_and_the_live_decoders_agree_on_every_sample_capture() {
    let ctx = context();
    for file in samples() {
        let opened = open(&file, &OpenOptions { skip_bad: false }).expect("sample opens");
        let data = &opened.data;
        let (offline, offline_protocols) = inspect_way(data, &ctx);
        let (live, live_protocols) = live_way(data, &ctx);
        assert!(!offline.is_empty(), "{}: nothing decoded", file.display());
        assert_eq!(
            offline_protocols,
            live_protocols,
            "{}: dissector choices",
            file.display()
        );
        assert_eq!(
            offline.len(),
            live.len(),
            "{}: message counts",
            file.display()
        );
        for (a, b) in offline.iter().zip(&live) {
            assert_eq!(a, b, "{}: a message differs", file.display());
        }
    }
}

#[test]
fn the_engines_live_log_labels_every_message_inspect_labels() {
    let ctx = context();
    for file in samples() {
        let opened = open(&file, &OpenOptions { skip_bad: false }).expect("sample opens");
        let store = Arc::new(gamewire::capture::CaptureStore::from_data(opened.data));
        let data = store.read();
        let (offline, _) = inspect_way(&data, &ctx);
        let mut log = LiveDecoder::new(Registry::shared(), ctx.clone());
        let mut labels = Vec::new();
        let events: Vec<CaptureEvent> = packets(&data)
            .filter_map(|id| data.packet(id))
            .map(|p| CaptureEvent::Packet {
                id: p.id,
                connection: p.connection,
                direction: p.direction,
                size: p.data.len(),
                flags: p.flags,
            })
            .chain(
                data.connections()
                    .iter()
                    .filter(|c| c.closed.is_some())
                    .map(|c| CaptureEvent::Closed(c.id)),
            )
            .collect();
        drop(data);
        for event in &events {
            labels.extend(log.on_event(&store, event).into_iter().map(|l| l.label));
        }
        // Messages of connections left open in the file are reported incomplete only by
        // a decode that knows the file ended; the live log waits for more.
        let data = store.read();
        let open_conns: Vec<ConnectionId> = data
            .connections()
            .iter()
            .filter(|c| c.closed.is_none())
            .map(|c| c.id)
            .collect();
        let mut expected: Vec<String> = offline
            .iter()
            .filter(|m| {
                let conn = data.packet(PacketId(m.0)).map(|p| p.connection);
                !(conn.is_some_and(|c| open_conns.contains(&c)) && m.2.contains("incomplete"))
            })
            .map(|m| m.2.clone())
            .collect();
        expected.sort();
        labels.sort();
        assert_eq!(expected, labels, "{}", file.display());
    }
}

#[cfg(feature = "gui")]
#[test]
fn the_windows_labels_and_trees_are_inspects() {
    use gamewire::gui::decode::{Labeller, PacketDecode};
    use std::time::{Duration, Instant};
    let ctx = context();
    for file in samples() {
        let opened = open(&file, &OpenOptions { skip_bad: false }).expect("sample opens");
        let store = Arc::new(gamewire::capture::CaptureStore::from_data(opened.data));
        let labeller = Labeller::start(store.clone(), ctx.clone(), false, || {});
        let deadline = Instant::now() + Duration::from_secs(30);
        while labeller.is_behind() || labeller.summaries().done < store.read().packet_count() {
            assert!(Instant::now() < deadline, "labelling {}", file.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The labeller's last finish of open connections comes after it caught up.
        std::thread::sleep(Duration::from_millis(200));
        let data = store.read();
        let decoded = decode_capture(&Registry::shared(), &ctx, &data, None);
        let summaries = labeller.summaries();
        for id in packets(&data) {
            let messages = decoded.of_packet(id);
            let summary = summaries.packet(id);
            assert_eq!(
                summary.and_then(|s| s.label.as_deref().map(str::to_owned)),
                messages.first().map(|m| m.message.label.clone()),
                "{}: label of packet {}",
                file.display(),
                id.0
            );
            if messages.is_empty() {
                continue;
            }
            let conn = data.packet(id).map(|p| p.connection).expect("packet");
            assert_eq!(
                summaries.protocol(conn),
                decoded.protocols.get(&conn).copied()
            );
            let pane = PacketDecode::of(
                &Registry::shared(),
                &ctx,
                &data,
                id,
                summaries.protocol(conn),
            )
            .expect("the tree pane decodes");
            let pane: Vec<Seen> = pane.messages.iter().map(seen).collect();
            let want: Vec<Seen> = messages.iter().map(seen).collect();
            assert_eq!(pane, want, "{}: trees of packet {}", file.display(), id.0);
        }
    }
}
