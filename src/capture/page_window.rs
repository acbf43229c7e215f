//! Keeps the page cache of a growing capture file (the live store's temporary file, the
//! `.gwcap` journal) to a window of recent bytes.
//!
//! A live capture appends to its files for as long as traffic flows, and every
//! byte written lands in a page-cache page the kernel has to find first. On a virtual
//! machine a page the guest has not used lately is not backed by the host: the first write
//! to it stalls while the host supplies it. Measured on a two-core VM, buffered writes to a
//! fresh file fall from about 4 GB/s to about 340 MB/s once the recently used pages run out,
//! and a tap recording a bulk transfer falls with them, to 15-25% of direct loopback.
//!
//! So a background thread follows the file's end: bytes more than [`KEEP`] behind it are
//! written out (`sync_file_range`) and then dropped from the page cache (`fadvise
//! DONTNEED`), and the pages freed that way are the ones the next writes reuse. A capture's
//! memory use stays at about `KEEP` however long it runs, as with Wireshark's temporary
//! files; older packets are read back from the file when someone looks at them (the store
//! maps the file, so that is a page fault, not a code path).
//!
//! Pages are only dropped after their write-out succeeded: a page whose write failed would
//! be dropped with its bytes, so after any error the thread stops and everything stays in
//! memory, as it did before this existed.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Recent bytes kept in the page cache: what live decoding and the newest rows of the
/// packet list read, several seconds of traffic at the rates a game produces.
pub(super) const KEEP: u64 = 64 << 20;

/// Bytes written between two rounds of the thread.
pub(super) const STEP: u64 = 16 << 20;

/// Dropped ranges start and end at multiples of this (whole pages on every platform).
const ALIGN: u64 = 64 << 10;

struct Shared {
    /// The file's end: every byte before it is written (or a hole that stays one).
    end: AtomicU64,
    /// Bytes before this have been written out and dropped from the page cache.
    dropped: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The handle the arena holds; dropping it ends the thread.
pub(super) struct PageWindow {
    shared: Arc<Shared>,
    /// `end` when the thread was last woken.
    woken_at: u64,
}

impl PageWindow {
    /// Starts following `file`, written from its start. `None` where the platform has no
    /// way to do it, or no thread could be started: the capture then works as before, only
    /// with a larger page-cache footprint.
    pub fn start(file: &File) -> Option<PageWindow> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let file = file.try_clone().ok()?;
        let shared = Arc::new(Shared {
            end: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("gamewire-pages".into())
            .spawn(move || follow(&file, &theirs))
            .map_err(|e| tracing::debug!("no page-cache window for the capture file: {e}"))
            .ok()?;
        Some(PageWindow {
            shared,
            woken_at: 0,
        })
    }

    /// The file now holds bytes up to `end`. Cheap: the thread is only woken every [`STEP`].
    pub fn advance(&mut self, end: u64) {
        self.shared.end.fetch_max(end, Ordering::Relaxed);
        if end >= self.woken_at + STEP {
            self.woken_at = end;
            self.shared.wake.notify_one();
        }
    }

    /// How far the thread has written out and dropped pages.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for PageWindow {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_one();
    }
}

/// The thread: drops everything older than [`KEEP`] behind the end, a step at a time.
fn follow(file: &File, shared: &Shared) {
    let mut dropped_to = 0u64;
    loop {
        {
            let Ok(stop) = shared.stop.lock() else { return };
            // The timeout only guards against a missed wake-up; the writer wakes the thread.
            let Ok((stop, _)) =
                shared
                    .wake
                    .wait_timeout_while(stop, Duration::from_secs(1), |stop| {
                        !*stop && limit(shared.end.load(Ordering::Relaxed)) < dropped_to + STEP
                    })
            else {
                return;
            };
            if *stop {
                return;
            }
        }
        let to = limit(shared.end.load(Ordering::Relaxed));
        if to <= dropped_to {
            continue;
        }
        if let Err(e) = write_out_and_drop(file, dropped_to, to - dropped_to) {
            tracing::warn!(
                "capture file: cannot write out old pages ({e}); keeping them all in memory"
            );
            return;
        }
        dropped_to = to;
        shared.dropped.store(to, Ordering::Relaxed);
    }
}

/// Where dropping may go up to for a file that ends at `end`.
fn limit(end: u64) -> u64 {
    end.saturating_sub(KEEP) / ALIGN * ALIGN
}

#[cfg(target_os = "linux")]
fn write_out_and_drop(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(start), Ok(count)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::other("file offset out of range"));
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: only integers cross: a descriptor this thread owns (its own clone of the file,
    // open for as long as `file` lives) and a byte range; the kernel reads no memory of ours.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), start, count, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = std::num::NonZeroU64::new(len);
    rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn write_out_and_drop(_file: &File, _offset: u64, _len: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Pages of the first `len` bytes of `file` in the page cache, by `mincore` on a map of it.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn resident_pages(file: &File, len: usize) -> usize {
    // SAFETY: a test's own file, only read while mapped.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file) }.unwrap();
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `vec` has one byte per page of the mapped range, as mincore requires.
    let r = unsafe { libc::mincore(map.as_ptr() as *mut _, len, vec.as_mut_ptr()) };
    assert_eq!(r, 0);
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// Whether `file` is on tmpfs, whose pages are the file itself: nothing to write out or drop.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn on_tmpfs(file: &File) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::fstatfs(file).is_ok_and(|s| s.f_type as u64 == TMPFS_MAGIC)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn old_pages_leave_the_cache_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let on_tmpfs = on_tmpfs(&file);
        let total = (KEEP + 4 * STEP) as usize;
        let mut window = PageWindow::start(&file).unwrap();
        let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
        let mut at = 0u64;
        while (at as usize) < total {
            file.write_all_at(&block, at).unwrap();
            at += block.len() as u64;
            window.advance(at);
        }
        // The thread works behind the writer: wait for it to catch up.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let expected_max = (KEEP + 2 * STEP) as usize / 4096;
        while !on_tmpfs && resident_pages(&file, total) > expected_max {
            assert!(
                std::time::Instant::now() < deadline,
                "{} pages still cached, expected at most {expected_max}",
                resident_pages(&file, total)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every byte reads back from the file, dropped pages included.
        let mut back = vec![0u8; block.len()];
        for k in 0..total / block.len() {
            file.read_exact_at(&mut back, (k * block.len()) as u64)
                .unwrap();
            assert_eq!(back, block, "block {k}");
        }
        drop(window);
    }

    #[test]
    fn limit_keeps_the_window_and_aligns() {
        assert_eq!(limit(KEEP - 1), 0);
        assert_eq!(limit(KEEP + ALIGN + 5), ALIGN);
    }
}
