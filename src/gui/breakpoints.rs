//! Breakpoints: the rules that hold messages, and the queue of held messages with forward,
//! edit and drop.

use eframe::egui::{self, RichText, TextEdit, Ui};

use crate::capture::Direction;
use crate::engine::{Held, Rule};

use super::state::Action;
use super::workbench::BenchAction;

/// The "add a rule" form; empty fields match anything.
#[derive(Clone, Debug, Default)]
pub struct RuleForm {
    pub route: String,
    pub direction: Option<Direction>,
    pub field: String,
    pub equals: String,
}

impl RuleForm {
    pub fn rule(&self) -> Rule {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        Rule {
            route: opt(&self.route),
            direction: self.direction,
            field: opt(&self.field),
            equals: opt(&self.equals),
            label_contains: None,
        }
    }
}

pub fn describe(rule: &Rule) -> String {
    let route = rule.route.as_deref().unwrap_or("any route");
    let dir = rule.direction.map_or("both ways", Direction::arrow);
    let what = match (&rule.field, &rule.equals) {
        (Some(f), Some(v)) => format!("{f} == {v:?}"),
        (Some(f), None) => format!("has {f}"),
        (None, Some(v)) => format!("label == {v:?}"),
        (None, None) => "every message".to_owned(),
    };
    let label = rule
        .label_contains
        .as_deref()
        .map(|l| format!(", label contains {l:?}"))
        .unwrap_or_default();
    format!("{route} {dir} {what}{label}")
}

pub fn show(
    ui: &mut Ui,
    form: &mut RuleForm,
    rules: &[Rule],
    held: &[Held],
    route_names: &[String],
    actions: &mut Vec<Action>,
) {
    ui.heading("Breakpoints");
    for (i, rule) in rules.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui
                .small_button("Remove")
                .on_hover_text("Remove this rule")
                .clicked()
            {
                actions.push(Action::Bench(BenchAction::RemoveRule(i)));
            }
            ui.label(describe(rule));
        });
    }
    if rules.is_empty() {
        ui.label(RichText::new("No rules: every message flows.").weak());
    }
    egui::Grid::new("rule_form")
        .num_columns(2)
        .spacing([6.0, 4.0])
        .show(ui, |ui| {
            ui.label("");
            egui::ComboBox::from_label("Route")
                .selected_text(if form.route.is_empty() {
                    "any"
                } else {
                    &form.route
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut form.route, String::new(), "any");
                    for name in route_names {
                        ui.selectable_value(&mut form.route, name.clone(), name);
                    }
                });
            ui.end_row();
            ui.label("");
            egui::ComboBox::from_label("Direction")
                .selected_text(form.direction.map_or("both", Direction::as_str))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut form.direction, None, "both");
                    for d in [Direction::ClientToServer, Direction::ServerToClient] {
                        ui.selectable_value(&mut form.direction, Some(d), d.as_str());
                    }
                });
            ui.end_row();
            let field = ui.label("Field");
            ui.add(
                TextEdit::singleline(&mut form.field)
                    .hint_text("TXN")
                    .desired_width(140.0),
            )
            .labelled_by(field.id);
            ui.end_row();
            let equals = ui.label("Equals");
            ui.add(
                TextEdit::singleline(&mut form.equals)
                    .hint_text("NuLogin")
                    .desired_width(140.0),
            )
            .labelled_by(equals.id);
            ui.end_row();
        });
    if ui.button("Add rule").clicked() {
        actions.push(Action::Bench(BenchAction::AddRule(form.rule())));
    }
    ui.add_space(6.0);
    ui.strong(format!("Held messages ({})", held.len()));
    if held.is_empty() {
        ui.label(RichText::new("Messages a rule matches wait here.").weak());
    }
    for h in held {
        ui.horizontal(|ui| {
            ui.label(format!(
                "#{} {} {} {} ({} bytes)",
                h.id,
                h.route,
                h.direction.arrow(),
                h.label,
                h.bytes.len()
            ));
        });
        ui.horizontal(|ui| {
            if ui.small_button("Forward").clicked() {
                actions.push(Action::Bench(BenchAction::Forward(h.id)));
            }
            if ui.small_button("Edit…").clicked() {
                actions.push(Action::Bench(BenchAction::EditHeld(h.id)));
            }
            if ui.small_button("Drop").clicked() {
                actions.push(Action::Bench(BenchAction::Drop(h.id)));
            }
        });
    }
}
