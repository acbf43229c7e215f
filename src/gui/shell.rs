//! The workbench around the capture viewer: the menu bar (files, view, help), the bottom
//! panes (log, audit and alerts, traffic, demo), file saves on their thread, settings and
//! shortcuts. The viewer calls into it at a few fixed points of its frame.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui::{self, Color32, RichText, Ui};

use super::engine_view::EngineView;
use crate::capture::files::Format;
use crate::capture::{ConnectionId, StoreData};
use crate::engine::log_ring::LogRing;

use super::audit::AuditPane;
use super::demo::DemoPane;
use super::files::{self, Dialog, DialogKind, Job, Request, Scope};
use super::log_pane::LogPane;
use super::plot::{self, Traffic};
use super::settings::{self, Settings, Shortcut, Theme, WatchTab};
use super::state::{Action, Source, ViewerState};

pub struct Shell {
    pub settings: Settings,
    ring: Arc<LogRing>,
    next_seq: u64,
    pub log: LogPane,
    pub audit: AuditPane,
    pub traffic: Traffic,
    pub demo: DemoPane,
    /// The engine's answer to this command says whether the demo could start.
    demo_command: Option<crate::engine::CommandId>,
    dialog: Option<Dialog>,
    job: Option<Job>,
    /// The last save's outcome, shown in the menu bar until dismissed.
    status: Option<Result<String, String>>,
    help_open: bool,
}

impl Default for Shell {
    fn default() -> Self {
        Shell::new(Arc::clone(LogRing::global()))
    }
}

impl Shell {
    pub fn new(ring: Arc<LogRing>) -> Self {
        Shell {
            settings: Settings::default(),
            ring,
            next_seq: 0,
            log: LogPane::default(),
            audit: AuditPane::default(),
            traffic: Traffic::default(),
            demo: DemoPane::default(),
            demo_command: None,
            dialog: None,
            job: None,
            status: None,
            help_open: false,
        }
    }

    /// Reads the log events that arrived since the last frame.
    pub fn poll(&mut self) {
        let new = self.ring.since(self.next_seq);
        if let Some(last) = new.last() {
            self.next_seq = last.seq + 1;
        }
        for entry in new {
            self.audit.push(&entry);
            self.log.push(entry);
        }
        if let Some(job) = &self.job
            && let Some(outcome) = job.poll()
        {
            if outcome.is_ok() {
                let path = job.path.clone();
                self.settings.remember(&path);
            }
            self.status = Some(outcome);
            self.job = None;
        }
    }

    pub fn is_saving(&self) -> bool {
        self.job.is_some()
    }

    pub fn status(&self) -> Option<&Result<String, String>> {
        self.status.as_ref()
    }

    pub fn open_dialog(&mut self, kind: DialogKind, state: &ViewerState) {
        let suggestion = match kind {
            DialogKind::Open | DialogKind::ImportSdJson => String::new(),
            DialogKind::Save(f) => {
                let dir = self
                    .settings
                    .recent
                    .first()
                    .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                    .unwrap_or_default();
                dir.join(format!("capture{}", f.extension()))
                    .display()
                    .to_string()
            }
        };
        let scope = state.filter().map_or(Scope::All, Scope::Connection);
        self.dialog = Some(Dialog::new(kind, suggestion, scope));
    }

    pub fn menu_bar(
        &mut self,
        ui: &mut Ui,
        state: &ViewerState,
        engine: Option<&EngineView>,
        actions: &mut Vec<Action>,
    ) {
        let ctx = ui.ctx().clone();
        let has_capture = state.capture().is_some();
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                let item = |ui: &mut Ui, text: &str, which: Option<Shortcut>, enabled: bool| {
                    let mut button = egui::Button::new(text);
                    if let Some(s) = which {
                        button = button.shortcut_text(settings::shortcut_text(&ctx, s));
                    }
                    ui.add_enabled(enabled, button).clicked()
                };
                if item(ui, "Open…", Some(Shortcut::Open), true) {
                    self.open_dialog(DialogKind::Open, state);
                }
                if item(ui, "Import sd.json…", None, true) {
                    self.open_dialog(DialogKind::ImportSdJson, state);
                }
                ui.menu_button("Recent files", |ui| {
                    if self.settings.recent.is_empty() {
                        ui.label(RichText::new("None yet").weak());
                    }
                    for path in &self.settings.recent {
                        if ui.button(path.display().to_string()).clicked() {
                            actions.push(Action::Open(path.clone()));
                        }
                    }
                });
                ui.separator();
                let idle = has_capture && self.job.is_none();
                if item(ui, "Save capture as .gwcap…", Some(Shortcut::Save), idle) {
                    self.open_dialog(DialogKind::Save(Format::Gwcap), state);
                }
                for (text, f) in [
                    ("Export sd.json…", Format::SdJson),
                    ("Export pcapng…", Format::Pcapng),
                    ("Export HAR…", Format::Har),
                ] {
                    let which = (f == Format::SdJson).then_some(Shortcut::Export);
                    if item(ui, text, which, idle) {
                        self.open_dialog(DialogKind::Save(f), state);
                    }
                }
            });
            ui.menu_button("View", |ui| {
                let mut open = self.settings.watch_open;
                if ui
                    .checkbox(&mut open, "Log, audit, traffic and demo panes")
                    .clicked()
                {
                    self.settings.watch_open = open;
                }
                for tab in WatchTab::ALL {
                    if ui.button(tab.title()).clicked() {
                        self.show_tab(tab);
                    }
                }
                ui.separator();
                ui.horizontal(|ui| {
                    ui.label("Theme");
                    ui.selectable_value(&mut self.settings.theme, Theme::Dark, "Dark");
                    ui.selectable_value(&mut self.settings.theme, Theme::Light, "Light");
                });
            });
            ui.menu_button("Run", |ui| {
                let button = egui::Button::new(super::demo::RUN_LABEL)
                    .shortcut_text(settings::shortcut_text(&ctx, Shortcut::RunDemo));
                if ui
                    .add_enabled(engine.is_some() && !self.demo.is_running(), button)
                    .clicked()
                {
                    self.start_demo(&ctx, engine);
                }
            });
            ui.menu_button("Help", |ui| {
                if ui.button("Keyboard shortcuts").clicked() {
                    self.help_open = true;
                }
            });
            self.job_status(ui);
        });
    }

    fn job_status(&mut self, ui: &mut Ui) {
        ui.add_space(16.0);
        if let Some(job) = &self.job {
            let name = job.path.file_name().map_or_else(
                || job.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            ui.label(format!("Saving {name} ({})…", job.format.name()));
            ui.add(
                egui::ProgressBar::new(job.progress())
                    .desired_width(180.0)
                    .show_percentage(),
            );
            // The thread wakes the window when done; the bar still moves meanwhile.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
            return;
        }
        let mut dismiss = false;
        match &self.status {
            Some(Ok(text)) => {
                ui.label(RichText::new(text).color(Color32::from_rgb(90, 170, 90)));
                dismiss = ui.small_button("Dismiss").clicked();
            }
            Some(Err(e)) => {
                ui.label(
                    RichText::new(format!("Could not save: {e}"))
                        .color(ui.visuals().error_fg_color),
                );
                dismiss = ui.small_button("Dismiss").clicked();
            }
            None => {}
        }
        if dismiss {
            self.status = None;
        }
    }

    fn show_tab(&mut self, tab: WatchTab) {
        self.settings.watch_open = true;
        self.settings.watch_tab = tab;
    }

    /// Takes the demo's steps and whether it could start from the engine's events.
    pub fn on_event(&mut self, event: &crate::engine::Event) {
        match event {
            crate::engine::Event::Demo(progress) => self.demo.run = Some(progress.clone()),
            crate::engine::Event::Done {
                id, result: Err(e), ..
            } if Some(*id) == self.demo_command => {
                self.demo.run = None;
                self.demo.error = Some(e.clone());
            }
            _ => {}
        }
    }

    pub fn start_demo(&mut self, _ctx: &egui::Context, engine: Option<&EngineView>) {
        self.show_tab(WatchTab::Demo);
        let Some(engine) = engine else {
            self.demo.error = Some(super::demo::NO_ENGINE.into());
            return;
        };
        if self.demo.is_running() {
            return;
        }
        self.demo_command = Some(engine.send(crate::engine::Command::RunDemo));
        self.demo.run = Some(Default::default());
        self.demo.error = None;
    }

    /// A hint over an empty live capture: what to do to see traffic.
    pub fn empty_live_hint(
        &mut self,
        ui: &mut Ui,
        state: &ViewerState,
        data: Option<&StoreData>,
        engine: Option<&EngineView>,
    ) {
        let live = matches!(
            state.capture().map(|c| &c.source),
            Some(Source::Live { .. })
        );
        if engine.is_none() || !live || data.is_some_and(|d| d.packet_count() > 0) {
            return;
        }
        let ctx = ui.ctx().clone();
        egui::Panel::top("live_hint").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new("No traffic yet.").strong());
                ui.label(
                    "Point a game client at the taps (see the hosts file notes in the README), or",
                );
                if ui
                    .button(format!(
                        "{} ({})",
                        super::demo::RUN_LABEL,
                        settings::shortcut_text(&ctx, Shortcut::RunDemo)
                    ))
                    .clicked()
                {
                    self.start_demo(&ctx, engine);
                }
                ui.label("to see whole Red Alert 3 and Star Citizen logins decoded.");
            });
        });
    }

    /// The bottom panes, as tabs.
    pub fn watch_panel(
        &mut self,
        ui: &mut Ui,
        state: &ViewerState,
        data: Option<&StoreData>,
        engine: Option<&EngineView>,
    ) {
        if !self.settings.watch_open {
            return;
        }
        if let (Some(store), Some(data)) = (state.store(), data)
            && self.settings.watch_tab == WatchTab::Traffic
        {
            self.traffic.update(&store, data);
        }
        let ctx = ui.ctx().clone();
        egui::Panel::bottom("watch")
            .resizable(true)
            .default_size(170.0)
            .min_size(90.0)
            .show(ui, |ui| {
                // A resizable panel is as tall as what it holds; without this it shrank to a
                // short tab (the demo's) and stayed that small for the plot.
                ui.set_min_height(ui.available_height());
                ui.horizontal(|ui| {
                    for tab in WatchTab::ALL {
                        let title = match tab {
                            WatchTab::Audit => {
                                let (ok, refused) = self.audit.counts();
                                format!("{} ({ok} ok, {refused} refused)", tab.title())
                            }
                            _ => tab.title().to_owned(),
                        };
                        ui.selectable_value(&mut self.settings.watch_tab, tab, title);
                    }
                });
                ui.separator();
                match self.settings.watch_tab {
                    WatchTab::Log => self.log.show(ui),
                    WatchTab::Audit => {
                        let routes = engine.map(EngineView::routes).unwrap_or_default();
                        self.audit.show(ui, routes);
                    }
                    WatchTab::Traffic => {
                        plot::summary(ui, &self.traffic);
                        self.traffic.show(ui);
                    }
                    WatchTab::Demo => {
                        // Scrolls inside the pane: two clients' steps would otherwise grow
                        // the pane over the packet table.
                        let start = egui::ScrollArea::vertical()
                            .id_salt("demo_steps")
                            .auto_shrink([false, false])
                            .stick_to_bottom(true)
                            .show(ui, |ui| self.demo.show(ui, engine.is_some()))
                            .inner;
                        if start {
                            self.start_demo(&ctx, engine);
                        }
                    }
                }
            });
    }

    /// Windows over everything: the path prompt and the shortcuts list.
    pub fn windows(
        &mut self,
        ctx: &egui::Context,
        state: &ViewerState,
        data: Option<&StoreData>,
        actions: &mut Vec<Action>,
    ) {
        settings::help_window(ctx, &mut self.help_open);
        let Some(dialog) = &mut self.dialog else {
            return;
        };
        let shown = state.filter().map(|c| (c, connection_text(data, c)));
        let mut open = true;
        let request = dialog.show(ctx, &self.settings.recent, shown, &mut open);
        if !open {
            self.dialog = None;
        }
        match request {
            Some(Request::Open(path)) => actions.push(Action::Open(path)),
            Some(Request::Save {
                path,
                format,
                scope,
            }) => self.start_save(ctx, state, path, format, scope),
            None => {}
        }
    }

    pub fn start_save(
        &mut self,
        ctx: &egui::Context,
        state: &ViewerState,
        path: PathBuf,
        format: Format,
        scope: Scope,
    ) {
        let (Some(store), Some(capture)) = (state.store(), state.capture()) else {
            return;
        };
        let live = matches!(capture.source, Source::Live { .. });
        let wake = ctx.clone();
        self.status = None;
        self.job = Some(files::start_save(
            store,
            live,
            path,
            format,
            scope,
            move || wake.request_repaint(),
        ));
    }

    /// Shortcuts; they work while a text field has the keyboard too, as in other apps.
    pub fn keyboard(
        &mut self,
        ctx: &egui::Context,
        state: &ViewerState,
        engine: Option<&EngineView>,
    ) {
        for shortcut in settings::pressed(ctx) {
            match shortcut {
                Shortcut::Open => self.open_dialog(DialogKind::Open, state),
                Shortcut::Save if state.capture().is_some() && self.job.is_none() => {
                    self.open_dialog(DialogKind::Save(Format::Gwcap), state)
                }
                Shortcut::Export if state.capture().is_some() && self.job.is_none() => {
                    self.open_dialog(DialogKind::Save(Format::SdJson), state)
                }
                Shortcut::Save | Shortcut::Export => {}
                Shortcut::FocusFilter => ctx.data_mut(|d| {
                    d.insert_temp(egui::Id::unique(settings::FOCUS_FILTER_ID), true);
                }),
                Shortcut::RunDemo => self.start_demo(ctx, engine),
                Shortcut::ToggleWatch => self.settings.watch_open = !self.settings.watch_open,
                Shortcut::ToggleTheme => {
                    self.settings.theme = match self.settings.theme {
                        Theme::Dark => Theme::Light,
                        Theme::Light => Theme::Dark,
                    }
                }
                Shortcut::Help => self.help_open = !self.help_open,
            }
        }
        self.settings.apply_theme(ctx);
    }
}

fn connection_text(data: Option<&StoreData>, id: ConnectionId) -> String {
    data.and_then(|d| d.connection(id)).map_or_else(
        || format!("connection {}", id.0),
        |c| format!("{} → {}", c.client, c.server),
    )
}
