//! The desktop workbench (cargo feature `gui`).
//!
//! This first version is a capture viewer: connections, a packet table that stays fast at
//! millions of rows, and a hex dump of the selected packet. The state ([`ViewerState`]) is a
//! plain struct apart from the drawing code, so tests drive it headless; the capture is read
//! through a shared [`crate::capture::CaptureStore`], which the engine will later fill live.

mod app;
mod audit;
mod banner;
mod breakpoints;
mod connections;
pub mod decode;
mod demo;
pub mod editor;
mod empty;
pub mod engine_view;
pub mod files;
mod filter_bar;
mod hex;
mod loader;
mod log_pane;
mod packet_view;
mod packets;
mod plot;
mod servers;
pub mod settings;
pub mod shell;
mod state;
mod text;
mod top_bar;
mod tree_view;
pub mod workbench;

use std::path::PathBuf;

use eframe::egui;

pub use app::Viewer;
pub use engine_view::EngineView;
pub use state::{Action, Capture, Loading, Message, MessageKind, Source, ViewerState};
pub use workbench::Workbench;

pub const WINDOW_TITLE: &str = "gamewire";

/// Opens the workbench window, with `file` loaded if given, and returns when it is closed.
pub fn run(file: Option<PathBuf>, engine: Option<crate::engine::Engine>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(WINDOW_TITLE)
            .with_app_id("gamewire")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        WINDOW_TITLE,
        options,
        Box::new(move |cc| {
            let viewer = Viewer::new(file).with_storage(cc.storage);
            Ok(Box::new(match engine {
                Some(engine) => viewer.with_engine(engine),
                None => viewer,
            }))
        }),
    )
    // The usual cause is a session without a display (ssh, CI); the command-line tools
    // still work there.
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the workbench window: {e}. Without a display, use the command-line \
             tools (`gamewire --help`)"
        )
    })
}
