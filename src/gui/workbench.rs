//! The decoded workbench around the capture viewer: packet labels, the selected packet's
//! tree linked to its bytes, the servers panel, breakpoints, and edit and resend.
//!
//! Its state lives here rather than in [`super::state::ViewerState`] because most of it
//! needs the engine or the decoder; the panes still only push actions, which the app hands
//! to [`Workbench::apply`] after drawing.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;

use crate::capture::{CaptureStore, ConnectionId, Direction, PacketId, StoreData};
use crate::dissect::{Context, Node, Registry};
use crate::engine::{Command, CommandId, Decision, Event, HoldId, Reply, Rule};

use super::decode::{Buffer, Labeller, NodeRef, PacketDecode, Summaries};
use super::editor::{EditSource, Editor, SendTo};
use super::engine_view::EngineView;

/// How long the repeater waits for the upstream to go quiet before showing its answer.
pub const REPEAT_SETTLE: Duration = Duration::from_millis(400);

/// What the workbench panes ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchAction {
    SelectNode(NodeRef),
    /// A click on byte `offset` of what the hex pane shows.
    SelectByte(usize),
    ToggleFollow,
    StartRoute(String),
    StopRoute(String),
    RestartRoute(String),
    AddRule(Rule),
    RemoveRule(usize),
    Forward(HoldId),
    Drop(HoldId),
    EditHeld(HoldId),
    /// Opens the editor on the message of the packet (the selected one, else its first).
    EditPacket(PacketId),
    CloseEditor,
    Send(SendTo),
}

/// What a route command or a send did, shown under the panes until the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
}

pub struct Workbench {
    registry: Arc<Registry>,
    /// Schemas and keys: the engine's when one runs, else the built-in ones.
    /// Made when first needed: a window given the engine's never builds its own.
    context: std::sync::OnceLock<Arc<Context>>,
    labeller: Option<Labeller>,
    decode: Option<PacketDecode>,
    node: Option<NodeRef>,
    follow: bool,
    /// Rows the table had last frame, to tell when live traffic added some.
    seen_rows: usize,
    pub rule_form: super::breakpoints::RuleForm,
    editor: Option<Editor>,
    notice: Option<Notice>,
    /// Commands this window sent whose answers it shows.
    sent: HashSet<CommandId>,
    /// The repeater's request; its answer goes to the editor.
    repeat: Option<CommandId>,
    /// Forwarding the edited held message; the editor closes when it went.
    forward: Option<CommandId>,
}

impl Default for Workbench {
    fn default() -> Self {
        Workbench {
            registry: Registry::shared(),
            context: std::sync::OnceLock::new(),
            labeller: None,
            decode: None,
            node: None,
            follow: false,
            seen_rows: 0,
            rule_form: Default::default(),
            editor: None,
            notice: None,
            sent: HashSet::new(),
            repeat: None,
            forward: None,
        }
    }
}

/// What a window without an engine decodes with: the configuration in the working
/// directory, as `inspect` and the engine would use it.
fn file_context() -> Context {
    use crate::engine::config::{Config, DEFAULT_CONFIG_FILE};
    let config =
        Config::load_if_present(std::path::Path::new(DEFAULT_CONFIG_FILE)).unwrap_or_else(|e| {
            tracing::warn!("{e}; decoding with the defaults");
            Config::default()
        });
    crate::engine::decoding::decode_context_for(&config, None)
}

impl Workbench {
    /// Keeps the labeller on the shown store and the selected packet's decode current.
    /// `live`: the store is the engine's, still growing.
    pub fn update(
        &mut self,
        ctx: &egui::Context,
        store: Option<&Arc<CaptureStore>>,
        live: bool,
        data: Option<&StoreData>,
        selected: Option<PacketId>,
    ) {
        match store {
            Some(store) if self.labeller.as_ref().is_none_or(|l| !l.is_for(store)) => {
                let ctx = ctx.clone();
                self.labeller = Some(Labeller::start(
                    store.clone(),
                    self.context().clone(),
                    live,
                    move || ctx.request_repaint(),
                ));
                self.decode = None;
                self.node = None;
                self.seen_rows = 0;
            }
            None => {
                self.labeller = None;
                self.decode = None;
                self.node = None;
            }
            Some(_) => {}
        }
        let Some(data) = data else {
            return;
        };
        match selected {
            None => {
                self.decode = None;
                self.node = None;
            }
            Some(id) => {
                let stale = match &self.decode {
                    Some(d) if d.packet == id => data
                        .packet(id)
                        .map(|p| data.packets_of(p.connection).len())
                        .is_some_and(|n| n != d.connection_packets),
                    _ => true,
                };
                if stale {
                    let same = self.decode.as_ref().is_some_and(|d| d.packet == id);
                    let chosen = data.packet(id).and_then(|p| {
                        let labels = self.labeller.as_ref()?.summaries();
                        labels.protocol(p.connection)
                    });
                    self.decode =
                        PacketDecode::of(&self.registry, self.context(), data, id, chosen);
                    if !same {
                        self.node = None;
                    }
                }
            }
        }
    }

    pub fn summaries(&self) -> Option<parking_lot::RwLockReadGuard<'_, Summaries>> {
        self.labeller.as_ref().map(Labeller::summaries)
    }

    /// Whether packets are still waiting for their labels.
    pub fn is_decoding(&self) -> bool {
        self.labeller.as_ref().is_some_and(Labeller::is_behind)
    }

    pub fn decode(&self) -> Option<&PacketDecode> {
        self.decode.as_ref()
    }

    pub fn selected_node(&self) -> Option<&NodeRef> {
        self.node.as_ref()
    }

    /// The selected node itself.
    pub fn node(&self) -> Option<&Node> {
        self.decode.as_ref()?.node(self.node.as_ref()?)
    }

    /// The derived buffer the hex pane shows instead of the packet, when a node of one is
    /// selected: its message, index, name and bytes.
    pub fn shown_buffer(&self) -> Option<(usize, usize, &str, &[u8])> {
        let node = self.node.as_ref()?;
        let Buffer::Derived(b) = node.buffer else {
            return None;
        };
        let buffer = self
            .decode
            .as_ref()?
            .messages
            .get(node.message)?
            .message
            .derived
            .get(b)?;
        Some((node.message, b, &buffer.name, &buffer.bytes))
    }

    /// The bytes the hex pane highlights, in what it shows (the packet or a derived buffer).
    pub fn highlight(&self) -> Option<Range<usize>> {
        self.decode.as_ref()?.highlight(self.node.as_ref()?)
    }

    pub fn follow(&self) -> bool {
        self.follow
    }

    pub fn context(&self) -> &Arc<Context> {
        self.context.get_or_init(|| Arc::new(file_context()))
    }

    /// Decodes with these schemas and keys from now on (the engine's).
    pub fn set_context(&mut self, context: Arc<Context>) {
        self.context = std::sync::OnceLock::from(context);
        // Labels made with the old context are redone.
        self.labeller = None;
        self.decode = None;
    }

    pub fn set_follow(&mut self, follow: bool) {
        self.follow = follow;
    }

    /// The last row, once, when following live traffic and rows were added.
    pub fn follow_scroll(&mut self, rows: usize) -> Option<usize> {
        let grew = rows > self.seen_rows;
        self.seen_rows = rows;
        (self.follow && grew && rows > 0).then(|| rows - 1)
    }

    pub fn editor(&self) -> Option<&Editor> {
        self.editor.as_ref()
    }

    pub fn editor_mut(&mut self) -> Option<&mut Editor> {
        self.editor.as_mut()
    }

    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    fn tell(&mut self, result: Result<String, String>) {
        self.notice = Some(match result {
            Ok(text) => Notice { error: false, text },
            Err(text) => Notice { error: true, text },
        });
    }

    /// Takes the answers to the commands this window sent.
    pub fn on_event(&mut self, event: &Event) {
        let Event::Done {
            id,
            command,
            result,
        } = event
        else {
            return;
        };
        if !self.sent.remove(id) {
            return;
        }
        if self.repeat == Some(*id) {
            self.repeat = None;
            if let Some(editor) = self.editor.as_mut() {
                let answer = match result {
                    Ok(Reply::Bytes(b)) => Ok(b.clone()),
                    Ok(other) => Err(format!("unexpected answer: {other:?}")),
                    Err(e) => Err(e.clone()),
                };
                editor.set_answer(&self.registry, answer);
            }
        }
        if self.forward == Some(*id) {
            self.forward = None;
            if result.is_ok() {
                self.editor = None;
            }
        }
        self.tell(
            result
                .as_ref()
                .map(|r| r.describe(command))
                .map_err(|e| e.clone()),
        );
    }

    fn send_command(&mut self, engine: &EngineView, command: Command) -> CommandId {
        let id = engine.send(command);
        self.sent.insert(id);
        id
    }

    pub fn apply(
        &mut self,
        action: BenchAction,
        engine: Option<&mut EngineView>,
        store: Option<&Arc<CaptureStore>>,
    ) {
        match action {
            BenchAction::SelectNode(node) => self.node = Some(node),
            BenchAction::SelectByte(offset) => {
                let found = match (self.shown_buffer(), &self.decode) {
                    (Some((m, b, _, _)), Some(d)) => d.node_at_in(m, b, offset),
                    (None, Some(d)) => d.node_at(offset),
                    _ => None,
                };
                if found.is_some() {
                    self.node = found;
                }
            }
            BenchAction::ToggleFollow => self.follow = !self.follow,
            BenchAction::EditPacket(id) => {
                if let Some(store) = store {
                    self.edit_packet(&store.read(), id);
                }
            }
            BenchAction::CloseEditor => self.editor = None,
            action => match engine {
                Some(engine) => self.apply_engine(action, engine),
                None => self.tell(Err("no engine is running in this window".into())),
            },
        }
    }

    /// The actions that ask the engine for something: each becomes a command, answered by
    /// an event later. What the window shows changes at once where the outcome is certain
    /// (a rule added, a held message decided), so a click never waits for the engine.
    fn apply_engine(&mut self, action: BenchAction, engine: &mut EngineView) {
        match action {
            BenchAction::StartRoute(name) => {
                self.send_command(engine, Command::StartRoute(name.clone()));
                self.tell(Ok(format!("starting {name}…")));
            }
            BenchAction::StopRoute(name) => {
                self.send_command(engine, Command::StopRoute(name.clone()));
                self.tell(Ok(format!("stopping {name}…")));
            }
            BenchAction::RestartRoute(name) => {
                self.send_command(engine, Command::RestartRoute(name.clone()));
                self.tell(Ok(format!("restarting {name}…")));
            }
            BenchAction::AddRule(rule) => {
                let mut rules = engine.breakpoints().to_vec();
                rules.push(rule);
                self.set_rules(engine, rules);
            }
            BenchAction::RemoveRule(i) => {
                let mut rules = engine.breakpoints().to_vec();
                if i < rules.len() {
                    rules.remove(i);
                    self.set_rules(engine, rules);
                }
            }
            BenchAction::Forward(id) => self.decide(engine, id, Decision::Forward),
            BenchAction::Drop(id) => self.decide(engine, id, Decision::Drop),
            BenchAction::EditHeld(id) => {
                let Some(held) = engine.held().iter().find(|h| h.id == id).cloned() else {
                    return;
                };
                let protocol = engine
                    .routes()
                    .iter()
                    .find(|r| r.name == held.route)
                    .and_then(|r| r.dissector.clone());
                let source = EditSource::Held {
                    id,
                    route: held.route.clone(),
                    connection: held.connection,
                    direction: held.direction,
                };
                self.editor = Some(Editor::new(
                    &self.registry,
                    self.context().clone(),
                    source,
                    protocol.as_deref(),
                    held.bytes,
                ));
            }
            BenchAction::Send(to) => self.send(to, engine),
            BenchAction::SelectNode(_)
            | BenchAction::SelectByte(_)
            | BenchAction::ToggleFollow
            | BenchAction::EditPacket(_)
            | BenchAction::CloseEditor => {}
        }
    }

    fn set_rules(&mut self, engine: &mut EngineView, rules: Vec<Rule>) {
        engine.set_breakpoints_shown(rules.clone());
        self.send_command(engine, Command::SetBreakpoints(rules));
    }

    fn decide(&mut self, engine: &mut EngineView, id: HoldId, decision: Decision) {
        engine.forget_held(id);
        self.send_command(engine, Command::Decide { id, decision });
    }

    fn edit_packet(&mut self, data: &StoreData, id: PacketId) {
        let Some(p) = data.packet(id) else {
            return;
        };
        let conn = data.connection(p.connection);
        let route = conn.and_then(|c| c.route.clone());
        // The message of the selected node, else the packet's first; the whole packet when
        // nothing was decoded.
        let decode = self.decode.as_ref().filter(|d| d.packet == id);
        let message = self
            .node
            .as_ref()
            .map(|n| n.message)
            .and_then(|m| decode?.messages.get(m))
            .or_else(|| decode?.messages.first());
        let protocol = decode.and_then(|d| d.protocol);
        let bytes = message.map_or_else(|| p.data.to_vec(), |m| m.bytes.clone());
        let source = EditSource::Packet {
            packet: id,
            route,
            connection: p.connection,
            direction: p.direction,
        };
        self.editor = Some(Editor::new(
            &self.registry,
            self.context().clone(),
            source,
            protocol,
            bytes,
        ));
    }

    fn send(&mut self, to: SendTo, engine: &mut EngineView) {
        let Some(editor) = self.editor.as_mut() else {
            return;
        };
        let bytes = match editor.encoded() {
            Ok(b) => b.to_vec(),
            Err(e) => {
                let e = format!("cannot send: {e}");
                self.tell(Err(e));
                return;
            }
        };
        let n = bytes.len();
        let command = match (to, editor.source().clone()) {
            (SendTo::Server | SendTo::Client, source) => {
                let direction = if to == SendTo::Server {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                let connection: ConnectionId = source.connection();
                Command::Inject {
                    connection,
                    direction,
                    bytes,
                }
            }
            (SendTo::Repeater, source) => match source.route() {
                None => {
                    self.tell(Err("the connection has no route to repeat to".into()));
                    return;
                }
                Some(route) => {
                    editor.set_waiting();
                    Command::Repeat {
                        route: route.to_string(),
                        bytes,
                        settle: REPEAT_SETTLE,
                    }
                }
            },
            (SendTo::Forward, EditSource::Held { id, .. }) => match editor.edited_tree() {
                Some(tree) => Command::ForwardEditedTree {
                    id,
                    tree: Box::new(tree.clone()),
                },
                None => Command::Decide {
                    id,
                    decision: Decision::ForwardEdited(bytes),
                },
            },
            (SendTo::Forward, EditSource::Packet { .. }) => {
                self.tell(Err("only a held message can be forwarded".into()));
                return;
            }
        };
        let what = command.describe();
        let id = self.send_command(engine, command);
        match to {
            SendTo::Repeater => self.repeat = Some(id),
            SendTo::Forward => self.forward = Some(id),
            SendTo::Server | SendTo::Client => {}
        }
        self.tell(Ok(format!("{what} ({n} bytes)…")));
    }
}
