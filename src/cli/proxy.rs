//! `gamewire proxy`: the HTTP(S) proxy alone, headless, with a line per recorded packet.
//! Temporary: the engine's `serve` takes it over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::capture::CaptureStore;
use crate::proxy::http::HttpProxyOptions;
use crate::proxy::{CaptureEvent, Recorder, ca::Ca};

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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let ca = Arc::new(
        Ca::load_or_create(&args.certs)
            .with_context(|| format!("CA in {}", args.certs.display()))?,
    );
    let store = Arc::new(CaptureStore::new());
    if let Some(path) = &args.capture {
        store
            .journal_to(path, Duration::from_millis(200))
            .with_context(|| format!("capture file {}", path.display()))?;
    }
    let recorder = Recorder::new(store.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("proxy: cannot listen on {}", args.listen))?;
    eprintln!(
        "proxy on http://{} (CA {}){}",
        listener.local_addr()?,
        args.certs.join(crate::proxy::ca::CA_PEM).display(),
        args.capture
            .as_ref()
            .map(|p| format!(", capture {}", p.display()))
            .unwrap_or_default()
    );
    let options = HttpProxyOptions {
        extra_ca: args.upstream_ca,
        insecure_upstream: args.insecure_upstream,
        ..HttpProxyOptions::default()
    };
    let shutdown = CancellationToken::new();
    let mut events = recorder.subscribe();
    let printer = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(CaptureEvent::Packet {
                        connection,
                        direction,
                        size,
                        ..
                    }) => {
                        let route = store
                            .read()
                            .connection(connection)
                            .and_then(|c| c.route.clone())
                            .unwrap_or_default();
                        println!(
                            "{route} #{} {} {size} bytes",
                            connection.0,
                            direction.arrow()
                        );
                    }
                    Ok(CaptureEvent::Closed(id)) => {
                        let reason = store
                            .read()
                            .connection(id)
                            .and_then(|c| c.close_reason.clone())
                            .unwrap_or_default();
                        println!("#{} closed: {reason}", id.0);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        println!("({n} events not shown)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    };
    let proxy = tokio::spawn(crate::proxy::http::run(
        listener,
        ca,
        recorder,
        options,
        shutdown.clone(),
    ));
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = proxy => {}
    }
    shutdown.cancel();
    printer.abort();
    if args.capture.is_some() {
        store.stop_journal().context("closing the capture file")?;
    }
    Ok(())
}
