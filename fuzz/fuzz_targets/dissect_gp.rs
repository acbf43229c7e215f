//! The gp dissector on arbitrary bytes: no panic, ranges inside their message, and every
//! cleanly decoded message re-encodes and decodes again.
#![no_main]

#[path = "dissect_common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| common::run("gp", bytes));
