//! Edit and resend: a message edited as its tree (field values) or as hex, re-encoded by its
//! protocol's dissector with lengths fixed, then sent into its live connection, repeated on a
//! new connection to the route's upstream (with the answer shown beside it), or, for a
//! message held at a breakpoint, forwarded.

use eframe::egui::{self, Color32, RichText, ScrollArea, TextEdit, Ui};

use crate::capture::{ConnectionId, Direction, PacketId};
use crate::dissect::stream::Decoded;
use crate::dissect::{Context, Node, Registry, Value};

use super::state::Action;
use super::workbench::BenchAction;

pub const WINDOW_TITLE: &str = "Edit and resend";

/// Where the edited message came from, which says where it can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditSource {
    Packet {
        packet: PacketId,
        route: Option<String>,
        connection: ConnectionId,
        direction: Direction,
    },
    Held {
        id: u64,
        route: String,
        connection: ConnectionId,
        direction: Direction,
    },
}

impl EditSource {
    pub fn connection(&self) -> ConnectionId {
        match self {
            EditSource::Packet { connection, .. } | EditSource::Held { connection, .. } => {
                *connection
            }
        }
    }

    pub fn direction(&self) -> Direction {
        match self {
            EditSource::Packet { direction, .. } | EditSource::Held { direction, .. } => *direction,
        }
    }

    pub fn route(&self) -> Option<&str> {
        match self {
            EditSource::Packet { route, .. } => route.as_deref(),
            EditSource::Held { route, .. } => Some(route),
        }
    }

    fn describe(&self) -> String {
        match self {
            EditSource::Packet {
                packet,
                connection,
                direction,
                ..
            } => format!(
                "packet {packet} · connection {connection} {}",
                direction.arrow()
            ),
            EditSource::Held {
                id,
                route,
                direction,
                ..
            } => format!("held message {id} on {route} {}", direction.arrow()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendTo {
    /// Into the live connection, as if the client had sent it.
    Server,
    /// Into the live connection, as if the server had sent it.
    Client,
    /// On a new connection to the route's upstream.
    Repeater,
    /// Release a held message with the edit.
    Forward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tree,
    Hex,
}

/// An editable field: a leaf on the wire with a value.
#[derive(Clone, Debug)]
pub struct Field {
    pub path: Vec<usize>,
    /// Dotted names from below the root, e.g. `payload.nuid`.
    pub name: String,
    pub text: String,
}

/// What the repeater got back.
#[derive(Clone, Debug)]
pub struct Answer {
    pub bytes: Vec<u8>,
    /// The answer decoded by the message's protocol, one entry a message.
    pub messages: Vec<Decoded>,
}

pub struct Editor {
    source: EditSource,
    protocol: Option<&'static str>,
    mode: Mode,
    tree: Option<Node>,
    fields: Vec<Field>,
    hex: String,
    encoded: Result<Vec<u8>, String>,
    answer: Option<Result<Answer, String>>,
    waiting: bool,
    /// The workbench's schemas and keys, so an edited message decodes as in the tree pane.
    context: std::sync::Arc<Context>,
}

impl Editor {
    /// An editor on `bytes`, one message of `protocol` (hex only when there is none, or it
    /// cannot re-encode).
    pub fn new(
        registry: &Registry,
        context: std::sync::Arc<Context>,
        source: EditSource,
        protocol: Option<&str>,
        bytes: Vec<u8>,
    ) -> Self {
        let dissector = protocol.and_then(|p| registry.get(p));
        let tree = dissector.as_ref().and_then(|d| {
            let message = d.decoder(source.direction(), &context).decode(&bytes);
            // Decompressed or de-chunked contents are edited in place of their wire form.
            let tree = d.edit_tree(&message);
            // Only offer the tree when it encodes back: a protocol without an encoder, or a
            // message it cannot reproduce, is edited as hex.
            d.encode(&tree).ok().map(|_| tree)
        });
        let fields = tree.as_ref().map(fields_of).unwrap_or_default();
        let mut editor = Editor {
            source,
            protocol: dissector.map(|d| d.name()),
            mode: if tree.is_some() {
                Mode::Tree
            } else {
                Mode::Hex
            },
            tree,
            fields,
            hex: spaced_hex(&bytes),
            encoded: Ok(bytes),
            answer: None,
            waiting: false,
            context,
        };
        editor.reencode();
        editor
    }

    pub fn source(&self) -> &EditSource {
        &self.source
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn set_mode(&mut self, mode: Mode) {
        if mode == Mode::Tree && self.tree.is_none() {
            return;
        }
        if mode == Mode::Hex
            && let Ok(bytes) = &self.encoded
        {
            self.hex = spaced_hex(bytes);
        }
        self.mode = mode;
        self.reencode();
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Sets a field's text by its dotted name; false when there is no such field.
    pub fn set_field(&mut self, name: &str, text: &str) -> bool {
        let Some(f) = self.fields.iter_mut().find(|f| f.name == name) else {
            return false;
        };
        f.text = text.to_owned();
        self.reencode();
        true
    }

    pub fn set_hex(&mut self, hex: &str) {
        self.hex = hex.to_owned();
        self.reencode();
    }

    /// The message as it would be sent, or why it cannot be.
    pub fn encoded(&self) -> Result<&[u8], &str> {
        self.encoded.as_deref().map_err(String::as_str)
    }

    /// The edited tree, when editing as a tree.
    pub fn edited_tree(&self) -> Option<&Node> {
        (self.mode == Mode::Tree)
            .then_some(self.tree.as_ref())
            .flatten()
    }

    pub fn answer(&self) -> Option<&Result<Answer, String>> {
        self.answer.as_ref()
    }

    pub fn set_waiting(&mut self) {
        self.waiting = true;
        self.answer = None;
    }

    pub fn set_answer(&mut self, registry: &Registry, answer: Result<Vec<u8>, String>) {
        self.waiting = false;
        self.answer = Some(answer.map(|bytes| {
            // The repeat connection is over: what it read is all the answer there is.
            let messages = self.protocol.map_or_else(Vec::new, |p| {
                let dir = self.source.direction().reverse();
                crate::dissect::session::decode_stream(registry, &self.context, p, dir, &bytes)
            });
            Answer { bytes, messages }
        }));
    }

    fn reencode(&mut self) {
        self.encoded = match self.mode {
            Mode::Hex => parse_hex(&self.hex),
            Mode::Tree => self.encode_tree(),
        };
    }

    fn encode_tree(&mut self) -> Result<Vec<u8>, String> {
        let registry = Registry::shared();
        let dissector = self
            .protocol
            .and_then(|p| registry.get(p))
            .ok_or("no dissector")?;
        let tree = self.tree.as_mut().ok_or("no tree")?;
        for f in &self.fields {
            let node = f
                .path
                .iter()
                .try_fold(&mut *tree, |n, &i| n.children.get_mut(i))
                .ok_or_else(|| format!("{}: gone", f.name))?;
            node.value =
                parse_value(&node.value, &f.text).map_err(|e| format!("{}: {e}", f.name))?;
            // The dissector's display was of the old value.
            node.set_display(None);
        }
        dissector.encode(tree).map_err(|e| e.to_string())
    }
}

fn fields_of(tree: &Node) -> Vec<Field> {
    fn go(n: &Node, path: &mut Vec<usize>, names: &mut Vec<String>, out: &mut Vec<Field>) {
        for (i, c) in n.children.iter().enumerate() {
            if c.derived {
                continue;
            }
            path.push(i);
            names.push(c.name.to_string());
            // Children that are not on the wire (a checked signature, the original bytes)
            // are not edited; their node is.
            if c.children.iter().all(|x| x.derived) {
                if !matches!(c.value, Value::None) {
                    out.push(Field {
                        path: path.clone(),
                        name: names.join("."),
                        text: value_text(&c.value),
                    });
                }
            } else {
                go(c, path, names, out);
            }
            path.pop();
            names.pop();
        }
    }
    let mut out = Vec::new();
    go(tree, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// A value as typed into its field: text without quotes, bytes as hex.
fn value_text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.to_string(),
        Value::Bytes(b) => hex::encode(b),
        other => other.render(),
    }
}

fn parse_value(old: &Value, text: &str) -> Result<Value, String> {
    let t = text.trim();
    let number = |t: &str| -> Result<u64, String> {
        match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16).map_err(|e| e.to_string()),
            None => t.parse::<u64>().map_err(|e| e.to_string()),
        }
    };
    Ok(match old {
        Value::None => Value::None,
        Value::Text(_) => Value::Text(text.into()),
        Value::UInt(_) => Value::UInt(number(t)?),
        Value::Int(_) => Value::Int(
            t.parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?,
        ),
        Value::Bool(_) => Value::Bool(t.parse().map_err(|_| "true or false")?),
        Value::Float(_) => Value::Float(t.parse().map_err(|_| "not a number")?),
        Value::Bytes(_) => Value::Bytes(parse_hex(t)?.into()),
    })
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).map_err(|e| format!("not hex: {e}"))
}

fn spaced_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The editor window; `live` says whether the source's connection can still be written to.
pub fn show(ctx: &egui::Context, editor: &mut Editor, live: bool, actions: &mut Vec<Action>) {
    let mut open = true;
    egui::Window::new(WINDOW_TITLE)
        .open(&mut open)
        .default_size([760.0, 420.0])
        .resizable(true)
        .show(ctx, |ui| body(ui, editor, live, actions));
    if !open {
        actions.push(Action::Bench(BenchAction::CloseEditor));
    }
}

fn body(ui: &mut Ui, editor: &mut Editor, live: bool, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(editor.source.describe()).strong());
        ui.label(RichText::new(editor.protocol.unwrap_or("no dissector")).weak());
    });
    ui.horizontal(|ui| {
        let can_tree = editor.tree.is_some();
        if ui
            .add_enabled(
                can_tree,
                egui::Button::selectable(editor.mode == Mode::Tree, "As tree"),
            )
            .on_disabled_hover_text("This protocol cannot re-encode an edited tree")
            .clicked()
        {
            editor.set_mode(Mode::Tree);
        }
        if ui
            .add(egui::Button::selectable(editor.mode == Mode::Hex, "As hex"))
            .clicked()
        {
            editor.set_mode(Mode::Hex);
        }
    });
    ui.separator();
    ui.columns(2, |cols| {
        edit_pane(&mut cols[0], editor);
        answer_pane(&mut cols[1], editor);
    });
    ui.separator();
    ui.horizontal(|ui| {
        match &editor.encoded {
            Ok(b) => ui.label(format!("Encoded: {} bytes", b.len())),
            Err(e) => ui.label(RichText::new(e).color(ui.visuals().error_fg_color)),
        };
    });
    ui.horizontal(|ui| {
        let ok = editor.encoded.is_ok();
        let mut send = |ui: &mut Ui, enabled: bool, text: &str, hover: &str, to: SendTo| {
            if ui
                .add_enabled(enabled, egui::Button::new(text))
                .on_hover_text(hover)
                .clicked()
            {
                actions.push(Action::Bench(BenchAction::Send(to)));
            }
        };
        if matches!(editor.source, EditSource::Held { .. }) {
            send(
                ui,
                ok,
                "Forward edited",
                "Release the held message with this edit",
                SendTo::Forward,
            );
        }
        let not_live = "the connection is closed";
        send(
            ui,
            ok && live,
            "Send to server",
            if live {
                "Write into the live connection, towards the server"
            } else {
                not_live
            },
            SendTo::Server,
        );
        send(
            ui,
            ok && live,
            "Send to client",
            if live {
                "Write into the live connection, towards the client"
            } else {
                not_live
            },
            SendTo::Client,
        );
        send(
            ui,
            ok && editor.source.route().is_some(),
            "Repeat on new connection",
            "Open a new connection to the route's upstream, send this, and show the answer",
            SendTo::Repeater,
        );
    });
}

fn edit_pane(ui: &mut Ui, editor: &mut Editor) {
    ui.strong("Message");
    let mut changed = false;
    ScrollArea::vertical()
        .id_salt("editor_fields")
        .max_height(300.0)
        .show(ui, |ui| match editor.mode {
            Mode::Tree => {
                egui::Grid::new("editor_grid")
                    .num_columns(2)
                    .spacing([8.0, 4.0])
                    .show(ui, |ui| {
                        for f in &mut editor.fields {
                            let label = ui.label(&f.name);
                            let r = ui.add(
                                TextEdit::singleline(&mut f.text)
                                    .desired_width(f32::INFINITY)
                                    .id_salt(("field", &f.name)),
                            );
                            changed |= r.labelled_by(label.id).changed();
                            ui.end_row();
                        }
                    });
            }
            Mode::Hex => {
                changed |= ui
                    .add(
                        TextEdit::multiline(&mut editor.hex)
                            .code_editor()
                            .desired_rows(8)
                            .desired_width(f32::INFINITY),
                    )
                    .changed();
            }
        });
    if changed {
        editor.reencode();
    }
}

fn answer_pane(ui: &mut Ui, editor: &Editor) {
    ui.strong("Answer");
    if editor.waiting {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Waiting for the upstream…");
        });
        return;
    }
    match &editor.answer {
        None => {
            ui.label(
                RichText::new("Repeat on a new connection to see the upstream's answer here.")
                    .weak(),
            );
        }
        Some(Err(e)) => {
            ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
        }
        Some(Ok(answer)) => {
            ui.label(format!("{} bytes back", answer.bytes.len()));
            ScrollArea::vertical()
                .id_salt("editor_answer")
                .max_height(280.0)
                .show(ui, |ui| {
                    for m in &answer.messages {
                        let color = if m.message.is_error() {
                            ui.visuals().error_fg_color
                        } else {
                            Color32::PLACEHOLDER
                        };
                        ui.label(RichText::new(&m.message.label).strong().color(color));
                        let mut text = String::new();
                        m.message.tree.write_text(&mut text, 2);
                        ui.label(RichText::new(text).monospace().small());
                    }
                    if answer.messages.is_empty() {
                        ui.label(RichText::new(spaced_hex(&answer.bytes)).monospace());
                    }
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::fesl::{Tag, write_packet};

    #[test]
    fn a_field_edit_is_reencoded_with_the_length_fixed() {
        let login = |nuid: &str| {
            write_packet(
                b"acct",
                Tag::SingleClient,
                3,
                &[("TXN", "NuLogin"), ("nuid", nuid)],
                true,
            )
        };
        let source = EditSource::Packet {
            packet: PacketId(0),
            route: None,
            connection: ConnectionId(0),
            direction: Direction::ClientToServer,
        };
        let mut e = Editor::new(
            &Registry::shared(),
            std::sync::Arc::new(Context::default()),
            source,
            Some("fesl"),
            login("a@b.c"),
        );
        assert_eq!(e.mode(), Mode::Tree);
        assert!(e.set_field("payload.nuid", "someone.else@example.com"));
        assert_eq!(
            e.encoded(),
            Ok(login("someone.else@example.com").as_slice())
        );
        e.set_mode(Mode::Hex);
        e.set_hex("01 02\n03");
        assert_eq!(e.encoded(), Ok([1u8, 2, 3].as_slice()));
        e.set_hex("zz");
        assert!(e.encoded().is_err());
    }
}
