//! What the window remembers between runs (through eframe's storage), the theme, and the
//! keyboard shortcuts with their help window.

use std::path::{Path, PathBuf};

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers, RichText, Ui};
use serde::{Deserialize, Serialize};

/// The key under which eframe stores [`Settings`].
pub const STORAGE_KEY: &str = "gamewire.settings";
/// Recent files listed in the File menu and the path prompt.
pub const MAX_RECENT: usize = 10;
/// The filter field (when there is one) takes the keyboard when this id is set in egui's
/// temporary memory; Ctrl+F sets it.
pub const FOCUS_FILTER_ID: &str = "gamewire.focus_filter";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Theme {
    #[default]
    Dark,
    Light,
}

/// The bottom panes, as tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchTab {
    #[default]
    Log,
    Audit,
    Traffic,
    Demo,
}

impl WatchTab {
    pub const ALL: [WatchTab; 4] = [
        WatchTab::Log,
        WatchTab::Audit,
        WatchTab::Traffic,
        WatchTab::Demo,
    ];

    pub fn title(self) -> &'static str {
        match self {
            WatchTab::Log => "Log",
            WatchTab::Audit => "Audit & alerts",
            WatchTab::Traffic => "Traffic",
            WatchTab::Demo => "Demo",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub theme: Theme,
    /// Most recent first.
    pub recent: Vec<PathBuf>,
    /// Whether the bottom panes (log, audit, traffic, demo) are shown, and which one.
    pub watch_open: bool,
    pub watch_tab: WatchTab,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            theme: Theme::Dark,
            recent: Vec::new(),
            watch_open: true,
            watch_tab: WatchTab::Log,
        }
    }
}

impl Settings {
    /// Puts `path` first in the recent files.
    pub fn remember(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }

    pub fn load(storage: &dyn eframe::Storage) -> Settings {
        eframe::get_value(storage, STORAGE_KEY).unwrap_or_default()
    }

    pub fn save(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, self);
    }

    pub fn apply_theme(&self, ctx: &egui::Context) {
        let theme = match self.theme {
            Theme::Dark => egui::Theme::Dark,
            Theme::Light => egui::Theme::Light,
        };
        if ctx.theme() != theme {
            ctx.set_theme(theme);
        }
    }
}

/// What a shortcut does; the workbench acts on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    Open,
    Save,
    Export,
    FocusFilter,
    RunDemo,
    ToggleWatch,
    ToggleTheme,
    Help,
}

pub const SHORTCUTS: [(Shortcut, KeyboardShortcut, &str); 8] = [
    (
        Shortcut::Open,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::O),
        "Open a capture",
    ),
    (
        Shortcut::Save,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::S),
        "Save the capture as .gwcap",
    ),
    (
        Shortcut::Export,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::E),
        "Export (sd.json, pcapng, HAR)",
    ),
    (
        Shortcut::FocusFilter,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::F),
        "Go to the filter",
    ),
    (
        Shortcut::RunDemo,
        KeyboardShortcut::new(Modifiers::NONE, Key::F5),
        "Run the demo client",
    ),
    (
        Shortcut::ToggleWatch,
        KeyboardShortcut::new(Modifiers::COMMAND, Key::L),
        "Show or hide the log, audit, traffic and demo panes",
    ),
    (
        Shortcut::ToggleTheme,
        KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::T),
        "Switch between light and dark",
    ),
    (
        Shortcut::Help,
        KeyboardShortcut::new(Modifiers::NONE, Key::F1),
        "This list",
    ),
];

/// The shortcuts pressed this frame (consumed, so text fields do not also see them).
pub fn pressed(ctx: &egui::Context) -> Vec<Shortcut> {
    ctx.input_mut(|i| {
        SHORTCUTS
            .iter()
            .filter(|(_, keys, _)| i.consume_shortcut(keys))
            .map(|(s, _, _)| *s)
            .collect()
    })
}

pub fn shortcut_text(ctx: &egui::Context, which: Shortcut) -> String {
    SHORTCUTS
        .iter()
        .find(|(s, _, _)| *s == which)
        .map(|(_, keys, _)| ctx.format_shortcut(keys))
        .unwrap_or_default()
}

/// The Help ▸ Keyboard shortcuts window.
pub fn help_window(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Keyboard shortcuts")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui: &mut Ui| {
            egui::Grid::new("shortcuts")
                .num_columns(2)
                .spacing([24.0, 6.0])
                .show(ui, |ui| {
                    for (_, keys, what) in SHORTCUTS {
                        ui.label(
                            RichText::new(ctx.format_shortcut(&keys))
                                .monospace()
                                .strong(),
                        );
                        ui.label(what);
                        ui.end_row();
                    }
                    ui.label(RichText::new("↑ ↓ PgUp PgDn").monospace().strong());
                    ui.label("Move through the packet table");
                    ui.end_row();
                });
        });
}
