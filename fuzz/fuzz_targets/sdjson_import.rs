//! Any bytes given to the sd.json importer, strict and with skip-bad: no panic, and
//! skip-bad keeps at least what strict mode accepts.
#![no_main]

use gamewire::capture::sdjson;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let strict = sdjson::import_slice(bytes, false);
    let lenient = sdjson::import_slice(bytes, true);
    if let (Ok(s), Ok(l)) = (&strict, &lenient) {
        assert_eq!(s.data.packet_count(), l.data.packet_count());
    }
    if let Ok(imported) = lenient {
        let mut out = Vec::new();
        sdjson::export(&imported.data, &mut out, |_| true).expect("export to memory");
        let again = sdjson::import_slice(&out, false).expect("our own export imports");
        assert_eq!(again.data.packet_count(), imported.data.packet_count());
    }
});
