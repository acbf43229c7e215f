//! The connection list on the left; clicking one narrows the packet table to it.

use eframe::egui::{self, Align, Layout, RichText, Sense, TextStyle, Ui};
use egui_extras::{Column, TableBuilder};

use crate::capture::StoreData;

use super::state::{Action, ViewerState};
use super::text::{endpoints, protocol_and_route, thousands};

pub fn show(ui: &mut Ui, state: &ViewerState, data: &StoreData, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("Connections");
        ui.label(RichText::new(thousands(data.connection_count())).weak());
    });
    let all = ui
        .selectable_label(
            state.filter().is_none(),
            format!(
                "All connections · {} packets",
                thousands(data.packet_count())
            ),
        )
        .on_hover_text("Show the packets of every connection");
    if all.clicked() {
        actions.push(Action::ShowAllConnections);
    }
    ui.add_space(4.0);
    if data.connections().is_empty() {
        ui.label(RichText::new("This capture has no connections.").weak());
        return;
    }
    table(ui, state, data, actions);
}

fn table(ui: &mut Ui, state: &ViewerState, data: &StoreData, actions: &mut Vec<Action>) {
    // A click on a cell's text must select the row, not start a text selection.
    ui.style_mut().interaction.selectable_labels = false;
    ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
    let row_height = ui.text_style_height(&TextStyle::Body) + 4.0;
    TableBuilder::new(ui)
        .id_salt("connections")
        .striped(true)
        .resizable(true)
        .sense(Sense::click())
        .cell_layout(Layout::left_to_right(Align::Center))
        .column(Column::auto().at_least(28.0))
        .column(Column::auto().at_least(36.0))
        .column(Column::initial(270.0).at_least(120.0).clip(true))
        .column(Column::initial(130.0).at_least(60.0).clip(true))
        .column(Column::remainder().at_least(50.0))
        .header(20.0, |mut header| {
            for title in [
                "#",
                "proto",
                "client → server",
                "protocol / route",
                "packets",
            ] {
                header.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(row_height, data.connections().len(), |mut row| {
                let Some(conn) = data.connections().get(row.index()) else {
                    return;
                };
                row.set_selected(state.filter() == Some(conn.id));
                row.col(|ui| {
                    ui.monospace(conn.id.0.to_string());
                });
                row.col(|ui| {
                    ui.label(conn.transport.as_str());
                });
                row.col(|ui| {
                    ui.monospace(endpoints(conn));
                });
                row.col(|ui| {
                    ui.label(protocol_and_route(conn));
                });
                row.col(|ui| {
                    ui.monospace(thousands(state.packets_in(conn.id)));
                });
                if row.response().clicked() {
                    actions.push(Action::ToggleConnection(conn.id));
                }
            });
        });
}
