//! Capture files: every format gamewire knows, opening them, and the one way a capture is
//! written to a file.
//!
//! [`Format`] is the single list of formats (name, extension, content sniffing, whether it
//! can be read back). Reading needs nothing beyond this module, so [`open`] lives here.
//!
//! Writing has one entry point, `crate::dissect::export::save`, which the window, `gamewire
//! convert`, the samples and the engine all call. It sits in `dissect` rather than here only
//! because one format, HAR, needs the HTTP decoder and `capture` may not use `dissect`; it
//! hands HAR's encoder to [`save::save_with`], which does all the work of a save: it copies a
//! live store a bounded slice of packets per read lock (recording goes on between slices),
//! writes `NAME.part` beside the target, syncs it to disk, renames it onto the target and
//! syncs the directory. A failure leaves an existing target untouched and removes the
//! `.part`. `save_with` is `pub(crate)` and called from `dissect::export::save` alone; a new
//! caller (the engine's Save command included) calls that instead of writing a file itself.

mod save;

pub(crate) use save::save_with;
pub use save::{Saved, Scope, Source};

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::store::StoreData;
use super::{gwcap, pcapng, sdjson};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gwcap,
    SdJson,
    Pcapng,
    /// HTTP/1 exchanges as a browser's network log. Export only: a HAR keeps the decoded
    /// exchanges, not the bytes on the wire, so it cannot become a capture again.
    Har,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Gwcap, Format::SdJson, Format::Pcapng, Format::Har];

    pub fn name(self) -> &'static str {
        match self {
            Format::Gwcap => "gwcap",
            Format::SdJson => "sd.json",
            Format::Pcapng => "pcapng",
            Format::Har => "HAR",
        }
    }

    /// The extension a new file of this format gets.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Gwcap => ".gwcap",
            Format::SdJson => ".sd.json",
            Format::Pcapng => ".pcapng",
            Format::Har => ".har",
        }
    }

    /// Whether [`open`] reads this format.
    pub fn can_open(self) -> bool {
        self != Format::Har
    }

    /// The format a file name asks for: `.gwcap`, `.sd.json` or `.json`, `.pcapng`, `.har`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        Format::ALL.into_iter().find(|f| match f {
            // The Star Citizen tools write plain `.json`.
            Format::SdJson => name.ends_with(".json"),
            other => name.ends_with(other.extension()),
        })
    }

    /// The format an output file's name asks for, or an error naming the file and the
    /// names that work.
    pub fn of_output(path: &Path) -> Result<Format, FileError> {
        Format::from_path(path).ok_or_else(|| FileError::UnknownOutputFormat {
            path: path.display().to_string(),
        })
    }

    /// `path`, with this format's extension added unless its name already asks for it.
    pub fn with_extension(self, path: PathBuf) -> PathBuf {
        if Format::from_path(&path) == Some(self) {
            return path;
        }
        let mut s = path.into_os_string();
        s.push(self.extension());
        PathBuf::from(s)
    }

    /// Recognises a format from the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(gwcap::MAGIC) {
            return Some(Format::Gwcap);
        }
        if head.starts_with(&pcapng::SHB_MAGIC) {
            return Some(Format::Pcapng);
        }
        // sd.json is an array of records; a HAR is one object (`{"log": ...}`).
        match head.iter().find(|b| !b.is_ascii_whitespace())? {
            b'[' => Some(Format::SdJson),
            b'{' => Some(Format::Har),
            _ => None,
        }
    }

    /// Rough output size, only for a progress bar.
    fn estimate(self, data: &StoreData) -> u64 {
        let (raw, packets) = (data.raw_bytes(), data.packet_count() as u64);
        match self {
            Format::Gwcap => raw + packets * 40,
            Format::SdJson => raw * 3 + packets * 200,
            Format::Pcapng => raw + packets * 100,
            Format::Har => raw * 2 + packets * 300,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The extensions that `keep` accepts, as a sentence: ".gwcap, .sd.json or .pcapng".
fn extensions(keep: impl Fn(Format) -> bool) -> String {
    let names: Vec<String> = Format::ALL
        .into_iter()
        .filter(|f| keep(*f))
        .map(|f| match f {
            Format::SdJson => ".sd.json (or .json)".to_owned(),
            other => other.extension().to_owned(),
        })
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Gwcap(#[from] gwcap::GwcapError),
    #[error(transparent)]
    SdJson(#[from] sdjson::SdJsonError),
    #[error(transparent)]
    Pcapng(#[from] pcapng::PcapngError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot tell the capture format (file starts with {start}); name it {}",
        extensions(Format::can_open)
    )]
    UnknownFormat { path: String, start: String },
    #[error("{path}: unknown output format; name it {}", extensions(|_| true))]
    UnknownOutputFormat { path: String },
    #[error(
        "{path}: {format} is export-only (it keeps decoded exchanges, not the recorded bytes) \
         and cannot be opened; open the capture it was exported from ({})",
        extensions(Format::can_open)
    )]
    ExportOnly { path: String, format: Format },
}

/// A capture read from a file, with what could not be read.
pub struct Opened {
    pub data: StoreData,
    pub format: Format,
    /// Damage and skipped records, each one line naming the file and the offset or record.
    pub warnings: Vec<String>,
}

pub struct OpenOptions {
    /// Keep good records of sd.json and pcapng files that contain bad ones.
    pub skip_bad: bool,
}

pub fn open(path: &Path, options: &OpenOptions) -> Result<Opened, FileError> {
    let format = match Format::from_path(path) {
        Some(f) => f,
        None => sniff_file(path)?,
    };
    let shown = path.display();
    match format {
        Format::Har => Err(FileError::ExportOnly {
            path: shown.to_string(),
            format,
        }),
        Format::Gwcap => {
            let loaded = gwcap::load(path)?;
            let warnings = loaded
                .damage
                .iter()
                .map(|d| {
                    format!(
                        "{shown}: {d}; kept the {} packets before it",
                        loaded.data.packet_count()
                    )
                })
                .collect();
            Ok(Opened {
                data: loaded.data,
                format,
                warnings,
            })
        }
        Format::SdJson => {
            let imported = sdjson::import_file(path, options.skip_bad)?;
            let mut warnings: Vec<String> = imported
                .bad
                .iter()
                .map(|b| format!("{shown}: skipped {b}"))
                .collect();
            if let Some(s) = &imported.syntax {
                warnings.push(format!(
                    "{shown}: {s}; kept the {} records before it",
                    s.records_before
                ));
            }
            Ok(Opened {
                data: imported.data,
                format,
                warnings,
            })
        }
        Format::Pcapng => {
            let imported = pcapng::import_file(path, options.skip_bad)?;
            let warnings = imported
                .problems
                .iter()
                .map(|p| format!("{shown}: {p}"))
                .collect();
            Ok(Opened {
                data: imported.data,
                format,
                warnings,
            })
        }
    }
}

fn sniff_file(path: &Path) -> Result<Format, FileError> {
    let io_err = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(io_err)?;
    Format::sniff(&head).ok_or_else(|| FileError::UnknownFormat {
        path: path.display().to_string(),
        start: if head.is_empty() {
            "nothing: the file is empty".into()
        } else {
            super::model::describe_start(&head)
        },
    })
}
