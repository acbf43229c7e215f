//! The File menu's work: a path prompt (no desktop portal needed, so it works in any
//! session), and saves and exports on a thread of their own with a progress bar.
//!
//! A save never holds the store's lock for long: a live capture is copied in slices (the
//! engine keeps recording between them) and written from the copy; a capture read from a
//! file has no writer, so it is written straight from the store.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use eframe::egui::{self, Key, RichText, TextEdit, Ui};

use crate::capture::{CaptureStore, ConnectionId, StoreData, gwcap, pcapng, sdjson};
use crate::dissect::har;

use super::top_bar::expand_path;

/// Packets copied per hold of the store's read lock when saving a live capture.
const COPY_SLICE: usize = 50_000;
/// Progress is kept in thousandths in an atomic the window reads.
const PERMILLE: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Gwcap,
    SdJson,
    Pcapng,
    Har,
}

impl OutFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutFormat::Gwcap => ".gwcap",
            OutFormat::SdJson => ".sd.json",
            OutFormat::Pcapng => ".pcapng",
            OutFormat::Har => ".har",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutFormat::Gwcap => "gwcap",
            OutFormat::SdJson => "sd.json",
            OutFormat::Pcapng => "pcapng",
            OutFormat::Har => "HAR",
        }
    }

    /// `path`, with this format's extension added unless it already ends in it.
    pub fn with_extension(self, path: PathBuf) -> PathBuf {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let has = match self {
            OutFormat::SdJson => name.ends_with(".json"),
            other => name.ends_with(other.extension()),
        };
        if has {
            path
        } else {
            let mut s = path.into_os_string();
            s.push(self.extension());
            PathBuf::from(s)
        }
    }

    /// Rough output size, only for the progress bar.
    fn estimate(self, data: &StoreData) -> u64 {
        let (raw, packets) = (data.raw_bytes(), data.packet_count() as u64);
        match self {
            OutFormat::Gwcap => raw + packets * 40,
            OutFormat::SdJson => raw * 3 + packets * 200,
            OutFormat::Pcapng => raw + packets * 100,
            OutFormat::Har => raw * 2 + packets * 300,
        }
    }
}

/// Which connections a save or export covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Connection(ConnectionId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    Open,
    ImportSdJson,
    Save(OutFormat),
}

impl DialogKind {
    pub fn title(self) -> String {
        match self {
            DialogKind::Open => "Open a capture".into(),
            DialogKind::ImportSdJson => "Import sd.json".into(),
            DialogKind::Save(OutFormat::Gwcap) => "Save capture as .gwcap".into(),
            DialogKind::Save(f) => format!("Export as {}", f.name()),
        }
    }

    fn button(self) -> &'static str {
        match self {
            DialogKind::Open => "Open",
            DialogKind::ImportSdJson => "Import",
            DialogKind::Save(OutFormat::Gwcap) => "Save",
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
        format: OutFormat,
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
    pub format: OutFormat,
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
    format: OutFormat,
    scope: Scope,
    wake: impl Fn() + Send + 'static,
) -> Job {
    let progress = Arc::new(AtomicU32::new(0));
    let (send, result) = mpsc::channel();
    let (thread_progress, thread_path) = (Arc::clone(&progress), path.clone());
    let spawned = std::thread::Builder::new()
        .name("gamewire-save".into())
        .spawn(move || {
            let outcome = save(&store, live, &thread_path, format, scope, &thread_progress);
            let _ = send.send(outcome);
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

fn save(
    store: &CaptureStore,
    live: bool,
    path: &Path,
    format: OutFormat,
    scope: Scope,
    progress: &AtomicU32,
) -> Result<String, String> {
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    if live || scope != Scope::All {
        let copy = snapshot(store, scope, progress);
        write_file(&copy, path, format, progress, PERMILLE / 2).map_err(fail)
    } else {
        let data = store.read();
        write_file(&data, path, format, progress, 0).map_err(fail)
    }
}

/// A copy of the connections `scope` covers and their packets, taken a slice at a time.
/// Progress goes from 0 to half way.
pub fn snapshot(store: &CaptureStore, scope: Scope, progress: &AtomicU32) -> StoreData {
    let mut copy = StoreData::new();
    let mut ids: Vec<Option<ConnectionId>> = Vec::new();
    let total = store.read().packet_count().max(1);
    let mut next = 0;
    loop {
        let data = store.read();
        for conn in &data.connections()[ids.len()..] {
            let wanted = match scope {
                Scope::All => true,
                Scope::Connection(c) => c == conn.id,
            };
            ids.push(wanted.then(|| copy.add_connection(conn.clone())));
        }
        let end = data.packet_count().min(next + COPY_SLICE).min(total);
        for index in next..end {
            let Some(p) = data.packet(crate::capture::PacketId(index as u64)) else {
                continue;
            };
            let Some(Some(conn)) = usize::try_from(p.connection.0)
                .ok()
                .and_then(|i| ids.get(i))
            else {
                continue;
            };
            let mut packet = p.to_packet().into_new();
            packet.connection = *conn;
            // A packet the copy refuses (it cannot, being a subset of a valid store) is
            // simply left out.
            let _ = copy.append(packet);
        }
        next = end;
        progress.store(
            (next as u64 * u64::from(PERMILLE / 2) / total as u64) as u32,
            Ordering::Relaxed,
        );
        if next >= total {
            break;
        }
    }
    copy
}

/// Writes beside the target and renames at the end, so a failed save never leaves half a
/// file under the name the user asked for.
fn write_file(
    data: &StoreData,
    path: &Path,
    format: OutFormat,
    progress: &AtomicU32,
    from: u32,
) -> io::Result<String> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = File::create(&part)?;
    let mut out = Counting {
        inner: BufWriter::with_capacity(1 << 20, file),
        written: 0,
        estimate: format.estimate(data).max(1),
        progress,
        from,
    };
    let written = match format {
        OutFormat::Gwcap => gwcap::write_to(data, &mut out),
        OutFormat::SdJson => sdjson::export(data, &mut out, |_| true),
        OutFormat::Pcapng => pcapng::export(data, &mut out, |_| true),
        OutFormat::Har => har::export(data, &mut out, |_| true).map(|_| ()),
    }
    .and_then(|()| out.flush());
    let bytes = out.written;
    drop(out);
    if let Err(e) = written.and_then(|()| std::fs::rename(&part, path)) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    progress.store(PERMILLE, Ordering::Relaxed);
    Ok(format!(
        "Saved {} connections, {} packets to {} ({})",
        data.connection_count(),
        data.packet_count(),
        path.display(),
        super::text::human_bytes(bytes)
    ))
}

/// Counts what is written, for the progress bar.
struct Counting<'a, W: Write> {
    inner: W,
    written: u64,
    estimate: u64,
    progress: &'a AtomicU32,
    from: u32,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        let span = u64::from(PERMILLE - self.from);
        // The estimate is rough; stop short of done until the file is renamed.
        let part = (self.written * span / self.estimate).min(span * 99 / 100);
        self.progress
            .store(self.from + part as u32, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
