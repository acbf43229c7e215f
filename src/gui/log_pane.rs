//! The log pane: the engine's tracing output inside the window, newest at the bottom, with a
//! level filter and a text filter.

use std::collections::VecDeque;

use eframe::egui::{self, Color32, RichText, TextStyle, Ui};
use tracing::Level;

use crate::engine::log_ring::LogEntry;

/// Lines kept in the pane (the ring keeps as many; the pane's copy outlives its wrapping).
const KEPT: usize = 10_000;

pub const EMPTY_TEXT: &str = "No log lines yet. The engine's messages (routes starting, \
     connections, logins, errors) appear here as they happen.";

pub struct LogPane {
    entries: VecDeque<LogEntry>,
    /// Lines at this level or more severe are shown.
    pub min_level: Level,
    pub search: String,
    follow: bool,
}

impl Default for LogPane {
    fn default() -> Self {
        LogPane {
            entries: VecDeque::new(),
            min_level: Level::INFO,
            search: String::new(),
            follow: true,
        }
    }
}

impl LogPane {
    pub fn push(&mut self, entry: LogEntry) {
        if self.entries.len() >= KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn show(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("Level")
                .selected_text(self.min_level.as_str())
                .show_ui(ui, |ui| {
                    for level in [
                        Level::ERROR,
                        Level::WARN,
                        Level::INFO,
                        Level::DEBUG,
                        Level::TRACE,
                    ] {
                        ui.selectable_value(&mut self.min_level, level, level.as_str());
                    }
                });
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("Only lines containing…")
                    .desired_width(220.0),
            );
            ui.checkbox(&mut self.follow, "Follow");
            if ui.button("Clear").clicked() {
                self.entries.clear();
            }
        });
        ui.separator();
        let needle = self.search.to_lowercase();
        // `Level` orders ERROR as the smallest, so "at least as severe" is `<=`.
        let shown: Vec<&LogEntry> = self
            .entries
            .iter()
            .filter(|e| e.level <= self.min_level)
            .filter(|e| {
                needle.is_empty()
                    || e.message.to_lowercase().contains(&needle)
                    || e.fields_text().to_lowercase().contains(&needle)
            })
            .collect();
        if shown.is_empty() {
            ui.label(RichText::new(EMPTY_TEXT).weak());
            return;
        }
        let row_height = ui.text_style_height(&TextStyle::Monospace);
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .stick_to_bottom(self.follow)
            .show_rows(ui, row_height, shown.len(), |ui, range| {
                for e in &shown[range] {
                    line(ui, e);
                }
            });
    }
}

fn line(ui: &mut Ui, e: &LogEntry) {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 6.0;
        ui.label(RichText::new(&e.time).monospace().weak());
        ui.label(
            RichText::new(format!("{:>5}", e.level.as_str()))
                .monospace()
                .color(level_color(ui, e.level)),
        );
        ui.label(RichText::new(format!("{}{}", e.message, e.fields_text())).monospace());
    });
}

pub fn level_color(ui: &Ui, level: Level) -> Color32 {
    match level {
        Level::ERROR => ui.visuals().error_fg_color,
        Level::WARN => ui.visuals().warn_fg_color,
        Level::INFO => ui.visuals().text_color(),
        _ => ui.visuals().weak_text_color(),
    }
}
