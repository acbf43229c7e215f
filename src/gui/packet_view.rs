//! The selected packet: a details box and its bytes as a hex dump.

use eframe::egui::{
    self, RichText, ScrollArea, TextFormat, TextStyle, TextWrapMode, Ui, text::LayoutJob,
};

use crate::capture::{PacketRef, StoreData};

use super::hex::{self, HexLine};
use super::packets::direction_color;
use super::state::{Action, ViewerState};
use super::text::{endpoints, protocol_and_route, thousands};

pub const NOTHING_SELECTED: &str = "Select a packet in the table to see its bytes.";

pub fn show(ui: &mut Ui, state: &ViewerState, data: &StoreData, actions: &mut Vec<Action>) {
    let Some(packet) = state.selected().and_then(|id| data.packet(id)) else {
        ui.centered_and_justified(|ui| {
            ui.label(RichText::new(NOTHING_SELECTED).weak());
        });
        return;
    };
    egui::Panel::left("packet_details")
        .resizable(true)
        .default_size(380.0)
        .show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            details(ui, &packet, data);
        });
    egui::CentralPanel::no_frame().show(ui, |ui| bytes(ui, &packet, state, actions));
}

fn details(ui: &mut Ui, p: &PacketRef<'_>, data: &StoreData) {
    // Values wider than the panel are cut (the full text is on hover): otherwise the grid
    // widens the panel, the panel narrows the grid, and the two never settle.
    ui.style_mut().wrap_mode = Some(TextWrapMode::Truncate);
    ui.add_space(4.0);
    ui.strong(format!("Packet {}", p.id));
    ui.add_space(4.0);
    egui::Grid::new("packet_details_grid")
        .num_columns(2)
        .min_col_width(72.0)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            field(ui, "Time", p.timestamp.to_rfc3339());
            let connection = data.connection(p.connection).map_or_else(
                || p.connection.to_string(),
                |c| format!("{} {}", c.id, endpoints(c)),
            );
            field(ui, "Connection", connection);
            if let Some(c) = data.connection(p.connection) {
                field(ui, "Protocol", protocol_and_route(c));
            }
            ui.label(RichText::new("Direction").weak());
            ui.label(
                RichText::new(format!("{} {}", p.direction.arrow(), p.direction.as_str()))
                    .color(direction_color(ui.visuals(), p.direction)),
            );
            ui.end_row();
            field(ui, "Size", format!("{} bytes", thousands(p.data.len())));
            field(ui, "Label", p.label.unwrap_or("–").to_owned());
            let flags = if p.flags.is_empty() {
                "none".to_owned()
            } else {
                p.flags.to_string()
            };
            field(ui, "Flags", flags);
            if let Some(original) = p.original {
                field(
                    ui,
                    "Original",
                    format!("{} bytes before the edit", thousands(original.len())),
                );
            }
        });
}

fn field(ui: &mut Ui, name: &str, value: String) {
    ui.label(RichText::new(name).weak());
    ui.label(value);
    ui.end_row();
}

fn bytes(ui: &mut Ui, p: &PacketRef<'_>, state: &ViewerState, actions: &mut Vec<Action>) {
    let original = p.original.filter(|_| state.show_original());
    let shown = original.unwrap_or(p.data);
    ui.horizontal(|ui| {
        ui.strong(if original.is_some() {
            "Original bytes"
        } else {
            "Bytes"
        });
        if p.original.is_some()
            && ui
                .selectable_label(state.show_original(), "Show original")
                .on_hover_text("Show the bytes as they arrived, before they were edited")
                .clicked()
        {
            actions.push(Action::ToggleOriginal);
        }
        if ui
            .small_button("Copy hex")
            .on_hover_text("Copy these bytes as one line of hex")
            .clicked()
        {
            ui.ctx().copy_text(::hex::encode(shown));
        }
    });
    if shown.is_empty() {
        ui.label(RichText::new("This packet has no bytes.").weak());
        return;
    }
    dump(ui, p, shown);
}

/// Only the visible lines are formatted; a packet may be far larger than the screen.
fn dump(ui: &mut Ui, p: &PacketRef<'_>, bytes: &[u8]) {
    ui.style_mut().wrap_mode = Some(TextWrapMode::Extend);
    let line_height = ui.text_style_height(&TextStyle::Monospace);
    ScrollArea::both()
        .id_salt(("hex", p.id))
        .auto_shrink(false)
        .show_rows(
            ui,
            line_height,
            hex::line_count(bytes.len()),
            |ui, lines| {
                for index in lines {
                    if let Some(line) = hex::line(bytes, index) {
                        ui.label(line_job(ui, &line));
                    }
                }
            },
        );
}

fn line_job(ui: &Ui, line: &HexLine) -> LayoutJob {
    let font = TextStyle::Monospace.resolve(ui.style());
    let visuals = ui.visuals();
    let mut job = LayoutJob::default();
    let mut part = |text: &str, color| {
        job.append(text, 0.0, TextFormat::simple(font.clone(), color));
    };
    part(&line.offset, visuals.weak_text_color());
    part("  ", visuals.text_color());
    part(&line.hex, visuals.strong_text_color());
    part("  ", visuals.text_color());
    part(&line.ascii, visuals.text_color());
    job
}
