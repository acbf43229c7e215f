//! What the engine does on its runtime once launched: the slow start-up steps, told as
//! [`Event::Starting`]; the pumps that turn the capture's, the interceptor's and the log's
//! own notices into [`Event`]s; then the command loop.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::api::{Event, Startup};
use super::{Config, Envelope, Shared, commands, decoding, routes};
use crate::proxy::ca::Ca;
use crate::proxy::intercept::InterceptEvent;

pub(super) fn load_ca(config: &Config) -> Result<Arc<Ca>, String> {
    let ca = Ca::load_or_create(&config.certs_dir)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", config.certs_dir.display()));
    if let Err(e) = &ca {
        tracing::error!("certificate authority: {e}");
    }
    ca
}

pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Envelope>) {
    spawn_pumps(&shared);
    start_up(&shared).await;
    while let Some(envelope) = queue.recv().await {
        commands::handle(&shared, envelope).await;
    }
}

async fn start_up(shared: &Arc<Shared>) {
    let enabled: Vec<String> = shared
        .routes
        .lock()
        .iter()
        .filter(|r| r.enabled)
        .map(|r| r.name.clone())
        .collect();
    let total = 3 + enabled.len() as u32;
    let step = |done: u32, step: String| {
        let startup = Startup { step, done, total };
        *shared.starting.lock() = Some(startup.clone());
        shared.publish(Event::Starting(startup));
    };
    step(0, "loading the certificate authority".into());
    {
        let shared = shared.clone();
        // Key generation on first start takes a while; keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = shared.ca();
        })
        .await;
    }
    // The issuer key before the schemas, so decoders can check the tokens the login server
    // will sign with it.
    step(1, "loading the JWT issuer key".into());
    let servers = &shared.config.servers;
    let signer = if servers
        .iter()
        .any(|(r, s)| s.enabled && r.server.uses_sc_signer())
    {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || shared.sc_signer().ok())
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    step(2, "compiling the protobuf schemas".into());
    {
        let config = shared.config.clone();
        if let Ok(context) = tokio::task::spawn_blocking(move || {
            decoding::decode_context_for(&config, signer.as_deref())
        })
        .await
        {
            *shared.decode.write() = Arc::new(context);
        }
    }
    for (i, name) in enabled.iter().enumerate() {
        step(3 + i as u32, format!("starting {name}"));
        let result = routes::start(shared, name).await;
        if let Err(e) = &result {
            tracing::error!(route = %name, "{e}");
        }
        let reason = commands::said(&result, |a| format!("listening on {a}"));
        commands::publish_route(shared, name, reason);
    }
    *shared.starting.lock() = None;
    shared.ready.send_replace(true);
    shared.publish(Event::Ready);
}

/// Capture, interceptor and log notices become engine events, for every front end.
fn spawn_pumps(shared: &Arc<Shared>) {
    let mut capture = shared.recorder.subscribe();
    let to = shared.clone();
    tokio::spawn(async move {
        loop {
            match capture.recv().await {
                Ok(event) => to.publish(Event::Capture(event)),
                Err(broadcast::error::RecvError::Lagged(n)) => to.publish(Event::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut intercept = shared.interceptor.subscribe();
    let to = shared.clone();
    tokio::spawn(async move {
        loop {
            let event = match intercept.recv().await {
                Ok(InterceptEvent::Held(held)) => Event::Held(held),
                Ok(InterceptEvent::Released { id, decision }) => Event::Released { id, decision },
                Ok(InterceptEvent::Live { connection, live }) => Event::Live { connection, live },
                Err(broadcast::error::RecvError::Lagged(n)) => Event::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            to.publish(event);
        }
    });
    let mut log = super::log_ring::LogRing::global().watch();
    let to = shared.clone();
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        while let Some(Ok(())) = shutdown.run_until_cancelled(log.changed()).await {
            let seq = *log.borrow_and_update();
            to.publish(Event::Log { seq });
        }
    });
}
