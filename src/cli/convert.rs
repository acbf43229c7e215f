//! `gamewire convert IN OUT`: between .gwcap, .sd.json and .pcapng.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::capture::files::{self, Format, OpenOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture to read (.gwcap, .sd.json or .json, .pcapng).
    pub input: PathBuf,
    /// The file to write; its extension picks the format.
    pub output: PathBuf,
    /// Keep the good records of an input that has bad ones, and exit 0.
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Check the output name before reading a possibly huge input.
    if Format::from_path(&args.output).is_none() {
        bail!(
            "{}: unknown output format; name it .gwcap, .sd.json (or .json) or .pcapng",
            args.output.display()
        );
    }
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
    let format = files::save(&opened.data, &args.output)?;
    eprintln!(
        "gamewire: wrote {} ({format}): {} connections, {} packets",
        args.output.display(),
        opened.data.connection_count(),
        opened.data.packet_count()
    );
    Ok(super::report_warnings(&opened.warnings, args.skip_bad))
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
