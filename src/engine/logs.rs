//! Logging for a running engine: the console, plus one file per route under the data
//! directory's `logs/` (`logs/fesl.log`, `logs/proxy.log`, ...) so that each server's story can
//! be read on its own, as the seed's monitoring section asks. Events that belong to no route
//! go to `logs/gamewire.log`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs console and per-route file logging. `level` is used when `RUST_LOG` is unset.
pub fn init(level: &str, log_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let files = RouteFiles::new(log_dir.to_path_buf());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(files)
        .with(super::log_ring::LogRing::global().layer())
        .try_init();
    Ok(())
}

/// The route a span belongs to, kept in the span's extensions.
struct RouteName(String);

pub struct RouteFiles {
    dir: PathBuf,
    files: Mutex<HashMap<String, File>>,
}

impl RouteFiles {
    pub fn new(dir: PathBuf) -> Self {
        RouteFiles {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    fn write(&self, route: &str, line: &str) {
        let safe: String = route
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut files = self.files.lock();
        if !files.contains_key(&safe) {
            let path = self.dir.join(format!("{safe}.log"));
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => {
                    files.insert(safe.clone(), f);
                }
                // Logging must never take the engine down; the console still has the line.
                Err(_) => return,
            }
        }
        if let Some(f) = files.get_mut(&safe) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[derive(Default)]
struct Fields {
    route: Option<String>,
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "route" => self.route = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "route" => self.route = Some(format!("{value:?}").trim_matches('"').to_string()),
            "message" => self.message = format!("{value:?}"),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S> Layer<S> for RouteFiles
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(route), Some(span)) = (fields.route, ctx.span(id)) {
            span.extensions_mut().insert(RouteName(route));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let route = fields.route.clone().or_else(|| {
            ctx.event_scope(event)?
                .find_map(|span| span.extensions().get::<RouteName>().map(|r| r.0.clone()))
        });
        let line = format!(
            "{} {:>5} {}{}\n",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            event.metadata().level(),
            fields.message,
            fields.rest
        );
        self.write(route.as_deref().unwrap_or("gamewire"), &line);
    }
}
