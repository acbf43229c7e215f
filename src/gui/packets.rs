//! The packet table: one row per packet, only the visible rows laid out, so a capture of
//! millions of packets scrolls as smoothly as one of ten.

use eframe::egui::{self, Align, Color32, Layout, RichText, Sense, TextStyle, Ui, Visuals};
use egui_extras::{Column, TableBuilder, TableRow};

use crate::capture::{Direction, PacketRef, StoreData, ascii_preview};

use super::state::{Action, ViewerState};
use super::text::{endpoints, thousands, time_of_day};

/// How many bytes of an unlabelled packet the label column previews.
const PREVIEW_BYTES: usize = 48;

pub fn show(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    scroll_to: Option<usize>,
    actions: &mut Vec<Action>,
) {
    heading(ui, state, data, actions);
    if state.rows().is_empty() {
        ui.add_space(12.0);
        ui.label(RichText::new("No packets here yet.").weak());
        return;
    }
    table(ui, state, data, scroll_to, actions);
}

fn heading(ui: &mut Ui, state: &ViewerState, data: &StoreData, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("Packets");
        let shown = thousands(state.rows().len());
        match state.filter() {
            None => {
                ui.label(RichText::new(format!("{shown} · all connections")).weak());
            }
            Some(conn) => {
                let what = data.connection(conn).map_or_else(
                    || format!("connection {conn}"),
                    |c| format!("connection {} ({})", c.id, endpoints(c)),
                );
                ui.label(RichText::new(format!("{shown} of {what}")).weak());
                if ui.small_button("Show all").clicked() {
                    actions.push(Action::ShowAllConnections);
                }
            }
        }
    });
}

fn table(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    scroll_to: Option<usize>,
    actions: &mut Vec<Action>,
) {
    ui.style_mut().interaction.selectable_labels = false;
    ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
    let row_height = ui
        .text_style_height(&TextStyle::Monospace)
        .max(ui.text_style_height(&TextStyle::Body))
        + 4.0;
    let visuals = ui.visuals().clone();
    let mut builder = TableBuilder::new(ui)
        // One scroll position per filter: narrowing to a connection starts at its first
        // packet, and "all" comes back to where it was.
        .id_salt(("packets", state.filter()))
        .striped(true)
        .resizable(true)
        .sense(Sense::click())
        .cell_layout(Layout::left_to_right(Align::Center))
        .column(Column::initial(64.0).at_least(40.0))
        .column(Column::initial(118.0).at_least(60.0))
        .column(Column::initial(44.0).at_least(30.0))
        .column(Column::exact(24.0))
        .column(Column::initial(72.0).at_least(40.0))
        .column(Column::initial(300.0).at_least(80.0).clip(true))
        .column(Column::remainder().at_least(60.0));
    if let Some(row) = scroll_to {
        builder = builder.scroll_to_row(row, None);
    }
    builder
        .header(20.0, |mut header| {
            for title in ["No.", "time (UTC)", "conn", "", "size", "label", "flags"] {
                header.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(row_height, state.rows().len(), |mut row| {
                let Some(packet) = state
                    .rows()
                    .get(row.index())
                    .and_then(|&id| data.packet(id))
                else {
                    return;
                };
                row.set_selected(state.selected() == Some(packet.id));
                cells(&mut row, &packet, &visuals);
                if row.response().clicked() {
                    actions.push(Action::SelectPacket(packet.id));
                }
            });
        });
}

fn cells(row: &mut TableRow<'_, '_>, p: &PacketRef<'_>, visuals: &Visuals) {
    row.col(|ui| {
        ui.monospace(p.id.to_string());
    });
    row.col(|ui| {
        ui.monospace(time_of_day(p.timestamp));
    });
    row.col(|ui| {
        ui.monospace(p.connection.to_string());
    });
    row.col(|ui| {
        ui.label(
            RichText::new(p.direction.arrow())
                .strong()
                .color(direction_color(visuals, p.direction)),
        )
        .on_hover_text(p.direction.as_str());
    });
    row.col(|ui| {
        ui.monospace(thousands(p.data.len()));
    });
    row.col(|ui| match p.label {
        Some(label) => {
            ui.label(label);
        }
        // Without a label the first bytes are the best hint of what the packet is.
        None => {
            let head = &p.data[..p.data.len().min(PREVIEW_BYTES)];
            ui.label(RichText::new(ascii_preview(head)).monospace().weak());
        }
    });
    row.col(|ui| {
        if !p.flags.is_empty() {
            ui.label(RichText::new(p.flags.to_string()).color(visuals.warn_fg_color));
        }
    });
}

/// Client-to-server and server-to-client in two colours that read on both themes.
pub fn direction_color(visuals: &Visuals, direction: Direction) -> Color32 {
    match (direction, visuals.dark_mode) {
        (Direction::ClientToServer, true) => Color32::from_rgb(110, 170, 255),
        (Direction::ClientToServer, false) => Color32::from_rgb(20, 90, 200),
        (Direction::ServerToClient, true) => Color32::from_rgb(130, 210, 130),
        (Direction::ServerToClient, false) => Color32::from_rgb(20, 130, 40),
    }
}
