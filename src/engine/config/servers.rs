//! `[servers]`: the accounts database, the Star Citizen answers, and one section per entry of
//! the server table ([`crate::servers::registry::REGISTRY`]). A section's `enabled` and
//! `listen` are the engine's; every other key belongs to the server's own settings type,
//! which fills in defaults and refuses unknown keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::servers::registry::{REGISTRY, Registration};
use crate::servers::sc::ScSettings;

#[derive(Clone, Debug, PartialEq)]
pub struct ServersConfig {
    /// The accounts database, relative to `data_dir`.
    pub database: PathBuf,
    /// What the Star Citizen servers answer with (`[servers.sc]`).
    pub sc: ScSettings,
    /// One per entry of the table, in its order.
    sections: Vec<ServerSection>,
}

/// One server's section, `[servers.<section>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSection {
    pub enabled: bool,
    /// Where the emulator itself listens (clients reach it through the tap in front).
    pub listen: SocketAddr,
    /// The server's own keys, every one present (checked by its settings type).
    pub settings: toml::Table,
}

impl ServerSection {
    fn defaults(r: &Registration) -> Self {
        ServerSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], r.port)),
            settings: r.server.default_settings(),
        }
    }

    /// Reads a section over the defaults; `Err` names the key.
    fn read(r: &Registration, value: toml::Value) -> Result<Self, String> {
        let toml::Value::Table(mut table) = value else {
            return Err("expected a table".into());
        };
        let mut section = ServerSection::defaults(r);
        if let Some(v) = table.remove("enabled") {
            section.enabled = v.try_into().map_err(|e| format!("enabled: {e}"))?;
        }
        if let Some(v) = table.remove("listen") {
            let text: String = v.try_into().map_err(|e| format!("listen: {e}"))?;
            section.listen = text.parse().map_err(|e| format!("listen: {text:?}: {e}"))?;
        }
        section.settings = r.server.check_settings(table)?;
        Ok(section)
    }

    /// The server's own settings as its type.
    pub fn settings_as<T: DeserializeOwned>(&self) -> Result<T, String> {
        self.settings.clone().try_into().map_err(|e| e.to_string())
    }

    pub fn set_settings<T: Serialize>(&mut self, settings: &T) -> Result<(), String> {
        self.settings = toml::Table::try_from(settings).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Default for ServersConfig {
    fn default() -> Self {
        ServersConfig {
            database: PathBuf::from("gamewire.db"),
            sc: ScSettings::default(),
            sections: REGISTRY.iter().map(ServerSection::defaults).collect(),
        }
    }
}

impl ServersConfig {
    /// Every server with its section, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Registration, &ServerSection)> {
        REGISTRY.iter().zip(&self.sections)
    }

    /// The section named `section` (`fesl`, `sc_login`...).
    pub fn get(&self, section: &str) -> Option<&ServerSection> {
        self.iter()
            .find(|(r, _)| r.section == section)
            .map(|(_, s)| s)
    }

    pub fn get_mut(&mut self, section: &str) -> Option<&mut ServerSection> {
        REGISTRY
            .iter()
            .zip(&mut self.sections)
            .find(|(r, _)| r.section == section)
            .map(|(_, s)| s)
    }

    /// Turns every emulated server off, for a configuration of taps (and tests) alone.
    pub fn disable_all(&mut self) {
        for s in &mut self.sections {
            s.enabled = false;
        }
    }

    /// Turns one server on at `listen`; false when no server has that section.
    pub fn enable_at(&mut self, section: &str, listen: SocketAddr) -> bool {
        match self.get_mut(section) {
            Some(s) => {
                s.enabled = true;
                s.listen = listen;
                true
            }
            None => false,
        }
    }
}

/// `[servers]` keys that are not a server's section.
const OWN_KEYS: [&str; 2] = ["database", "sc"];

impl<'de> Deserialize<'de> for ServersConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut config = ServersConfig::default();
        if let Some(v) = table.remove("database") {
            config.database = v
                .try_into()
                .map_err(|e| D::Error::custom(format!("servers.database: {e}")))?;
        }
        if let Some(v) = table.remove("sc") {
            config.sc = v
                .try_into()
                .map_err(|e| D::Error::custom(format!("servers.sc: {e}")))?;
        }
        for (r, section) in REGISTRY.iter().zip(&mut config.sections) {
            if let Some(v) = table.remove(r.section) {
                *section = ServerSection::read(r, v)
                    .map_err(|e| D::Error::custom(format!("servers.{}: {e}", r.section)))?;
            }
        }
        if let Some(unknown) = table.keys().next() {
            let known: Vec<&str> = OWN_KEYS
                .into_iter()
                .chain(REGISTRY.iter().map(|r| r.section))
                .collect();
            return Err(D::Error::custom(format!(
                "servers: unknown key {unknown:?} (known: {})",
                known.join(", ")
            )));
        }
        Ok(config)
    }
}

impl Serialize for ServersConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Plain values before tables, as TOML wants them.
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("database", &self.database)?;
        for (r, section) in self.iter() {
            map.serialize_entry(r.section, section)?;
        }
        map.serialize_entry("sc", &self.sc)?;
        map.end()
    }
}

impl Serialize for ServerSection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("enabled", &self.enabled)?;
        map.serialize_entry("listen", &self.listen.to_string())?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
