//! pcapng export with synthetic Ethernet/IP/TCP framing, and import of what we export.
//! (Interface in place; implementation in progress.)

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::model::ConnectionId;
use super::store::StoreData;

/// First four bytes of every pcapng file (the Section Header Block type).
pub const SHB_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

#[derive(Debug, thiserror::Error)]
pub enum PcapngError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: offset {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

pub struct Imported {
    pub data: StoreData,
    /// What could not be imported, each naming an offset; only with `skip_bad`.
    pub problems: Vec<String>,
}

pub fn export(
    _data: &StoreData,
    _out: impl Write,
    _keep: impl Fn(ConnectionId) -> bool,
) -> io::Result<()> {
    Err(io::Error::other("pcapng export is not available yet"))
}

pub fn export_file(data: &StoreData, path: &Path) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    export(data, file, |_| true)
}

pub fn import_file(path: &Path, _skip_bad: bool) -> Result<Imported, PcapngError> {
    Err(PcapngError::Malformed {
        path: path.to_owned(),
        offset: 0,
        reason: "pcapng import is not available yet".into(),
    })
}
