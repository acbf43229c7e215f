//! Zero-copy relaying for plain TCP taps (Linux).
//!
//! A copying relay moves every byte through user space twice (read, write) and a third time
//! into the capture. On a two-core machine that work, not the network, caps a tap at about
//! 40% of direct loopback. Here a read is `splice`d from the socket into a pipe, `tee`d into
//! a second pipe whose pages are spliced into the capture's temporary file (the one copy
//! left, into the page cache), and the first pipe is spliced on to the other socket. The
//! bytes recorded are the bytes forwarded, one packet per read, as with the copying relay.
//!
//! Only for taps with plain TCP on both legs and no breakpoint watching the route: TLS needs
//! the bytes in user space, and so does a breakpoint. The relay switches between the two
//! ways per read.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::pipe::{SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, tee};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::capture::{ByteSource, Direction};

use super::record::ConnRecorder;

/// Bytes a pipe holds: as much as the copying relay reads at once.
const PIPE_SIZE: usize = 256 * 1024;

/// A TCP socket shared by the two directions of a relay: each direction reads one socket
/// and writes the other, through these handles or by splicing.
#[derive(Clone)]
pub(super) struct SharedTcp(pub Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.0.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; polling again registers for the next wake-up.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-closes: the peer reads the end of the stream, and may still send.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Write);
        Poll::Ready(match done {
            Ok(()) => Ok(()),
            // Already reset by the peer: nothing left to close.
            Err(rustix::io::Errno::NOTCONN) => Ok(()),
            Err(e) => Err(e.into()),
        })
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) =
            pipe_with(rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC)?;
        // A larger pipe means fewer system calls per megabyte; the kernel may refuse (a
        // user's pipe budget is limited), which only costs speed.
        let _ = fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Pipe { read, write })
    }

    fn capacity(&self) -> io::Result<usize> {
        Ok(fcntl_getpipe_size(&self.write)?)
    }

    fn resize(&self, size: usize) -> io::Result<()> {
        fcntl_setpipe_size(&self.write, size)?;
        Ok(())
    }
}

/// One direction's pipes: `forward` carries a read to the other socket, `record` a copy of
/// its pages to the capture (two pipes, four descriptors).
pub(super) struct ZeroCopy {
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    pipes: Option<(Pipe, Pipe)>,
}

impl ZeroCopy {
    pub fn new(from: Arc<TcpStream>, to: Arc<TcpStream>) -> ZeroCopy {
        ZeroCopy {
            from,
            to,
            pipes: None,
        }
    }

    /// The pipes (four descriptors per direction), made by [`ZeroCopy::prepare`] and again
    /// after a failure left their contents unknown. `tee` cannot copy part of a pipe, so the
    /// record pipe must hold at least what the forward pipe can.
    fn pipes(&mut self) -> io::Result<&(Pipe, Pipe)> {
        if self.pipes.is_none() {
            let forward = Pipe::new()?;
            let record = Pipe::new()?;
            let (f, r) = (forward.capacity()?, record.capacity()?);
            if r < f {
                forward.resize(r)?;
            }
            let (f, r) = (forward.capacity()?, record.capacity()?);
            if f > r {
                return Err(io::Error::other("pipes of unequal size"));
            }
            // A pipe the kernel kept small makes every read small: worth seeing when a tap
            // is slow.
            tracing::debug!(forward = f, record = r, "splice pipes ready");
            self.pipes = Some((forward, record));
        }
        self.pipes
            .as_ref()
            .ok_or_else(|| io::Error::other("pipes missing"))
    }

    /// Makes the pipes when the relay starts, so that a failure (out of descriptors) falls
    /// back to copying before any byte is taken.
    pub fn prepare(&mut self) -> io::Result<()> {
        self.pipes().map(|_| ())
    }

    /// Waits for bytes from `from` and takes up to `max` of them into both pipes; `Ok(0)` at
    /// the end of the stream. Cancel-safe: nothing is taken before the socket is ready.
    pub async fn take(&mut self, max: usize) -> io::Result<usize> {
        let from = self.from.clone();
        let (forward, record) = self.pipes()?;
        loop {
            from.readable().await?;
            let moved = from.try_io(Interest::READABLE, || {
                splice(
                    &*from,
                    None,
                    &forward.write,
                    None,
                    max.min(PIPE_SIZE),
                    SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
                )
                .map_err(io::Error::from)
            });
            match moved {
                Ok(0) => return Ok(0),
                Ok(n) => {
                    copy_pages(forward, record, n)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Records the `n` bytes just taken as one packet.
    pub fn record(&mut self, conn: &ConnRecorder, direction: Direction, n: usize) {
        let Some((_, record)) = &self.pipes else {
            return;
        };

        let mut source = PipeSource {
            pipe: &record.read,
            left: n,
        };
        conn.packet_from(direction, n, &mut source);
        // Whatever the capture could not take must not be recorded with the next read.
        if source.left > 0 && discard(&record.read, source.left).is_err() {
            // The pipe's contents are unknown now: start the next read with fresh pipes.
            self.pipes = None;
        }
    }

    /// Hands the bytes just taken to user space instead (a breakpoint now watches the route):
    /// fills `buf` from the forward pipe and drops the record pipe's copy.
    pub fn take_out(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let (forward, record) = self.pipes()?;
        read_full(&forward.read, buf)?;
        discard(&record.read, buf.len())
    }

    /// Sends the `n` bytes just taken on to `to`, waiting while its buffer is full.
    pub async fn forward(&mut self, mut n: usize) -> io::Result<()> {
        let to = self.to.clone();
        let (forward, _) = self.pipes()?;
        while n > 0 {
            to.writable().await?;
            let sent = to.try_io(Interest::WRITABLE, || {
                splice(
                    &forward.read,
                    None,
                    &*to,
                    None,
                    n,
                    SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => n -= k.min(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Duplicates the first `n` bytes of `forward` into the empty `record` pipe, without
/// consuming them.
fn copy_pages(forward: &Pipe, record: &Pipe, n: usize) -> io::Result<()> {
    let copied = tee(&forward.read, &record.write, n, SpliceFlags::NONBLOCK)?;
    if copied == n {
        Ok(())
    } else {
        // Only possible if the record pipe were not empty or smaller, which `pipes` rules out.
        Err(io::Error::other(format!(
            "tee copied {copied} of {n} bytes"
        )))
    }
}

/// Fills `buf` from a pipe that holds at least that many bytes.
fn read_full(pipe: &OwnedFd, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::io::read(pipe, &mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => filled += k,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads and drops `n` bytes from a pipe.
fn discard(pipe: &OwnedFd, mut n: usize) -> io::Result<()> {
    let mut scratch = vec![0u8; n.min(PIPE_SIZE)];
    while n > 0 {
        let want = n.min(scratch.len());
        read_full(pipe, &mut scratch[..want])?;
        n -= want;
    }
    Ok(())
}

/// The record pipe as the capture's byte source.
struct PipeSource<'a> {
    pipe: &'a OwnedFd,
    left: usize,
}

impl ByteSource for PipeSource<'_> {
    fn move_to_file(
        &mut self,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Result<(), (usize, io::Error)> {
        let mut at = offset;
        let mut moved = 0;
        while moved < len {
            // The pipe already holds every byte: a short splice just means "call again".
            match splice(
                self.pipe,
                None,
                file,
                Some(&mut at),
                len - moved,
                SpliceFlags::empty(),
            ) {
                Ok(0) => return Err((moved, io::ErrorKind::UnexpectedEof.into())),
                Ok(k) => {
                    moved += k;
                    self.left -= k.min(self.left);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err((moved, e.into())),
            }
        }
        Ok(())
    }

    fn move_to_vec(&mut self, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let start = out.len();
        out.resize(start + len, 0);
        if let Err(e) = read_full(self.pipe, &mut out[start..]) {
            // What was read is lost with the packet; the caller drains the rest.
            out.truncate(start);
            return Err(e);
        }
        self.left -= len.min(self.left);
        Ok(())
    }
}
