//! The traffic plot: messages per second and bytes per second of each route, from the
//! packets in the store. Counted incrementally: each frame looks only at packets it has not
//! seen, at most a bounded number, so a huge capture is counted over a few frames.

use std::collections::BTreeMap;
use std::sync::Arc;

use eframe::egui::{self, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use crate::capture::{CaptureStore, PacketId, StoreData};

/// Packets counted per frame at most, to keep a frame cheap while a big file is counted.
const PER_FRAME: usize = 200_000;
/// Seconds of history kept per route.
const KEPT_SECONDS: i64 = 3_600;
/// Seconds shown.
pub const SHOWN_SECONDS: i64 = 120;

pub const EMPTY_TEXT: &str = "No traffic yet. Packets per second and bytes per second of \
     each route are drawn here as traffic arrives.";

#[derive(Default)]
pub struct Traffic {
    /// The store counted, to start again when another is shown.
    store: Option<usize>,
    counted: usize,
    /// Per route: second → (messages, bytes).
    routes: BTreeMap<String, BTreeMap<i64, (u64, u64)>>,
    latest: Option<i64>,
}

impl Traffic {
    /// Counts packets not yet counted.
    pub fn update(&mut self, store: &Arc<CaptureStore>, data: &StoreData) {
        let key = Arc::as_ptr(store) as usize;
        if self.store != Some(key) || data.packet_count() < self.counted {
            *self = Traffic {
                store: Some(key),
                ..Traffic::default()
            };
        }
        let end = data.packet_count().min(self.counted + PER_FRAME);
        for index in self.counted..end {
            let Some(p) = data.packet(PacketId(index as u64)) else {
                continue;
            };
            let route = data
                .connection(p.connection)
                .and_then(|c| c.route.clone().or_else(|| c.protocol.clone()))
                .unwrap_or_else(|| "other".into());
            let second = p.timestamp.0.div_euclid(1_000_000_000);
            let bin = self
                .routes
                .entry(route)
                .or_default()
                .entry(second)
                .or_default();
            bin.0 += 1;
            bin.1 += p.data.len() as u64;
            self.latest = Some(self.latest.map_or(second, |l| l.max(second)));
        }
        self.counted = end;
        if let Some(latest) = self.latest {
            for bins in self.routes.values_mut() {
                // Drops seconds older than the kept history, without walking the map.
                *bins = bins.split_off(&(latest - KEPT_SECONDS));
            }
        }
    }

    /// Messages in the shown window, per route (for tests and the legend).
    pub fn totals(&self) -> Vec<(String, u64, u64)> {
        let Some(latest) = self.latest else {
            return Vec::new();
        };
        self.routes
            .iter()
            .map(|(r, bins)| {
                let (m, b) = bins
                    .range(latest - SHOWN_SECONDS..=latest)
                    .fold((0, 0), |(m, b), (_, (pm, pb))| (m + pm, b + pb));
                (r.clone(), m, b)
            })
            .collect()
    }

    fn series(&self, pick: impl Fn(&(u64, u64)) -> u64) -> Vec<(String, Vec<[f64; 2]>)> {
        let Some(latest) = self.latest else {
            return Vec::new();
        };
        self.routes
            .iter()
            .map(|(route, bins)| {
                // Every second of the window, zeros included, so lines drop to the axis
                // when a route goes quiet.
                let points = (latest - SHOWN_SECONDS..=latest)
                    .map(|s| {
                        let v = bins.get(&s).map_or(0, &pick);
                        [(s - latest) as f64, v as f64]
                    })
                    .collect();
                (route.clone(), points)
            })
            .collect()
    }

    pub fn show(&self, ui: &mut Ui) {
        if self.latest.is_none() {
            ui.label(RichText::new(EMPTY_TEXT).weak());
            return;
        }
        let height = (ui.available_height() - 8.0).max(140.0);
        let width = (ui.available_width() / 2.0 - 8.0).max(120.0);
        ui.horizontal(|ui| {
            for (id, title, pick) in [("msgs_plot", "messages/s", 0), ("bytes_plot", "bytes/s", 1)]
            {
                let series = self.series(|b| if pick == 0 { b.0 } else { b.1 });
                ui.vertical(|ui| {
                    ui.set_width(width);
                    Plot::new(id)
                        .height(height - 20.0)
                        .width(width)
                        .legend(Legend::default())
                        .x_axis_label("seconds before the latest packet")
                        .y_axis_label(title)
                        .include_y(0.0)
                        .allow_scroll(false)
                        .show(ui, |plot| {
                            for (route, points) in series {
                                plot.line(Line::new(route, PlotPoints::from(points)));
                            }
                        });
                });
            }
        });
    }
}

/// The plot's heading line: routes and their totals over the shown window.
pub fn summary(ui: &mut Ui, traffic: &Traffic) {
    let text: Vec<String> = traffic
        .totals()
        .into_iter()
        .map(|(r, m, b)| format!("{r}: {m} msgs, {}", super::text::human_bytes(b)))
        .collect();
    if !text.is_empty() {
        ui.label(RichText::new(format!("Last {SHOWN_SECONDS} s · {}", text.join(" · "))).weak());
        ui.add(egui::Separator::default().spacing(2.0));
    }
}
