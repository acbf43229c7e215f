//! All integration tests in one binary: each test file used to link its own copy of the
//! crate and the GUI stack (hundreds of MB apiece), which filled CI's disk.

mod common;

mod architecture;
mod cli;
mod decode_session;
mod dissect_fesl;
mod dissect_gp;
mod dissect_http1;
mod dissect_http2_grpc;
mod dissect_hytale;
mod dissect_json_jwt;
mod dissect_protobuf;
mod dissect_sc;
mod engine_api;
mod engine_ra3;
mod engine_taps;
mod engine_tls;
mod engine_zero_copy;
mod filter;
mod filter_fields;
mod grpc_tap;
#[cfg(feature = "gui")]
mod gui;
#[cfg(feature = "gui")]
mod gui_files;
#[cfg(feature = "gui")]
mod gui_workbench;
mod gwcap;
mod journal_crash;
mod pcapng;
mod proxy_http;
mod ra3_servers;
mod samples;
mod save;
mod sc_services;
mod sdjson;
mod serve;
mod server_table;
