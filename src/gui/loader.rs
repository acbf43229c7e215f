//! Reads capture files on a thread of their own, so a file of gigabytes never stops the
//! window from repainting.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use crate::capture::files::{self, OpenOptions, Opened};

use super::state::Loading;

/// What became of one file.
pub enum Outcome {
    // Boxed: the capture is large and moves through a channel once per file.
    Opened(Box<Opened>),
    Failed(String),
}

/// At most one file is read at a time; opening another abandons the first (its thread runs
/// to the end, and its result is dropped because nobody receives it).
#[derive(Default)]
pub struct Loader {
    job: Option<Job>,
}

struct Job {
    path: PathBuf,
    result: Receiver<Outcome>,
}

impl Loader {
    /// Starts reading `path`. `wake` is called from the reading thread when it is done, to
    /// have the window repaint and pick the result up.
    pub fn start(&mut self, path: PathBuf, wake: impl Fn() + Send + 'static) -> Loading {
        let loading = Loading {
            size: std::fs::metadata(&path).ok().map(|m| m.len()),
            path: path.clone(),
            started: Instant::now(),
        };
        let (send, result) = mpsc::channel();
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("gamewire-open".into())
            .spawn(move || {
                let _ = send.send(read(&thread_path));
                wake();
            });
        self.job = Some(match spawned {
            Ok(_) => Job { path, result },
            Err(e) => {
                // Without a thread, report the failure through the same path as a bad file.
                let (send, result) = mpsc::channel();
                let _ = send.send(Outcome::Failed(format!("cannot start reading: {e}")));
                Job { path, result }
            }
        });
        loading
    }

    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// The result of the file being read, once it is there.
    pub fn poll(&mut self) -> Option<(PathBuf, Outcome)> {
        let job = self.job.as_ref()?;
        let outcome = match job.result.try_recv() {
            Ok(outcome) => outcome,
            Err(TryRecvError::Empty) => return None,
            // The reading thread panicked: a bug in a file reader, reported like a bad file so
            // the window carries on.
            Err(TryRecvError::Disconnected) => {
                Outcome::Failed("reading stopped unexpectedly (this is a bug in gamewire)".into())
            }
        };
        self.job.take().map(|job| (job.path, outcome))
    }
}

fn read(path: &Path) -> Outcome {
    // The viewer keeps whatever good records a damaged file has and lists what it skipped,
    // which is what someone opening a file to look at it wants.
    match files::open(path, &OpenOptions { skip_bad: true }) {
        Ok(opened) => Outcome::Opened(Box::new(opened)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
