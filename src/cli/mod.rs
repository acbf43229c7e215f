//! The command line: `gamewire [gui|inspect|convert|samples]`.
//!
//! The interface is stable because scripts and tests depend on it: errors are one line on
//! stderr and exit code 1; a file that was read only in part (damage or skipped records) exits
//! with code 3 unless `--skip-bad` accepted that.

mod accounts;
mod ca;
mod client;
mod convert;
mod inspect;
mod proxy;
mod serve;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::capture::files::{Format, Scope, Source};
use crate::dissect::export;

/// A file that was read only in part without `--skip-bad`.
pub const EXIT_PARTIAL: u8 = 3;
/// The requested front end is not part of this build.
pub const EXIT_UNAVAILABLE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "gamewire",
    version,
    about = "A workbench for reverse-engineering and reviving online games",
    long_about = "A workbench for reverse-engineering and reviving online games.\n\n\
        With no command, gamewire opens the desktop workbench. The commands below work on \
        capture files: .gwcap (gamewire's own, lossless), .sd.json (the Star Citizen tools' \
        format) and .pcapng (for Wireshark and tshark)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the desktop workbench (the default), optionally with a capture file.
    Gui {
        /// A capture to open (.gwcap, .sd.json or .pcapng).
        file: Option<PathBuf>,
    },
    /// Run the proxy, taps and emulated servers without the GUI, logging each message.
    Serve(serve::Args),
    /// List the connections and packets of a capture file.
    Inspect(inspect::Args),
    /// Convert a capture between .gwcap, .sd.json and .pcapng, or export it as HAR; the file
    /// extensions pick the formats.
    Convert(convert::Args),
    /// The interception CA: where it is, export it, or make a new one.
    Ca(ca::Args),
    /// Run the HTTP(S) proxy alone, printing each recorded packet (until `serve` exists).
    Proxy(proxy::Args),
    /// Write the sample captures gamewire ships with (deterministic, for demos and tests).
    Samples {
        /// Directory to write them to.
        #[arg(long, default_value = "captures")]
        out: PathBuf,
        /// Instead, write busy.gwcap with this many packets of a busy game's traffic (load tests).
        #[arg(long, value_name = "PACKETS")]
        busy: Option<usize>,
    },
    /// Manage the accounts of the emulated servers (SQLite database).
    Accounts(accounts::Args),
    /// Run a scripted game client against the emulated servers.
    Client(client::Args),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, and usage errors to stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // `serve` installs its own logging (console plus a file per route).
    // So do `gui` and no command when they start the engine.
    if !matches!(
        cli.command,
        Some(Command::Serve(_))
            | Some(Command::Proxy(_))
            | Some(Command::Gui { file: None })
            | None
    ) {
        init_logging();
    }
    let result = match cli.command {
        Some(Command::Serve(args)) => serve::run(args),
        None => run_gui(None),
        Some(Command::Gui { file }) => run_gui(file),
        Some(Command::Inspect(args)) => inspect::run(args),
        Some(Command::Convert(args)) => convert::run(args),
        Some(Command::Samples { out, busy }) => write_samples(&out, busy),
        Some(Command::Ca(args)) => ca::run(args),
        Some(Command::Proxy(args)) => proxy::run(args),
        Some(Command::Accounts(args)) => accounts::run(args),
        Some(Command::Client(args)) => client::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gamewire: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn write_samples(out: &std::path::Path, busy: Option<usize>) -> anyhow::Result<ExitCode> {
    let written = match busy {
        Some(packets) => {
            std::fs::create_dir_all(out)?;
            let path = out.join("busy.gwcap");
            let data = crate::clients::samples::busy_capture(packets, 64);
            export::save(
                Source::Data(&data),
                &path,
                Format::Gwcap,
                Scope::All,
                &|_| {},
            )?;
            vec![path]
        }
        None => crate::clients::samples::write_all(out)?,
    };
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// The error and its causes on one line, without repeating a cause the message already says.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// With no file, the window shows live traffic: the engine starts with the configuration in
/// the working directory (made with the defaults on first start), like `serve` does.
#[cfg(feature = "gui")]
fn run_gui(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let engine = match &file {
        Some(_) => None,
        None => start_engine_for_gui(),
    };
    crate::gui::run(file, engine)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "gui")]
fn start_engine_for_gui() -> Option<crate::engine::Engine> {
    use crate::engine::config::{Config, DEFAULT_CONFIG_FILE};
    let path = std::path::Path::new(DEFAULT_CONFIG_FILE);
    let started = Config::load_or_create(path)
        .map_err(anyhow::Error::from)
        .and_then(|(config, _)| {
            let _ = crate::engine::logs::init(&config.log_level, &config.data_dir.join("logs"));
            eprintln!("gamewire: configuration {}", path.display());
            // Start-up (the CA, keys, the accounts database) goes on behind the window,
            // which shows its progress and any route that fails.
            Ok(crate::engine::Engine::launch(
                config,
                crate::engine::StartOptions::default(),
            )?)
        });
    match started {
        Ok(engine) => Some(engine),
        Err(e) => {
            // The viewer is still useful for capture files.
            eprintln!(
                "gamewire: warning: the engine did not start: {}",
                one_line(&e)
            );
            None
        }
    }
}

#[cfg(not(feature = "gui"))]
fn run_gui(_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "gamewire: this build has no desktop workbench (it was built without the `gui` feature).\n\
         Run `gamewire --help` for the command-line tools, for example `gamewire inspect FILE`,\n\
         or build the workbench with `cargo run --release` (the `gui` feature is on by default)."
    );
    Ok(ExitCode::from(EXIT_UNAVAILABLE))
}

/// Prints the warnings of a partly read file and picks the exit code.
fn report_warnings(warnings: &[String], skip_bad: bool) -> ExitCode {
    let mut err = io::stderr().lock();
    for w in warnings {
        let _ = writeln!(err, "gamewire: warning: {w}");
    }
    if warnings.is_empty() || skip_bad {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    }
}
