//! The one table of emulated servers. The engine builds its server routes from it, the
//! configuration file has one `[servers.<section>]` per entry (written with every default at
//! first start), the default taps in front of the servers come from it, and the window lists
//! its descriptions. Adding a server is a module with an [`EmulatedServer`] and one entry in
//! [`REGISTRY`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::sc::{self, ScCtx, ScSettings, catchall, diffusion, game, login};
use super::{fesl, gp};
use crate::security::Store;
use crate::security::expiring::Expiring;
use crate::security::jwt::Signer;

/// Every emulated server, one line each, in the order the engine lists them.
#[rustfmt::skip]
pub static REGISTRY: &[Registration] = &[
    Registration { route: "fesl-server", section: "fesl", port: 28800, dissector: "fesl", description: "Red Alert 3 FESL: Hello, NuLogin, personas, GameSpy pre-auth", tap: Some(DefaultTap::tcp("fesl", 18800)), server: &fesl::FeslServer },
    Registration { route: "gp-server", section: "gp", port: 39900, dissector: "gp", description: "GameSpy GP presence login with FESL's pre-auth ticket", tap: Some(DefaultTap::tcp("gp", 29900)), server: &gp::GpServer },
    Registration { route: "sc-diffusion-server", section: "sc_diffusion", port: sc::DIFFUSION_PORT, dissector: "sc", description: "Star Citizen diffusion: discovery, lobby, region, heartbeats", tap: Some(DefaultTap::tls("sc-diffusion-tls", sc::DIFFUSION_TLS_PORT, &[])), server: &diffusion::DiffusionServer },
    Registration { route: "sc-login-server", section: "sc_login", port: 19000, dissector: "http", description: "Star Citizen login: HTTP, ES256 JWTs, loginData.json", tap: Some(DefaultTap::tcp("sc-login", sc::LOGIN_PORT)), server: &login::LoginServer },
    Registration { route: "sc-game-server", section: "sc_game", port: 15678, dissector: "grpc", description: "Star Citizen gRPC game server: login, push, characters", tap: Some(DefaultTap::tls("sc-game", sc::GAME_PORT, &["h2"])), server: &game::GameServer },
    Registration { route: "sc-catchall-server", section: "sc_catchall", port: 18443, dissector: "grpc", description: "Catch-all gRPC: configured answers, else UNIMPLEMENTED", tap: Some(DefaultTap::tls("sc-catchall", sc::CATCHALL_PORT, &["h2"])), server: &catchall::CatchallServer },
];

/// One emulated server as the engine, the configuration and the window know it.
pub struct Registration {
    /// The route's name (engine, window, logs, `RouteStatus::name`).
    pub route: &'static str,
    /// Its configuration section, `[servers.<section>]`.
    pub section: &'static str,
    /// Where it listens on 127.0.0.1 unless the section's `listen` says otherwise; clients
    /// reach it through its tap.
    pub port: u16,
    /// The dissector of its traffic (a name in the dissector registry).
    pub dissector: &'static str,
    /// One line for the window's Servers pane.
    pub description: &'static str,
    /// The tap put in front of it when the configuration lists no taps.
    pub tap: Option<DefaultTap>,
    /// Its settings and how to run it.
    pub server: &'static dyn Server,
}

/// A default tap: where game clients connect, relaying to the server's port.
#[derive(Clone, Copy, Debug)]
pub struct DefaultTap {
    pub name: &'static str,
    pub port: u16,
    /// Terminates the client's TLS with a leaf of gamewire's CA.
    pub tls: bool,
    /// ALPN offered to clients (with `tls`).
    pub alpn: &'static [&'static str],
}

impl DefaultTap {
    pub const fn tcp(name: &'static str, port: u16) -> Self {
        DefaultTap {
            name,
            port,
            tls: false,
            alpn: &[],
        }
    }

    pub const fn tls(name: &'static str, port: u16, alpn: &'static [&'static str]) -> Self {
        DefaultTap {
            name,
            port,
            tls: true,
            alpn,
        }
    }
}

/// The entry named `section` (`fesl`, `sc_login`...).
pub fn find(section: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.section == section)
}

/// A running server: resolves when it has stopped and let go of its clients.
pub type Serve = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Loads the Star Citizen issuer key on first use (making it writes a key file, which a
/// setup without the SC login or game server should not get).
pub type SignerSource = Arc<dyn Fn() -> Result<Arc<Signer>, String> + Send + Sync>;

/// What the engine hands a server when it starts it.
#[derive(Clone)]
pub struct ServerContext {
    /// The accounts database.
    pub store: Store,
    /// Cancelled when the route stops or the engine shuts down.
    pub shutdown: CancellationToken,
    /// Where relative paths of settings resolve.
    pub data_dir: PathBuf,
    /// `[servers.sc]`: what the Star Citizen servers answer with.
    pub sc: Arc<ScSettings>,
    pub sc_signer: SignerSource,
    /// JWT ids logged out at the SC login server, refused by the SC game server too.
    pub sc_logged_out: Arc<parking_lot::Mutex<Expiring<()>>>,
    /// Schemas for answers written as JSON (the catch-all server).
    pub schemas: Option<prost_reflect::DescriptorPool>,
}

impl ServerContext {
    /// A context of defaults around `store`: the SC defaults, no issuer key (the servers
    /// that need one refuse to start), the current directory for data.
    pub fn new(store: Store, shutdown: CancellationToken) -> Self {
        ServerContext {
            store,
            shutdown,
            data_dir: PathBuf::from("."),
            sc: Arc::new(ScSettings::default()),
            sc_signer: Arc::new(|| Err("no Star Citizen issuer key was given".to_string())),
            sc_logged_out: Arc::default(),
            schemas: None,
        }
    }

    /// What the SC login and game servers share; loads the issuer key.
    pub fn sc_ctx(&self) -> Result<ScCtx, String> {
        Ok(ScCtx {
            store: self.store.clone(),
            login_data_path: self.data_dir.join(&self.sc.login_data),
            settings: self.sc.clone(),
            signer: (self.sc_signer)()?,
            schemas: self.schemas.clone(),
            logged_out: self.sc_logged_out.clone(),
        })
    }
}

/// An emulated server with its settings as a type.
pub trait EmulatedServer: Sync {
    /// The section's own keys besides `enabled` and `listen`: every one defaulted
    /// (`#[serde(default)]`), documented on its fields; keys it does not write back are
    /// refused as unknown.
    type Settings: Serialize + DeserializeOwned + Default;

    /// Whether it signs or checks Star Citizen tokens: the engine then makes the issuer key
    /// at start, so the decoders can check the tokens too.
    const USES_SC_SIGNER: bool = false;

    /// Prepares the server on its bound listener; an `Err` (a missing key) fails the route
    /// with that reason. The returned future serves until `start.ctx.shutdown`.
    fn start(&self, start: Start<Self::Settings>) -> Result<Serve, String>;
}

/// What a server starts with: its section's settings, the context, its bound listener.
pub struct Start<S> {
    pub settings: S,
    pub ctx: ServerContext,
    pub listener: TcpListener,
}

/// [`EmulatedServer`] with its settings as TOML tables, as the table holds it.
pub trait Server: Sync {
    /// The settings' defaults, every key present.
    fn default_settings(&self) -> toml::Table;
    /// Checks a section's own keys (unknown keys refused) and fills in the missing ones.
    fn check_settings(&self, table: toml::Table) -> Result<toml::Table, String>;
    fn launch(
        &self,
        settings: &toml::Table,
        ctx: ServerContext,
        listener: TcpListener,
    ) -> Result<Serve, String>;
    fn uses_sc_signer(&self) -> bool;
}

impl<T: EmulatedServer> Server for T {
    fn default_settings(&self) -> toml::Table {
        // A settings type that does not serialize to a table is a bug the registry test
        // catches; an empty section is the harmless answer meanwhile.
        toml::Table::try_from(T::Settings::default()).unwrap_or_default()
    }

    fn check_settings(&self, table: toml::Table) -> Result<toml::Table, String> {
        let settings: T::Settings = table.clone().try_into().map_err(|e| e.to_string())?;
        let filled = toml::Table::try_from(settings).map_err(|e| e.to_string())?;
        // Here rather than `deny_unknown_fields`, which serde cannot combine with the
        // flattened keys that servers share (`ConnectionConfig`).
        if let Some(unknown) = table.keys().find(|k| !filled.contains_key(*k)) {
            let known: Vec<&str> = filled.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown key {unknown:?} (known: enabled, listen, {})",
                known.join(", ")
            ));
        }
        Ok(filled)
    }

    fn launch(
        &self,
        settings: &toml::Table,
        ctx: ServerContext,
        listener: TcpListener,
    ) -> Result<Serve, String> {
        let settings = settings.clone().try_into().map_err(|e| e.to_string())?;
        self.start(Start {
            settings,
            ctx,
            listener,
        })
    }

    fn uses_sc_signer(&self) -> bool {
        T::USES_SC_SIGNER
    }
}

/// Settings of a server that has no keys of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct NoSettings {}

/// A [`std::time::Duration`] written as seconds (`30`, or `0.25` for less than a second),
/// for keys named `*_secs`.
pub mod secs {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Secs;
        impl Visitor<'_> for Secs {
            type Value = Duration;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of seconds (0 or more)")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("{v} seconds is negative")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(|e| E::custom(format!("{v} seconds: {e}")))
            }
        }
        d.deserialize_any(Secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_routes_taps_and_ports_are_unique_and_dissectors_exist() {
        let dissectors = crate::dissect::registry::Registry::standard();
        let mut seen = std::collections::HashSet::new();
        for r in REGISTRY {
            assert!(seen.insert(r.section), "section {} twice", r.section);
            assert!(seen.insert(r.route), "route {} twice", r.route);
            // `[servers]` keys of its own.
            assert!(!["database", "sc"].contains(&r.section), "{}", r.section);
            assert!(dissectors.get(r.dissector).is_some(), "{}", r.dissector);
            assert!(!r.description.is_empty());
        }
        let mut ports: Vec<u16> = REGISTRY.iter().map(|r| r.port).collect();
        ports.extend(REGISTRY.iter().filter_map(|r| r.tap.map(|t| t.port)));
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n, "a port is used twice");
    }

    #[test]
    fn every_settings_type_round_trips_its_defaults_and_refuses_unknown_keys() {
        for r in REGISTRY {
            let defaults = r.server.default_settings();
            assert_eq!(
                r.server.check_settings(defaults.clone()),
                Ok(defaults.clone()),
                "{}",
                r.section
            );
            assert_eq!(
                r.server.check_settings(toml::Table::new()),
                Ok(defaults),
                "{}",
                r.section
            );
            let mut bad = toml::Table::new();
            bad.insert("no_such_key".into(), toml::Value::Boolean(true));
            let e = r.server.check_settings(bad).unwrap_err();
            assert!(e.contains("no_such_key"), "{}: {e}", r.section);
        }
    }

    #[test]
    fn seconds_read_whole_and_fractional_and_refuse_negative() {
        #[derive(serde::Deserialize, Serialize)]
        struct T {
            #[serde(with = "secs")]
            t: std::time::Duration,
        }
        let read = |s: &str| toml::from_str::<T>(s).map(|t| t.t);
        assert_eq!(read("t = 30").unwrap().as_secs(), 30);
        assert_eq!(read("t = 0.25").unwrap().as_millis(), 250);
        assert!(read("t = -1").is_err());
        assert!(read("t = \"x\"").is_err());
        let text = toml::to_string(&T {
            t: std::time::Duration::from_millis(1500),
        })
        .unwrap();
        assert_eq!(text.trim(), "t = 1.5");
    }
}
