//! The message banner under the top bar: why a file did not open, or what was skipped.

use eframe::egui::{Align, Frame, Layout, RichText, ScrollArea, Ui};

use super::state::{Action, Message, MessageKind};

/// Long warning lists scroll inside the banner instead of pushing the capture off screen.
const MAX_LINES_HEIGHT: f32 = 110.0;

pub fn show(ui: &mut Ui, message: &Message, actions: &mut Vec<Action>) {
    let color = match message.kind {
        MessageKind::Error => ui.visuals().error_fg_color,
        MessageKind::Warning => ui.visuals().warn_fg_color,
    };
    Frame::new()
        .fill(color.gamma_multiply(0.12))
        .stroke((1.0, color))
        .corner_radius(6)
        .inner_margin(8)
        .outer_margin(4)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&message.title).strong().color(color));
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if ui.button("Dismiss").clicked() {
                        actions.push(Action::DismissMessage);
                    }
                });
            });
            ScrollArea::vertical()
                .id_salt("message_lines")
                .max_height(MAX_LINES_HEIGHT)
                .auto_shrink([false, true])
                .show(ui, |ui| {
                    for line in &message.lines {
                        ui.label(line);
                    }
                });
        });
}
