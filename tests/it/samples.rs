//! The samples are valid traffic: every message of them decodes without an error, with the
//! dissector its connection is meant for, as live traffic from the clients would.

use std::collections::BTreeMap;

use gamewire::capture::StoreData;
use gamewire::clients::samples::{all_samples, busy_capture};
use gamewire::dissect::registry::Registry;
use gamewire::dissect::session::decode_capture;
use gamewire::dissect::{Context, Node};

fn first_error(node: &Node) -> Option<String> {
    if let Some(e) = node.error() {
        return Some(format!("{}: {e}", node.name));
    }
    node.children.iter().find_map(first_error)
}

/// Decodes `data` with the standard registry and the built-in schemas; returns how many
/// messages each dissector decoded. Fails on any message with an error.
fn decode_cleanly(data: &StoreData) -> BTreeMap<&'static str, usize> {
    let ctx = Context {
        schemas: Some(gamewire::dissect::sc::pb::descriptor_pool().expect("built-in schemas")),
        ..Context::default()
    };
    let decoded = decode_capture(&Registry::standard(), &ctx, data, None);
    let mut per_protocol = BTreeMap::new();
    for conn in data.connections() {
        let chosen = decoded.protocols.get(&conn.id).copied();
        assert_eq!(
            chosen,
            conn.protocol
                .as_deref()
                .map(|p| Registry::standard().get(p).unwrap().name()),
            "connection {} ({:?}) got the wrong dissector",
            conn.id.0,
            conn.protocol
        );
    }
    let mut messages = 0;
    for p in data.packets() {
        for d in decoded.of_packet(p.id) {
            messages += 1;
            let protocol = decoded.protocols[&p.connection];
            *per_protocol.entry(protocol).or_insert(0) += 1;
            let errors = std::iter::once(&d.message.tree)
                .chain(d.message.derived.iter().map(|b| &b.tree))
                .find_map(first_error);
            assert!(
                errors.is_none(),
                "packet {} ({protocol}, {:?}): {:?}",
                p.id.0,
                d.message.label,
                errors
            );
        }
    }
    assert!(
        messages >= data.packet_count(),
        "every packet holds a message"
    );
    per_protocol
}

#[test]
fn every_packet_of_a_busy_capture_decodes_without_an_error() {
    let data = busy_capture(5_000, 64);
    assert_eq!(data.packet_count(), 5_000);
    assert_eq!(data.connection_count(), 64);
    let per_protocol = decode_cleanly(&data);
    // A busy game: FESL and GP, diffusion and the login server's HTTP, Hytale.
    for protocol in ["fesl", "gp", "sc", "http", "hytale"] {
        assert!(
            per_protocol.get(protocol).is_some_and(|&n| n >= 500),
            "{protocol}: {per_protocol:?}"
        );
    }
}

#[test]
fn a_busy_capture_goes_past_each_opening_into_the_keep_alives() {
    // 64 connections, 20,000 packets: over 300 a connection, far past every opening.
    let data = busy_capture(20_000, 64);
    decode_cleanly(&data);
    let labels: std::collections::HashSet<&str> = data.packets().filter_map(|p| p.label).collect();
    for label in ["fsys Ping", "gp ka", "Heartbeat Ack", "GET /verify", "Pong"] {
        assert!(labels.contains(label), "{label} missing from {labels:?}");
    }
}

#[test]
fn the_sample_sessions_decode_without_an_error() {
    let per_protocol = decode_cleanly(&all_samples());
    assert_eq!(
        per_protocol.keys().copied().collect::<Vec<_>>(),
        ["fesl", "gp", "hytale", "sc"]
    );
}
