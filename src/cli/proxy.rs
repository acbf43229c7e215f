//! `gamewire proxy`: only the HTTP(S) proxy, headless: `serve` with a proxy-only
//! configuration from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::config::{Config, ProxyConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Write the capture continuously to this .gwcap file.
    #[arg(long, value_name = "FILE.gwcap")]
    pub capture: Option<PathBuf>,
    /// Directory of the CA.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub certs: PathBuf,
    /// Also trust this CA file (PEM or DER) for upstream servers.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Accept any upstream certificate (recorded on every connection).
    #[arg(long)]
    pub insecure_upstream: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config {
        certs_dir: args.certs,
        taps: Vec::new(),
        ..Config::default()
    };
    config.proxy = ProxyConfig {
        enabled: true,
        listen: args.listen,
        upstream_ca: args.upstream_ca,
        insecure_upstream: args.insecure_upstream,
    };
    config.servers.disable_all();
    super::serve::run_engine(config, "command line (proxy only)", args.capture)
}
