//! The GP connection core on arbitrary client bytes, cut into arbitrary reads: no panic and
//! every reply is a well-formed GP message.
#![no_main]

#[path = "server_common.rs"]
mod common;

use gamewire::dissect::Framing;
use gamewire::dissect::gp;
use gamewire::servers::fesl::Flow;
use gamewire::servers::gp::GpSession;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let h = common::harness();
    h.rt.block_on(async {
        let mut session = GpSession::with_challenge(h.store.clone(), Default::default(), "fuzz", "ABCDEFGHIJ");
        let mut out = session.greeting();
        for read in common::reads(bytes) {
            if session.feed(read, &mut out).await == Flow::Close {
                break;
            }
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            match gp::frame(rest) {
                Framing::Complete(n) => {
                    gp::parse_message(&rest[..n]).expect("reply message");
                    rest = &rest[n..];
                }
                other => panic!("server wrote an unframeable reply: {other:?}"),
            }
        }
    });
});
