//! `gamewire serve`: the engine without the GUI, logging one line per message.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::dissect::registry::Registry;
use crate::engine::config::{Config, DEFAULT_CONFIG_FILE};
use crate::engine::live::LiveDecoder;
use crate::engine::{Engine, Event, RouteState, StartOptions, logs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file; created with every default when it does not exist.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// Write the capture to this .gwcap file continuously (flushed every 250 ms).
    #[arg(long, value_name = "FILE.gwcap")]
    pub capture: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (config, created) = Config::load_or_create(&args.config)?;
    let origin = format!(
        "{}{}",
        args.config.display(),
        if created {
            " (created with the defaults)"
        } else {
            ""
        }
    );
    run_engine(config, &origin, args.capture)
}

/// Runs the engine with `config` until Ctrl-C or SIGTERM; `origin` says where the
/// configuration came from. `gamewire proxy` comes here too, with a proxy-only config.
pub fn run_engine(
    config: Config,
    origin: &str,
    capture: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let log_dir = config.data_dir.join("logs");
    logs::init(&config.log_level, &log_dir)
        .with_context(|| format!("cannot create the log directory {}", log_dir.display()))?;
    println!("config: {origin}");
    println!("logs:   {}", log_dir.display());
    if let Some(path) = &capture {
        println!("capture: {} (written continuously)", path.display());
    }
    let engine = Engine::start(
        config,
        StartOptions {
            capture: capture.clone(),
        },
    )?;
    let routes = engine.routes();
    let mut running = 0;
    for r in &routes {
        let state = match &r.state {
            RouteState::Running(addr) => {
                running += 1;
                format!("listening on {addr}")
            }
            RouteState::Stopped => "disabled".to_string(),
            RouteState::Failed(e) => format!("FAILED: {e}"),
        };
        let upstream = r
            .upstream
            .as_deref()
            .map(|u| format!(" -> {u}"))
            .unwrap_or_default();
        println!(
            "  {:<6} {:<12} {}{}  {state}",
            r.kind.as_str(),
            r.name,
            r.listen,
            upstream
        );
    }
    if running == 0 {
        engine.shutdown()?;
        anyhow::bail!("no route could start (see above)");
    }
    println!("running; Ctrl-C stops and flushes the capture");

    let store = engine.store().clone();
    let mut events = engine.subscribe();
    let handle = engine.handle();
    let context = engine.dissect_context();
    handle.spawn(async move {
        let mut live = LiveDecoder::new(Registry::shared(), context);
        while let Some(event) = events.next().await {
            match event {
                Event::Capture(event) => {
                    for line in live.on_event(&store, &event) {
                        tracing::info!(route = %line.route, "{line}");
                    }
                }
                Event::Lagged(n) => {
                    tracing::warn!("live log skipped {n} events (the capture has them all)");
                }
                _ => {}
            }
        }
    });
    handle.block_on(wait_for_stop_signal());
    let packets = engine.store().read().packet_count();
    engine.shutdown()?;
    match &capture {
        Some(path) => println!("stopped; {packets} packets in {}", path.display()),
        None => println!("stopped; {packets} packets captured (not saved: no --capture)"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
