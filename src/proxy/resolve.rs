//! Upstream name resolution that bypasses the hosts file.
//!
//! Users point a game's hostnames at 127.0.0.1 in their hosts file so the game reaches our
//! taps; a tap whose upstream is the real server must therefore ask DNS itself, or it would
//! connect back to itself.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot set up DNS: {0}")]
    Setup(String),
    #[error("DNS lookup of {host} failed: {reason}")]
    Lookup { host: String, reason: String },
    #[error("DNS lookup of {host} found no address")]
    NoAddress { host: String },
}

/// Resolves upstream host names with DNS queries only.
#[derive(Clone)]
pub struct UpstreamResolver {
    resolver: TokioResolver,
}

impl UpstreamResolver {
    /// `servers` empty: the system's DNS servers (resolv.conf), still without the hosts file.
    pub fn new(servers: &[SocketAddr]) -> Result<Self, ResolveError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| ResolveError::Setup(e.to_string()))?
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = builder
            .build()
            .map_err(|e| ResolveError::Setup(e.to_string()))?;
        Ok(UpstreamResolver { resolver })
    }

    /// An address for `host:port`; an IP literal is used as is.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, ResolveError> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let lookup = self
            .resolver
            .lookup_ip(host)
            .await
            .map_err(|e| ResolveError::Lookup {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
        // Prefer IPv4: game servers of this era rarely listen on v6.
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort_by_key(|ip| !ip.is_ipv4());
        ips.first()
            .map(|ip| SocketAddr::new(*ip, port))
            .ok_or_else(|| ResolveError::NoAddress {
                host: host.to_string(),
            })
    }
}
