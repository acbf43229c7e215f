//! The demo pane: runs the scripted RA3 client through the engine's own taps and shows its
//! steps as they finish.

use eframe::egui::{RichText, Ui};

use crate::engine::DemoProgress;

pub const RUN_LABEL: &str = "Run demo client";
pub const NO_ENGINE: &str = "The demo needs the engine, which is not running in this window \
     (a capture file was opened from the command line, or the engine could not start).";

#[derive(Default)]
pub struct DemoPane {
    /// The last demo's steps, as the engine told them; empty while it starts.
    pub run: Option<DemoProgress>,
    /// Why the last demo could not start.
    pub error: Option<String>,
}

impl DemoPane {
    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.outcome.is_none())
    }

    pub fn progress(&self) -> Option<DemoProgress> {
        self.run.clone()
    }

    /// Returns whether the user asked to run the demo.
    pub fn show(&self, ui: &mut Ui, has_engine: bool) -> bool {
        let mut clicked = false;
        ui.horizontal(|ui| {
            let button = ui.add_enabled(
                has_engine && !self.is_running(),
                eframe::egui::Button::new(RUN_LABEL),
            );
            clicked = button
                .on_hover_text(
                    "Logs the test account in through the FESL and GP taps, like Red Alert 3 \
                     does; the whole session appears in the packet table (F5)",
                )
                .clicked();
            if self.is_running() {
                ui.spinner();
                ui.label("running…");
            }
        });
        if !has_engine {
            ui.label(RichText::new(NO_ENGINE).weak());
        }
        if let Some(e) = &self.error {
            ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
        }
        let Some(progress) = self.progress() else {
            if has_engine {
                ui.label(
                    RichText::new(
                        "The demo client logs in to the emulated Red Alert 3 servers through \
                         the taps, so its whole session is captured and decoded.",
                    )
                    .weak(),
                );
            }
            return clicked;
        };
        for step in &progress.steps {
            let mark = if step.ok { "ok  " } else { "FAIL" };
            ui.label(
                RichText::new(format!(
                    "{mark} {:<15} {:>7.1} ms  {}",
                    step.name,
                    step.elapsed.as_secs_f64() * 1000.0,
                    step.detail
                ))
                .monospace(),
            );
        }
        match &progress.outcome {
            Some(Ok(text)) => {
                ui.label(RichText::new(format!("Demo finished: {text}")).strong());
            }
            Some(Err(e)) => {
                ui.label(
                    RichText::new(format!("Demo failed: {e}")).color(ui.visuals().error_fg_color),
                );
            }
            None => {}
        }
        clicked
    }
}
