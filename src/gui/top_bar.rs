//! The top bar: where files are opened, and what is open.

use std::path::PathBuf;

use eframe::egui::{Align, Key, Layout, RichText, TextEdit, Ui};

use crate::capture::StoreData;

use super::state::{Action, Source, ViewerState};
use super::text::{human_bytes, thousands};

pub const PATH_HINT: &str = "Path of a capture: .gwcap, .sd.json or .pcapng";

pub fn show(
    ui: &mut Ui,
    state: &mut ViewerState,
    data: Option<&StoreData>,
    actions: &mut Vec<Action>,
) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("gamewire").strong().size(16.0));
        ui.separator();
        open_controls(ui, state, actions);
        loading_progress(ui, state);
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if let (Some(capture), Some(data)) = (state.capture(), data) {
                ui.label(summary(&capture.source, data));
            }
        });
    });
}

fn open_controls(ui: &mut Ui, state: &mut ViewerState, actions: &mut Vec<Action>) {
    let field = ui.add(
        TextEdit::singleline(&mut state.path_input)
            .hint_text(PATH_HINT)
            .desired_width(380.0),
    );
    let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
    let clicked = ui
        .button("Open…")
        .on_hover_text("Open the capture whose path is typed to the left. You can also drop a file on the window.")
        .clicked();
    if entered || clicked {
        match expand_path(&state.path_input) {
            Some(path) => actions.push(Action::Open(path)),
            // Nothing typed yet: the field is where the user has to go next.
            None => field.request_focus(),
        }
    }
}

fn loading_progress(ui: &mut Ui, state: &ViewerState) {
    let Some(loading) = state.loading() else {
        return;
    };
    ui.spinner();
    let name = loading.path.file_name().map_or_else(
        || loading.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let size = loading
        .size
        .map(|s| format!(" ({})", human_bytes(s)))
        .unwrap_or_default();
    ui.label(format!(
        "Opening {name}{size}… {:.1} s",
        loading.started.elapsed().as_secs_f32()
    ));
}

fn summary(source: &Source, data: &StoreData) -> String {
    let what = match source {
        Source::File { format, .. } => format!("{} · {format}", source.name()),
        Source::Live { name } => format!("{name} (live)"),
    };
    format!(
        "{what} · {} connections · {} packets · {}",
        thousands(data.connection_count()),
        thousands(data.packet_count()),
        human_bytes(data.raw_bytes()),
    )
}

/// Turns what was typed or pasted into a path: surrounding blanks and quotes go (file
/// managers paste `'/a b/c.gwcap'`), as do `file://` and a leading `~/`.
pub fn expand_path(input: &str) -> Option<PathBuf> {
    let mut text = input.trim();
    for quote in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(quote) && text.ends_with(quote) {
            text = &text[1..text.len() - 1];
        }
    }
    let text = text.strip_prefix("file://").unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return Some(PathBuf::from(home).join(rest));
    }
    Some(PathBuf::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_paths_lose_quotes_and_scheme() {
        assert_eq!(expand_path("  "), None);
        assert_eq!(expand_path("''"), None);
        assert_eq!(
            expand_path(" '/tmp/a b.gwcap' "),
            Some(PathBuf::from("/tmp/a b.gwcap"))
        );
        assert_eq!(
            expand_path("\"captures/x.sd.json\""),
            Some(PathBuf::from("captures/x.sd.json"))
        );
        assert_eq!(
            expand_path("file:///tmp/x.pcapng"),
            Some(PathBuf::from("/tmp/x.pcapng"))
        );
    }
}
