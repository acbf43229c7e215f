//! The Red Alert 3 emulators on loopback ports of their own, for a load test that measures
//! the servers alone (no taps, no configured ports, its own accounts database).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::security::Store;
use crate::servers::{fesl, gp};

/// FESL and GP servers on ephemeral ports of 127.0.0.1; [`Ra3Servers::stop`] ends them.
pub struct Ra3Servers {
    pub fesl: SocketAddr,
    pub gp: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts both servers on `store` with their default settings. Call on a tokio runtime.
pub async fn start_ra3_servers(store: Store) -> std::io::Result<Ra3Servers> {
    let shutdown = CancellationToken::new();
    let fl = TcpListener::bind("127.0.0.1:0").await?;
    let gl = TcpListener::bind("127.0.0.1:0").await?;
    let (fesl_addr, gp_addr) = (fl.local_addr()?, gl.local_addr()?);
    let tasks = vec![
        tokio::spawn(fesl::run(
            fl,
            fesl::FeslCtx::new(store.clone(), fesl::FeslConfig::default()),
            shutdown.clone(),
        )),
        tokio::spawn(gp::run(
            gl,
            gp::GpCtx::new(store, gp::GpConfig::default()),
            shutdown.clone(),
        )),
    ];
    Ok(Ra3Servers {
        fesl: fesl_addr,
        gp: gp_addr,
        shutdown,
        tasks,
    })
}

impl Ra3Servers {
    /// Stops both servers and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
