//! Opening and saving captures in any supported format, chosen by file name or content.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::store::StoreData;
use super::{gwcap, pcapng, sdjson};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gwcap,
    SdJson,
    Pcapng,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Gwcap, Format::SdJson, Format::Pcapng];

    pub fn name(self) -> &'static str {
        match self {
            Format::Gwcap => "gwcap",
            Format::SdJson => "sd.json",
            Format::Pcapng => "pcapng",
        }
    }

    /// The format a file name asks for: `.gwcap`, `.sd.json` or `.json`, `.pcapng`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".gwcap") {
            Some(Format::Gwcap)
        } else if name.ends_with(".json") {
            Some(Format::SdJson)
        } else if name.ends_with(".pcapng") {
            Some(Format::Pcapng)
        } else {
            None
        }
    }

    /// Recognises a format from the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(gwcap::MAGIC) {
            return Some(Format::Gwcap);
        }
        if head.starts_with(&pcapng::SHB_MAGIC) {
            return Some(Format::Pcapng);
        }
        let first = head.iter().find(|b| !b.is_ascii_whitespace())?;
        (*first == b'[').then_some(Format::SdJson)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
        "{path}: cannot tell the capture format (file starts with {start}); name it .gwcap, .sd.json or .pcapng"
    )]
    UnknownFormat { path: String, start: String },
    #[error("{path}: unknown output format; name it .gwcap, .sd.json (or .json) or .pcapng")]
    UnknownOutputFormat { path: String },
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

/// Writes `data` to `path` in the format its name asks for.
pub fn save(data: &StoreData, path: &Path) -> Result<Format, FileError> {
    let format = Format::from_path(path).ok_or_else(|| FileError::UnknownOutputFormat {
        path: path.display().to_string(),
    })?;
    let io_err = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    match format {
        Format::Gwcap => gwcap::save(data, path).map_err(|e| match e {
            gwcap::JournalError::Io { source, .. } => io_err(source),
        })?,
        Format::SdJson => sdjson::export_file(data, path).map_err(io_err)?,
        Format::Pcapng => pcapng::export_file(data, path).map_err(io_err)?,
    }
    Ok(format)
}
