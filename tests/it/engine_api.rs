//! The engine's command and event interface, as the window and `serve` use it: start-up told
//! step by step, commands answered by events, held messages and live connections announced.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gamewire::capture::Direction;
use gamewire::engine::config::{Config, TapConfig};
use gamewire::engine::{
    Command, Decision, Engine, Event, Events, Reply, RouteState, Rule, StartOptions,
};
use gamewire::proxy::CaptureEvent;

use crate::common::free_port;
use crate::engine_taps::{received_until, sink_server};

fn config(dir: &std::path::Path, taps: Vec<TapConfig>) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        certs_dir: dir.join("certs"),
        taps,
        ..Config::default()
    };
    config.proxy.enabled = false;
    config.servers.disable_all();
    config
}

fn tap(name: &str, listen: std::net::SocketAddr, upstream: std::net::SocketAddr) -> TapConfig {
    TapConfig {
        name: name.into(),
        listen,
        upstream: upstream.to_string(),
        dissector: Some("http".into()),
        ..TapConfig::default()
    }
}

/// Events until one satisfies `stop` (that one included), for at most 10 s.
fn events_until(
    engine: &Engine,
    events: &mut Events,
    what: &str,
    mut stop: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = engine
            .handle()
            .block_on(async { tokio::time::timeout(left, events.next()).await });
        match next {
            Ok(Some(event)) => {
                let done = stop(&event);
                out.push(event);
                if done {
                    return out;
                }
            }
            _ => panic!("no {what} within 10 s; events so far: {out:?}"),
        }
    }
}

fn done_of(events: &[Event], id: u64) -> Option<&Result<Reply, String>> {
    events.iter().find_map(|e| match e {
        Event::Done { id: i, result, .. } if *i == id => Some(result),
        _ => None,
    })
}

#[test]
fn start_up_is_told_step_by_step_and_commands_are_answered_by_events() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, _rx) = sink_server();
    let listen = free_port();
    let (engine, mut events) = Engine::launch_subscribed(
        config(dir.path(), vec![tap("web", listen, upstream)]),
        StartOptions::default(),
    )
    .unwrap();
    // Sent before start-up is over: it waits for it.
    let early = engine.send(Command::SetBreakpoints(vec![]));
    let startup = events_until(
        &engine,
        &mut events,
        "the answer to the early command",
        |e| matches!(e, Event::Done { id, .. } if *id == early),
    );
    let steps: Vec<_> = startup
        .iter()
        .filter_map(|e| match e {
            Event::Starting(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    // The CA, the issuer key, the schemas, then the one enabled route.
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(steps.iter().all(|s| s.total == 4), "{steps:?}");
    assert!(steps.windows(2).all(|w| w[0].done < w[1].done), "{steps:?}");
    assert_eq!(steps[3].step, "starting web");
    let position = |f: &dyn Fn(&Event) -> bool| startup.iter().position(f);
    let route = position(&|e| {
        matches!(e, Event::Route { status, reason }
            if status.name == "web"
                && status.state == RouteState::Running(listen)
                && reason == &format!("listening on {listen}"))
    })
    .expect("the route's start is told");
    let ready = position(&|e| matches!(e, Event::Ready)).expect("ready");
    let answered = position(&|e| matches!(e, Event::Done { id, .. } if *id == early)).unwrap();
    assert!(route < ready && ready < answered, "{startup:?}");
    assert!(engine.state().ready);
    assert!(engine.state().starting.is_none());

    let stop = engine.send(Command::StopRoute("web".into()));
    let got = events_until(
        &engine,
        &mut events,
        "the stop",
        |e| matches!(e, Event::Done { id, .. } if *id == stop),
    );
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Route { status, reason }
        if status.state == RouteState::Stopped && reason == "stopped by the user"))
    );
    // The listener closes on its own task, just after the answer.
    crate::engine_taps::eventually("the port to close", || TcpStream::connect(listen).is_err());

    let restart = engine.send(Command::RestartRoute("web".into()));
    let got = events_until(
        &engine,
        &mut events,
        "the restart",
        |e| matches!(e, Event::Done { id, .. } if *id == restart),
    );
    assert_eq!(done_of(&got, restart), Some(&Ok(Reply::Listening(listen))));
    assert!(TcpStream::connect(listen).is_ok(), "listening again");

    let unknown = engine.send(Command::StartRoute("nope".into()));
    let got = events_until(
        &engine,
        &mut events,
        "the refusal",
        |e| matches!(e, Event::Done { id, .. } if *id == unknown),
    );
    match done_of(&got, unknown) {
        Some(Err(e)) => assert!(e.contains("no route is named \"nope\""), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    engine.shutdown().unwrap();
}

#[test]
fn held_messages_and_live_connections_are_announced_and_decided_by_command() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, rx) = sink_server();
    let mut config = config(dir.path(), vec![tap("web", free_port(), upstream)]);
    config.breakpoints.rules = vec![Rule::default()];
    let engine = Engine::start(config, StartOptions::default()).unwrap();
    let mut events = engine.subscribe();
    let routes = engine.state().routes;
    let addr = match routes.iter().find(|r| r.name == "web").map(|r| &r.state) {
        Some(RouteState::Running(a)) => *a,
        other => panic!("{other:?}"),
    };
    let request = b"GET /held HTTP/1.1\r\nHost: example\r\n\r\n";
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(request).unwrap();
    let got = events_until(&engine, &mut events, "the held request", |e| {
        matches!(e, Event::Held(_))
    });
    let Some(Event::Held(held)) = got.last() else {
        unreachable!()
    };
    assert_eq!(held.bytes, request);
    assert_eq!(held.direction, Direction::ClientToServer);
    let connection = held.connection;
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Capture(CaptureEvent::Opened(c)) if *c == connection))
    );
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Live { connection: c, live: true } if *c == connection))
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "held back"
    );
    assert_eq!(engine.state().held.len(), 1);

    let forward = engine.send(Command::Decide {
        id: held.id,
        decision: Decision::Forward,
    });
    let got = events_until(
        &engine,
        &mut events,
        "the forward",
        |e| matches!(e, Event::Done { id, .. } if *id == forward),
    );
    assert!(matches!(done_of(&got, forward), Some(Ok(Reply::Done(_)))));
    assert_eq!(received_until(&rx, request.len()), request);
    let decided = engine.send(Command::Decide {
        id: held.id,
        decision: Decision::Drop,
    });
    let got = events_until(
        &engine,
        &mut events,
        "the second decision",
        |e| matches!(e, Event::Done { id, .. } if *id == decided),
    );
    assert!(matches!(done_of(&got, decided), Some(Err(e)) if e.contains("no message is held")));

    drop(client);
    events_until(
        &engine,
        &mut events,
        "the connection to end",
        |e| matches!(e, Event::Live { connection: c, live: false } if *c == connection),
    );
    assert!(engine.state().live.is_empty());
    engine.shutdown().unwrap();
}
