//! The File menu's work: a path prompt (no desktop portal needed, so it works in any
//! session), and saves and exports on a thread of their own with a progress bar.
//!
//! The saving itself is `dissect::export::save`, the one save path of the whole program
//! (slices of a live store, `NAME.part`, sync, rename); this only runs it off the UI thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use eframe::egui::{self, Key, RichText, TextEdit, Ui};

pub use crate::capture::files::Scope;
use crate::capture::files::{Format, Saved, Source};
use crate::capture::{CaptureStore, ConnectionId};
use crate::dissect::export;

use super::top_bar::expand_path;

/// Progress is kept in thousandths in an atomic the window reads.
const PERMILLE: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    Open,
    ImportSdJson,
    Save(Format),
}

impl DialogKind {
    pub fn title(self) -> String {
        match self {
            DialogKind::Open => "Open a capture".into(),
            DialogKind::ImportSdJson => "Import sd.json".into(),
            DialogKind::Save(Format::Gwcap) => "Save capture as .gwcap".into(),
            DialogKind::Save(f) => format!("Export as {}", f.name()),
        }
    }

    fn button(self) -> &'static str {
        match self {
            DialogKind::Open => "Open",
            DialogKind::ImportSdJson => "Import",
            DialogKind::Save(Format::Gwcap) => "Save",
            DialogKind::Save(_) => "Export",
        }
    }
}

/// The path prompt.
pub struct Dialog {
    pub kind: DialogKind,
    pub path: String,
    pub scope: Scope,
    focus: bool,
}

/// What the prompt asked for when the user confirmed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Open(PathBuf),
    Save {
        path: PathBuf,
        format: Format,
        scope: Scope,
    },
}

pub const PATH_LABEL: &str = "Capture path";

impl Dialog {
    pub fn new(kind: DialogKind, suggestion: String, scope: Scope) -> Dialog {
        Dialog {
            kind,
            path: suggestion,
            scope,
            focus: true,
        }
    }

    /// Draws the prompt; returns the request once confirmed, and sets `open` to false when
    /// it is confirmed or cancelled.
    pub fn show(
        &mut self,
        ctx: &egui::Context,
        recent: &[PathBuf],
        shown_connection: Option<(ConnectionId, String)>,
        open: &mut bool,
    ) -> Option<Request> {
        let mut request = None;
        let mut close = false;
        egui::Window::new(self.kind.title())
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_TOP, [0.0, 120.0])
            .default_width(560.0)
            .show(ctx, |ui| {
                let label = ui.label(PATH_LABEL);
                let field = ui
                    .add(
                        TextEdit::singleline(&mut self.path)
                            .hint_text(hint(self.kind))
                            .desired_width(540.0),
                    )
                    .labelled_by(label.id);
                if std::mem::take(&mut self.focus) {
                    field.request_focus();
                }
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                if let DialogKind::Save(_) = self.kind {
                    scope_choice(ui, &mut self.scope, shown_connection.as_ref());
                }
                recent_list(ui, self.kind, recent, &mut self.path);
                ui.add_space(6.0);
                ui.horizontal(|ui| {
                    let confirm = ui.button(self.kind.button()).clicked();
                    if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(Key::Escape)) {
                        close = true;
                    }
                    if confirm || entered {
                        match expand_path(&self.path) {
                            Some(path) => {
                                request = Some(self.request(path));
                                close = true;
                            }
                            None => self.focus = true,
                        }
                    }
                });
            });
        if close {
            *open = false;
        }
        request
    }

    fn request(&self, path: PathBuf) -> Request {
        match self.kind {
            DialogKind::Open | DialogKind::ImportSdJson => Request::Open(path),
            DialogKind::Save(format) => Request::Save {
                path: format.with_extension(path),
                format,
                scope: self.scope,
            },
        }
    }
}

fn hint(kind: DialogKind) -> String {
    match kind {
        DialogKind::Open => "Path of a .gwcap, .sd.json or .pcapng file".into(),
        DialogKind::ImportSdJson => "Path of an sd.json file".into(),
        DialogKind::Save(f) => format!("Where to write the {} file", f.name()),
    }
}

fn scope_choice(ui: &mut Ui, scope: &mut Scope, shown: Option<&(ConnectionId, String)>) {
    let Some((conn, text)) = shown else {
        *scope = Scope::All;
        return;
    };
    ui.horizontal(|ui| {
        ui.radio_value(scope, Scope::All, "All connections");
        ui.radio_value(
            scope,
            Scope::Connection(*conn),
            format!("Only the shown connection ({text})"),
        );
    });
}

fn recent_list(ui: &mut Ui, kind: DialogKind, recent: &[PathBuf], path: &mut String) {
    if recent.is_empty() {
        return;
    }
    ui.add_space(4.0);
    ui.label(RichText::new("Recent files").weak());
    for p in recent {
        let shown = p.display().to_string();
        if ui.small_button(&shown).clicked() {
            *path = match kind {
                // Saving next to a recent file is the common case, under a name of its own.
                DialogKind::Save(f) => p
                    .parent()
                    .map(|d| d.join(format!("capture{}", f.extension())))
                    .unwrap_or_else(|| p.clone())
                    .display()
                    .to_string(),
                _ => shown,
            };
        }
    }
}

/// A save or export under way on its thread.
pub struct Job {
    pub path: PathBuf,
    pub format: Format,
    pub started: Instant,
    progress: Arc<AtomicU32>,
    result: Receiver<Result<String, String>>,
}

impl Job {
    /// 0.0 to 1.0.
    pub fn progress(&self) -> f32 {
        self.progress.load(Ordering::Relaxed) as f32 / PERMILLE as f32
    }

    /// The outcome once the thread is done: what was written, or why not.
    pub fn poll(&self) -> Option<Result<String, String>> {
        match self.result.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(
                "the save stopped unexpectedly (this is a bug in gamewire)".into(),
            )),
        }
    }
}

/// Starts writing `store` to `path` on a thread. `live`: someone else appends to the store
/// meanwhile, so it is copied in slices rather than locked for the whole write.
pub fn start_save(
    store: Arc<CaptureStore>,
    live: bool,
    path: PathBuf,
    format: Format,
    scope: Scope,
    wake: impl Fn() + Send + 'static,
) -> Job {
    let progress = Arc::new(AtomicU32::new(0));
    let (send, result) = mpsc::channel();
    let (thread_progress, thread_path) = (Arc::clone(&progress), path.clone());
    let spawned = std::thread::Builder::new()
        .name("gamewire-save".into())
        .spawn(move || {
            let report = |done: f32| {
                thread_progress.store((done * PERMILLE as f32) as u32, Ordering::Relaxed)
            };
            let outcome = if live {
                export::save(Source::Live(&store), &thread_path, format, scope, &report)
            } else {
                // Nothing else writes to a capture read from a file: no copy is needed, and
                // the read lock held meanwhile stalls no one.
                let data = store.read();
                export::save(Source::Data(&data), &thread_path, format, scope, &report)
            };
            let _ = send.send(outcome.map(|s| summary(&s)).map_err(|e| e.to_string()));
            wake();
        });
    let result = match spawned {
        Ok(_) => result,
        Err(e) => {
            let (send, result) = mpsc::channel();
            let _ = send.send(Err(format!("cannot start saving: {e}")));
            result
        }
    };
    Job {
        path,
        format,
        started: Instant::now(),
        progress,
        result,
    }
}

fn summary(saved: &Saved) -> String {
    format!(
        "Saved {} connections, {} packets to {} ({})",
        saved.connections,
        saved.packets,
        saved.path.display(),
        super::text::human_bytes(saved.bytes)
    )
}
