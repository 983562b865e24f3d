//! `[proxy]`: listener, ingress, safety and limit settings.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::raw::RawProxy;
use super::{ConfigError, HostPattern, duration, invalid};
use crate::secret::Secret;

/// What `CONNECT` to a host that is not an API host gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOther {
    /// A blind TCP tunnel.
    Tunnel,
    /// A 403 refusal.
    Refuse,
}

/// An IP network like `10.0.0.0/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR[/PREFIX]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| format!("bad prefix in {s:?}"))?
        };
        if prefix > max {
            return Err(format!("prefix /{prefix} is too long in {s:?}"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// True if `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `[proxy]`
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The API host that origin-form (gateway) requests are sent to, if any.
    pub gateway_upstream: Option<String>,
    /// Request bodies up to this size are buffered and can be retried; larger ones go once.
    pub max_replay_body: usize,
    /// `CONNECT` to hosts that are not API hosts.
    pub connect_other: ConnectOther,
    /// Caller timestamps outside this window are refused, and caller nonces inside it are
    /// remembered.
    pub replay_window: Duration,
    /// Bound on remembered caller nonces.
    pub replay_max_nonces: usize,
    /// Client networks allowed to connect (empty: any).
    pub allow_clients: Vec<Cidr>,
    /// The token clients must send in `Proxy-Authorization` (Bearer, or Basic with it as the
    /// password), if any.
    pub auth_token: Option<Secret>,
    /// Non-API hosts that may be forwarded to or tunnelled to (empty: any).
    pub allow_targets: Vec<HostPattern>,
    /// Open client connections at most.
    pub max_connections: usize,
    /// Time allowed for a client to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most headers in an HTTP/1 request.
    pub max_headers: usize,
    /// On SIGTERM, in-flight calls get this long to finish.
    pub shutdown_grace: Duration,
}

fn ip_is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Validates `[proxy]`.
pub(super) fn settings(
    p: RawProxy,
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<ProxySettings, ConfigError> {
    let listen: SocketAddr = p.listen.parse().map_err(|_| {
        invalid(
            "proxy.listen",
            format!("{:?} is not an address like 127.0.0.1:8080", p.listen),
        )
    })?;
    let max_replay_body = usize::try_from(p.max_replay_body)
        .map_err(|_| invalid("proxy.max_replay_body", "too large"))?;
    let connect_other = match p.connect_other.as_str() {
        "tunnel" => ConnectOther::Tunnel,
        "refuse" => ConnectOther::Refuse,
        other => {
            return Err(invalid(
                "proxy.connect_other",
                format!("{other:?} is not \"tunnel\" or \"refuse\""),
            ));
        }
    };
    let allow_clients = p
        .allow_clients
        .iter()
        .map(|c| Cidr::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("proxy.allow_clients", e))?;
    let auth_token = match (&p.auth_token_env, &p.auth_token_file) {
        (None, None) => None,
        (Some(var), None) => Some(
            env.get(var)
                .filter(|v| !v.is_empty())
                .map(|v| Secret::new(v.clone()))
                .ok_or_else(|| {
                    invalid(
                        "proxy.auth_token_env",
                        format!("environment variable {var} is not set"),
                    )
                })?,
        ),
        (None, Some(file)) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid("proxy.auth_token_file", format!("{}: {e}", path.display()))
            })?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(invalid(
                    "proxy.auth_token_file",
                    format!("{} is empty", path.display()),
                ));
            }
            Some(Secret::new(token))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "proxy.auth_token_env",
                "set auth_token_env or auth_token_file, not both",
            ));
        }
    };
    if !ip_is_loopback(&listen) && auth_token.is_none() && allow_clients.is_empty() {
        return Err(invalid(
            "proxy.listen",
            format!(
                "{listen} is not a loopback address: refusing to run an open proxy; set \
                 proxy.auth_token_env (or auth_token_file) or proxy.allow_clients"
            ),
        ));
    }
    let allow_targets = p
        .allow_targets
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("proxy.allow_targets", e))?;
    if p.max_connections == 0 {
        return Err(invalid("proxy.max_connections", "must be at least 1"));
    }
    if p.max_header_bytes < 8192 {
        return Err(invalid("proxy.max_header_bytes", "must be at least 8192"));
    }
    if p.max_headers == 0 {
        return Err(invalid("proxy.max_headers", "must be at least 1"));
    }
    Ok(ProxySettings {
        listen,
        gateway_upstream: p.gateway_upstream,
        max_replay_body,
        connect_other,
        replay_window: duration("proxy.replay_window", &p.replay_window)?,
        replay_max_nonces: p.replay_max_nonces.max(1),
        allow_clients,
        auth_token,
        allow_targets,
        max_connections: p.max_connections,
        header_read_timeout: duration("proxy.header_read_timeout", &p.header_read_timeout)?,
        max_header_bytes: p.max_header_bytes,
        max_headers: p.max_headers,
        shutdown_grace: duration("proxy.shutdown_grace", &p.shutdown_grace)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
