//! gamewire: a workbench for reverse-engineering and reviving online games.
//!
//! Modules depend one way only (see DESIGN.md):
//! `capture <- dissect <- {proxy, servers, security, replay} <- engine <- {gui, cli}`.

pub mod capture;
pub mod cli;
pub mod dissect;
#[cfg(feature = "gui")]
pub mod gui;
pub mod samples;
