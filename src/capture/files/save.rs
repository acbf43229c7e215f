//! The work of every save: copy what is to be saved without stalling recording, then write
//! it beside the target and swap it in only when it is complete and on disk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::{FileError, Format};
use crate::capture::gwcap;
use crate::capture::model::{ConnectionId, PacketId};
use crate::capture::store::{CaptureStore, StoreData};
use crate::capture::{pcapng, sdjson};

/// Packets copied per hold of a live store's read lock: a few milliseconds of work, so a
/// tap waiting to append is never held up for longer than that.
const COPY_SLICE: usize = 50_000;

/// Which connections a save covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    /// One connection alone; it becomes connection 0 of the written file.
    Connection(ConnectionId),
}

/// What a save reads from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// A capture nothing changes meanwhile (read from a file, built in memory): written as
    /// it is, without a copy.
    Data(&'a StoreData),
    /// A store that others may append to while the save runs (the engine's live capture):
    /// copied a slice at a time first, and the file holds the packets there were when the
    /// save started.
    Live(&'a CaptureStore),
}

/// What a save wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    pub format: Format,
    pub connections: usize,
    pub packets: usize,
    /// Size of the file written.
    pub bytes: u64,
    /// HAR only: the HTTP exchanges found (a capture without HTTP/1 gives none).
    pub http_exchanges: Option<usize>,
}

/// Writes HAR, the one format whose encoder lives above `capture` (it needs HTTP decoding);
/// returns the number of exchanges written.
pub(crate) type HarEncoder<'a> = &'a dyn Fn(&StoreData, &mut dyn Write) -> io::Result<usize>;

/// Saves `from` (the part `scope` covers) to `path` as `format`. `progress` gets the share
/// done, 0.0 to 1.0, each time it moves by a thousandth. Called only by
/// `dissect::export::save`, the entry point every caller uses (see the module notes).
pub(crate) fn save_with(
    from: Source<'_>,
    path: &Path,
    format: Format,
    scope: Scope,
    progress: &dyn Fn(f32),
    har: HarEncoder<'_>,
) -> Result<Saved, FileError> {
    let mut meter = Meter::new(progress);
    let copy;
    let data = match (from, scope) {
        (Source::Data(data), Scope::All) => data,
        (Source::Data(data), scope) => {
            copy = snapshot(|| data, scope, &mut meter);
            &copy
        }
        (Source::Live(store), scope) => {
            copy = snapshot(|| store.read(), scope, &mut meter);
            &copy
        }
    };
    let (bytes, http_exchanges) =
        write_file(data, path, format, &mut meter, har).map_err(|source| FileError::Io {
            path: path.display().to_string(),
            source,
        })?;
    meter.set(1.0);
    Ok(Saved {
        path: path.to_owned(),
        format,
        connections: data.connection_count(),
        packets: data.packet_count(),
        bytes,
        http_exchanges,
    })
}

/// Reports progress, only when it has moved.
struct Meter<'a> {
    report: &'a dyn Fn(f32),
    shown: Option<u32>,
    /// Where writing starts on the scale: half way when a copy came first.
    write_from: f32,
}

impl<'a> Meter<'a> {
    fn new(report: &'a dyn Fn(f32)) -> Self {
        Meter {
            report,
            shown: None,
            write_from: 0.0,
        }
    }

    fn set(&mut self, done: f32) {
        let permille = (done.clamp(0.0, 1.0) * 1000.0) as u32;
        if self.shown != Some(permille) {
            self.shown = Some(permille);
            (self.report)(permille as f32 / 1000.0);
        }
    }
}

/// A copy of the connections `scope` covers and the packets there were when it started,
/// taken [`COPY_SLICE`] packets per `read()`. Moves progress from 0 to half way.
fn snapshot<G: Deref<Target = StoreData>>(
    read: impl Fn() -> G,
    scope: Scope,
    meter: &mut Meter<'_>,
) -> StoreData {
    let mut copy = StoreData::new();
    // For each connection of the source seen so far, its id in the copy (None: not wanted).
    let mut ids: Vec<Option<ConnectionId>> = Vec::new();
    let total = read().packet_count();
    let mut next = 0;
    loop {
        let data = read();
        for conn in &data.connections()[ids.len()..] {
            let wanted = match scope {
                Scope::All => true,
                Scope::Connection(c) => c == conn.id,
            };
            ids.push(wanted.then(|| copy.add_connection(conn.clone())));
        }
        let end = total.min(next + COPY_SLICE);
        for index in next..end {
            let Some(p) = data.packet(PacketId(index as u64)) else {
                continue;
            };
            let Some(Some(conn)) = usize::try_from(p.connection.0)
                .ok()
                .and_then(|i| ids.get(i))
            else {
                continue;
            };
            // The copy cannot refuse a packet its source holds; if it somehow did, the
            // packet is left out rather than failing the whole save.
            let _ = copy.append_copy(*conn, &p);
        }
        next = end;
        if next >= total {
            // Connections change after they open (TLS facts, protocol, close): take their
            // latest state.
            for (conn, id) in data.connections().iter().zip(&ids) {
                if let Some(id) = id {
                    let _ = copy.update_connection(*id, |c| *c = conn.clone());
                }
            }
            break;
        }
        drop(data);
        meter.set(next as f32 / total as f32 / 2.0);
    }
    meter.write_from = 0.5;
    copy
}

/// Writes `NAME.part`, syncs it, renames it onto `path` and syncs the directory. Returns
/// the bytes written and, for HAR, the exchanges.
fn write_file(
    data: &StoreData,
    path: &Path,
    format: Format,
    meter: &mut Meter<'_>,
    har: HarEncoder<'_>,
) -> io::Result<(u64, Option<usize>)> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    // Nothing to clean up when even the `.part` cannot be made (and a file of that name
    // that we did not make is not ours to remove).
    let file = File::create(&part)?;
    let written = (|| -> io::Result<(u64, Option<usize>)> {
        let mut out = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            estimate: format.estimate(data).max(1),
            meter: &mut *meter,
        };
        let exchanges = encode(data, format, &mut out, har)?;
        out.flush()?;
        let bytes = out.written;
        let file = out.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&part, path)?;
        Ok((bytes, exchanges))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    let written = written?;
    sync_directory(path);
    Ok(written)
}

fn encode(
    data: &StoreData,
    format: Format,
    out: &mut dyn Write,
    har: HarEncoder<'_>,
) -> io::Result<Option<usize>> {
    match format {
        Format::Gwcap => gwcap::write_to(data, out).map(|()| None),
        Format::SdJson => sdjson::export(data, out, |_| true).map(|()| None),
        Format::Pcapng => pcapng::export(data, out, |_| true).map(|()| None),
        Format::Har => har(data, out).map(Some),
    }
}

/// Makes the rename itself durable. The new file is complete and in place by now, so a
/// failure here is only logged: reporting the save as failed would be untrue.
fn sync_directory(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the directory of a saved file");
        }
    }
    #[cfg(not(unix))]
    let _ = path; // Directories cannot be opened for syncing there; the rename is enough.
}

/// Counts what is written, for the progress bar.
struct Counting<'a, 'm, W: Write> {
    inner: W,
    written: u64,
    estimate: u64,
    meter: &'a mut Meter<'m>,
}

impl<W: Write> Write for Counting<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        // The estimate is rough; stay short of done until the file is in place.
        let share = (self.written as f32 / self.estimate as f32).min(0.99);
        let from = self.meter.write_from;
        self.meter.set(from + (1.0 - from) * share);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
