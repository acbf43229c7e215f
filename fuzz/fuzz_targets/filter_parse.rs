//! Any text given to the filter parser: no panic, an error's position is inside the text,
//! and a filter that parses evaluates over a decoded sample capture without panicking, with
//! `!e` matching exactly the packets `e` does not.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use gamewire::capture::StoreData;
use gamewire::dissect::filter::{Filter, filter_packets};
use gamewire::dissect::session::{CaptureDecode, decode_capture};
use gamewire::dissect::{Context, Registry};
use libfuzzer_sys::fuzz_target;

fn sample() -> &'static (StoreData, CaptureDecode) {
    static CELL: OnceLock<(StoreData, CaptureDecode)> = OnceLock::new();
    CELL.get_or_init(|| {
        let data = gamewire::clients::samples::all_samples();
        let decode = decode_capture(&Registry::standard(), &Context::default(), &data, None);
        (data, decode)
    })
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let filter = match Filter::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            assert!(e.position <= text.chars().count(), "{e}");
            let _ = e.caret(&text);
            return;
        }
    };
    let (data, decode) = sample();
    let never = AtomicBool::new(false);
    let yes = filter_packets(data, Some(decode), &filter, &never, |_| {}).expect("not cancelled");
    let negated = Filter::parse(&format!("!({text})"));
    // Wrapping can only fail by nesting one level too deep.
    if let Ok(not) = negated {
        let no = filter_packets(data, Some(decode), &not, &never, |_| {}).expect("not cancelled");
        assert_eq!(yes.len() + no.len(), data.packet_count(), "{text}");
    }
});
