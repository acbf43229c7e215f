//! Loading `.proto` schemas at run time with protox (pure Rust, no `protoc`).

use std::path::{Path, PathBuf};

use prost_reflect::DescriptorPool;

/// The directory of schemas shipped with gamewire, relative to the working directory.
pub const DEFAULT_SCHEMA_DIR: &str = "proto";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema directory {} does not exist", .0.display())]
    MissingDir(PathBuf),
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.proto` file does not compile; `message` reads `file:line:column: what`.
    #[error("{message}")]
    Compile {
        file: Option<String>,
        message: String,
    },
}

/// The directories to load by default: `base/proto` when it exists (a missing default
/// directory just means no shipped schemas), then `extra` in order (the user named those, so
/// [`load_schemas`] reports them when missing).
pub fn schema_dirs(base: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let default = base.join(DEFAULT_SCHEMA_DIR);
    let mut dirs = Vec::with_capacity(extra.len() + 1);
    if default.is_dir() {
        dirs.push(default);
    }
    dirs.extend(extra.iter().cloned());
    dirs
}

/// Compiles every `.proto` file under each directory (recursively; each directory is also an
/// import root, so `import "sc/diffusion.proto";` resolves against any of them) into one
/// pool. Every directory given must exist: use [`schema_dirs`] for the lenient default.
/// Errors name the file and, for syntax and type errors, its line and column.
pub fn load_schemas(dirs: &[PathBuf]) -> Result<DescriptorPool, SchemaError> {
    let mut files = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(SchemaError::MissingDir(dir.clone()));
        }
        collect_protos(dir, &mut files, 0)?;
    }
    if files.is_empty() {
        return Ok(DescriptorPool::new());
    }
    let compile_err = |e: protox::Error| SchemaError::Compile {
        file: e.file().map(str::to_owned),
        message: format!("{e:?}"),
    };
    let mut compiler = protox::Compiler::new(dirs).map_err(compile_err)?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&files).map_err(compile_err)?;
    Ok(compiler.descriptor_pool())
}

/// Appends the `.proto` files under `dir`, sorted, not following symbolic links.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), SchemaError> {
    const MAX_DIR_DEPTH: usize = 32;
    if depth > MAX_DIR_DEPTH {
        return Ok(());
    }
    let io = |source| SchemaError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect_protos(&path, out, depth + 1)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
