//! The decoded tree of the selected packet: one row per field, indented, each naming its
//! bytes. Selecting a row highlights exactly those bytes in the hex pane; derived buffers
//! (reassembled fragments, decompressed bodies) are listed under their message so both the
//! fragment and the whole message can be reached.

use eframe::egui::{RichText, ScrollArea, TextStyle, TextWrapMode, Ui};

use crate::dissect::Node;

use super::decode::{Buffer, NodeRef, PacketDecode};
use super::state::Action;
use super::workbench::BenchAction;

pub const NO_DECODE: &str = "No dissector decodes this connection.";

/// One line of the tree pane.
struct Row<'a> {
    depth: usize,
    node: &'a Node,
    at: NodeRef,
}

pub fn show(
    ui: &mut Ui,
    decode: Option<&PacketDecode>,
    selected: Option<&NodeRef>,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.strong("Tree");
        if let Some(d) = decode {
            let protocol = d.protocol.unwrap_or("–");
            ui.label(RichText::new(format!("{protocol} · {} message(s)", d.messages.len())).weak());
        }
        copy_buttons(ui, decode, selected);
    });
    let Some(decode) = decode else {
        ui.label(RichText::new(NO_DECODE).weak());
        return;
    };
    if decode.protocol.is_none() {
        ui.label(RichText::new(NO_DECODE).weak());
        return;
    }
    if let Some(c) = &decode.continued {
        ui.label(
            RichText::new(format!(
                "Continues {} from packet {}",
                c.message.label, c.packet
            ))
            .weak(),
        );
    }
    if decode.messages.is_empty() {
        ui.label(RichText::new("No message starts in this packet.").weak());
        return;
    }
    let rows = rows(decode);
    ui.style_mut().wrap_mode = Some(TextWrapMode::Extend);
    ui.style_mut().interaction.selectable_labels = false;
    let height = ui.text_style_height(&TextStyle::Body) + 2.0;
    ScrollArea::both()
        .id_salt(("tree", decode.packet))
        .auto_shrink(false)
        .show_rows(ui, height, rows.len(), |ui, range| {
            for row in &rows[range] {
                ui.horizontal(|ui| {
                    ui.add_space(row.depth as f32 * 14.0);
                    let text = row_text(row.node);
                    let mut rich = RichText::new(text);
                    if row.node.error().is_some() {
                        rich = rich.color(ui.visuals().error_fg_color);
                    } else if row.node.derived {
                        rich = rich.italics();
                    }
                    let response = ui.selectable_label(selected == Some(&row.at), rich);
                    let response = match row.node.error() {
                        Some(e) => response.on_hover_text(e),
                        None => response,
                    };
                    if response.clicked() {
                        actions.push(Action::Bench(BenchAction::SelectNode(row.at.clone())));
                    }
                });
            }
        });
}

/// `name: value  [start..end]`, the same shape as `inspect`'s text output.
pub fn row_text(node: &Node) -> String {
    let value = node.display_value();
    let mut text = node.name.to_string();
    if !value.is_empty() {
        text.push_str(": ");
        text.push_str(&value);
    }
    if node.derived {
        text.push_str("  (derived)");
    } else {
        text.push_str(&format!("  [{}..{}]", node.range.start, node.range.end));
    }
    text
}

fn rows(decode: &PacketDecode) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for (i, m) in decode.messages.iter().enumerate() {
        push_tree(&mut out, &m.message.tree, 0, i, Buffer::Wire);
        for (b, buffer) in m.message.derived.iter().enumerate() {
            push_tree(&mut out, &buffer.tree, 1, i, Buffer::Derived(b));
        }
    }
    out
}

fn push_tree<'a>(
    out: &mut Vec<Row<'a>>,
    node: &'a Node,
    base: usize,
    message: usize,
    buffer: Buffer,
) {
    fn go<'a>(
        out: &mut Vec<Row<'a>>,
        node: &'a Node,
        depth: usize,
        path: &mut Vec<usize>,
        message: usize,
        buffer: Buffer,
    ) {
        out.push(Row {
            depth,
            node,
            at: NodeRef {
                message,
                buffer,
                path: path.clone(),
            },
        });
        for (i, c) in node.children.iter().enumerate() {
            path.push(i);
            go(out, c, depth + 1, path, message, buffer);
            path.pop();
        }
    }
    go(out, node, base, &mut Vec::new(), message, buffer);
}

fn copy_buttons(ui: &mut Ui, decode: Option<&PacketDecode>, selected: Option<&NodeRef>) {
    let Some(decode) = decode else {
        return;
    };
    // The selected node, else the whole first message.
    let target = selected.cloned().or_else(|| {
        (!decode.messages.is_empty()).then_some(NodeRef {
            message: 0,
            buffer: Buffer::Wire,
            path: Vec::new(),
        })
    });
    let Some(target) = target else {
        return;
    };
    let (Some(node), Some((_, _, bytes))) = (decode.node(&target), decode.buffer(&target)) else {
        return;
    };
    if ui
        .small_button("Copy field hex")
        .on_hover_text("The selected field's bytes as hex")
        .clicked()
    {
        let range = node.range.start.min(bytes.len())..node.range.end.min(bytes.len());
        ui.ctx().copy_text(::hex::encode(&bytes[range]));
    }
    if ui
        .small_button("Copy field text")
        .on_hover_text("The selected field and everything under it, one field a line")
        .clicked()
    {
        let mut text = String::new();
        node.write_text(&mut text, 0);
        ui.ctx().copy_text(text);
    }
    if ui
        .small_button("Copy field JSON")
        .on_hover_text("The selected field and everything under it as JSON")
        .clicked()
    {
        let json = serde_json::to_string_pretty(&node.to_json()).unwrap_or_default();
        ui.ctx().copy_text(json);
    }
}
