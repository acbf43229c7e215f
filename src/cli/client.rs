//! `gamewire client ...`: the scripted RA3 client (once or as a load test) and the scripted
//! Star Citizen client.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};

use crate::clients::ra3::{self, Step};
use crate::clients::sc;
use crate::security::{HashCost, Store};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Run the RA3 login flow once against a FESL and a GP server, printing each step.
    Fesl {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        /// Persona to log in as (created if the account lacks it); default: the first one.
        #[arg(long)]
        persona: Option<String>,
        #[arg(long, default_value = "127.0.0.1:18800")]
        fesl: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:29900")]
        gp: SocketAddr,
    },
    /// Run the Star Citizen flow once: diffusion discovery, HTTP login, gRPC InitiateLogin,
    /// then Listen until the reconcile sequence completes, printing each step.
    Sc {
        #[arg(long, default_value = crate::security::TEST_EMAIL)]
        user: String,
        #[arg(long, default_value = crate::security::TEST_PASSWORD)]
        password: String,
        /// The diffusion entry point (the TLS tap).
        #[arg(long, default_value = "127.0.0.1:8000")]
        diffusion: SocketAddr,
        /// Speak plain TCP to diffusion (the bare server on 8001).
        #[arg(long)]
        no_tls: bool,
        /// The CA to trust for the TLS endpoints.
        #[arg(long, default_value = "certs/ca.pem")]
        ca: PathBuf,
        /// Name sent as SNI and expected in the certificates.
        #[arg(long, default_value = "localhost")]
        server_name: String,
    },
    /// Load test: start the RA3 servers in this process on a fresh database (cheap password
    /// hashes), then run this many scripted clients through the whole flow at once.
    FeslLoad {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Where to put the temporary database (default: the system temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    match args.action {
        Action::Fesl {
            email,
            password,
            persona,
            fesl,
            gp,
        } => rt.block_on(once(fesl, gp, email, password, persona)),
        Action::FeslLoad { clients, dir } => rt.block_on(load(clients, dir)),
        Action::Sc {
            user,
            password,
            diffusion,
            no_tls,
            ca,
            server_name,
        } => {
            let roots = crate::proxy::tls::read_pem_certs(&ca)
                .with_context(|| format!("reading the CA {}", ca.display()))?;
            let opts = sc::ScClientOptions {
                diffusion,
                diffusion_tls: !no_tls,
                server_name,
                roots,
                user,
                password,
            };
            rt.block_on(sc_once(opts))
        }
    }
}

fn print_step(step: Step) {
    let mut out = std::io::stdout().lock();
    let mark = if step.ok { "ok  " } else { "FAIL" };
    let _ = writeln!(
        out,
        "{mark} {:<15} {:>8.1} ms  {}",
        step.name,
        step.elapsed.as_secs_f64() * 1000.0,
        step.detail
    );
}

async fn once(
    fesl: SocketAddr,
    gp: SocketAddr,
    email: String,
    password: String,
    persona: Option<String>,
) -> anyhow::Result<ExitCode> {
    let result =
        ra3::run_fesl_flow(fesl, gp, &email, &password, persona.as_deref(), print_step).await;
    match result {
        Ok(r) => {
            println!(
                "logged in as {} (user {}, persona {} {}) in {:.1} ms",
                r.display_name,
                r.user_id,
                r.persona_id,
                r.persona,
                r.total.as_secs_f64() * 1000.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow::Error::new(e).context("login flow failed")),
    }
}

async fn sc_once(opts: sc::ScClientOptions) -> anyhow::Result<ExitCode> {
    let print = |step: &sc::Step| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ok   {:<15} {:>8.1} ms  {}",
            step.name,
            step.elapsed.as_secs_f64() * 1000.0,
            step.detail
        );
    };
    match sc::run_flow(&opts, print).await {
        Ok(r) => {
            println!(
                "logged in as {} (account {}, session {}) at {}; reconcile complete in {:.1} ms",
                r.displayname,
                r.account_id,
                r.session_id,
                r.character_location,
                r.total.as_secs_f64() * 1000.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow::Error::new(e).context("Star Citizen flow failed")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn load(clients: usize, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("gamewire-load-{}", std::process::id()));
    let db = dir.join("load.db");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))?
        .with_hash_cost(HashCost::Cheap);
    let setup = Instant::now();
    let mut adds = tokio::task::JoinSet::new();
    for i in 0..clients {
        let store = store.clone();
        adds.spawn(async move {
            store
                .add_user(
                    &format!("load{i}@gamewire.local"),
                    "secret",
                    &format!("Load{i}"),
                )
                .await
        });
    }
    while let Some(r) = adds.join_next().await {
        r??;
    }
    println!(
        "created {clients} accounts in {:.2} s",
        setup.elapsed().as_secs_f64()
    );

    let servers = crate::engine::load::start_ra3_servers(store.clone())
        .await
        .context("starting the RA3 servers")?;
    let (fesl_addr, gp_addr) = (servers.fesl, servers.gp);

    let start = Instant::now();
    let mut flows = tokio::task::JoinSet::new();
    for i in 0..clients {
        flows.spawn(async move {
            let email = format!("load{i}@gamewire.local");
            ra3::run_fesl_flow(fesl_addr, gp_addr, &email, "secret", None, |_| {})
                .await
                .map(|r| r.total)
        });
    }
    let mut latencies = Vec::with_capacity(clients);
    let mut failures = Vec::new();
    while let Some(r) = flows.join_next().await {
        match r {
            Ok(Ok(t)) => latencies.push(t),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let wall = start.elapsed();
    servers.stop().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort();
    let ok = latencies.len();
    println!(
        "{ok}/{clients} flows completed in {:.2} s: {:.0} logins/s; flow latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        wall.as_secs_f64(),
        ok as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0,
    );
    if let Some(first) = failures.first() {
        println!("{} failed; first: {first}", failures.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
