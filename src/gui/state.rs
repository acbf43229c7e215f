//! What the viewer shows and what the user picked, kept apart from the drawing code so that
//! tests (and later the engine) can drive it without a window.
//!
//! The capture itself stays in a shared [`CaptureStore`]; this state keeps only ids into it
//! and an index of the rows the packet table shows. Nothing here holds the store's lock: the
//! app takes a read guard for one frame and hands the data to [`ViewerState::refresh`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::capture::files::Format;
use crate::capture::{CaptureStore, ConnectionId, PacketId, StoreData, Timestamp};

/// Where the shown capture came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File {
        path: PathBuf,
        format: Format,
    },
    /// A store that someone else fills while it is shown (the engine).
    Live {
        name: String,
    },
}

impl Source {
    /// The short name shown in the top bar and the window title.
    pub fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Source::Live { name } => name.clone(),
        }
    }
}

/// The capture on screen.
pub struct Capture {
    pub store: Arc<CaptureStore>,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Error,
    Warning,
}

/// A banner under the top bar: why a file could not be opened, or what was skipped in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub title: String,
    pub lines: Vec<String>,
}

/// A file being read on the loader thread.
#[derive(Clone, Debug)]
pub struct Loading {
    pub path: PathBuf,
    /// `None` when the file's size could not be read; the loader will then report why.
    pub size: Option<u64>,
    pub started: Instant,
}

/// Something the user asked for. The panes collect these while drawing and the app applies
/// them afterwards, so drawing code only ever reads the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Open(PathBuf),
    SelectPacket(PacketId),
    /// Move the selection by this many rows of the table (arrow keys).
    MoveSelection(isize),
    /// Show only this connection's packets, or all again if it was the one shown.
    ToggleConnection(ConnectionId),
    ShowAllConnections,
    ToggleOriginal,
    DismissMessage,
    /// Decoding, servers, breakpoints, edit and resend: applied by the app's workbench.
    Bench(super::workbench::BenchAction),
}

/// Warnings beyond this many are summarised in one line; a badly damaged sd.json can produce
/// thousands and the banner must stay readable.
const MAX_WARNING_LINES: usize = 50;

#[derive(Default)]
pub struct ViewerState {
    capture: Option<Capture>,
    filter: Option<ConnectionId>,
    selected: Option<PacketId>,
    show_original: bool,
    /// The path typed into the top bar.
    pub path_input: String,
    message: Option<Message>,
    loading: Option<Loading>,
    rows: RowIndex,
    scroll_to_row: Option<usize>,
    /// The filter bar's result: the table shows only these packets.
    matches: Option<Arc<super::filter_bar::Matches>>,
    filtered: Vec<PacketId>,
    filtered_stale: bool,
}

impl ViewerState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    pub fn store(&self) -> Option<Arc<CaptureStore>> {
        self.capture.as_ref().map(|c| Arc::clone(&c.store))
    }

    /// Replaces the shown capture; `warnings` say what of it could not be read.
    pub fn show_capture(&mut self, capture: Capture, warnings: Vec<String>) {
        self.message = (!warnings.is_empty()).then(|| Message {
            kind: MessageKind::Warning,
            title: format!(
                "{} was read only in part; what could be read is shown",
                capture.source.name()
            ),
            lines: summarise(warnings),
        });
        self.capture = Some(capture);
        self.filter = None;
        self.selected = None;
        self.show_original = false;
        self.rows = RowIndex::default();
        self.matches = None;
        self.filtered_stale = true;
        self.scroll_to_row = None;
    }

    /// Reports a file that could not be opened. The capture shown before stays shown.
    pub fn open_failed(&mut self, path: &Path, error: String) {
        self.message = Some(Message {
            kind: MessageKind::Error,
            // The error line below repeats the full path; the title only needs the name.
            title: format!(
                "Could not open {}",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
            lines: vec![error],
        });
    }

    pub fn begin_loading(&mut self, loading: Loading) {
        self.loading = Some(loading);
    }

    pub fn end_loading(&mut self) {
        self.loading = None;
    }

    pub fn loading(&self) -> Option<&Loading> {
        self.loading.as_ref()
    }

    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    pub fn filter(&self) -> Option<ConnectionId> {
        self.filter
    }

    pub fn selected(&self) -> Option<PacketId> {
        self.selected
    }

    /// Whether the hex pane shows the bytes as they arrived rather than as edited.
    pub fn show_original(&self) -> bool {
        self.show_original
    }

    /// The packets the table shows, in time order. Current as of the last [`Self::refresh`].
    pub fn rows(&self) -> &[PacketId] {
        if self.matches.is_some() {
            &self.filtered
        } else {
            &self.rows.rows
        }
    }

    /// Shows only the packets the filter bar matched (`None`: all again), from the next
    /// [`Self::refresh`] on.
    pub fn set_matches(&mut self, matches: Option<Arc<super::filter_bar::Matches>>) {
        self.matches = matches;
        self.filtered_stale = true;
    }

    /// Packets of one connection, as of the last [`Self::refresh`].
    pub fn packets_in(&self, conn: ConnectionId) -> usize {
        usize::try_from(conn.0)
            .ok()
            .and_then(|i| self.rows.per_connection.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Bytes of one connection (both ways), as of the last [`Self::refresh`].
    pub fn bytes_in(&self, conn: ConnectionId) -> u64 {
        usize::try_from(conn.0)
            .ok()
            .and_then(|i| self.rows.bytes_per_connection.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The table row to scroll to once, after the keyboard moved the selection.
    pub fn take_scroll_request(&mut self) -> Option<usize> {
        self.scroll_to_row.take()
    }

    /// Brings the row index up to date with the store; cheap when nothing changed.
    pub fn refresh(&mut self, data: &StoreData) {
        let changed = self.rows.refresh(data, self.filter);
        if changed || self.filtered_stale {
            self.filtered_stale = false;
            self.filtered = match &self.matches {
                Some(m) => self
                    .rows
                    .rows
                    .iter()
                    .copied()
                    .filter(|&id| m.contains(id))
                    .collect(),
                None => Vec::new(),
            };
        }
        if !changed {
            return;
        }
        // A selection the filter hides would leave the hex pane describing a packet that is
        // nowhere in the table.
        if let (Some(selected), Some(filter)) = (self.selected, self.filter)
            && data.packet(selected).map(|p| p.connection) != Some(filter)
        {
            self.selected = None;
        }
    }

    /// Applies everything but [`Action::Open`], which needs the loader and is the app's.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Open(_) => {}
            Action::SelectPacket(id) => self.select(id),
            Action::MoveSelection(delta) => self.move_selection(delta),
            Action::ToggleConnection(conn) => {
                self.filter = (self.filter != Some(conn)).then_some(conn);
            }
            Action::ShowAllConnections => self.filter = None,
            Action::ToggleOriginal => self.show_original = !self.show_original,
            Action::DismissMessage => self.message = None,
            Action::Bench(_) => {}
        }
    }

    fn select(&mut self, id: PacketId) {
        if self.selected != Some(id) {
            self.show_original = false;
        }
        self.selected = Some(id);
    }

    fn move_selection(&mut self, delta: isize) {
        // The rows on screen: the filter bar's, when one is in force.
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let current = self
            .selected
            .and_then(|id| rows.iter().position(|&r| r == id));
        let target = match current {
            Some(i) => i.saturating_add_signed(delta).min(rows.len() - 1),
            None if delta < 0 => rows.len() - 1,
            None => 0,
        };
        self.select(rows[target]);
        self.scroll_to_row = Some(target);
    }
}

fn summarise(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNING_LINES {
        let more = warnings.len() - MAX_WARNING_LINES;
        warnings.truncate(MAX_WARNING_LINES);
        warnings.push(format!("… and {more} more"));
    }
    warnings
}

/// The rows of the packet table and the packet count of each connection.
///
/// Rebuilt only when the store or the filter changes. Packets appended to a live store are
/// added at the end, so a growing capture costs work in proportion to what is new.
#[derive(Default)]
struct RowIndex {
    /// Packet count, connection count and filter the index was built for.
    built_for: Option<(usize, usize, Option<ConnectionId>)>,
    rows: Vec<PacketId>,
    per_connection: Vec<usize>,
    bytes_per_connection: Vec<u64>,
    /// Latest timestamp among the rows, to tell whether new packets keep time order.
    latest: Option<Timestamp>,
}

impl RowIndex {
    /// Returns whether anything changed.
    fn refresh(&mut self, data: &StoreData, filter: Option<ConnectionId>) -> bool {
        let key = (data.packet_count(), data.connection_count(), filter);
        match self.built_for {
            Some(built) if built == key => return false,
            Some((packets, _, built_filter)) if built_filter == filter && packets <= key.0 => {
                self.append(data, packets, filter);
            }
            _ => self.rebuild(data, filter),
        }
        self.built_for = Some(key);
        true
    }

    fn rebuild(&mut self, data: &StoreData, filter: Option<ConnectionId>) {
        self.per_connection = vec![0; data.connection_count()];
        self.bytes_per_connection = vec![0; data.connection_count()];
        self.rows.clear();
        self.latest = None;
        match filter {
            None => {
                self.rows = data.time_order();
                for p in data.packets() {
                    self.count(p.connection, p.data.len());
                }
            }
            Some(conn) => {
                for p in data.packets() {
                    self.count(p.connection, p.data.len());
                }
                let mut keyed: Vec<(Timestamp, PacketId)> =
                    data.packets_of(conn).map(|p| (p.timestamp, p.id)).collect();
                keyed.sort_unstable();
                self.rows = keyed.into_iter().map(|(_, id)| id).collect();
            }
        }
        self.latest = self
            .rows
            .last()
            .and_then(|&id| data.packet(id))
            .map(|p| p.timestamp);
    }

    fn append(&mut self, data: &StoreData, from: usize, filter: Option<ConnectionId>) {
        self.per_connection.resize(data.connection_count(), 0);
        self.bytes_per_connection.resize(data.connection_count(), 0);
        let mut in_order = true;
        for index in from..data.packet_count() {
            let Some(p) = data.packet(PacketId(index as u64)) else {
                continue;
            };
            self.count(p.connection, p.data.len());
            if filter.is_some_and(|f| f != p.connection) {
                continue;
            }
            if self.latest.is_some_and(|t| p.timestamp < t) {
                in_order = false;
            }
            self.latest = Some(self.latest.map_or(p.timestamp, |t| t.max(p.timestamp)));
            self.rows.push(p.id);
        }
        if !in_order {
            self.rows
                .sort_by_cached_key(|&id| (data.packet(id).map(|p| p.timestamp), id));
        }
    }

    fn count(&mut self, conn: ConnectionId, bytes: usize) {
        let Ok(i) = usize::try_from(conn.0) else {
            return;
        };
        if let Some(n) = self.per_connection.get_mut(i) {
            *n += 1;
        }
        if let Some(b) = self.bytes_per_connection.get_mut(i) {
            *b += bytes as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Connection, Direction, NewPacket, Transport};

    fn conn(port: u16) -> Connection {
        Connection::new(
            format!("127.0.0.1:{port}").parse().expect("addr"),
            "10.0.0.2:18680".parse().expect("addr"),
            Transport::Tcp,
            Timestamp(0),
        )
    }

    fn packet(c: ConnectionId, t: i64) -> NewPacket {
        NewPacket::new(c, Direction::ClientToServer, Timestamp(t), vec![1, 2, 3])
    }

    /// Two connections; packets at t = 10, 30 on the first and 20 on the second.
    fn store() -> (Arc<CaptureStore>, ConnectionId, ConnectionId) {
        let store = Arc::new(CaptureStore::new());
        let a = store.add_connection(conn(50000));
        let b = store.add_connection(conn(50001));
        for (c, t) in [(a, 10), (b, 20), (a, 30)] {
            store.append(packet(c, t)).expect("append");
        }
        (store, a, b)
    }

    fn state_with(store: &Arc<CaptureStore>) -> ViewerState {
        let mut state = ViewerState::new();
        state.show_capture(
            Capture {
                store: Arc::clone(store),
                source: Source::Live {
                    name: "test".into(),
                },
            },
            vec![],
        );
        state.refresh(&store.read());
        state
    }

    #[test]
    fn filter_shows_one_connection_and_toggles_off() {
        let (store, a, b) = store();
        let mut state = state_with(&store);
        assert_eq!(state.rows().len(), 3);
        assert_eq!((state.packets_in(a), state.packets_in(b)), (2, 1));

        state.apply(Action::ToggleConnection(b));
        state.refresh(&store.read());
        assert_eq!(state.rows(), &[PacketId(1)]);

        state.apply(Action::ToggleConnection(b));
        state.refresh(&store.read());
        assert_eq!(state.rows().len(), 3);
    }

    #[test]
    fn filter_drops_a_selection_it_hides() {
        let (store, a, _) = store();
        let mut state = state_with(&store);
        state.apply(Action::SelectPacket(PacketId(1)));
        state.apply(Action::ToggleConnection(a));
        state.refresh(&store.read());
        assert_eq!(state.selected(), None);
    }

    #[test]
    fn appended_packets_join_the_rows_in_time_order() {
        let (store, a, b) = store();
        let mut state = state_with(&store);
        store.append(packet(b, 40)).expect("append");
        store.append(packet(a, 25)).expect("append");
        state.refresh(&store.read());
        assert_eq!(
            state.rows(),
            &[
                PacketId(0),
                PacketId(1),
                PacketId(4),
                PacketId(2),
                PacketId(3)
            ]
        );
        assert_eq!(state.packets_in(b), 2);
    }

    #[test]
    fn arrow_keys_move_within_the_rows() {
        let (store, _, _) = store();
        let mut state = state_with(&store);
        state.apply(Action::MoveSelection(1));
        assert_eq!(state.selected(), Some(PacketId(0)));
        state.apply(Action::MoveSelection(5));
        assert_eq!(state.selected(), Some(PacketId(2)));
        assert_eq!(state.take_scroll_request(), Some(2));
        state.apply(Action::MoveSelection(-1));
        assert_eq!(state.selected(), Some(PacketId(1)));
    }

    #[test]
    fn many_warnings_are_summarised() {
        let (store, _, _) = store();
        let mut state = ViewerState::new();
        let warnings = (0..60).map(|i| format!("w{i}")).collect();
        state.show_capture(
            Capture {
                store,
                source: Source::Live { name: "x".into() },
            },
            warnings,
        );
        let message = state.message().expect("warning banner");
        assert_eq!(message.kind, MessageKind::Warning);
        assert_eq!(message.lines.len(), MAX_WARNING_LINES + 1);
        assert_eq!(
            message.lines.last().map(String::as_str),
            Some("… and 10 more")
        );
    }
}
