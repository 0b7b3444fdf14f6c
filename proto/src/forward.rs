//! Port-forwarding targets: the `HOST:PORT` of a `forward:HOST:PORT` capability and of a
//! forward channel, parsed and checked in one place.
//!
//! HOST is a DNS name (letters, digits, `-`, `.`; labels of 1 to 63 characters, at most
//! 253 in all) or an IP literal (IPv6 in brackets: `[fd00::5]:5432`); PORT is 1 to
//! 65535. What a name resolves to, and whether an address may be reached, is the agent's
//! decision when it connects (`client/src/agent/forward.rs`): this module only says what
//! the text names. It does no I/O and no resolution.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host part of a target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, as written (compared as written: `DB` and `db` are different targets).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A forwarding target, `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The longest target text accepted.
const MAX_LEN: usize = 300;

impl Target {
    /// Parses `HOST:PORT`. The message says what is wrong, for people.
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("forward target {text:?} must be HOST:PORT ({why})");
        if text.chars().any(crate::text::is_unsafe) {
            return Err(format!("forward target {text:?} holds a control or invisible formatting character"));
        }
        if text.len() > MAX_LEN {
            return Err(bad("too long"));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && !port.starts_with('+') => p,
            _ => return Err(bad("the port is 1 to 65535")),
        };
        let host = parse_host(host).ok_or_else(|| bad("the host is a name or an IP address"))?;
        Ok(Target { host, port })
    }

    /// Whether the host is exactly this IP literal.
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        self.host == Host::Ip(canonical(ip))
    }
}

fn parse_host(host: &str) -> Option<Host> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return inner.parse::<Ipv6Addr>().ok().map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(ip)));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // A name that is all digits and dots would be read as an address by some resolvers.
    let numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    let ok = !host.is_empty() && host.len() <= 253 && !numeric && host.split('.').all(label_ok);
    ok.then(|| Host::Name(host.to_owned()))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; any other as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not reached unless a grant names it literally: link-local addresses
/// (169.254.0.0/16, fe80::/10) hold cloud metadata services and a host's neighbours;
/// unspecified, broadcast and multicast addresses are no single service. `None` for an
/// ordinary address.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local (cloud metadata) address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("not a single host's address")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => Some("not a single host's address"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_names_and_literals() {
        let t = Target::parse("db-01.acme.internal:5432").unwrap();
        assert_eq!((t.host.clone(), t.port), (Host::Name("db-01.acme.internal".into()), 5432));
        assert_eq!(t.to_string(), "db-01.acme.internal:5432");
        let t = Target::parse("127.0.0.1:1").unwrap();
        assert_eq!(t.host, Host::Ip("127.0.0.1".parse().unwrap()));
        let t = Target::parse("[fd00::5]:65535").unwrap();
        assert_eq!(t.to_string(), "[fd00::5]:65535");
        assert!(t.names_ip("fd00::5".parse().unwrap()));
        assert!(Target::parse("127.0.0.1:80").unwrap().names_ip("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in [
            "db",
            "db:",
            "db:0",
            "db:65536",
            "db:+80",
            "db:http",
            ":22",
            "::1:22",
            "[::1:22",
            "[nonsense]:22",
            "a..b:22",
            "-a:22",
            "a_b:22",
            "1.2.3:22",
            "db\u{200b}:5432",
            "db\n:22",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert!(Target::parse(&format!("{}:22", "a".repeat(64))).is_err());
    }

    #[test]
    fn metadata_and_link_local_addresses_are_special() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for s in ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1"] {
            assert!(special(ip(s)).is_some(), "{s}");
        }
        for s in ["127.0.0.1", "10.0.0.5", "::1", "fd00::5", "192.168.1.1"] {
            assert!(special(ip(s)).is_none(), "{s}");
        }
    }
}
