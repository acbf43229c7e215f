//! The selected packet: a details box, its decoded tree, and its bytes as a hex dump, the
//! tree and the hex linked both ways.

use std::ops::Range;

use eframe::egui::{
    self, Color32, RichText, ScrollArea, Sense, TextFormat, TextStyle, TextWrapMode, Ui,
    text::LayoutJob,
};

use crate::capture::{PacketRef, StoreData};

use super::hex::{self, HexLine};
use super::packets::direction_color;
use super::state::{Action, ViewerState};
use super::text::{endpoints, protocol_and_route, thousands};
use super::workbench::{BenchAction, Workbench};

pub const NOTHING_SELECTED: &str = "Select a packet in the table to see its bytes.";

pub fn show(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    bench: &Workbench,
    actions: &mut Vec<Action>,
) {
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
            ui.add_space(6.0);
            if ui
                .button("Edit and resend…")
                .on_hover_text("Edit this message as a tree or as hex, then send it")
                .clicked()
            {
                actions.push(Action::Bench(BenchAction::EditPacket(packet.id)));
            }
        });
    egui::Panel::left("packet_tree")
        .resizable(true)
        .default_size(360.0)
        .show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            super::tree_view::show(ui, bench.decode(), bench.selected_node(), actions);
        });
    egui::CentralPanel::no_frame().show(ui, |ui| bytes(ui, &packet, state, bench, actions));
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

fn bytes(
    ui: &mut Ui,
    p: &PacketRef<'_>,
    state: &ViewerState,
    bench: &Workbench,
    actions: &mut Vec<Action>,
) {
    let original = p.original.filter(|_| state.show_original());
    let derived = bench.shown_buffer().filter(|_| original.is_none());
    let shown = derived.map_or(original.unwrap_or(p.data), |(_, _, _, b)| b);
    // The tree's ranges are of the bytes as sent, not as they arrived before an edit.
    let highlight = bench.highlight().filter(|_| original.is_none());
    ui.horizontal(|ui| {
        match derived {
            Some((_, _, name, _)) => ui.strong(format!("Derived: {name}")),
            None if original.is_some() => ui.strong("Original bytes"),
            None => ui.strong("Bytes"),
        };
        if let Some(r) = &highlight {
            ui.label(RichText::new(format!("selected {}..{}", r.start, r.end)).weak());
        }
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
    dump(ui, p, shown, highlight, derived.is_some(), actions);
}

/// Only the visible lines are formatted; a packet may be far larger than the screen.
fn dump(
    ui: &mut Ui,
    p: &PacketRef<'_>,
    bytes: &[u8],
    highlight: Option<Range<usize>>,
    derived: bool,
    actions: &mut Vec<Action>,
) {
    ui.style_mut().wrap_mode = Some(TextWrapMode::Extend);
    ui.style_mut().interaction.selectable_labels = false;
    let line_height = ui.text_style_height(&TextStyle::Monospace);
    ScrollArea::both()
        .id_salt(("hex", p.id, derived))
        .auto_shrink(false)
        .show_rows(
            ui,
            line_height,
            hex::line_count(bytes.len()),
            |ui, lines| {
                for index in lines {
                    if let Some(line) = hex::line(bytes, index) {
                        let start = index * hex::BYTES_PER_LINE;
                        let job = line_job(ui, &line, start, highlight.as_ref());
                        let response = ui.add(egui::Label::new(job).sense(Sense::click()));
                        if response.clicked()
                            && let Some(pos) = response.interact_pointer_pos()
                        {
                            let chars = line_chars(&line);
                            let width = response.rect.width() / chars as f32;
                            let column = ((pos.x - response.rect.left()) / width) as usize;
                            if let Some(i) = hex::byte_at_column(column, line.ascii.chars().count())
                            {
                                actions.push(Action::Bench(BenchAction::SelectByte(start + i)));
                            }
                        }
                    }
                }
            },
        );
}

fn line_chars(line: &HexLine) -> usize {
    line.offset.chars().count() + 2 + line.hex.chars().count() + 2 + line.ascii.chars().count()
}

/// Highlighted bytes get a background, in both the hex and the ASCII column.
fn line_job(ui: &Ui, line: &HexLine, start: usize, highlight: Option<&Range<usize>>) -> LayoutJob {
    let font = TextStyle::Monospace.resolve(ui.style());
    let visuals = ui.visuals();
    let marked = visuals.selection.bg_fill;
    let mut job = LayoutJob::default();
    let mut part = |text: &str, color, background| {
        let mut format = TextFormat::simple(font.clone(), color);
        format.background = background;
        job.append(text, 0.0, format);
    };
    let is_marked = |i: usize| highlight.is_some_and(|r| r.contains(&(start + i)));
    let strong = visuals.strong_text_color();
    part(
        &line.offset,
        visuals.weak_text_color(),
        Color32::TRANSPARENT,
    );
    part("  ", visuals.text_color(), Color32::TRANSPARENT);
    // Each byte is "xx" plus the gap after it; the gap is marked when the next byte is too,
    // so a range reads as one block.
    let hex: Vec<char> = line.hex.chars().collect();
    for i in 0..hex::BYTES_PER_LINE {
        let at = hex::hex_column(i);
        let cell: String = hex
            .get(at..at + 2)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let bg = if is_marked(i) {
            marked
        } else {
            Color32::TRANSPARENT
        };
        part(&cell, strong, bg);
        let gap_end = if i + 1 < hex::BYTES_PER_LINE {
            hex::hex_column(i + 1)
        } else {
            hex.len()
        };
        let gap: String = hex
            .get(at + 2..gap_end)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let gap_bg = if is_marked(i) && is_marked(i + 1) {
            marked
        } else {
            Color32::TRANSPARENT
        };
        part(&gap, strong, gap_bg);
    }
    part("  ", visuals.text_color(), Color32::TRANSPARENT);
    for (i, c) in line.ascii.chars().enumerate() {
        let bg = if is_marked(i) {
            marked
        } else {
            Color32::TRANSPARENT
        };
        part(&c.to_string(), visuals.text_color(), bg);
    }
    job
}
