//! What a new user sees before any capture is open: what to do next, not a blank window.

use std::path::{Path, PathBuf};

use eframe::egui::{self, Frame, Margin, RichText, Ui, UiBuilder, pos2, vec2};

use super::state::{Action, Loading};
use super::text::human_bytes;

pub const TITLE: &str = "No capture open";
pub const SAMPLES_DIR: &str = "captures";
const SAMPLES_COMMAND: &str = "gamewire samples";
/// Enough sample files to pick from without the card growing past the window.
const MAX_SAMPLES: usize = 8;

pub fn show(
    ui: &mut Ui,
    loading: Option<&Loading>,
    samples: &[PathBuf],
    actions: &mut Vec<Action>,
) {
    let area = ui.max_rect();
    let width = area.width().min(600.0);
    let top = area.top() + (area.height() * 0.14).max(16.0);
    let card = egui::Rect::from_min_size(
        pos2(area.center().x - width / 2.0, top),
        vec2(width, area.bottom() - top),
    );
    ui.scope_builder(UiBuilder::new().max_rect(card), |ui| {
        Frame::group(ui.style())
            .fill(ui.visuals().faint_bg_color)
            .corner_radius(10)
            .inner_margin(Margin::same(28))
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                match loading {
                    Some(loading) => opening(ui, loading),
                    None => welcome(ui, samples, actions),
                }
            });
    });
}

fn opening(ui: &mut Ui, loading: &Loading) {
    ui.vertical_centered(|ui| {
        ui.add(egui::Spinner::new().size(32.0));
        ui.add_space(8.0);
        let size = loading
            .size
            .map(|s| format!(" ({})", human_bytes(s)))
            .unwrap_or_default();
        ui.heading(format!("Opening {}{size}…", loading.path.display()));
        ui.label(RichText::new(format!("{:.1} s", loading.started.elapsed().as_secs_f32())).weak());
    });
}

fn welcome(ui: &mut Ui, samples: &[PathBuf], actions: &mut Vec<Action>) {
    ui.vertical_centered(|ui| {
        ui.label(RichText::new(TITLE).size(24.0).strong());
        ui.add_space(4.0);
        ui.label(
            RichText::new("gamewire shows every byte a game client and its server exchange.")
                .weak(),
        );
    });
    ui.add_space(18.0);
    ui.label(RichText::new("Open a capture to look at its connections and packets:").strong());
    ui.add_space(4.0);
    ui.label("•  type its path in the field at the top and press Open…, or");
    ui.label("•  drop a .gwcap, .sd.json or .pcapng file onto this window.");
    ui.add_space(14.0);
    samples_section(ui, samples, actions);
    ui.add_space(14.0);
    ui.separator();
    ui.add_space(6.0);
    ui.label(
        RichText::new(
            "To watch live traffic, start gamewire without a file: the emulated servers, \
             taps and proxy start with it (see `gamewire serve --help` for the ports).",
        )
        .weak(),
    );
}

fn samples_section(ui: &mut Ui, samples: &[PathBuf], actions: &mut Vec<Action>) {
    if samples.is_empty() {
        with_command(
            ui,
            &format!("Sample captures live in {SAMPLES_DIR}/. If that folder is missing here, "),
            " writes them.",
        );
        return;
    }
    ui.label(format!("Or start with a sample from {SAMPLES_DIR}/:"));
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        for path in samples {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            if ui
                .button(name)
                .on_hover_text(path.display().to_string())
                .clicked()
            {
                actions.push(Action::Open(path.clone()));
            }
        }
    });
    ui.add_space(4.0);
    with_command(ui, "", " writes them again.");
}

/// A sentence with the samples command in it, set as code.
fn with_command(ui: &mut Ui, before: &str, after: &str) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 0.0;
        ui.label(before);
        ui.code(SAMPLES_COMMAND);
        ui.label(after);
    });
}

/// Capture files in `dir`, sorted by name; nothing when it does not exist. Read once at
/// start, not every frame.
pub fn find_samples(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && crate::capture::files::Format::from_path(p).is_some_and(|f| f.can_open())
        })
        .collect();
    found.sort();
    found.truncate(MAX_SAMPLES);
    found
}
