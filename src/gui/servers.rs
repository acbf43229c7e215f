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
    egui::Grid::new("servers_grid")
        .num_columns(2)
        .striped(true)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            for r in routes {
                let n = counts.get(r.name.as_str()).copied().unwrap_or_default();
                ui.vertical(|ui| {
                    ui.horizontal(|ui| {
                        ui.strong(&r.name);
                        ui.label(RichText::new(r.kind.as_str()).weak());
                        state_label(ui, &r.state);
                    });
                    let addr = match &r.state {
                        RouteState::Running(a) => a.to_string(),
                        _ => r.listen.to_string(),
                    };
                    let upstream = r
                        .upstream
                        .as_deref()
                        .map(|u| format!(" → {u}"))
                        .unwrap_or_default();
                    ui.monospace(format!("{addr}{upstream}"));
                    ui.label(
                        RichText::new(format!(
                            "{} live · {} connections · {} errors",
                            n.live, n.total, n.errors
                        ))
                        .weak(),
                    );
                    if let RouteState::Failed(why) = &r.state {
                        ui.label(RichText::new(why).color(ui.visuals().error_fg_color));
                    }
                });
                ui.vertical(|ui| {
                    let running = matches!(r.state, RouteState::Running(_));
                    let name = || r.name.clone();
                    if ui
                        .add_enabled(!running, egui::Button::new("Start").small())
                        .clicked()
                    {
                        actions.push(Action::Bench(BenchAction::StartRoute(name())));
                    }
                    if ui
                        .add_enabled(running, egui::Button::new("Stop").small())
                        .clicked()
                    {
                        actions.push(Action::Bench(BenchAction::StopRoute(name())));
                    }
                    if ui.add(egui::Button::new("Restart").small()).clicked() {
                        actions.push(Action::Bench(BenchAction::RestartRoute(name())));
                    }
                });
                ui.end_row();
            }
        });
    if routes.is_empty() {
        ui.label(RichText::new("No routes are configured.").weak());
    }
}

fn state_label(ui: &mut Ui, state: &RouteState) {
    let (text, color) = match state {
        RouteState::Running(_) => ("running", egui::Color32::from_rgb(60, 170, 80)),
        RouteState::Stopped => ("stopped", ui.visuals().weak_text_color()),
        RouteState::Failed(_) => ("failed", ui.visuals().error_fg_color),
    };
    ui.label(RichText::new(text).color(color).strong());
}
