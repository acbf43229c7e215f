//! The filter and search boxes above the packet table.
//!
//! A filter (`fesl.txn == "NuLogin" && dir == c2s`, see [`crate::dissect::filter`]) and a
//! text search are applied together with Enter. The work runs on a worker thread per
//! capture, and the table keeps showing the previous result until the new one is ready.
//!
//! The first filter on dissected fields decodes the capture (taking the store's read lock
//! one connection at a time, so live relays are never held up for long) and builds a field
//! index; the worker keeps both, so every later filter on the same packets only runs the
//! index (tens of milliseconds for a million packets). While traffic arrives, the filter is
//! re-run on the grown capture at most twice a second, rebuilding the index.

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

struct Request {
    id: u64,
    filter: Arc<Filter>,
    cancel: Arc<AtomicBool>,
}

struct Reply {
    id: u64,
    matches: Option<Matches>,
}

/// What the worker is doing, for the status line.
#[derive(Default)]
struct Progress {
    /// 0 idle, 1 decoding, 2 indexing, 3 filtering.
    phase: AtomicUsize,
    done: AtomicUsize,
    total: AtomicUsize,
    /// How many times the capture was decoded for filtering (for tests: once per capture
    /// while it does not grow).
    decodes: AtomicUsize,
}

/// The thread that filters one capture. Dropping it ends the thread.
struct Worker {
    store: std::sync::Weak<CaptureStore>,
    requests: mpsc::Sender<Request>,
    replies: mpsc::Receiver<Reply>,
    progress: Arc<Progress>,
}

impl Worker {
    fn start(
        store: &Arc<CaptureStore>,
        context: Arc<Context>,
        wake: impl Fn() + Send + 'static,
    ) -> Option<Worker> {
        let (requests, request_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let (store_ref, progress_ref) = (store.clone(), progress.clone());
        let spawned = std::thread::Builder::new()
            .name("gamewire-gui-filter".into())
            .spawn(move || {
                work(
                    &store_ref,
                    &context,
                    &request_rx,
                    &reply_tx,
                    &progress_ref,
                    &wake,
                );
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the filter thread: {e}");
            return None;
        }
        Some(Worker {
            store: Arc::downgrade(store),
            requests,
            replies,
            progress,
        })
    }

    fn is_for(&self, store: &Arc<CaptureStore>) -> bool {
        std::ptr::eq(self.store.as_ptr(), Arc::as_ptr(store))
    }
}

/// The newest of the requests waiting; older ones are cancelled.
fn newest(mut req: Request, rx: &mpsc::Receiver<Request>) -> Request {
    while let Ok(newer) = rx.try_recv() {
        req.cancel.store(true, Ordering::Relaxed);
        req = newer;
    }
    req
}

fn work(
    store: &CaptureStore,
    context: &Context,
    requests: &mpsc::Receiver<Request>,
    replies: &mpsc::Sender<Reply>,
    progress: &Progress,
    wake: &dyn Fn(),
) {
    let registry = Registry::shared();
    let reply = |id: u64, matches: Option<Matches>| {
        let _ = replies.send(Reply { id, matches });
        progress.phase.store(0, Ordering::Relaxed);
        wake();
    };
    let mut next: Option<Request> = None;
    loop {
        let req = match next.take() {
            Some(r) => r,
            None => match requests.recv() {
                Ok(r) => newest(r, requests),
                Err(_) => return,
            },
        };
        if !req.filter.needs_decode() {
            let covers = store.read().packet_count();
            let matches = filter_unindexed(store, &req, covers, progress);
            reply(req.id, matches);
            continue;
        }
        // Decode and index what the store holds now, then answer from them for as long as
        // the store does not grow.
        let covers = store.read().packet_count();
        let Some(decode) = decode_all(store, &registry, context, &req.cancel, progress) else {
            reply(req.id, None);
            continue;
        };
        progress.phase.store(2, Ordering::Relaxed);
        let index = FieldIndex::build(&store.read(), &decode);
        let mut req = req;
        loop {
            progress.phase.store(3, Ordering::Relaxed);
            progress.total.store(covers, Ordering::Relaxed);
            let ids = {
                let data = store.read();
                filter_packets_indexed(&data, &index, &req.filter, &req.cancel, |n| {
                    progress.done.store(n, Ordering::Relaxed)
                })
            };
            reply(req.id, ids.map(|ids| matches_of(ids, covers)));
            let r = match requests.recv() {
                Ok(r) => newest(r, requests),
                Err(_) => return,
            };
            if !r.filter.needs_decode() || store.read().packet_count() != covers {
                next = Some(r);
                break;
            }
            req = r;
        }
    }
}

fn filter_unindexed(
    store: &CaptureStore,
    req: &Request,
    covers: usize,
    progress: &Progress,
) -> Option<Matches> {
    progress.phase.store(3, Ordering::Relaxed);
    progress.total.store(covers, Ordering::Relaxed);
    let data = store.read();
    let ids = filter_packets(&data, None, &req.filter, &req.cancel, |n| {
        progress.done.store(n, Ordering::Relaxed)
    })?;
    Some(matches_of(ids, covers))
}

fn decode_all(
    store: &CaptureStore,
    registry: &Registry,
    context: &Context,
    cancel: &AtomicBool,
    progress: &Progress,
) -> Option<CaptureDecode> {
    let connections = store.read().connection_count();
    progress.decodes.fetch_add(1, Ordering::Relaxed);
    progress.phase.store(1, Ordering::Relaxed);
    progress.total.store(connections, Ordering::Relaxed);
    let mut decode = CaptureDecode::default();
    for c in 0..connections {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        let data = store.read();
        decode_connection_into(
            registry,
            context,
            &data,
            ConnectionId(c as u64),
            None,
            &mut decode,
        );
        progress.done.store(c + 1, Ordering::Relaxed);
    }
    Some(decode)
}

fn matches_of(ids: Vec<crate::capture::PacketId>, covers: usize) -> Matches {
    let mut hits = vec![false; covers];
    let mut count = 0;
    for id in ids {
        // Packets that arrived after the decode are left for the next run.
        if let Some(hit) = usize::try_from(id.0).ok().and_then(|i| hits.get_mut(i)) {
            *hit = true;
            count += 1;
        }
    }
    Matches {
        hits,
        covers,
        count,
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
    worker: Option<Worker>,
    /// The request the worker is on, and how to cancel it.
    waiting: Option<(u64, Arc<AtomicBool>)>,
    next_id: u64,
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
        self.cancel_waiting();
        self.started = None;
        if filter.is_match_all() {
            self.applied = None;
            self.matches = None;
            self.pending = false;
        } else {
            self.applied = Some(Arc::new(filter));
            self.pending = true;
        }
        self.fresh = true;
    }

    /// Drops results that belong to another capture; the filter in force runs again on the
    /// one now shown.
    pub fn restart(&mut self) {
        self.cancel_waiting();
        self.worker = None;
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

    fn cancel_waiting(&mut self) {
        if let Some((_, cancel)) = self.waiting.take() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    pub fn error(&self) -> Option<&FilterError> {
        self.error.as_ref()
    }

    pub fn is_active(&self) -> bool {
        self.applied.is_some()
    }

    /// Whether a result is still to come.
    pub fn is_busy(&self) -> bool {
        self.waiting.is_some() || self.pending
    }

    /// The newest matches when they changed since the last call (`Some(None)`: no filter).
    pub fn take_matches(&mut self) -> Option<Option<Arc<Matches>>> {
        if !self.fresh {
            return None;
        }
        self.fresh = false;
        Some(self.matches.clone())
    }

    /// Collects the worker's answer and asks again when the capture outgrew the last
    /// result. Called once per frame; `wake` repaints the window when an answer is ready.
    pub fn poll(
        &mut self,
        store: Option<&Arc<CaptureStore>>,
        context: &Arc<Context>,
        wake: impl Fn() + Send + 'static,
    ) {
        // Another capture on screen: its results (and worker) belong to the old one.
        if let Some(worker) = &self.worker
            && store.is_none_or(|s| !worker.is_for(s))
        {
            self.restart();
        }
        if let (Some(worker), Some((id, _))) = (&self.worker, &self.waiting) {
            loop {
                match worker.replies.try_recv() {
                    Ok(reply) if reply.id == *id => {
                        if let Some(m) = reply.matches {
                            self.matches = Some(Arc::new(m));
                            self.fresh = true;
                            self.pending = false;
                        }
                        self.waiting = None;
                        break;
                    }
                    // An answer to a request since replaced.
                    Ok(_) => continue,
                    Err(mpsc::TryRecvError::Empty) => return,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        // The worker is gone; results it gave may be stale: start over.
                        self.restart();
                        break;
                    }
                }
            }
        }
        if self.waiting.is_some() {
            return;
        }
        let (Some(filter), Some(store)) = (self.applied.clone(), store) else {
            return;
        };
        let count = store.read().packet_count();
        let covered = self.matches.as_ref().map_or(0, |m| m.covers);
        let due = self.started.is_none_or(|t| t.elapsed() >= LIVE_REFRESH);
        if !((self.pending || self.matches.is_none() || count > covered) && due) {
            return;
        }
        if self.worker.as_ref().is_none_or(|w| !w.is_for(store)) {
            self.worker = Worker::start(store, context.clone(), wake);
        }
        let Some(worker) = &self.worker else {
            return;
        };
        self.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        let sent = worker.requests.send(Request {
            id: self.next_id,
            filter,
            cancel: cancel.clone(),
        });
        if sent.is_ok() {
            self.waiting = Some((self.next_id, cancel));
            self.started = Some(Instant::now());
        } else {
            self.worker = None;
        }
    }

    /// How many times the worker decoded the capture for filters on dissected fields.
    pub fn decode_runs(&self) -> usize {
        self.worker
            .as_ref()
            .map_or(0, |w| w.progress.decodes.load(Ordering::Relaxed))
    }

    /// What the worker is doing, else how many packets matched.
    pub fn status(&self) -> Option<String> {
        if let (Some(worker), Some(_)) = (&self.worker, &self.waiting) {
            let p = &worker.progress;
            let (done, total) = (
                p.done.load(Ordering::Relaxed),
                p.total.load(Ordering::Relaxed).max(1),
            );
            let percent = (done * 100 / total).min(100);
            return Some(match p.phase.load(Ordering::Relaxed) {
                1 => format!("decoding for the filter… {percent}%"),
                2 => "indexing decoded fields…".to_string(),
                _ => format!("filtering… {percent}%"),
            });
        }
        self.matches
            .as_ref()
            .map(|m| format!("{} of {} match", m.count, m.covers))
    }
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
