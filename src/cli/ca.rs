//! `gamewire ca path|export|regenerate`: the interception CA users install in their trust
//! stores. The private key is never printed or exported.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::proxy::ca::{CA_DER, CA_PEM, Ca};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of the CA (created with a new CA on first use).
    #[arg(long, value_name = "DIR", default_value = "certs", global = true)]
    pub certs: PathBuf,
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Print the path of the CA certificate (ca.pem; ca.der with --der).
    Path {
        #[arg(long)]
        der: bool,
    },
    /// Write the CA certificate (PEM, or DER with --der) to stdout or a file.
    Export {
        #[arg(long)]
        der: bool,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replace the CA with a new one; clients must trust the new certificate.
    Regenerate,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = &args.certs;
    match args.command {
        CaCommand::Path { der } => {
            Ca::load_or_create(dir).with_context(|| format!("CA in {}", dir.display()))?;
            let path = dir.join(if der { CA_DER } else { CA_PEM });
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            println!("{}", path.display());
        }
        CaCommand::Export { der, out } => {
            let ca = Ca::load_or_create(dir).with_context(|| format!("CA in {}", dir.display()))?;
            let bytes: &[u8] = if der {
                ca.cert_der().as_ref()
            } else {
                ca.cert_pem().as_bytes()
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => std::io::stdout().lock().write_all(bytes)?,
            }
        }
        CaCommand::Regenerate => {
            Ca::regenerate(dir).with_context(|| format!("CA in {}", dir.display()))?;
            println!(
                "new CA in {}; trust {} again in every client",
                dir.display(),
                dir.join(CA_PEM).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
