//! Where packet bytes live: append-only chunks, in memory or in a temporary file.
//!
//! A live capture can take in gigabytes. Fresh anonymous memory has to be zeroed by the
//! kernel on first touch, and on a virtual machine that alone runs at about 1 GB/s, half the
//! speed of a loopback relay. Page-cache pages written whole with `pwrite` are never zeroed
//! (about 3 GB/s on the same machine), and the kernel may write them out under memory
//! pressure, so a capture larger than RAM still works. Like Wireshark's temporary capture
//! files, the engine's live store therefore keeps its bytes in a deleted temporary file that
//! it maps read-only; everything else (loaded files, tests) stays in memory.

use std::fs::File;
use std::io;
use std::path::Path;

use super::page_window::{self, PageWindow};

/// Packet bytes that arrive through the kernel rather than through a buffer of ours (a
/// pipe that a socket was spliced into): the source moves them into the capture itself, so
/// a file-backed capture takes them in without a copy through user space.
pub trait ByteSource {
    /// Moves exactly `len` bytes into `file` at `offset`, and writes nothing else there (the
    /// rest of the file holds packets already captured). On failure, also says how many bytes
    /// were moved before it.
    fn move_to_file(
        &mut self,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Result<(), (usize, io::Error)>;
    /// Appends exactly `len` bytes to `out`.
    fn move_to_vec(&mut self, out: &mut Vec<u8>, len: usize) -> io::Result<()>;
}

/// Bytes per chunk. A packet never straddles chunks; one larger than a chunk gets a chunk of
/// its own.
pub(super) const CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// File chunks start at multiples of this, which every platform accepts as a map offset.
const MAP_ALIGN: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub chunk: u32,
    pub offset: u32,
    pub len: u32,
}

enum Chunk {
    Memory(Vec<u8>),
    /// A read-only view of `capacity` bytes of the backing file; the first `len` are written.
    Mapped {
        map: memmap2::Mmap,
        file_offset: u64,
        len: usize,
    },
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Memory(v) => v.len(),
            Chunk::Mapped { len, .. } => *len,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Chunk::Memory(v) => v.capacity(),
            Chunk::Mapped { map, .. } => map.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Memory(v) => v,
            Chunk::Mapped { map, len, .. } => &map[..*len],
        }
    }
}

/// The temporary file behind mapped chunks.
struct Backing {
    file: File,
    /// Bytes of the file handed out to chunks so far.
    used: u64,
    /// Keeps only the newest bytes in the page cache (None where that cannot be done).
    window: Option<PageWindow>,
}

#[derive(Default)]
pub(super) struct Arena {
    chunks: Vec<Chunk>,
    backing: Option<Backing>,
    /// Chunks before this one have had their maps' pages released (see [`Arena::wrote_to`]).
    released: usize,
}

impl Arena {
    /// Keeps new chunks in a temporary file under `dir`, which is deleted at once so that
    /// nothing is left behind however the process ends. Chunks already made stay where they
    /// are.
    pub fn use_temp_file(&mut self, dir: &Path) -> std::io::Result<()> {
        let file = temp_file(dir)?;
        let window = PageWindow::start(&file);
        self.backing = Some(Backing {
            file,
            used: 0,
            window,
        });
        Ok(())
    }

    pub fn is_file_backed(&self) -> bool {
        self.backing.is_some()
    }

    pub fn push(&mut self, bytes: &[u8]) -> Span {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= bytes.len());
        if !fits {
            let chunk = self.new_chunk(bytes.len());
            self.chunks.push(chunk);
        }
        let chunk_index = self.chunks.len() - 1;
        if let Err(e) = self.write_last(bytes) {
            // A full disk, say. The bytes must not be lost: this and every later packet go to
            // memory, as they would have without the file.
            tracing::warn!("capture temporary file failed ({e}); keeping packet bytes in memory");
            self.backing = None;
            self.chunks.push(Chunk::Memory(Vec::with_capacity(
                CHUNK_SIZE.max(bytes.len()),
            )));
            return self.push(bytes);
        }
        let chunk = &self.chunks[chunk_index];
        Span {
            chunk: chunk_index as u32,
            offset: (chunk.len() - bytes.len()) as u32,
            len: bytes.len() as u32,
        }
    }

    /// Like [`Arena::push`] for `len` bytes that `source` moves in itself.
    pub fn push_from(&mut self, len: usize, source: &mut dyn ByteSource) -> io::Result<Span> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let chunk = self.new_chunk(len);
            self.chunks.push(chunk);
        }
        let chunk_index = self.chunks.len() - 1;
        let backing = self.backing.as_ref();
        let Some(chunk) = self.chunks.last_mut() else {
            return Err(io::Error::other("no chunk to write to"));
        };
        let start = chunk.len();
        match (chunk, backing) {
            (Chunk::Memory(v), _) => {
                if let Err(e) = source.move_to_vec(v, len) {
                    v.truncate(start);
                    return Err(e);
                }
            }
            (
                Chunk::Mapped {
                    file_offset,
                    len: written,
                    ..
                },
                Some(backing),
            ) => {
                let at = *file_offset + *written as u64;
                if let Err((moved, e)) = source.move_to_file(&backing.file, at, len) {
                    // As in `push`: give up the file, keep the bytes. Those already moved
                    // are read back from it, the rest taken from the source.
                    tracing::warn!(
                        "capture temporary file failed ({e}); keeping packet bytes in memory"
                    );
                    let mut bytes = vec![0; moved];
                    read_at(&backing.file, &mut bytes, at)?;
                    source.move_to_vec(&mut bytes, len - moved)?;
                    self.backing = None;
                    return Ok(self.push(&bytes));
                }
                *written += len;
                let end = at + len as u64;
                self.wrote_to(end);
            }
            (Chunk::Mapped { .. }, None) => {
                let mut bytes = Vec::with_capacity(len);
                source.move_to_vec(&mut bytes, len)?;
                return Ok(self.push(&bytes));
            }
        }
        Ok(Span {
            chunk: chunk_index as u32,
            offset: start as u32,
            len: len as u32,
        })
    }

    fn write_last(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(chunk) = self.chunks.last_mut() else {
            return Err(std::io::Error::other("no chunk to write to"));
        };
        match chunk {
            Chunk::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Chunk::Mapped {
                file_offset, len, ..
            } => {
                let Some(backing) = &self.backing else {
                    return Err(std::io::Error::other("temporary file was given up"));
                };
                let at = *file_offset + *len as u64;
                write_at(&backing.file, bytes, at)?;
                *len += bytes.len();
                self.wrote_to(at + bytes.len() as u64);
                Ok(())
            }
        }
    }

    /// The file holds bytes up to `end`: tells the page-cache window, and releases this
    /// process's mappings of chunks that lie wholly behind it. The kernel never drops a page
    /// from the page cache while a process maps it, and every packet anyone read (the
    /// capture journal reads each one as it arrives) is mapped here.
    fn wrote_to(&mut self, end: u64) {
        let Some(window) = self.backing.as_mut().and_then(|b| b.window.as_mut()) else {
            return;
        };
        window.advance(end);
        let behind = end.saturating_sub(page_window::KEEP);
        // The last chunk is still being written; it is released once a later one exists.
        while self.released + 1 < self.chunks.len() {
            if let Chunk::Mapped {
                map, file_offset, ..
            } = &self.chunks[self.released]
            {
                if *file_offset + map.len() as u64 > behind {
                    break;
                }
                release_pages(map);
            }
            self.released += 1;
        }
    }

    fn new_chunk(&mut self, at_least: usize) -> Chunk {
        let size = CHUNK_SIZE.max(at_least);
        if let Some(backing) = &mut self.backing {
            match map_chunk(backing, size) {
                Ok(chunk) => return chunk,
                Err(e) => {
                    tracing::warn!(
                        "capture temporary file failed ({e}); keeping packet bytes in memory"
                    );
                    self.backing = None;
                }
            }
        }
        Chunk::Memory(Vec::with_capacity(size))
    }

    pub fn get(&self, span: Span) -> &[u8] {
        let start = span.offset as usize;
        &self.chunks[span.chunk as usize].bytes()[start..start + span.len as usize]
    }

    pub fn bytes_reserved(&self) -> usize {
        self.chunks.iter().map(Chunk::capacity).sum()
    }

    pub fn shrink_last(&mut self) {
        if let Some(Chunk::Memory(v)) = self.chunks.last_mut() {
            v.shrink_to_fit();
        }
    }
}

/// Unmaps a chunk's pages from this process (it stays mapped; a later read faults them in).
/// Only called with `&mut Arena`, so no slice of the map is borrowed.
#[cfg(unix)]
fn release_pages(map: &memmap2::Mmap) {
    // SAFETY: the map is a shared, read-only map of the file, so a page touched again after
    // this is read back from the file with the same bytes (written bytes are never
    // rewritten), and the caller holds the arena exclusively, so nothing borrows the map.
    if let Err(e) = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
        tracing::debug!("capture chunk pages not released: {e}");
    }
}

#[cfg(not(unix))]
fn release_pages(_map: &memmap2::Mmap) {}

fn map_chunk(backing: &mut Backing, size: usize) -> std::io::Result<Chunk> {
    let capacity = size.div_ceil(MAP_ALIGN) * MAP_ALIGN;
    let file_offset = backing.used;
    let end = file_offset + capacity as u64;
    // Growing the file first means the whole map lies inside it: touching a map past the end
    // of its file is a crash (SIGBUS), not an error.
    backing.file.set_len(end)?;
    // SAFETY: the file is ours alone (created here and unlinked at once), it only ever grows,
    // so the mapped range stays inside it for the map's life; and its bytes change only
    // through `write_at` or a `ByteSource` on `&mut Arena`, past every byte handed out, while
    // no slice of the map can be borrowed.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(file_offset)
            .len(capacity)
            .map(&backing.file)?
    };
    backing.used = end;
    Ok(Chunk::Mapped {
        map,
        file_offset,
        len: 0,
    })
}

/// Windows cannot unlink an open file, so a crash would leave it behind: memory only there.
#[cfg(not(unix))]
fn temp_file(_dir: &Path) -> std::io::Result<File> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(unix)]
fn temp_file(dir: &Path) -> std::io::Result<File> {
    let mut attempt = 0;
    loop {
        let path = dir.join(format!(
            "gamewire-capture-{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(file) => {
                // Unlinked while open: the space comes back when the capture is dropped or
                // the process dies, and no one else can open (and so truncate) it.
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(unix)]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(bytes, offset)
}

#[cfg(not(unix))]
fn read_at(_file: &File, _bytes: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(not(unix))]
fn write_at(_file: &File, _bytes: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(arena: &mut Arena, n: usize) -> Vec<(Span, Vec<u8>)> {
        (0..n)
            .map(|i| {
                // Sizes from 0 bytes to past a chunk, so packets land at chunk ends too.
                let len = (i * 7919) % (CHUNK_SIZE / 3) + usize::from(i % 50 == 0) * CHUNK_SIZE;
                let bytes: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                (arena.push(&bytes), bytes)
            })
            .collect()
    }

    #[test]
    fn file_backed_chunks_give_back_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut arena = Arena::default();
        arena.use_temp_file(dir.path()).unwrap();
        let stored = fill(&mut arena, 120);
        assert!(arena.is_file_backed());
        assert!(arena.chunks.len() > 10);
        for (span, bytes) in &stored {
            assert_eq!(arena.get(*span), &bytes[..]);
        }
        // Unlinked at once: nothing is left in the directory even while the arena lives.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn memory_and_file_chunks_mix() {
        let dir = tempfile::tempdir().unwrap();
        let mut arena = Arena::default();
        let mut stored = fill(&mut arena, 30);
        arena.use_temp_file(dir.path()).unwrap();
        stored.extend(fill(&mut arena, 30));
        for (span, bytes) in &stored {
            assert_eq!(arena.get(*span), &bytes[..]);
        }
    }

    /// Bytes held elsewhere, moved in the way a spliced pipe moves them; optionally the file
    /// fails after some bytes, as a full disk would.
    struct Held {
        bytes: Vec<u8>,
        taken: usize,
        fail_file_after: Option<usize>,
    }

    impl ByteSource for Held {
        fn move_to_file(
            &mut self,
            file: &File,
            offset: u64,
            len: usize,
        ) -> Result<(), (usize, io::Error)> {
            let n = self.fail_file_after.map_or(len, |k| k.min(len));
            let part = &self.bytes[self.taken..self.taken + n];
            write_at(file, part, offset).map_err(|e| (0, e))?;
            self.taken += n;
            if n < len {
                return Err((n, io::Error::other("disk full")));
            }
            Ok(())
        }

        fn move_to_vec(&mut self, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
            out.extend_from_slice(&self.bytes[self.taken..self.taken + len]);
            self.taken += len;
            Ok(())
        }
    }

    fn held(len: usize, seed: usize, fail_file_after: Option<usize>) -> Held {
        Held {
            bytes: (0..len).map(|j| (seed * 131 + j * 7) as u8).collect(),
            taken: 0,
            fail_file_after,
        }
    }

    #[test]
    fn moved_in_bytes_read_back_from_file_and_memory_alike() {
        let dir = tempfile::tempdir().unwrap();
        let mut file_backed = Arena::default();
        file_backed.use_temp_file(dir.path()).unwrap();
        let mut in_memory = Arena::default();
        for arena in [&mut file_backed, &mut in_memory] {
            let mut stored = Vec::new();
            for i in 0..40 {
                // Mixed with ordinary pushes, across chunk ends.
                let len = (i * 104_729) % (CHUNK_SIZE / 2);
                let mut source = held(len, i, None);
                let span = arena.push_from(len, &mut source).unwrap();
                stored.push((span, source.bytes));
                let plain = vec![i as u8; i * 10];
                stored.push((arena.push(&plain), plain));
            }
            for (span, bytes) in &stored {
                assert_eq!(arena.get(*span), &bytes[..]);
            }
        }
        assert!(file_backed.is_file_backed());
        assert!(!in_memory.is_file_backed());
    }

    #[test]
    fn a_file_failing_midway_keeps_every_byte_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut arena = Arena::default();
        arena.use_temp_file(dir.path()).unwrap();
        let before = arena.push(b"earlier packet");
        let mut source = held(100_000, 3, Some(40_000));
        let span = arena.push_from(100_000, &mut source).unwrap();
        assert_eq!(arena.get(span), &source.bytes[..]);
        assert_eq!(source.taken, 100_000, "the rest came from the source");
        assert!(!arena.is_file_backed(), "the file is given up");
        assert_eq!(arena.get(before), b"earlier packet");
        let after = arena.push(b"later packet");
        assert_eq!(arena.get(after), b"later packet");
    }

    /// Packets read as they arrive (as the capture journal does) still leave the page cache
    /// once they are old, and come back through the maps with their bytes.
    #[cfg(target_os = "linux")]
    #[test]
    fn bytes_dropped_from_the_page_cache_read_back_through_the_maps() {
        use super::super::page_window::{KEEP, STEP, on_tmpfs, resident_pages};
        let dir = tempfile::tempdir().unwrap();
        let mut arena = Arena::default();
        arena.use_temp_file(dir.path()).unwrap();
        let mut stored = Vec::new();
        let mut total = 0u64;
        let mut i = 0usize;
        while total < KEEP * 3 {
            let bytes: Vec<u8> = (0..300_000 + i % 7).map(|j| (i * 13 + j) as u8).collect();
            total += bytes.len() as u64;
            // Half the bytes arrive as a spliced pipe would deliver them.
            let span = if i.is_multiple_of(2) {
                arena.push(&bytes)
            } else {
                let mut source = Held {
                    bytes: bytes.clone(),
                    taken: 0,
                    fail_file_after: None,
                };
                arena.push_from(bytes.len(), &mut source).unwrap()
            };
            assert_eq!(arena.get(span), &bytes[..]);
            stored.push((span, bytes));
            i += 1;
        }
        let backing = arena.backing.as_ref().unwrap();
        let window = backing.window.as_ref().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while window.dropped() < KEEP {
            assert!(std::time::Instant::now() < deadline, "no pages dropped");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !on_tmpfs(&backing.file) {
            let used = backing.used as usize;
            // The window, up to two steps of lag, and the chunks being written.
            let most = (KEEP + 2 * STEP) as usize / 4096 + 2 * CHUNK_SIZE / 4096;
            let cached = resident_pages(&backing.file, used);
            assert!(
                cached <= most,
                "{cached} pages cached, at most {most} expected"
            );
        }
        for (span, bytes) in &stored {
            assert_eq!(arena.get(*span), &bytes[..]);
        }
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_crash() {
        let mut arena = Arena::default();
        let missing = Path::new("/nonexistent/gamewire/dir");
        assert!(arena.use_temp_file(missing).is_err());
        let span = arena.push(b"still stored");
        assert_eq!(arena.get(span), b"still stored");
    }
}
