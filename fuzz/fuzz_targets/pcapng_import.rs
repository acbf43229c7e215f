//! Any bytes given to the pcapng importer, strict and with skip-bad: no panic, and what it
//! imports exports and imports again to the same packets.
#![no_main]

use gamewire::capture::pcapng;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = pcapng::import_slice(bytes, false);
    let Ok(imported) = pcapng::import_slice(bytes, true) else {
        return;
    };
    let mut out = Vec::new();
    pcapng::export(&imported.data, &mut out, |_| true).expect("export to memory");
    let again = pcapng::import_slice(&out, false).expect("our own export imports");
    assert_eq!(again.data.packet_count(), imported.data.packet_count());
});
