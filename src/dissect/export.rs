//! [`save`]: the one function that writes a capture to a file, in any format. The window,
//! `gamewire convert`, the samples and the engine all call it, so every save is sliced,
//! written to `NAME.part`, synced and renamed the same way.
//!
//! It lives here, not in `capture::files`, only because HAR needs the HTTP decoder and
//! `capture` may not use `dissect`: this is the lowest module that can produce every format.
//! The work is `capture::files::save_with`; this adds HAR's encoder (see the notes at the top
//! of `capture::files`).

use std::path::Path;

use crate::capture::files::{self, FileError, Format, Saved, Scope, Source};

use super::har;

/// Saves `from` (the part `scope` covers) to `path` as `format`. A live store is copied a
/// slice at a time, so recording goes on; the file is written as `NAME.part`, synced and
/// renamed onto `path`, and a failure leaves an existing `path` untouched and no `.part`.
/// `progress` gets the share done, 0.0 to 1.0, each time it moves by a thousandth.
pub fn save(
    from: Source<'_>,
    path: &Path,
    format: Format,
    scope: Scope,
    progress: &dyn Fn(f32),
) -> Result<Saved, FileError> {
    files::save_with(from, path, format, scope, progress, &|data, out| {
        har::export(data, out, |_| true)
    })
}
