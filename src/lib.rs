//! gamewire: a workbench for reverse-engineering and reviving online games.
//!
//! Modules depend one way only (see ARCHITECTURE.md; `tests/it/architecture.rs` checks it):
//! `capture <- dissect <- {proxy, servers, clients, security, replay} <- engine <- {gui, cli}`.

pub mod capture;
pub mod cli;
pub mod clients;
pub mod dissect;
pub mod engine;
#[cfg(feature = "gui")]
pub mod gui;
pub mod proxy;
pub mod security;
pub mod servers;
