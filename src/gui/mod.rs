//! The desktop workbench (cargo feature `gui`).

use std::path::PathBuf;

pub fn run(_file: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("the desktop workbench is being built")
}
