//! Audit and alerts: logins accepted and refused, bans and server errors (the servers'
//! `gamewire::audit` events), engine warnings and errors, and routes that failed to start.

use std::collections::VecDeque;

use eframe::egui::{self, RichText, Ui};
use tracing::Level;

use crate::engine::log_ring::LogEntry;
use crate::engine::{RouteState, RouteStatus};

use super::log_pane::level_color;

const KEPT: usize = 2_000;

pub const EMPTY_TEXT: &str = "No logins or alerts yet. Run the demo client (F5) or point a \
     game at the servers to see login attempts here.";

#[derive(Default)]
pub struct AuditPane {
    /// Security events, newest last.
    audit: VecDeque<LogEntry>,
    /// Warnings and errors of the rest of gamewire.
    alerts: VecDeque<LogEntry>,
}

impl AuditPane {
    /// Keeps what concerns this pane from one log event.
    pub fn push(&mut self, entry: &LogEntry) {
        let list = if entry.is_audit() {
            &mut self.audit
        } else if entry.level <= Level::WARN && entry.target.starts_with("gamewire") {
            // Only gamewire's own: the windowing and graphics crates warn about the display
            // at every start, which is nothing a user can act on.
            &mut self.alerts
        } else {
            return;
        };
        if list.len() >= KEPT {
            list.pop_front();
        }
        list.push_back(entry.clone());
    }

    /// Logins accepted and refused so far.
    pub fn counts(&self) -> (usize, usize) {
        let of = |kind: &str| {
            self.audit
                .iter()
                .filter(|e| e.field("kind") == Some(kind))
                .count()
        };
        (of("login"), of("login_failed") + of("ban"))
    }

    pub fn show(&self, ui: &mut Ui, routes: &[RouteStatus]) {
        let failed: Vec<(&str, &str)> = routes
            .iter()
            .filter_map(|r| match &r.state {
                RouteState::Failed(e) => Some((r.name.as_str(), e.as_str())),
                _ => None,
            })
            .collect();
        let (ok, refused) = self.counts();
        ui.horizontal(|ui| {
            ui.label(format!("Logins accepted: {ok}"));
            ui.separator();
            ui.label(format!("refused: {refused}"));
            ui.separator();
            ui.label(format!("alerts: {}", self.alerts.len() + failed.len()));
        });
        ui.separator();
        if self.audit.is_empty() && self.alerts.is_empty() && failed.is_empty() {
            ui.label(RichText::new(EMPTY_TEXT).weak());
            return;
        }
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for (route, error) in failed {
                    ui.label(
                        RichText::new(format!("route {route} is down: {error}"))
                            .color(ui.visuals().error_fg_color),
                    );
                }
                egui::Grid::new("audit_grid")
                    .striped(true)
                    .num_columns(5)
                    .show(ui, |ui| {
                        for e in &self.audit {
                            audit_row(ui, e);
                        }
                    });
                if !self.alerts.is_empty() {
                    ui.add_space(6.0);
                    ui.label(RichText::new("Alerts").strong());
                    for e in &self.alerts {
                        ui.label(
                            RichText::new(format!(
                                "{} {} {}{}",
                                e.time,
                                e.level,
                                e.message,
                                e.fields_text()
                            ))
                            .monospace()
                            .color(level_color(ui, e.level)),
                        );
                    }
                }
            });
    }
}

fn audit_row(ui: &mut Ui, e: &LogEntry) {
    let kind = e.field("kind").unwrap_or("event");
    let (text, color) = match kind {
        "login" => ("login ok", ui.visuals().text_color()),
        "login_failed" => ("login failed", ui.visuals().warn_fg_color),
        "ban" => ("banned", ui.visuals().error_fg_color),
        "error" => ("server error", ui.visuals().error_fg_color),
        other => (other, ui.visuals().text_color()),
    };
    ui.label(RichText::new(&e.time).monospace().weak());
    ui.label(RichText::new(text).color(color).strong());
    ui.label(e.field("service").unwrap_or(""));
    ui.label(e.field("who").unwrap_or(""));
    ui.label(format!(
        "{} {}",
        e.field("peer").unwrap_or(""),
        e.field("error").unwrap_or("")
    ));
    ui.end_row();
}
