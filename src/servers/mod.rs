//! The emulated game backends. Each is an ordinary network server with
//! `run(listener, context, shutdown)`; none records traffic itself (the tap in front does).
//!
//! Every server is registered on one entry of [`registry::REGISTRY`] (route name, config
//! section, port, dissector, description, default tap, how to start it), which the engine
//! and the configuration read.
//!
//! Each connection handler is split in two: a socket-free core that takes client bytes and
//! returns reply bytes (what the tests and fuzzers drive), and the shared connection loop of
//! [`connection`] that moves bytes between that core and a socket, with the timers
//! (keep-alive, read and idle timeouts). [`framed`] holds the buffering, size limit and
//! bad-message limit a message protocol needs, once.

pub mod connection;
pub mod fesl;
pub mod framed;
pub mod gp;
pub mod registry;
pub mod sc;

use std::time::Duration;

pub use connection::{Flow, Session, Timeouts};
pub use registry::{REGISTRY, Registration, ServerContext};

/// Accepts clients until `shutdown`, one task per connection, and waits for those tasks
/// before returning, so that a stopped server has really let go of its clients.
pub async fn accept_loop<F, Fut>(
    name: &str,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    mut serve: F,
) -> std::io::Result<()>
where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    tracker.spawn(serve(socket, peer));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
