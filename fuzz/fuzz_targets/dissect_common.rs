//! The harness every dissector fuzz target shares: the input becomes a connection's packets
//! (both directions, arbitrary chunking), which are decoded through the stream driver; every
//! message that decoded cleanly is re-encoded and decoded again.

use gamewire::capture::{Connection, Direction, NewPacket, StoreData, Timestamp, Transport};
use gamewire::dissect::stream::{DirectionStream, decode_connection};
use gamewire::dissect::{Context, Registry};

pub fn run(protocol: &str, bytes: &[u8]) {
    let registry = Registry::standard();
    let Some(dissector) = registry.get(protocol) else {
        panic!("{protocol} is not registered");
    };
    let Some((&control, mut rest)) = bytes.split_first() else {
        return;
    };
    let mut data = StoreData::new();
    let conn = data.add_connection(Connection::new(
        "127.0.0.1:1".parse().expect("literal address"),
        "127.0.0.1:2".parse().expect("literal address"),
        Transport::Tcp,
        Timestamp(0),
    ));
    // Chunk sizes and directions come from the input itself so the fuzzer explores both.
    let mut step = usize::from(control % 61) + 1;
    let mut dir = Direction::ClientToServer;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let _ = data.append(NewPacket::new(conn, dir, Timestamp(0), chunk.to_vec()));
        rest = tail;
        step = (step * 7 + usize::from(chunk[0])) % 97 + 1;
        if control & 0x80 != 0 && chunk[0] & 1 == 1 {
            dir = dir.reverse();
        }
    }
    let ctx = Context::default();
    for decoded in decode_connection(dissector.as_ref(), &ctx, data.packets_of(conn)) {
        let message = &decoded.message;
        // Ranges must stay inside the message: the hex pane indexes with them.
        check_ranges(&message.tree, decoded.bytes.len());
        for buffer in &message.derived {
            check_ranges(&buffer.tree, buffer.bytes.len());
        }
        // What an editor offers must encode or fail cleanly, never panic.
        let _ = dissector.encode(&dissector.edit_tree(message));
        if message.is_error() {
            continue;
        }
        if let Ok(again) = dissector.encode(&message.tree) {
            let mut stream = DirectionStream::new(dissector.decoder(decoded.direction, &ctx));
            let mut out = Vec::new();
            stream.push(decoded.packet, &again, decoded.direction, &mut out);
            // `true`: also drives the end-of-stream path of until-close messages.
            stream.finish(decoded.direction, true, &mut out);
        }
    }
}

fn check_ranges(tree: &gamewire::dissect::Node, len: usize) {
    for (_, node) in tree.walk() {
        assert!(node.range.start <= node.range.end, "inverted range in {}", node.name);
        assert!(node.range.end <= len, "range of {} ends past its bytes", node.name);
    }
}
