//! The operator's allow-list: `host:port` entries reachable despite the refused ranges (a mirror, a
//! git server on a private network).
//!
//! Syntax, comma-separated (spaces around entries are ignored, empty entries skipped):
//!
//! | entry | opens |
//! |---|---|
//! | `git.internal` | that host on the well-known ports of kiln's schemes only: 22, 80, 443, 9418 |
//! | `git.internal:8080` | that host on port 8080 only |
//! | `git.internal:*` | that host on every port (explicitly) |
//! | `10.0.0.5:443`, `[fd00::5]:443`, `[fd00::5]` | an IP literal, the same port rules |
//!
//! Hosts compare case-insensitively, after the same normalisation the `url` crate applies to URLs
//! (IDNA, lower case; IPv4 in any spelling `url` accepts, such as `0x7f.1`, is the address itself;
//! one trailing dot is ignored).
//!
//! An entry matches the URL's host as written: an IP entry opens that IP literal, not the names that
//! resolve to it, so `127.0.0.1:*` allows `git://127.0.0.1:9418/x` but not `git://localhost/x`; a
//! name entry opens that name whatever it resolves to (that is what an operator lists a name for).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::Error;

/// The ports a bare `host` entry opens: ssh, http, https and git.
pub const WELL_KNOWN_PORTS: [u16; 4] = [22, 80, 443, 9418];

/// A host as kiln compares it: a normalised name, or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostKey {
    /// Lower case, IDNA-normalised, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl HostKey {
    /// Normalise a host as written in a URL or an entry: a name, an IPv4 address in any spelling the
    /// `url` crate accepts, or an IPv6 address with or without brackets.
    pub fn parse(host: &str) -> Option<HostKey> {
        let host = host.trim();
        if host.is_empty() {
            return None;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(HostKey::Ip(ip));
        }
        match url::Host::parse(host).ok()? {
            url::Host::Ipv4(ip) => Some(HostKey::Ip(IpAddr::V4(ip))),
            url::Host::Ipv6(ip) => Some(HostKey::Ip(IpAddr::V6(ip))),
            url::Host::Domain(name) => {
                let name = name.strip_suffix('.').unwrap_or(&name);
                if name.is_empty() || name.contains(['/', '@', '?', '#', ':', '*']) {
                    return None;
                }
                Some(HostKey::Name(name.to_ascii_lowercase()))
            }
        }
    }

    /// The host of a parsed URL, normalised the same way (a `git://` URL's host is opaque to `url`:
    /// this reads `git://0x7f.1/` as 127.0.0.1 too).
    pub fn of_url(url: &url::Url) -> Option<HostKey> {
        match url.host()? {
            url::Host::Ipv4(ip) => Some(HostKey::Ip(IpAddr::V4(ip))),
            url::Host::Ipv6(ip) => Some(HostKey::Ip(IpAddr::V6(ip))),
            url::Host::Domain(name) => HostKey::parse(name),
        }
    }

    /// The host as one connects to it (an IPv6 address without brackets).
    pub fn connect_name(&self) -> String {
        match self {
            HostKey::Name(name) => name.clone(),
            HostKey::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKey::Name(name) => f.write_str(name),
            HostKey::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HostKey::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Which ports an entry opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ports {
    /// A bare `host`: [`WELL_KNOWN_PORTS`].
    WellKnown,
    /// `host:port`.
    One(u16),
    /// `host:*`.
    Any,
}

impl Ports {
    pub fn contains(self, port: u16) -> bool {
        match self {
            Ports::WellKnown => WELL_KNOWN_PORTS.contains(&port),
            Ports::One(p) => p == port,
            Ports::Any => true,
        }
    }
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub host: HostKey,
    pub ports: Ports,
}

impl FromStr for Entry {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Entry, Error> {
        let entry = raw.trim();
        let bad = |reason: &str| Error::AllowList {
            entry: raw.to_string(),
            reason: reason.to_string(),
        };
        if entry.is_empty() {
            return Err(bad("the entry is empty"));
        }
        if entry.contains("://") {
            return Err(bad("give host:port, not a URL"));
        }
        if entry.contains(['/', '@', '?', '#']) {
            return Err(bad("give host:port only, without a path or user"));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address opened with [ must close with ]"))?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the text in brackets is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("after ] comes :port, :* or nothing"))?,
                ),
            };
            (inside, port)
        } else {
            match entry.matches(':').count() {
                0 => (entry, None),
                1 => {
                    let (host, port) = entry.split_once(':').expect("one colon");
                    (host, Some(port))
                }
                _ => {
                    return Err(bad(
                        "write an IPv6 address in brackets, such as [fd00::5]:443",
                    ));
                }
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        if host.contains('*') {
            return Err(bad("host wildcards are not supported; list each host"));
        }
        let host = HostKey::parse(host).ok_or_else(|| bad("the host is not a valid host name"))?;
        let ports = match port.map(str::trim) {
            None => Ports::WellKnown,
            Some("*") => Ports::Any,
            Some("") => return Err(bad("the port after : is missing")),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(bad("the port must be a number from 1 to 65535, or *"));
                }
                Ok(n) => Ports::One(n),
            },
        };
        Ok(Entry { host, ports })
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ports {
            Ports::WellKnown => write!(f, "{}", self.host),
            Ports::One(p) => write!(f, "{}:{p}", self.host),
            Ports::Any => write!(f, "{}:*", self.host),
        }
    }
}

/// The operator's allow-list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parse a comma-separated list (the form of `KILN_ALLOWED_HOSTS`).
    pub fn parse(list: &str) -> Result<AllowList, Error> {
        AllowList::from_entries(list.split(',').filter(|e| !e.trim().is_empty()))
    }

    /// Parse entries one by one (for a list given as repeated command-line options).
    pub fn from_entries<I, S>(entries: I) -> Result<AllowList, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries = entries
            .into_iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry opens `host` (as written) on `port`.
    pub fn allows(&self, host: &HostKey, port: u16) -> bool {
        self.entries
            .iter()
            .any(|e| &e.host == host && e.ports.contains(port))
    }

    /// Whether any entry names `host`, on any port.
    pub fn lists(&self, host: &HostKey) -> bool {
        self.entries.iter().any(|e| &e.host == host)
    }

    /// The ports the entries open for `host`, as words for a message.
    pub fn ports_of(&self, host: &HostKey) -> String {
        let ports: Vec<String> = self
            .entries
            .iter()
            .filter(|e| &e.host == host)
            .map(|e| match e.ports {
                Ports::WellKnown => "ports 22, 80, 443, 9418".to_string(),
                Ports::One(p) => format!("port {p}"),
                Ports::Any => "every port".to_string(),
            })
            .collect();
        ports.join(", ")
    }
}

impl FromStr for AllowList {
    type Err = Error;

    fn from_str(list: &str) -> Result<AllowList, Error> {
        AllowList::parse(list)
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.entries.iter().map(Entry::to_string).collect();
        f.write_str(&entries.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> HostKey {
        HostKey::parse(s).unwrap()
    }

    #[test]
    fn syntax() {
        let list = AllowList::parse(
            " Git.Internal , mirror.internal:8080,box:*,10.0.0.5:443,[fd00::5]:22,[::1],[::1]:*, ",
        )
        .unwrap();
        let e = list.entries();
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[0],
            Entry {
                host: HostKey::Name("git.internal".into()),
                ports: Ports::WellKnown
            }
        );
        assert_eq!(e[1].ports, Ports::One(8080));
        assert_eq!(e[2].ports, Ports::Any);
        assert_eq!(e[3].host, HostKey::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(e[4].host, HostKey::Ip("fd00::5".parse().unwrap()));
        assert_eq!(e[4].ports, Ports::One(22));
        assert_eq!(e[5].ports, Ports::WellKnown);
        assert_eq!(e[6].ports, Ports::Any);
        assert_eq!(
            list.to_string(),
            "git.internal,mirror.internal:8080,box:*,10.0.0.5:443,[fd00::5]:22,[::1],[::1]:*"
        );
        assert!(AllowList::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_say_why() {
        for (entry, words) in [
            ("https://git.internal", "not a URL"),
            ("git.internal/path", "without a path"),
            ("alice@git.internal", "without a path or user"),
            ("::1", "in brackets"),
            ("fd00::5:443", "in brackets"),
            ("[fd00::5", "must close"),
            ("[git.internal]:80", "not an IPv6 address"),
            ("[::1]80", "after ]"),
            ("git.internal:", "port after : is missing"),
            ("git.internal:0", "from 1 to 65535"),
            ("git.internal:70000", "from 1 to 65535"),
            ("git.internal:http", "from 1 to 65535"),
            (":80", "host is missing"),
            ("*.internal", "wildcards"),
            ("exa mple:80", "not a valid host name"),
        ] {
            let err = AllowList::parse(&format!("ok.example,{entry}"))
                .expect_err(entry)
                .to_string();
            assert!(err.contains(words), "{entry}: {err}");
            assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
        }
    }

    #[test]
    fn port_rules() {
        let list = AllowList::parse("bare.internal,one.internal:8080,any.internal:*").unwrap();
        for port in WELL_KNOWN_PORTS {
            assert!(list.allows(&key("bare.internal"), port), "{port}");
        }
        assert!(!list.allows(&key("bare.internal"), 8080));
        assert!(!list.allows(&key("bare.internal"), 21));
        assert!(list.allows(&key("one.internal"), 8080));
        assert!(!list.allows(&key("one.internal"), 80));
        assert!(!list.allows(&key("one.internal"), 8081));
        assert!(list.allows(&key("any.internal"), 1));
        assert!(list.allows(&key("any.internal"), 65535));
        assert!(!list.allows(&key("other.internal"), 80));
        assert!(list.lists(&key("one.internal")));
        assert!(!list.lists(&key("other.internal")));
        assert_eq!(list.ports_of(&key("one.internal")), "port 8080");
    }

    #[test]
    fn hosts_compare_as_written_after_normalisation() {
        let list = AllowList::parse("Mirror.Internal:80,127.0.0.1:*,[::1]:9418").unwrap();
        assert!(list.allows(&key("MIRROR.internal"), 80));
        assert!(list.allows(&key("mirror.internal."), 80));
        // Every IPv4 spelling of 127.0.0.1 is 127.0.0.1 ...
        assert!(list.allows(&key("0x7f.1"), 1234));
        assert!(list.allows(&key("2130706433"), 1234));
        // ... but a name that resolves to it is not.
        assert!(!list.allows(&key("localhost"), 1234));
        assert!(list.allows(&key("[::1]"), 9418));
        assert!(list.allows(&key("::1"), 9418));
        // An IPv4-mapped spelling is another literal: not opened by the IPv4 entry.
        assert!(!list.allows(&key("[::ffff:127.0.0.1]"), 80));
        // An entry for a name does not open the names under it.
        assert!(!list.allows(&key("x.mirror.internal"), 80));
    }
}
