//! The viewer app: wires the loader, the state and the panes together, once per frame.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui::{self, Align2, Color32, FontId, Id, Key, LayerId, Order, Ui, ViewportCommand};

use crate::capture::{CaptureStore, StoreData};

use super::engine_view::EngineView;
use super::filter_bar::{self, FilterBar};
use super::loader::{Loader, Outcome};
use super::shell::Shell;
use super::state::{Action, Capture, Source, ViewerState};
use super::workbench::Workbench;
use super::{
    banner, breakpoints, connections, editor, empty, packet_view, packets, servers, top_bar,
};

/// Rows the selection jumps with Page Up and Page Down.
const PAGE_ROWS: isize = 20;

/// The capture viewer: the first version of the workbench window.
///
/// It reads a [`CaptureStore`] through an `Arc`, so the engine can later hand it a store that
/// it keeps filling; the viewer takes the store's read lock only while drawing one frame.
pub struct Viewer {
    state: ViewerState,
    loader: Loader,
    /// A file to start reading at the next frame, when the context to wake is known.
    pending: Option<PathBuf>,
    /// Known from the first frame on; the loader thread wakes the window through it.
    ctx: Option<egui::Context>,
    samples: Vec<PathBuf>,
    title: String,
    /// The engine whose store is shown live, seen through its events; dropped (and so
    /// stopped) with the window.
    engine: Option<EngineView>,
    /// Where the engine's wake-ups find the window (known from the first frame on).
    wake: Arc<std::sync::OnceLock<egui::Context>>,
    bench: Workbench,
    filter_bar: FilterBar,
    /// Menu bar, bottom panes, saves, settings and shortcuts.
    shell: Shell,
}

impl Viewer {
    /// A viewer that opens `file`, if given, as soon as it is shown.
    pub fn new(file: Option<PathBuf>) -> Self {
        Viewer {
            state: ViewerState::new(),
            loader: Loader::default(),
            pending: file,
            ctx: None,
            samples: empty::find_samples(Path::new(empty::SAMPLES_DIR)),
            title: super::WINDOW_TITLE.to_owned(),
            engine: None,
            wake: Arc::default(),
            bench: Workbench::default(),
            filter_bar: FilterBar::default(),
            shell: Shell::default(),
        }
    }

    /// Takes the settings saved by an earlier run, when there is storage.
    pub fn with_storage(mut self, storage: Option<&dyn eframe::Storage>) -> Self {
        if let Some(storage) = storage {
            self.shell.settings = super::settings::Settings::load(storage);
        }
        self
    }

    /// Reads log events from `ring` instead of the one the engine's logging feeds.
    pub fn with_log_ring(mut self, ring: Arc<crate::engine::log_ring::LogRing>) -> Self {
        let settings = std::mem::take(&mut self.shell.settings);
        self.shell = Shell::new(ring);
        self.shell.settings = settings;
        self
    }

    pub fn shell(&self) -> &Shell {
        &self.shell
    }

    pub fn shell_mut(&mut self) -> &mut Shell {
        &mut self.shell
    }

    /// Saves or exports the shown capture on a thread, as File ▸ Save/Export does.
    pub fn save_as(
        &mut self,
        path: PathBuf,
        format: crate::capture::files::Format,
        scope: super::files::Scope,
    ) {
        let ctx = self.ctx.clone().unwrap_or_default();
        self.shell
            .start_save(&ctx, &self.state, path, format, scope);
    }

    /// Shows the engine's capture live, and keeps the engine running while the window is.
    pub fn with_engine(mut self, engine: crate::engine::Engine) -> Self {
        let wake = self.wake.clone();
        let view = EngineView::new(engine, move || {
            if let Some(ctx) = wake.get() {
                ctx.request_repaint();
            }
        });
        let store = view.store().clone();
        self.bench.set_context(view.state().context.clone());
        self.attach_store(store, "engine");
        self.engine = Some(view);
        // Live traffic is watched as it arrives; a file is read from its start.
        self.bench.set_follow(true);
        self
    }

    /// Looks for the sample captures the empty window offers in `dir` instead of
    /// `captures/` under the working directory.
    pub fn with_samples_dir(mut self, dir: &Path) -> Self {
        self.samples = empty::find_samples(dir);
        self
    }

    /// Opens a capture file; it is read on another thread, starting with the next frame.
    pub fn open(&mut self, path: impl Into<PathBuf>) {
        self.pending = Some(path.into());
    }

    /// Shows a store that someone else fills, such as the engine during live capture.
    pub fn attach_store(&mut self, store: Arc<CaptureStore>, name: impl Into<String>) {
        let source = Source::Live { name: name.into() };
        self.state
            .show_capture(Capture { store, source }, Vec::new());
    }

    pub fn state(&self) -> &ViewerState {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut ViewerState {
        &mut self.state
    }

    /// Decoding, the tree selection, breakpoints and the editor.
    pub fn workbench(&self) -> &Workbench {
        &self.bench
    }

    pub fn workbench_mut(&mut self) -> &mut Workbench {
        &mut self.bench
    }

    /// The window's view of the engine, when one runs.
    pub fn engine(&self) -> Option<&EngineView> {
        self.engine.as_ref()
    }

    /// Applies an action as a click would, e.g. from a test.
    pub fn act(&mut self, action: Action) {
        self.apply(action);
    }

    /// Whether a file is waiting to be read or being read.
    pub fn is_loading(&self) -> bool {
        self.pending.is_some() || self.loader.is_busy()
    }

    /// Draws one frame into `ui`, which covers the whole window.
    pub fn show(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if self.ctx.is_none() {
            install_fonts(&ctx);
            self.ctx = Some(ctx.clone());
            let _ = self.wake.set(ctx.clone());
        }
        self.engine_events();
        self.take_dropped_file(&ctx);
        self.start_pending();
        self.collect_loaded();
        self.shell.poll();

        let mut actions = Vec::new();
        let store = self.state.store();
        self.poll_filter(&ctx, store.as_ref());
        {
            // The guard lives for this block only: no lock is held between frames.
            let data = store.as_ref().map(|s| s.read());
            if let Some(data) = &data {
                self.state.refresh(data);
            }
            let live = matches!(
                self.state.capture().map(|c| &c.source),
                Some(Source::Live { .. })
            );
            self.bench.update(
                &ctx,
                store.as_ref(),
                live,
                data.as_deref(),
                self.state.selected(),
            );
            self.draw_panes(ui, data.as_deref(), &mut actions);
        }
        if let Some(editor) = self.bench.editor_mut() {
            let live = self
                .engine
                .as_ref()
                .is_some_and(|e| e.is_live(editor.source().connection()));
            editor::show(&ctx, editor, live, &mut actions);
        }
        self.keyboard(&ctx, &mut actions);
        self.shell.keyboard(&ctx, &self.state, self.engine.as_ref());
        if !actions.is_empty() {
            // The panes drew the state as it was; show the result of the click at once.
            ctx.request_repaint();
        }
        for action in actions {
            self.apply(action);
        }
        self.update_title(&ctx);
        drop_overlay(&ctx);
    }

    /// The servers and breakpoints, beside everything else, when an engine runs.
    fn draw_engine_panel(
        &mut self,
        ui: &mut Ui,
        data: Option<&StoreData>,
        actions: &mut Vec<Action>,
    ) {
        let Some(engine) = &self.engine else {
            return;
        };
        let routes = engine.routes();
        let live = engine.live_connections();
        let rules = engine.breakpoints();
        let held = engine.held();
        let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
        let starting = engine.starting();
        let bench = &mut self.bench;
        egui::Panel::right("engine")
            .frame(side_frame(ui))
            .resizable(true)
            .default_size(380.0)
            .min_size(220.0)
            // Its content must not take the packet table's room; the grid clips instead.
            .max_size((ui.available_width() * 0.3).max(300.0))
            .show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                egui::ScrollArea::vertical()
                    .id_salt("engine_panel")
                    .show(ui, |ui| {
                        if let Some(s) = starting {
                            starting_line(ui, s);
                            ui.separator();
                        }
                        if let Some(notice) = bench.notice() {
                            let color = if notice.error {
                                ui.visuals().error_fg_color
                            } else {
                                ui.visuals().text_color()
                            };
                            ui.label(egui::RichText::new(&notice.text).color(color));
                            ui.separator();
                        }
                        servers::show(ui, routes, data, &live, actions);
                        ui.separator();
                        breakpoints::show(ui, &mut bench.rule_form, rules, held, &names, actions);
                    });
            });
    }

    fn draw_panes(&mut self, ui: &mut Ui, data: Option<&StoreData>, actions: &mut Vec<Action>) {
        egui::Panel::top("menu_bar").show(ui, |ui| {
            self.shell
                .menu_bar(ui, &self.state, self.engine.as_ref(), actions)
        });
        self.shell
            .windows(&ui.ctx().clone(), &self.state, data, actions);
        egui::Panel::top("top_bar")
            .frame(
                egui::Frame::side_top_panel(ui.style())
                    .inner_margin(egui::Margin::symmetric(10, 6)),
            )
            .show(ui, |ui| top_bar::show(ui, &mut self.state, data, actions));
        if let Some(message) = self.state.message() {
            egui::Panel::top("message").show(ui, |ui| banner::show(ui, message, actions));
        }
        self.shell
            .empty_live_hint(ui, &self.state, data, self.engine.as_ref());
        self.shell
            .watch_panel(ui, &self.state, data, self.engine.as_ref());
        let Some(data) = data else {
            self.draw_engine_panel(ui, data, actions);
            egui::CentralPanel::default().show(ui, |ui| {
                empty::show(ui, self.state.loading(), &self.samples, actions);
            });
            return;
        };
        let follow = self.bench.follow_scroll(self.state.rows().len());
        let scroll_to = self.state.take_scroll_request().or(follow);
        // The packet pane first, so it spans the whole width: a hex line needs ~650 points.
        egui::Panel::bottom("packet")
            .frame(side_frame(ui))
            .resizable(true)
            .default_size(270.0)
            .min_size(120.0)
            .show(ui, |ui| {
                packet_view::show(ui, &self.state, data, &self.bench, actions)
            });
        // After the packet pane, so that pane keeps the whole width for the hex dump.
        self.draw_engine_panel(ui, Some(data), actions);
        let summaries = self.bench.summaries();
        egui::Panel::left("connections")
            .frame(side_frame(ui))
            .resizable(true)
            .default_size(400.0)
            .min_size(220.0)
            // The table's columns clip rather than push the packet table off screen.
            .max_size((ui.available_width() * 0.35).max(300.0))
            .show(ui, |ui| {
                // A resizable panel is as wide as what it holds; without this the table's
                // auto-sized columns made it, and all right of it, jump every other frame.
                ui.set_min_width(ui.available_width());
                connections::show(ui, &self.state, data, summaries.as_deref(), actions);
            });
        let follow = self.bench.follow();
        let filter_bar = &mut self.filter_bar;
        egui::CentralPanel::default().show(ui, |ui| {
            filter_bar::show(ui, filter_bar);
            packets::show(
                ui,
                &self.state,
                data,
                summaries.as_deref(),
                follow,
                scroll_to,
                actions,
            )
        });
    }

    /// Runs the filter bar's work and hands its result to the table.
    fn poll_filter(&mut self, ctx: &egui::Context, store: Option<&Arc<CaptureStore>>) {
        let wake = ctx.clone();
        self.filter_bar
            .poll(store, self.bench.context(), move || wake.request_repaint());
        if let Some(matches) = self.filter_bar.take_matches() {
            self.state.set_matches(matches);
        }
        if self.filter_bar.is_busy() {
            // The status line shows progress.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    /// The filter bar, for tests that type into it.
    pub fn filter_bar_mut(&mut self) -> &mut FilterBar {
        &mut self.filter_bar
    }

    pub fn filter_bar(&self) -> &FilterBar {
        &self.filter_bar
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Open(path) => self.open(path),
            Action::Bench(b) => {
                let store = self.state.store();
                self.bench.apply(b, self.engine.as_mut(), store.as_ref());
            }
            other => self.state.apply(other),
        }
    }

    /// Brings the window's copy of the engine's state up to date and hands the answers,
    /// demo steps and new decode context to the panes that wait for them.
    fn engine_events(&mut self) {
        let Some(view) = self.engine.as_mut() else {
            return;
        };
        for event in view.pump() {
            if let crate::engine::Event::Ready = event {
                self.bench.set_context(view.state().context.clone());
            }
            self.shell.on_event(&event);
            self.bench.on_event(&event);
        }
    }

    fn take_dropped_file(&mut self, ctx: &egui::Context) {
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.open(path);
        }
    }

    fn start_pending(&mut self) {
        let Some(path) = self.pending.take() else {
            return;
        };
        self.state.path_input = path.display().to_string();
        let ctx = self.ctx.clone();
        let loading = self.loader.start(path, move || {
            if let Some(ctx) = &ctx {
                ctx.request_repaint();
            }
        });
        self.state.begin_loading(loading);
    }

    fn collect_loaded(&mut self) {
        let Some((path, outcome)) = self.loader.poll() else {
            return;
        };
        self.state.end_loading();
        match outcome {
            Outcome::Opened(opened) => {
                let opened = *opened;
                self.shell.settings.remember(&path);
                let capture = Capture {
                    store: Arc::new(CaptureStore::from_data(opened.data)),
                    source: Source::File {
                        path,
                        format: opened.format,
                    },
                };
                self.state.show_capture(capture, opened.warnings);
            }
            Outcome::Failed(error) => self.state.open_failed(&path, error),
        }
    }

    /// Arrow keys walk the packet table, unless a text field has the keyboard.
    fn keyboard(&self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if self.state.capture().is_none() || ctx.egui_wants_keyboard_input() {
            return;
        }
        let moves = [
            (Key::ArrowDown, 1),
            (Key::ArrowUp, -1),
            (Key::PageDown, PAGE_ROWS),
            (Key::PageUp, -PAGE_ROWS),
        ];
        ctx.input(|i| {
            for (key, delta) in moves {
                if i.key_pressed(key) {
                    actions.push(Action::MoveSelection(delta));
                }
            }
        });
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = match self.state.capture() {
            Some(capture) => format!("{} — {}", capture.source.name(), super::WINDOW_TITLE),
            None => super::WINDOW_TITLE.to_owned(),
        };
        if title != self.title {
            ctx.send_viewport_cmd(ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        // No timer: the engine wakes the window when something happens.
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.shell.settings.save(storage);
    }
}

/// Start-up progress, until the engine is ready.
fn starting_line(ui: &mut Ui, s: &crate::engine::Startup) {
    ui.horizontal(|ui| {
        ui.spinner();
        ui.label(format!(
            "Engine starting: {} ({}/{})",
            s.step, s.done, s.total
        ));
    });
    ui.add(egui::ProgressBar::new(s.done as f32 / s.total.max(1) as f32).desired_height(6.0));
}

/// Side panels with the central panel's margins, so the headings of all panes line up.
fn side_frame(ui: &Ui) -> egui::Frame {
    egui::Frame::side_top_panel(ui.style()).inner_margin(8)
}

/// Lets proportional text fall back to the bundled monospace font (Hack). Since egui 0.37 the
/// bundled proportional font has no arrows, and `→` `←` are how the workbench shows
/// direction; without this they would be boxes wherever the system has no font with them.
/// Takes effect at once because no text has been laid out yet in this pass.
fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    if fonts.font_data.contains_key(FALLBACK_FONT)
        && let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional)
        && !family.iter().any(|f| f == FALLBACK_FONT)
    {
        family.push(FALLBACK_FONT.to_owned());
        ctx.set_fonts(fonts);
    }
}

const FALLBACK_FONT: &str = "Hack";

/// While a file is dragged over the window, say what dropping it does.
fn drop_overlay(ctx: &egui::Context) {
    if ctx.input(|i| i.raw.hovered_files.is_empty()) {
        return;
    }
    let painter = ctx.layer_painter(LayerId::new(Order::Foreground, Id::unique("file_drop")));
    let rect = ctx.content_rect();
    painter.rect_filled(rect, 0.0, Color32::from_black_alpha(170));
    painter.text(
        rect.center(),
        Align2::CENTER_CENTER,
        "Drop to open the capture",
        FontId::proportional(26.0),
        Color32::WHITE,
    );
}
