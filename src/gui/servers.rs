//! The servers panel: every route the engine runs (taps, the proxy, emulated servers) with
//! its address, state, connections and errors, and start, stop and restart. A route that
//! failed to start (a port in use) says why here while the rest keeps working.

use std::collections::HashMap;

use eframe::egui::{self, RichText, Ui};

use crate::capture::{ConnectionId, StoreData};
use crate::engine::{RouteState, RouteStatus};

use super::state::Action;
use super::workbench::BenchAction;

#[derive(Default, Clone, Copy)]
struct Counts {
    live: usize,
    total: usize,
    errors: usize,
}

/// A connection that ended for a reason other than one side closing counts as an error.
fn is_error(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| !r.starts_with("closed by"))
}

pub fn show(
    ui: &mut Ui,
    routes: &[RouteStatus],
    data: Option<&StoreData>,
    live: &[ConnectionId],
    actions: &mut Vec<Action>,
) {
    ui.heading("Servers");
    let mut counts: HashMap<&str, Counts> = HashMap::new();
    if let Some(data) = data {
        for c in data.connections() {
            let Some(route) = c.route.as_deref() else {
                continue;
            };
            let n = counts.entry(route).or_default();
            n.total += 1;
            n.live += usize::from(live.binary_search(&c.id).is_ok());
            n.errors += usize::from(is_error(c.close_reason.as_deref()));
        }
    }
    // One line per route: a dozen routes fit beside the packet table.
    // Sideways scrolling rather than a panel wider than the window allows (addresses run
    // long); the buttons come first so they always show.
    egui::ScrollArea::horizontal()
        .id_salt("servers_h")
        .show(ui, |ui| {
            egui::Grid::new("servers_grid")
                .num_columns(5)
                .striped(true)
                .spacing([8.0, 4.0])
                .show(ui, |ui| {
                    for r in routes {
                        let n = counts.get(r.name.as_str()).copied().unwrap_or_default();
                        row(ui, r, n, actions);
                    }
                });
        });
    // Below the table, so a long reason does not widen its columns.
    for r in routes {
        if let RouteState::Failed(why) = &r.state {
            ui.label(
                RichText::new(format!("{}: {why}", r.name)).color(ui.visuals().error_fg_color),
            );
        }
    }
    if routes.is_empty() {
        ui.label(RichText::new("No routes are configured.").weak());
    }
}

fn row(ui: &mut Ui, r: &RouteStatus, n: Counts, actions: &mut Vec<Action>) {
    state_label(ui, &r.state);
    ui.strong(&r.name).on_hover_text(&r.description);
    // The buttons before the address: the panel may scroll sideways, they must not.
    ui.horizontal(|ui| {
        let running = matches!(r.state, RouteState::Running(_));
        let name = || r.name.clone();
        if running {
            if ui.add(egui::Button::new("Stop").small()).clicked() {
                actions.push(Action::Bench(BenchAction::StopRoute(name())));
            }
        } else if ui.add(egui::Button::new("Start").small()).clicked() {
            actions.push(Action::Bench(BenchAction::StartRoute(name())));
        }
        if ui.add(egui::Button::new("Restart").small()).clicked() {
            actions.push(Action::Bench(BenchAction::RestartRoute(name())));
        }
    });
    let addr = match &r.state {
        RouteState::Running(a) => a.to_string(),
        _ => r.listen.to_string(),
    };
    let upstream = r.upstream.as_deref().map(|u| {
        // Same host as the listener (the usual emulator behind a tap): the port says it all.
        let listen_host = addr.rsplit_once(':').map(|(h, _)| h);
        match u.rsplit_once(':') {
            Some((host, port)) if Some(host) == listen_host => format!(" → :{port}"),
            _ => format!(" → {u}"),
        }
    });
    ui.monospace(format!("{addr}{}", upstream.unwrap_or_default()))
        .on_hover_text(r.upstream.as_deref().unwrap_or("no upstream"));
    let text = if n.errors > 0 {
        RichText::new(format!("{}/{} · {} err", n.live, n.total, n.errors))
            .color(ui.visuals().warn_fg_color)
    } else {
        RichText::new(format!("{}/{}", n.live, n.total)).weak()
    };
    ui.label(text).on_hover_text(format!(
        "{} live, {} connections in all, {} ended by an error",
        n.live, n.total, n.errors
    ));
    ui.end_row();
}

fn state_label(ui: &mut Ui, state: &RouteState) {
    let (text, color) = match state {
        RouteState::Running(_) => ("running", egui::Color32::from_rgb(60, 170, 80)),
        RouteState::Stopped => ("stopped", ui.visuals().weak_text_color()),
        RouteState::Failed(_) => ("failed", ui.visuals().error_fg_color),
    };
    ui.label(RichText::new(text).color(color).strong());
}
