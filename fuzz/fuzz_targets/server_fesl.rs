//! The FESL connection core on arbitrary client bytes, cut into arbitrary reads: no panic,
//! every reply is a well-formed server packet, and no more than one message is buffered.
#![no_main]

#[path = "server_common.rs"]
mod common;

use gamewire::dissect::Framing;
use gamewire::dissect::fesl;
use gamewire::servers::fesl::{FeslSession, Flow};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let h = common::harness();
    h.rt.block_on(async {
        let mut session = FeslSession::new(h.store.clone(), Default::default(), "fuzz");
        let mut out = Vec::new();
        for read in common::reads(bytes) {
            let flow = session.feed(read, &mut out).await;
            if flow == Flow::Close {
                break;
            }
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            match fesl::frame(rest) {
                Framing::Complete(n) => {
                    let header = fesl::parse_header(rest).expect("header");
                    assert!(matches!(header.tag, fesl::Tag::SingleServer | fesl::Tag::MultiServer));
                    fesl::parse_payload(&rest[fesl::HEADER_LEN..n]).expect("reply payload");
                    rest = &rest[n..];
                }
                other => panic!("server wrote an unframeable reply: {other:?}"),
            }
        }
    });
});
