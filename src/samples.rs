//! Sample captures (placeholder).
use std::path::{Path, PathBuf};
pub fn write_all(_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![])
}
