//! The filter and search boxes above the packet table.
//!
//! A filter (`fesl.txn == "NuLogin" && dir == c2s`, see [`crate::dissect::filter`]) and a
//! text search are applied together with Enter. The work runs on its own thread: decoding
//! takes the store's read lock one connection at a time, so live relays are never held up
//! for long, and the table keeps showing the previous result until the new one is ready.
//! While traffic arrives, the filter is re-run on the grown capture at most twice a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use eframe::egui::{self, RichText, Ui};

use crate::capture::{CaptureStore, ConnectionId};
use crate::dissect::filter::{
    FieldIndex, Filter, FilterError, filter_packets, filter_packets_indexed,
};
use crate::dissect::session::{CaptureDecode, decode_connection_into};
use crate::dissect::{Context, Registry};

/// How often a live capture is filtered again as it grows.
const LIVE_REFRESH: Duration = Duration::from_millis(500);

/// Which packets matched, for the first `covers` packets of the store (by id).
#[derive(Debug)]
pub struct Matches {
    pub hits: Vec<bool>,
    pub covers: usize,
    pub count: usize,
}

impl Matches {
    pub fn contains(&self, id: crate::capture::PacketId) -> bool {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.hits.get(i))
            .copied()
            .unwrap_or(false)
    }
}

struct Job {
    cancel: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    total: usize,
    result: mpsc::Receiver<Option<Matches>>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct FilterBar {
    pub filter_text: String,
    pub search_text: String,
    /// Why the filter text does not parse, shown under the box with a caret.
    error: Option<FilterError>,
    /// The filter in force (filter and search together); `None` shows every packet.
    applied: Option<Arc<Filter>>,
    job: Option<Job>,
    started: Option<Instant>,
    matches: Option<Arc<Matches>>,
    /// Set when the matches changed since the state last took them.
    fresh: bool,
    /// A filter was applied and its first result has not come yet.
    pending: bool,
}

impl FilterBar {
    /// Parses the boxes and starts filtering; a bad expression keeps the old filter.
    pub fn apply(&mut self) {
        let filter = match Filter::parse(self.filter_text.trim()) {
            Ok(f) => f,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.error = None;
        let search = self.search_text.trim();
        let filter = if search.is_empty() {
            filter
        } else {
            filter.and(Filter::search(search))
        };
        self.job = None;
        self.started = None;
        if filter.is_match_all() {
            self.applied = None;
            self.matches = None;
        } else {
            self.applied = Some(Arc::new(filter));
            self.pending = true;
        }
        self.fresh = true;
    }

    /// Drops results that belong to another capture; the filter in force runs again on the
    /// one now shown.
    pub fn restart(&mut self) {
        self.job = None;
        self.started = None;
        self.matches = None;
        self.fresh = true;
        self.pending = self.applied.is_some();
    }

    pub fn clear(&mut self) {
        self.filter_text.clear();
        self.search_text.clear();
        self.apply();
    }

    pub fn error(&self) -> Option<&FilterError> {
        self.error.as_ref()
    }

    pub fn is_active(&self) -> bool {
        self.applied.is_some()
    }

    /// Whether a filter job is running.
    pub fn is_busy(&self) -> bool {
        self.job.is_some() || self.pending
    }

    /// The newest matches when they changed since the last call (`Some(None)`: no filter).
    pub fn take_matches(&mut self) -> Option<Option<Arc<Matches>>> {
        if !self.fresh {
            return None;
        }
        self.fresh = false;
        Some(self.matches.clone())
    }

    /// Collects a finished job and starts one when the capture outgrew the last result.
    /// Called once per frame; `wake` repaints the window when a job ends.
    pub fn poll(
        &mut self,
        store: Option<&Arc<CaptureStore>>,
        context: &Arc<Context>,
        wake: impl Fn() + Send + 'static,
    ) {
        if let Some(job) = &self.job {
            match job.result.try_recv() {
                Ok(Some(m)) => {
                    self.matches = Some(Arc::new(m));
                    self.fresh = true;
                    self.pending = false;
                    self.job = None;
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => self.job = None,
                Err(mpsc::TryRecvError::Empty) => return,
            }
        }
        let (Some(filter), Some(store)) = (&self.applied, store) else {
            return;
        };
        let count = store.read().packet_count();
        let covered = self.matches.as_ref().map_or(0, |m| m.covers);
        let due = self.started.is_none_or(|t| t.elapsed() >= LIVE_REFRESH);
        if (self.pending || self.matches.is_none() || count > covered) && due {
            self.job = Some(start(store.clone(), filter.clone(), context.clone(), wake));
            self.started = Some(Instant::now());
        }
    }

    /// "filtering 40%" while a job runs, else how many packets matched.
    pub fn status(&self) -> Option<String> {
        if let Some(job) = &self.job {
            let done = job.done.load(Ordering::Relaxed);
            return Some(format!(
                "filtering… {}%",
                (done * 100)
                    .checked_div(job.total.max(1))
                    .unwrap_or(0)
                    .min(100)
            ));
        }
        self.matches
            .as_ref()
            .map(|m| format!("{} of {} match", m.count, m.covers))
    }
}

fn start(
    store: Arc<CaptureStore>,
    filter: Arc<Filter>,
    context: Arc<Context>,
    wake: impl Fn() + Send + 'static,
) -> Job {
    let cancel = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let total = store.read().packet_count();
    let (tx, rx) = mpsc::channel();
    {
        let (cancel, done) = (cancel.clone(), done.clone());
        let spawned = std::thread::Builder::new()
            .name("gamewire-gui-filter".into())
            .spawn(move || {
                let result = run(&store, &filter, &context, &cancel, &done);
                let _ = tx.send(result);
                wake();
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the filter thread: {e}");
        }
    }
    Job {
        cancel,
        done,
        total,
        result: rx,
    }
}

fn run(
    store: &CaptureStore,
    filter: &Filter,
    context: &Context,
    cancel: &AtomicBool,
    done: &AtomicUsize,
) -> Option<Matches> {
    let (covers, connections) = {
        let data = store.read();
        (data.packet_count(), data.connection_count())
    };
    let decode = if filter.needs_decode() {
        let registry = Registry::standard();
        let mut decode = CaptureDecode {
            protocols: HashMap::new(),
            messages: HashMap::new(),
        };
        for c in 0..connections {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let data = store.read();
            decode_connection_into(
                &registry,
                context,
                &data,
                ConnectionId(c as u64),
                None,
                &mut decode,
            );
        }
        Some(decode)
    } else {
        None
    };
    let data = store.read();
    let progress = |n: usize| done.store(n, Ordering::Relaxed);
    let ids = match &decode {
        Some(decode) => {
            let index = FieldIndex::build(&data, decode);
            filter_packets_indexed(&data, &index, filter, cancel, progress)?
        }
        None => filter_packets(&data, None, filter, cancel, progress)?,
    };
    let mut hits = vec![false; covers];
    let mut count = 0;
    for id in ids {
        // Packets that arrived after the decode are left for the next run.
        if let Some(hit) = usize::try_from(id.0).ok().and_then(|i| hits.get_mut(i)) {
            *hit = true;
            count += 1;
        }
    }
    Some(Matches {
        hits,
        covers,
        count,
    })
}

/// The two boxes, the status and, for a bad expression, where it went wrong.
pub fn show(ui: &mut Ui, bar: &mut FilterBar) {
    let mut apply = false;
    let mut clear = false;
    ui.horizontal(|ui| {
        ui.label("Filter");
        let filter = ui.add(
            egui::TextEdit::singleline(&mut bar.filter_text)
                .id_salt("packet_filter")
                .hint_text("fesl.txn == \"NuLogin\" && dir == c2s")
                .desired_width(320.0)
                .font(egui::TextStyle::Monospace),
        );
        // Ctrl+F (the shell's shortcut) leaves this flag for the box.
        let focus_id = egui::Id::unique(crate::gui::settings::FOCUS_FILTER_ID);
        if ui
            .ctx()
            .data_mut(|d| d.remove_temp::<bool>(focus_id))
            .unwrap_or(false)
        {
            filter.request_focus();
        }
        ui.label("Search");
        let search = ui.add(
            egui::TextEdit::singleline(&mut bar.search_text)
                .id_salt("packet_search")
                .hint_text("text in decoded values")
                .desired_width(160.0),
        );
        let entered =
            |r: &egui::Response| r.lost_focus() && r.ctx.input(|i| i.key_pressed(egui::Key::Enter));
        apply |= entered(&filter) || entered(&search);
        apply |= ui.button("Apply").clicked();
        if bar.is_active() || !bar.filter_text.is_empty() || !bar.search_text.is_empty() {
            clear |= ui.button("Clear filter").clicked();
        }
        if let Some(status) = bar.status() {
            ui.label(RichText::new(status).weak());
        }
    });
    if let Some(e) = &bar.error {
        let color = ui.visuals().error_fg_color;
        ui.label(
            RichText::new(e.caret(&bar.filter_text))
                .monospace()
                .color(color),
        );
        ui.label(RichText::new(e.to_string()).color(color));
    }
    if clear {
        bar.clear();
    } else if apply {
        bar.apply();
    }
}
