//! The connection list on the left; clicking one narrows the packet table to it.

use eframe::egui::{self, Align, Layout, RichText, Sense, TextStyle, Ui};
use egui_extras::{Column, TableBuilder};

use crate::capture::StoreData;

use super::decode::Summaries;
use super::state::{Action, ViewerState};
use super::text::{endpoints, human_bytes, thousands};

pub fn show(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    decoded: Option<&Summaries>,
    actions: &mut Vec<Action>,
) {
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
    table(ui, state, data, decoded, actions);
}

fn table(
    ui: &mut Ui,
    state: &ViewerState,
    data: &StoreData,
    decoded: Option<&Summaries>,
    actions: &mut Vec<Action>,
) {
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
        .column(Column::auto().at_least(24.0))
        .column(Column::initial(72.0).at_least(40.0).clip(true))
        .column(Column::initial(120.0).at_least(60.0).clip(true))
        .column(Column::initial(120.0).at_least(60.0).clip(true))
        .column(Column::initial(56.0).at_least(36.0).clip(true))
        .column(Column::initial(56.0).at_least(30.0).clip(true))
        .column(Column::initial(64.0).at_least(40.0))
        .column(Column::initial(52.0).at_least(36.0))
        .column(Column::remainder().at_least(50.0).clip(true))
        .header(20.0, |mut header| {
            for title in [
                "#", "route", "client", "server", "protocol", "TLS", "bytes", "packets", "state",
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
                    ui.label(conn.route.as_deref().unwrap_or("–"));
                });
                row.col(|ui| {
                    ui.monospace(conn.client.to_string());
                });
                row.col(|ui| {
                    ui.monospace(conn.server.to_string());
                });
                row.col(|ui| {
                    let protocol = conn
                        .protocol
                        .as_deref()
                        .or_else(|| decoded.and_then(|d| d.protocol(conn.id)));
                    ui.label(format!(
                        "{}/{}",
                        protocol.unwrap_or("–"),
                        conn.transport.as_str()
                    ));
                });
                row.col(|ui| {
                    match &conn.tls {
                        Some(tls) => {
                            let version = tls.version.as_deref().unwrap_or("TLS");
                            ui.label(version).on_hover_text(format!(
                                "SNI {} · ALPN {}",
                                tls.sni.as_deref().unwrap_or("–"),
                                tls.alpn.as_deref().unwrap_or("–")
                            ));
                        }
                        None => {
                            ui.label("–");
                        }
                    };
                });
                row.col(|ui| {
                    ui.monospace(human_bytes(state.bytes_in(conn.id)));
                });
                row.col(|ui| {
                    ui.monospace(thousands(state.packets_in(conn.id)));
                });
                row.col(|ui| {
                    match (&conn.closed, &conn.close_reason) {
                        (None, _) => ui.label("open"),
                        (Some(_), Some(reason)) => ui.label(reason.as_str()),
                        (Some(_), None) => ui.label("closed"),
                    }
                    .on_hover_text(endpoints(conn));
                });
                if row.response().clicked() {
                    actions.push(Action::ToggleConnection(conn.id));
                }
            });
        });
}
