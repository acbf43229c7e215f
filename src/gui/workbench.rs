//! The decoded workbench around the capture viewer: packet labels, the selected packet's
//! tree linked to its bytes, the servers panel, breakpoints, and edit and resend.
//!
//! Its state lives here rather than in [`super::state::ViewerState`] because most of it
//! needs the engine or the decoder; the panes still only push actions, which the app hands
//! to [`Workbench::apply`] after drawing.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use eframe::egui;

use crate::capture::{CaptureStore, ConnectionId, Direction, PacketId, StoreData};
use crate::dissect::{Context, Node, Registry};
use crate::engine::Engine;
use crate::engine::{Decision, HoldId, Rule};

use super::decode::{Buffer, Labeller, NodeRef, PacketDecode, Summaries};
use super::editor::{EditSource, Editor, SendTo};

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
    registry: Registry,
    /// Schemas and keys: the engine's when one runs, else the built-in ones.
    context: Arc<Context>,
    labeller: Option<Labeller>,
    decode: Option<PacketDecode>,
    node: Option<NodeRef>,
    follow: bool,
    /// Rows the table had last frame, to tell when live traffic added some.
    seen_rows: usize,
    pub rule_form: super::breakpoints::RuleForm,
    editor: Option<Editor>,
    notice: Option<Notice>,
    repeats: Vec<mpsc::Receiver<Result<Vec<u8>, String>>>,
}

impl Default for Workbench {
    fn default() -> Self {
        Workbench {
            registry: Registry::standard(),
            context: Arc::new(crate::engine::decoding::decode_context(
                &[],
                Some(&crate::engine::config::Config::default().certs_dir),
            )),
            labeller: None,
            decode: None,
            node: None,
            follow: false,
            seen_rows: 0,
            rule_form: Default::default(),
            editor: None,
            notice: None,
            repeats: Vec::new(),
        }
    }
}

impl Workbench {
    /// Keeps the labeller on the shown store and the selected packet's decode current.
    pub fn update(
        &mut self,
        ctx: &egui::Context,
        store: Option<&Arc<CaptureStore>>,
        data: Option<&StoreData>,
        selected: Option<PacketId>,
    ) {
        match store {
            Some(store) if self.labeller.as_ref().is_none_or(|l| !l.is_for(store)) => {
                let ctx = ctx.clone();
                self.labeller = Some(Labeller::start(
                    store.clone(),
                    self.context.clone(),
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
                    self.decode = PacketDecode::of(&self.registry, &self.context, data, id);
                    if !same {
                        self.node = None;
                    }
                }
            }
        }
        self.collect_repeats();
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
        &self.context
    }

    /// Decodes with these schemas and keys from now on (the engine's).
    pub fn set_context(&mut self, context: Arc<Context>) {
        self.context = context;
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

    pub fn apply(
        &mut self,
        action: BenchAction,
        engine: Option<&Engine>,
        store: Option<&Arc<CaptureStore>>,
        ctx: Option<&egui::Context>,
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
            BenchAction::StartRoute(name) => {
                let r = need(engine).and_then(|e| {
                    e.start_route(&name)
                        .map(|a| format!("{name} listening on {a}"))
                        .map_err(|e| e.to_string())
                });
                self.tell(r);
            }
            BenchAction::StopRoute(name) => {
                let r = need(engine).and_then(|e| {
                    e.stop_route(&name)
                        .map(|()| format!("{name} stopped"))
                        .map_err(|e| e.to_string())
                });
                self.tell(r);
            }
            BenchAction::RestartRoute(name) => {
                let r = need(engine).and_then(|e| {
                    e.restart_route(&name)
                        .map(|a| format!("{name} restarted on {a}"))
                        .map_err(|e| e.to_string())
                });
                self.tell(r);
            }
            BenchAction::AddRule(rule) => {
                if let Ok(e) = need(engine) {
                    let mut rules = e.breakpoints();
                    rules.push(rule);
                    e.set_breakpoints(rules);
                }
            }
            BenchAction::RemoveRule(i) => {
                if let Ok(e) = need(engine) {
                    let mut rules = e.breakpoints();
                    if i < rules.len() {
                        rules.remove(i);
                        e.set_breakpoints(rules);
                    }
                }
            }
            BenchAction::Forward(id) => self.decide(engine, id, Decision::Forward),
            BenchAction::Drop(id) => self.decide(engine, id, Decision::Drop),
            BenchAction::EditHeld(id) => {
                let held = engine.and_then(|e| {
                    let held = e.held().into_iter().find(|h| h.id == id)?;
                    let protocol = e
                        .routes()
                        .into_iter()
                        .find(|r| r.name == held.route)
                        .and_then(|r| r.dissector);
                    Some((held, protocol))
                });
                if let Some((held, protocol)) = held {
                    let source = EditSource::Held {
                        id,
                        route: held.route.clone(),
                        connection: held.connection,
                        direction: held.direction,
                    };
                    self.editor = Some(Editor::new(
                        &self.registry,
                        self.context.clone(),
                        source,
                        protocol.as_deref(),
                        held.bytes,
                    ));
                }
            }
            BenchAction::EditPacket(id) => {
                if let Some(store) = store {
                    self.edit_packet(&store.read(), id);
                }
            }
            BenchAction::CloseEditor => self.editor = None,
            BenchAction::Send(to) => self.send(to, engine, ctx),
        }
    }

    fn decide(&mut self, engine: Option<&Engine>, id: HoldId, decision: Decision) {
        let what = format!("{decision:?}").to_lowercase();
        let r = need(engine).and_then(|e| {
            e.decide(id, decision)
                .map(|()| format!("held message {id}: {what}"))
                .map_err(|e| e.to_string())
        });
        self.tell(r);
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
            self.context.clone(),
            source,
            protocol,
            bytes,
        ));
    }

    fn send(&mut self, to: SendTo, engine: Option<&Engine>, ctx: Option<&egui::Context>) {
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
        let Ok(engine) = need(engine) else {
            self.tell(Err(
                "sending needs the engine: start gamewire with it".into()
            ));
            return;
        };
        let result = match (to, editor.source().clone()) {
            (SendTo::Server | SendTo::Client, source) => {
                let direction = if to == SendTo::Server {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                let conn: ConnectionId = source.connection();
                engine
                    .inject(conn, direction, bytes.clone())
                    .map(|()| {
                        format!(
                            "sent {} bytes to the {} of connection {conn}",
                            bytes.len(),
                            if to == SendTo::Server {
                                "server"
                            } else {
                                "client"
                            }
                        )
                    })
                    .map_err(|e| e.to_string())
            }
            (SendTo::Repeater, source) => match source.route() {
                None => Err("the connection has no route to repeat to".into()),
                Some(route) => {
                    let (tx, rx) = mpsc::channel();
                    let task = engine.repeat_task(route, bytes.clone(), REPEAT_SETTLE);
                    let ctx = ctx.cloned();
                    engine.handle().spawn(async move {
                        let _ = tx.send(task.await.map_err(|e| e.to_string()));
                        if let Some(ctx) = ctx {
                            ctx.request_repaint();
                        }
                    });
                    self.repeats.push(rx);
                    editor.set_waiting();
                    Ok(format!("sent {} bytes to {route}'s upstream", bytes.len()))
                }
            },
            (SendTo::Forward, EditSource::Held { id, .. }) => {
                let r = match editor.edited_tree() {
                    Some(tree) => engine.forward_edited_tree(id, tree),
                    None => engine.decide(id, Decision::ForwardEdited(bytes.clone())),
                };
                r.map(|()| format!("held message {id} forwarded edited"))
                    .map_err(|e| e.to_string())
            }
            (SendTo::Forward, EditSource::Packet { .. }) => {
                Err("only a held message can be forwarded".into())
            }
        };
        let forwarded = to == SendTo::Forward && result.is_ok();
        self.tell(result);
        if forwarded {
            self.editor = None;
        }
    }

    fn collect_repeats(&mut self) {
        let mut answers = Vec::new();
        self.repeats.retain(|rx| match rx.try_recv() {
            Ok(answer) => {
                answers.push(answer);
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
            Err(mpsc::TryRecvError::Disconnected) => false,
        });
        for answer in answers {
            if let Some(editor) = self.editor.as_mut() {
                editor.set_answer(&self.registry, answer);
            }
        }
    }
}

fn need(engine: Option<&Engine>) -> Result<&Engine, String> {
    engine.ok_or_else(|| "no engine is running in this window".to_string())
}
