//! Any bytes given to the .gwcap loader: no panic, and what it recovers saves and reloads
//! to the same capture.
#![no_main]

use gamewire::capture::gwcap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = std::path::Path::new("fuzz.gwcap");
    let Ok(loaded) = gwcap::read_from(bytes, bytes.len() as u64, path) else {
        return;
    };
    // Re-encoding what was recovered must be clean and lossless.
    let mut again = Vec::new();
    if gwcap::write_to(&loaded.data, &mut again).is_ok() {
        let reloaded = gwcap::read_from(&again[..], again.len() as u64, path)
            .expect("a file gamewire wrote loads");
        assert!(reloaded.damage.is_none());
        assert_eq!(reloaded.data.packet_count(), loaded.data.packet_count());
        for (a, b) in loaded.data.packets().zip(reloaded.data.packets()) {
            assert_eq!(a.to_packet(), b.to_packet());
        }
    }
});
