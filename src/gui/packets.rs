//! The packet table: one row per packet, only the visible rows laid out, so a capture of
//! millions of packets scrolls as smoothly as one of ten.

use eframe::egui::{self, Align, Color32, Layout, RichText, Sense, TextStyle, Ui, Visuals};
use egui_extras::{Column, TableBuilder, TableRow};

use crate::capture::{Direction, PacketRef, StoreData, ascii_preview};

use super::decode::Summaries;
use super::state::{Action, ViewerState};
use super::text::{endpoints, thousands, time_of_day};
use super::workbench::BenchAction;

/// How many bytes of an unlabelled packet the label column previews.
const PREVIEW_BYTES: usize = 48;

pub const FOLLOW: &str = "Follow live";

pub fn show(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    decoded: Option<&Summaries>,
    follow: bool,
    scroll_to: Option<usize>,
    actions: &mut Vec<Action>,
) {
    heading(ui, state, data, decoded, follow, actions);
    if state.rows().is_empty() {
        ui.add_space(12.0);
        ui.label(RichText::new("No packets here yet.").weak());
        return;
    }
    table(ui, state, data, decoded, scroll_to, actions);
}

fn heading(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    decoded: Option<&Summaries>,
    follow: bool,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.heading("Packets");
        if ui
            .selectable_label(follow, FOLLOW)
            .on_hover_text("Keep the newest packet in view as traffic arrives")
            .clicked()
        {
            actions.push(Action::Bench(BenchAction::ToggleFollow));
        }
        if let Some(d) = decoded
            && d.done < data.packet_count()
        {
            ui.label(
                RichText::new(format!(
                    "decoding {} / {}",
                    thousands(d.done),
                    thousands(data.packet_count())
                ))
                .weak(),
            );
        }
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
    decoded: Option<&Summaries>,
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
        .column(Column::initial(56.0).at_least(36.0).clip(true))
        .column(Column::initial(72.0).at_least(40.0))
        .column(Column::initial(300.0).at_least(80.0).clip(true))
        .column(Column::remainder().at_least(60.0));
    if let Some(row) = scroll_to {
        builder = builder.scroll_to_row(row, None);
    }
    builder
        .header(20.0, |mut header| {
            for title in [
                "No.",
                "time (UTC)",
                "conn",
                "",
                "protocol",
                "size",
                "label",
                "flags",
            ] {
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
                cells(&mut row, &packet, data, decoded, &visuals);
                if row.response().clicked() {
                    actions.push(Action::SelectPacket(packet.id));
                }
            });
        });
}

fn cells(
    row: &mut TableRow<'_, '_>,
    p: &PacketRef<'_>,
    data: &StoreData,
    decoded: Option<&Summaries>,
    visuals: &Visuals,
) {
    let summary = decoded.and_then(|d| d.packet(p.id));
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
        let protocol = decoded
            .and_then(|d| d.protocol(p.connection))
            .or_else(|| data.connection(p.connection)?.protocol.as_deref());
        ui.label(protocol.unwrap_or("–"));
    });
    row.col(|ui| {
        ui.monospace(thousands(p.data.len()));
    });
    // A label given when the packet was recorded wins: it was chosen with more context
    // (an importer's, a replay's) than one packet's decode.
    let label = p
        .label
        .map(str::to_owned)
        .or_else(|| summary.and_then(|s| s.text()));
    row.col(|ui| match label {
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
        let mut flags = p.flags.names();
        if summary.is_some_and(|s| s.error) {
            flags.push("error");
        }
        if !flags.is_empty() {
            ui.label(RichText::new(flags.join(",")).color(visuals.warn_fg_color));
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
