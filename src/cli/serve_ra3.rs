//! `gamewire serve-ra3`: the RA3 FESL and GP servers on their own, until the engine's
//! `serve` starts them with the taps in front.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args as ClapArgs;
use tokio_util::sync::CancellationToken;

use crate::security::{Store, TEST_EMAIL, TEST_PASSWORD};
use crate::servers::{Ra3Config, fesl, gp};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The SQLite accounts database (created, with the test account, if missing).
    #[arg(long, default_value = super::accounts::DEFAULT_DB)]
    pub db: PathBuf,
    /// Where the FESL server listens.
    #[arg(long, default_value = "127.0.0.1:18800")]
    pub fesl: SocketAddr,
    /// Where the GameSpy GP server listens.
    #[arg(long, default_value = "127.0.0.1:29900")]
    pub gp: SocketAddr,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let store = Store::open(&args.db)
        .await
        .with_context(|| format!("opening {}", args.db.display()))?;
    if store.ensure_test_account().await? {
        eprintln!("created the test account {TEST_EMAIL} / {TEST_PASSWORD}");
    }
    let fesl_listener = tokio::net::TcpListener::bind(args.fesl)
        .await
        .with_context(|| format!("binding FESL to {}", args.fesl))?;
    let gp_listener = tokio::net::TcpListener::bind(args.gp)
        .await
        .with_context(|| format!("binding GP to {}", args.gp))?;
    eprintln!(
        "FESL on {}, GP on {}, accounts in {} (Ctrl-C stops)",
        fesl_listener.local_addr()?,
        gp_listener.local_addr()?,
        args.db.display()
    );
    let shutdown = CancellationToken::new();
    let config = Ra3Config::default();
    let f = tokio::spawn(fesl::run(
        fesl_listener,
        fesl::FeslCtx::new(store.clone(), config.clone()),
        shutdown.clone(),
    ));
    let g = tokio::spawn(gp::run(
        gp_listener,
        gp::GpCtx::new(store.clone(), config),
        shutdown.clone(),
    ));
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    let _ = f.await;
    let _ = g.await;
    store.close().await;
    Ok(())
}
