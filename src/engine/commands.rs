//! What each [`Command`] does. Route and breakpoint commands run one after another, in the
//! order they were sent; commands that wait on the network or a disk (repeat, inject, save,
//! the demo) run on tasks of their own so they hold up nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::api::{Command, Event, Reply, decision_name};
use super::{EngineError, Envelope, Shared, demo, routes};
use crate::capture::files::{Format, Scope, Source};
use crate::dissect::{Node, export};
use crate::proxy::intercept::{Decision, InterceptError};

/// How long a restart keeps trying to bind the port the old listener is letting go of.
const REBIND_TRIES: u32 = 40;
const REBIND_PAUSE: Duration = Duration::from_millis(25);

pub(super) async fn handle(shared: &Arc<Shared>, envelope: Envelope) {
    let Envelope { id, command, reply } = envelope;
    let what = command.describe();
    let finish = {
        let shared = shared.clone();
        move |result: Result<Reply, EngineError>| {
            shared.publish(Event::Done {
                id,
                command: what,
                result: result.as_ref().map_err(|e| e.to_string()).cloned(),
            });
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    };
    match command {
        Command::Repeat {
            route,
            bytes,
            settle,
        } => {
            let task = routes::repeat(shared.clone(), route, bytes, settle);
            tokio::spawn(async move { finish(task.await.map(Reply::Bytes)) });
        }
        Command::Inject {
            connection,
            direction,
            bytes,
        } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let n = bytes.len();
                let r = shared
                    .interceptor
                    .inject(connection, direction, bytes)
                    .await
                    .map(|()| {
                        Reply::Done(format!(
                            "sent {n} bytes to the {} of connection {connection}",
                            match direction {
                                crate::capture::Direction::ClientToServer => "server",
                                crate::capture::Direction::ServerToClient => "client",
                            }
                        ))
                    })
                    .map_err(EngineError::from);
                finish(r);
            });
        }
        Command::Resend(packet) => {
            let found = {
                let data = shared.recorder.store().read();
                data.packet(packet)
                    .map(|p| (p.connection, p.direction, p.data.to_vec()))
            };
            let Some((connection, direction, bytes)) = found else {
                finish(Err(EngineError::Capture(format!("no packet {}", packet.0))));
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let r = shared
                    .interceptor
                    .inject(connection, direction, bytes)
                    .await
                    .map(|()| Reply::Done(format!("packet {} sent again", packet.0)))
                    .map_err(EngineError::from);
                finish(r);
            });
        }
        Command::Save { path } => {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || {
                // Copied in slices: the taps keep recording while the file is written.
                let store = shared.recorder.store();
                let progress = |done: f32| {
                    shared.publish(Event::Progress {
                        id,
                        done: (done * 1000.0) as u64,
                        total: 1000,
                    })
                };
                let r = Format::of_output(&path)
                    .and_then(|f| {
                        export::save(Source::Live(store), &path, f, Scope::All, &progress)
                    })
                    .map(|saved| {
                        Reply::Done(format!("saved {} as {}", path.display(), saved.format))
                    })
                    .map_err(|e| EngineError::Capture(e.to_string()));
                finish(r);
            });
        }
        Command::RunDemo => {
            let r = demo::run(shared).map(|()| Reply::Done("demo started".into()));
            finish(r);
        }
        Command::StartRoute(name) => {
            let r = routes::start(shared, &name).await;
            publish_route(shared, &name, said(&r, |a| format!("listening on {a}")));
            finish(r.map(Reply::Listening));
        }
        Command::StopRoute(name) => {
            let r = routes::stop(shared, &name);
            publish_route(shared, &name, said(&r, |()| "stopped by the user".into()));
            finish(r.map(|()| Reply::Done(format!("{name} stopped"))));
        }
        Command::RestartRoute(name) => {
            let r = restart(shared, &name).await;
            publish_route(shared, &name, said(&r, |a| format!("restarted on {a}")));
            finish(r.map(Reply::Listening));
        }
        Command::SetBreakpoints(rules) => {
            let n = rules.len();
            shared.interceptor.set_rules(rules);
            shared.publish(Event::Breakpoints(shared.interceptor.rules()));
            finish(Ok(Reply::Done(format!("{n} breakpoint rule(s)"))));
        }
        Command::SetHoldTimeout(timeout) => {
            shared.interceptor.set_hold_timeout(timeout);
            finish(Ok(Reply::Done(format!(
                "held messages are forwarded after {} s",
                timeout.as_secs()
            ))));
        }
        Command::Decide { id, decision } => {
            let what = decision_name(&decision);
            let r = shared
                .interceptor
                .decide(id, decision)
                .map(|()| Reply::Done(format!("held message {id}: {what}")))
                .map_err(EngineError::from);
            finish(r);
        }
        Command::ForwardEditedTree { id, tree } => {
            let r = forward_edited_tree(shared, id, &tree)
                .map(|()| Reply::Done(format!("held message {id} forwarded edited")));
            finish(r);
        }
    }
}

async fn restart(shared: &Arc<Shared>, name: &str) -> Result<SocketAddr, EngineError> {
    routes::stop(shared, name)?;
    // The old listener closes on its own task, so the port may be busy for a moment.
    let mut tries = 0;
    loop {
        match routes::start(shared, name).await {
            Err(EngineError::Bind { .. }) if tries < REBIND_TRIES => {
                tries += 1;
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            other => return other,
        }
    }
}

fn forward_edited_tree(shared: &Shared, id: u64, tree: &Node) -> Result<(), EngineError> {
    let held = shared
        .interceptor
        .held()
        .into_iter()
        .find(|h| h.id == id)
        .ok_or(InterceptError::UnknownHold(id))?;
    let bytes = encode_for_route(shared, &held.route, tree)?;
    Ok(shared
        .interceptor
        .decide(id, Decision::ForwardEdited(bytes))?)
}

/// Encodes a message tree with the dissector of `route`.
pub(super) fn encode_for_route(
    shared: &Shared,
    route: &str,
    tree: &Node,
) -> Result<Vec<u8>, EngineError> {
    let dissector = shared
        .routes
        .lock()
        .iter()
        .find(|r| r.name == route)
        .and_then(|r| r.dissector.clone())
        .and_then(|d| shared.registry.get(&d))
        .ok_or_else(|| EngineError::Encode(format!("route {route} has no dissector")))?;
    dissector
        .encode(tree)
        .map_err(|e| EngineError::Encode(e.to_string()))
}

/// What a route command's result says, for [`publish_route`].
pub(super) fn said<T>(result: &Result<T, EngineError>, ok: impl FnOnce(&T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(e) => e.to_string(),
    }
}

/// Tells front ends where route `name` stands now and why.
pub(super) fn publish_route(shared: &Shared, name: &str, reason: String) {
    let status = shared
        .routes
        .lock()
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.status());
    if let Some(status) = status {
        shared.publish(Event::Route { status, reason });
    }
}
