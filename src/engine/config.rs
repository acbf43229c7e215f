//! The one configuration file. Every key has a default, so an empty file (or none) runs the
//! proxy, every emulated server and the taps in front of them on their default ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proxy::intercept::Rule;

mod servers;
pub use servers::{ServerSection, ServersConfig};

pub const DEFAULT_CONFIG_FILE: &str = "gamewire.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, logs and captures live.
    pub data_dir: PathBuf,
    /// Where the certificate authority lives (`ca.pem`, `ca.der`, `ca.key`).
    pub certs_dir: PathBuf,
    /// Log filter (`info`, `debug`, `gamewire=trace`...); `RUST_LOG` wins when set.
    pub log_level: String,
    pub dns: DnsConfig,
    pub proxy: ProxyConfig,
    pub breakpoints: BreakpointConfig,
    pub decode: DecodeConfig,
    pub servers: ServersConfig,
    /// Taps; when the file lists none, the default taps in front of the emulated servers.
    #[serde(rename = "tap")]
    pub taps: Vec<TapConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            certs_dir: PathBuf::from("certs"),
            log_level: "info".into(),
            dns: DnsConfig::default(),
            proxy: ProxyConfig::default(),
            breakpoints: BreakpointConfig::default(),
            decode: DecodeConfig::default(),
            servers: ServersConfig::default(),
            taps: default_taps(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// DNS servers for upstream names (`1.1.1.1:53`); empty: the system's, never the hosts
    /// file (which points game hostnames at gamewire itself).
    pub servers: Vec<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Extra CA certificates (PEM) trusted for upstream servers, besides the system's.
    pub upstream_ca: Option<PathBuf>,
    /// Accept any upstream certificate (recorded on each connection).
    pub insecure_upstream: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream_ca: None,
            insecure_upstream: false,
        }
    }
}

/// What every decoder (the live log, the window, `inspect`) decodes with, besides the
/// built-in schemas and gamewire's own JWT issuer key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// More directories of `.proto` schemas (`./proto` is always loaded when present).
    pub proto_dirs: Vec<PathBuf>,
    /// The Hytale proxy's referral HMAC secret, so referrals show as verified; empty: none.
    pub hytale_referral_secret: String,
    /// JWKS files (`{"keys": [...]}`) whose keys verify the JWTs found in traffic.
    pub jwks_files: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakpointConfig {
    /// A held message nobody decides on is forwarded unchanged after this long.
    pub hold_timeout_secs: u64,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

impl Default for BreakpointConfig {
    fn default() -> Self {
        BreakpointConfig {
            hold_timeout_secs: 60,
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TapTransport {
    #[default]
    Tcp,
    Udp,
    Quic,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TapConfig {
    pub name: String,
    pub enabled: bool,
    pub listen: SocketAddr,
    pub transport: TapTransport,
    /// Terminate the client's TLS (QUIC always does) with a leaf of our CA chosen by SNI.
    pub tls: bool,
    /// Certificate name when the client sends no SNI; the listen IP when unset.
    pub tls_name: Option<String>,
    /// ALPN protocols offered to clients (`h2`, `hytale/2`...).
    pub alpn: Vec<String>,
    /// `host:port` of the emulated or real server.
    pub upstream: String,
    /// A fixed address for the upstream host, which skips DNS.
    pub upstream_address: Option<SocketAddr>,
    pub upstream_tls: bool,
    /// Extra CA certificates (PEM) for the upstream's certificate; gamewire's own CA is
    /// always trusted, so emulators serving our leaves work.
    pub upstream_ca: Option<PathBuf>,
    /// Accept any upstream certificate (recorded on each connection).
    pub upstream_insecure: bool,
    /// Dissector name (`fesl`, `gp`, `hytale`...); chosen from content when unset.
    pub dissector: Option<String>,
    pub connect_timeout_secs: u64,
    pub idle_timeout_secs: u64,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            name: String::new(),
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            transport: TapTransport::Tcp,
            tls: false,
            tls_name: None,
            alpn: Vec::new(),
            upstream: String::new(),
            upstream_address: None,
            upstream_tls: false,
            upstream_ca: None,
            upstream_insecure: false,
            dissector: None,
            connect_timeout_secs: 10,
            idle_timeout_secs: 600,
        }
    }
}

/// Taps in front of the emulated servers, on the ports the games use: each server's
/// [`DefaultTap`](crate::servers::registry::DefaultTap), relaying to its default port.
pub fn default_taps() -> Vec<TapConfig> {
    crate::servers::REGISTRY
        .iter()
        .filter_map(|r| {
            let t = r.tap?;
            Some(TapConfig {
                name: t.name.into(),
                listen: SocketAddr::from(([127, 0, 0, 1], t.port)),
                upstream: format!("127.0.0.1:{}", r.port),
                dissector: Some(r.dissector.into()),
                tls: t.tls,
                alpn: t.alpn.iter().map(|a| a.to_string()).collect(),
                ..TapConfig::default()
            })
        })
        .collect()
}

impl Config {
    /// Reads `path`; a missing file at the default location is created with the defaults so
    /// that users have something to edit.
    pub fn load_or_create(path: &Path) -> Result<(Config, bool), ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Config::parse(&text, path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = Config::default();
                config.write(path)?;
                Ok((config, true))
            }
            Err(e) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// The configuration in `path`, or the defaults when there is no such file (which is
    /// not made): for the tools that read captures and run no engine.
    pub fn load_if_present(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut names = std::collections::HashSet::new();
        for t in &self.taps {
            if t.name.is_empty() {
                return Err(invalid(format!("a tap on {} has no name", t.listen)));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("two taps are named {:?}", t.name)));
            }
            split_host_port(&t.upstream).map_err(|e| {
                invalid(format!("tap {:?}: upstream {:?}: {e}", t.name, t.upstream))
            })?;
            if t.dissector.as_deref().is_some_and(|d| {
                crate::dissect::registry::Registry::standard()
                    .get(d)
                    .is_none()
            }) {
                return Err(invalid(format!(
                    "tap {:?}: unknown dissector {:?} (known: {})",
                    t.name,
                    t.dissector.as_deref().unwrap_or(""),
                    crate::dissect::registry::Registry::standard()
                        .names()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let body = toml::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        let text = format!(
            "# gamewire configuration. Every key has a default; delete a key to get it back.\n\
             # See the README for what each part does.\n\n{body}"
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        std::fs::write(path, text).map_err(|e| err(e.to_string()))
    }
}

/// `host:port`, `[v6]:port`.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.proxy.listen.port(), 8080);
        assert_eq!(c.taps.len(), 6);
        let game = c.taps.iter().find(|t| t.name == "sc-game").unwrap();
        assert_eq!((game.listen.port(), game.tls), (5678, true));
        assert_eq!(c.servers.sc.services.len(), 3);
    }

    #[test]
    fn the_written_defaults_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gamewire.toml");
        let (c, created) = Config::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = Config::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(c, again);
    }

    #[test]
    fn taps_and_rules_parse() {
        let text = r#"
            [[tap]]
            name = "web"
            listen = "127.0.0.1:9443"
            tls = true
            alpn = ["h2", "http/1.1"]
            upstream = "example.com:443"
            upstream_tls = true

            [breakpoints]
            hold_timeout_secs = 5
            [[breakpoints.rule]]
            route = "fesl"
            direction = "client->server"
            field = "TXN"
            equals = "NuLogin"
        "#;
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.taps.len(), 1);
        assert_eq!(c.taps[0].alpn, ["h2", "http/1.1"]);
        assert_eq!(c.taps[0].idle_timeout_secs, 600);
        assert_eq!(c.breakpoints.rules[0].field.as_deref(), Some("TXN"));
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let e = Config::parse("[proxy]\nlisten = \"nonsense\"\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("g.toml:") && e.contains("listen"), "{e}");
        let e = Config::parse("[proxi]\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxi"), "{e}");
        let e = Config::parse(
            "[[tap]]\nname = \"a\"\nupstream = \"nohost\"\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("host:port"), "{e}");
        let e = Config::parse(
            "[[tap]]\nname = \"a\"\nupstream = \"h:1\"\ndissector = \"nope\"\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown dissector"), "{e}");
    }

    #[test]
    fn the_written_defaults_hold_every_server_section_with_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gamewire.toml");
        Config::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let file: toml::Table = toml::from_str(&text).unwrap();
        let servers = file["servers"].as_table().unwrap();
        for r in crate::servers::REGISTRY {
            let section = servers[r.section].as_table().unwrap();
            assert_eq!(section["enabled"].as_bool(), Some(true), "{}", r.section);
            let listen = format!("127.0.0.1:{}", r.port);
            assert_eq!(section["listen"].as_str(), Some(listen.as_str()));
            for key in r.server.default_settings().keys() {
                assert!(section.contains_key(key), "[servers.{}] {key}", r.section);
            }
        }
        for key in [
            "ping_interval_secs",
            "ticket_ttl_secs",
            "read_timeout_secs",
            "idle_timeout_secs",
            "max_message",
            "max_bad_messages",
        ] {
            assert!(
                servers["fesl"].as_table().unwrap().contains_key(key),
                "fesl {key}"
            );
        }
        for key in ["keep_alive_secs", "read_timeout_secs", "idle_timeout_secs"] {
            assert!(
                servers["gp"].as_table().unwrap().contains_key(key),
                "gp {key}"
            );
        }
    }

    #[test]
    fn server_sections_of_older_files_load_and_their_keys_take_effect() {
        use crate::servers::fesl::FeslConfig;
        let text = "[servers.fesl]\nenabled = false\n\
                    [servers.gp]\nlisten = \"127.0.0.1:4000\"\nidle_timeout_secs = 0.5\n\
                    [servers.sc_login]\nenabled = true\n";
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        let fesl = c.servers.get("fesl").unwrap();
        assert!(!fesl.enabled);
        assert_eq!(fesl.listen.port(), 28800);
        assert_eq!(
            fesl.settings_as::<FeslConfig>().unwrap(),
            FeslConfig::default()
        );
        let gp = c.servers.get("gp").unwrap();
        assert_eq!(gp.listen.port(), 4000);
        let gp: crate::servers::gp::GpConfig = gp.settings_as().unwrap();
        assert_eq!(
            gp.connection.idle_timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            gp.connection.read_timeout,
            std::time::Duration::from_secs(30)
        );
        let text = "[servers.fesl]\nread_timeout_secs = 2\nmax_bad_messages = 1\n";
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        let fesl: FeslConfig = c.servers.get("fesl").unwrap().settings_as().unwrap();
        assert_eq!(
            fesl.connection.read_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(fesl.connection.max_bad_messages, 1);
        assert_eq!(
            fesl.connection.idle_timeout,
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn unknown_server_sections_and_keys_are_refused_by_name() {
        let parse = |t: &str| {
            Config::parse(t, Path::new("g.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = parse("[servers.fesll]\nenabled = true\n");
        assert!(e.contains("fesll") && e.contains("sc_catchall"), "{e}");
        let e = parse("[servers.fesl]\nread_timeout = 3\n");
        assert!(
            e.contains("servers.fesl") && e.contains("read_timeout"),
            "{e}"
        );
        let e = parse("[servers.gp]\nlisten = \"nowhere\"\n");
        assert!(e.contains("servers.gp") && e.contains("listen"), "{e}");
        let e = parse("[servers.gp]\nidle_timeout_secs = -1\n");
        assert!(e.contains("negative"), "{e}");
    }
}
