//! Shared set-up of the server fuzz targets: one runtime and one in-memory accounts store
//! (with the test account) for the whole run, so each input only drives a session.

use std::sync::OnceLock;

use gamewire::security::{HashCost, Store};

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
}

pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = rt.block_on(async {
            let store = Store::open_memory()
                .await
                .expect("memory store")
                .with_hash_cost(HashCost::Cheap);
            store.ensure_test_account().await.expect("test account");
            store
        });
        Harness { rt, store }
    })
}

/// Cuts the input into reads: the first byte picks the read size, so the fuzzer explores
/// both whole messages and messages split at every position.
pub fn reads(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (size, rest) = match bytes.split_first() {
        Some((&b, rest)) => (usize::from(b % 64) + 1, rest),
        None => (1, bytes),
    };
    let size = if size == 64 { rest.len().max(1) } else { size };
    rest.chunks(size)
}
