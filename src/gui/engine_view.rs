//! The window's own copy of the engine's state, kept current from the engine's events.
//!
//! The panes read this copy while drawing and ask for changes by sending commands; nothing
//! here waits on the engine. Events are drained once per frame, and frames come when the
//! engine wakes the window ([`crate::engine::Engine::wake_on_events`]), not from a timer.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::capture::ConnectionId;
use crate::engine::{
    Command, CommandId, Engine, EngineState, Event, Events, Held, RouteStatus, Rule, Startup,
};

/// Events that come close together wake the window once: live traffic redraws it at most
/// about 30 times a second, and the first event after a quiet spell at once.
const WAKE_COALESCE: Duration = Duration::from_millis(33);

pub struct EngineView {
    engine: Engine,
    events: Events,
    state: EngineState,
    live: BTreeSet<ConnectionId>,
}

impl EngineView {
    /// Subscribes to `engine`'s events; `wake` is called (from the engine's runtime) when
    /// there are some to look at.
    pub fn new(engine: Engine, wake: impl Fn() + Send + Sync + 'static) -> EngineView {
        let events = engine.subscribe();
        let state = engine.state();
        engine.wake_on_events(WAKE_COALESCE, wake);
        EngineView {
            live: state.live.iter().copied().collect(),
            engine,
            events,
            state,
        }
    }

    pub fn send(&self, command: Command) -> CommandId {
        self.engine.send(command)
    }

    /// Applies the events that arrived since the last call to the copy of the state and
    /// returns them, for the panes that want to know of answers, demo steps and traffic.
    pub fn pump(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(event) = self.events.try_next() {
            match &event {
                Event::Starting(s) => self.state.starting = Some(s.clone()),
                Event::Ready => {
                    self.state.ready = true;
                    self.state.starting = None;
                    // Start-up built the decode context; take it.
                    self.state.context = self.engine.dissect_context();
                }
                Event::Route { status, .. } => {
                    match self.state.routes.iter_mut().find(|r| r.name == status.name) {
                        Some(r) => *r = status.clone(),
                        None => self.state.routes.push(status.clone()),
                    }
                }
                Event::Live { connection, live } => {
                    if *live {
                        self.live.insert(*connection);
                    } else {
                        self.live.remove(connection);
                    }
                }
                Event::Breakpoints(rules) => self.state.breakpoints = rules.clone(),
                Event::Held(h) => {
                    // Held before the window's first look at the state: it is there already.
                    if !self.state.held.iter().any(|x| x.id == h.id) {
                        self.state.held.push(h.clone());
                    }
                }
                Event::Released { id, .. } => self.state.held.retain(|h| h.id != *id),
                Event::Lagged(_) => {
                    // Missed events: start again from the engine's state now.
                    self.state = self.engine.state();
                    self.live = self.state.live.iter().copied().collect();
                }
                Event::Capture(_)
                | Event::Log { .. }
                | Event::Progress { .. }
                | Event::Done { .. }
                | Event::Demo(_) => {}
            }
            out.push(event);
        }
        out
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn routes(&self) -> &[RouteStatus] {
        &self.state.routes
    }

    pub fn breakpoints(&self) -> &[Rule] {
        &self.state.breakpoints
    }

    pub fn held(&self) -> &[Held] {
        &self.state.held
    }

    /// Shows `rules` at once, before the engine's event confirms them.
    pub fn set_breakpoints_shown(&mut self, rules: Vec<Rule>) {
        self.state.breakpoints = rules;
    }

    /// Stops showing a held message the window has decided on.
    pub fn forget_held(&mut self, id: crate::engine::HoldId) {
        self.state.held.retain(|h| h.id != id);
    }

    pub fn is_live(&self, connection: ConnectionId) -> bool {
        self.live.contains(&connection)
    }

    pub fn live_connections(&self) -> Vec<ConnectionId> {
        self.live.iter().copied().collect()
    }

    /// The start-up step under way, until the engine is ready.
    pub fn starting(&self) -> Option<&Startup> {
        self.state.starting.as_ref()
    }

    /// The capture the engine fills.
    pub fn store(&self) -> &std::sync::Arc<crate::capture::CaptureStore> {
        &self.state.store
    }

    /// The engine itself, for what only reads its configuration.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
