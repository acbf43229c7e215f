//! `gamewire convert IN OUT`: from .gwcap, .sd.json or .pcapng to any of those or to HAR.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::capture::files::{self, Format, OpenOptions, Scope, Source};
use crate::dissect::export;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture to read (.gwcap, .sd.json or .json, .pcapng). HAR is export-only.
    pub input: PathBuf,
    /// The file to write; its extension picks the format (.gwcap, .sd.json or .json,
    /// .pcapng, .har).
    pub output: PathBuf,
    /// Keep the good records of an input that has bad ones, and exit 0.
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Check the output name before reading a possibly huge input. (A HAR input is refused
    // by `open` before it reads anything.)
    let format = Format::of_output(&args.output)?;
    if same_file(&args.input, &args.output) {
        bail!(
            "{}: input and output are the same file; choose another output name",
            args.output.display()
        );
    }
    let opened = files::open(
        &args.input,
        &OpenOptions {
            skip_bad: args.skip_bad,
        },
    )?;
    let saved = export::save(
        Source::Data(&opened.data),
        &args.output,
        format,
        Scope::All,
        &|_| {},
    )?;
    let exchanges = saved
        .http_exchanges
        .map(|n| format!(", {n} HTTP exchanges"))
        .unwrap_or_default();
    eprintln!(
        "gamewire: wrote {} ({format}): {} connections, {} packets{exchanges}",
        saved.path.display(),
        saved.connections,
        saved.packets,
    );
    Ok(super::report_warnings(&opened.warnings, args.skip_bad))
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
