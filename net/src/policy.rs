//! What may be reached: the refused ranges ([`crate::ranges`]), the operator's allow-list
//! ([`crate::allow`]), URL checks, and resolution that resolves once and checks every address.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use url::Url;

use crate::allow::{AllowList, HostKey};
use crate::error::{Error, redact};
use crate::ranges;

/// The schemes of the HTTP client.
pub const HTTP_SCHEMES: &[&str] = &["http", "https"];
/// The schemes of kiln-net's libgit2 transports.
pub const GIT_SCHEMES: &[&str] = &["http", "https", "git"];

/// What may be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    refuse_special: bool,
    allowed: AllowList,
}

/// Where a checked URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    pub host: HostKey,
    pub port: u16,
}

impl Policy {
    /// For the command line, run by the operator on their own machine: nothing is refused.
    pub fn open() -> Policy {
        Policy {
            refuse_special: false,
            allowed: AllowList::default(),
        }
    }

    /// For the service: every range in [`crate::ranges`] is refused unless the allow-list opens the host.
    pub fn public() -> Policy {
        Policy {
            refuse_special: true,
            allowed: AllowList::default(),
        }
    }

    /// The same policy with `allowed` as its allow-list.
    pub fn with_allowed(mut self, allowed: AllowList) -> Policy {
        self.allowed = allowed;
        self
    }

    pub fn allowed(&self) -> &AllowList {
        &self.allowed
    }

    /// Whether this policy refuses nothing ([`Policy::open`]).
    pub fn is_open(&self) -> bool {
        !self.refuse_special
    }

    /// Check one address that `host` (as written) leads to on `port`.
    pub fn check_addr(&self, host: &HostKey, port: u16, ip: IpAddr) -> Result<(), Error> {
        self.check_addr_on(host, Some(port), ip)
    }

    /// `port: None` means "the port is not known here" (reqwest's resolver): a host the allow-list
    /// names is then opened on any port, and [`Policy::check_url`] enforces the port rule instead.
    pub(crate) fn check_addr_on(
        &self,
        host: &HostKey,
        port: Option<u16>,
        ip: IpAddr,
    ) -> Result<(), Error> {
        if !self.refuse_special {
            return Ok(());
        }
        let allowed = match port {
            Some(port) => self.allowed.allows(host, port),
            None => self.allowed.lists(host),
        };
        if allowed {
            return Ok(());
        }
        match ranges::classify(ip) {
            None => Ok(()),
            Some(refusal) => Err(Error::Refused {
                host: host.to_string(),
                addr: ip,
                refusal,
            }),
        }
    }

    /// Check a URL before anything is sent: the scheme is one of `schemes`, a host is present, the
    /// port is known, an IP literal (in any spelling the `url` crate normalises, such as
    /// `http://2130706433/` or `http://0x7f.1/`, and bracketed IPv6) is not in a refused range
    /// unless the allow-list opens it, and a name that the allow-list opens on some ports only is
    /// not used on another port. Names are not resolved here: [`Policy::resolve`] does that.
    pub fn check_url(&self, url: &Url, schemes: &[&str]) -> Result<Target, Error> {
        let scheme = url.scheme();
        if !schemes.contains(&scheme) {
            return Err(Error::Scheme {
                url: redact(url),
                scheme: scheme.to_string(),
                allowed: schemes.join(", "),
            });
        }
        let host = HostKey::of_url(url).ok_or_else(|| Error::NoHost { url: redact(url) })?;
        let port = url
            .port()
            .or_else(|| default_port(scheme))
            .ok_or_else(|| Error::NoPort { url: redact(url) })?;
        if self.refuse_special {
            match &host {
                HostKey::Ip(ip) => self.check_addr(&host, port, *ip)?,
                HostKey::Name(_) => {
                    if self.allowed.lists(&host) && !self.allowed.allows(&host, port) {
                        return Err(Error::PortNotAllowed {
                            host: host.to_string(),
                            port,
                            ports: self.allowed.ports_of(&host),
                        });
                    }
                }
            }
        }
        Ok(Target {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// Resolve `host` once (blocking: for libgit2's threads) and check every address: one refused
    /// address refuses the host. Connect to exactly these addresses; never resolve the name again.
    pub fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let key = host_key(host)?;
        if let HostKey::Ip(ip) = key {
            self.check_addr(&key, port, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = key.connect_name();
        let addrs: Vec<SocketAddr> = (name.as_str(), port)
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                host: key.to_string(),
                source,
            })?
            .collect();
        self.checked(&key, Some(port), addrs)
    }

    /// [`Policy::resolve`] for async callers.
    pub async fn resolve_async(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let key = host_key(host)?;
        if let HostKey::Ip(ip) = key {
            self.check_addr(&key, port, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        self.resolve_name(&key, Some(port)).await
    }

    /// Resolve a name (not an IP literal) and check every address; `port: None` for reqwest's
    /// resolver, which is not told the port.
    pub(crate) async fn resolve_name(
        &self,
        key: &HostKey,
        port: Option<u16>,
    ) -> Result<Vec<SocketAddr>, Error> {
        let name = key.connect_name();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port.unwrap_or(0)))
            .await
            .map_err(|source| Error::Resolve {
                host: key.to_string(),
                source,
            })?
            .collect();
        self.checked(key, port, addrs)
    }

    fn checked(
        &self,
        key: &HostKey,
        port: Option<u16>,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Error> {
        if addrs.is_empty() {
            return Err(Error::NoAddress {
                host: key.to_string(),
            });
        }
        for addr in &addrs {
            self.check_addr_on(key, port, addr.ip())?;
        }
        tracing::debug!(host = %key, ?addrs, "resolved and checked");
        Ok(addrs)
    }
}

fn host_key(host: &str) -> Result<HostKey, Error> {
    HostKey::parse(host).ok_or_else(|| Error::InvalidUrl {
        url: host.to_string(),
        reason: "not a valid host name".to_string(),
    })
}

/// The well-known port of the schemes kiln fetches over.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "git" => Some(9418),
        "ssh" => Some(22),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn refused(policy: &Policy, s: &str) -> Error {
        policy
            .check_url(&url(s), GIT_SCHEMES)
            .expect_err(&format!("{s} passed"))
    }

    #[test]
    fn odd_ipv4_spellings_of_loopback_are_refused() {
        let policy = Policy::public();
        for s in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "https://127.0.0.1:8443/",
            "git://127.0.0.1/x",
            "git://0x7f.1/x",
            "git://2130706433/x",
        ] {
            let err = refused(&policy, s);
            assert!(
                matches!(err, Error::Refused { addr, .. } if addr == "127.0.0.1".parse::<IpAddr>().unwrap()),
                "{s}: {err}"
            );
            assert!(err.to_string().contains("loopback"), "{s}: {err}");
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_literal_is_refused() {
        let policy = Policy::public();
        for s in [
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "git://[::ffff:10.0.0.1]/x",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
        ] {
            let err = refused(&policy, s);
            assert!(matches!(err, Error::Refused { .. }), "{s}: {err}");
        }
        let err = refused(&policy, "http://[::ffff:127.0.0.1]:8080/x");
        assert_eq!(
            err.to_string(),
            "[::ffff:127.0.0.1] is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address \
             (127.0.0.0/8); kiln's service does not fetch from private or special-purpose networks \
             (the operator can allow a host with KILN_ALLOWED_HOSTS=host:port)"
        );
    }

    #[test]
    fn public_literals_and_names_pass() {
        let policy = Policy::public();
        for s in [
            "https://1.1.1.1/",
            "http://[2606:4700:4700::1111]/",
            "https://git.example/r.git",
            "git://git.example/r.git",
        ] {
            let target = policy.check_url(&url(s), GIT_SCHEMES).unwrap();
            assert!(target.port > 0);
        }
        let t = policy
            .check_url(&url("git://Git.Example/r"), GIT_SCHEMES)
            .unwrap();
        assert_eq!(t.host, HostKey::Name("git.example".into()));
        assert_eq!(t.port, 9418);
    }

    #[test]
    fn schemes_hosts_and_ports() {
        let policy = Policy::public();
        assert!(matches!(
            policy.check_url(&url("file:///etc/passwd"), GIT_SCHEMES),
            Err(Error::Scheme { .. })
        ));
        assert!(matches!(
            policy.check_url(&url("ssh://git@git.example/r"), GIT_SCHEMES),
            Err(Error::Scheme { .. })
        ));
        assert!(matches!(
            policy.check_url(&url("git://git.example/r"), HTTP_SCHEMES),
            Err(Error::Scheme { .. })
        ));
        assert!(matches!(
            policy.check_url(&url("unix:/run/docker.sock"), &["unix"]),
            Err(Error::NoHost { .. })
        ));
        assert!(matches!(
            policy.check_url(&url("gopher://git.example/"), &["gopher"]),
            Err(Error::NoPort { .. })
        ));
        // Nothing is refused under the open policy, but the scheme still is.
        let open = Policy::open();
        assert!(
            open.check_url(&url("http://127.0.0.1/"), HTTP_SCHEMES)
                .is_ok()
        );
        assert!(open.check_url(&url("file:///x"), HTTP_SCHEMES).is_err());
        // Messages never show a password.
        let err = policy
            .check_url(&url("ftp://alice:hunter2@git.example/"), HTTP_SCHEMES)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn allowed_literals_and_ports() {
        let allowed = AllowList::parse("127.0.0.1:9418,mirror.internal:8080,[::1]:*").unwrap();
        let policy = Policy::public().with_allowed(allowed);
        assert!(
            policy
                .check_url(&url("git://127.0.0.1/x"), GIT_SCHEMES)
                .is_ok()
        );
        assert!(
            policy
                .check_url(&url("git://127.0.0.1:9418/x"), GIT_SCHEMES)
                .is_ok()
        );
        assert!(
            policy
                .check_url(&url("http://0x7f.1:9418/"), GIT_SCHEMES)
                .is_ok()
        );
        assert!(matches!(
            policy.check_url(&url("git://127.0.0.1:9419/x"), GIT_SCHEMES),
            Err(Error::Refused { .. })
        ));
        assert!(
            policy
                .check_url(&url("http://[::1]:1/"), GIT_SCHEMES)
                .is_ok()
        );
        // The mapped spelling of an allowed IPv4 literal is another literal.
        assert!(
            policy
                .check_url(&url("http://[::ffff:127.0.0.1]:9418/"), GIT_SCHEMES)
                .is_err()
        );
        assert!(
            policy
                .check_url(&url("http://mirror.internal:8080/"), GIT_SCHEMES)
                .is_ok()
        );
        let err = policy
            .check_url(&url("http://mirror.internal:22/"), GIT_SCHEMES)
            .unwrap_err();
        assert!(
            matches!(err, Error::PortNotAllowed { port: 22, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("mirror.internal:22"), "{err}");
    }

    #[test]
    fn resolving_checks_literals_without_dns() {
        let policy = Policy::public();
        for host in [
            "127.0.0.1",
            "0x7f.1",
            "[::1]",
            "::1",
            "::ffff:127.0.0.1",
            "10.1.2.3",
        ] {
            let err = policy.resolve(host, 80).expect_err(host);
            assert!(matches!(err, Error::Refused { .. }), "{host}: {err}");
        }
        assert_eq!(
            policy.resolve("1.1.1.1", 443).unwrap(),
            vec!["1.1.1.1:443".parse().unwrap()]
        );
        let allowed = Policy::public().with_allowed(AllowList::parse("127.0.0.1:80").unwrap());
        assert_eq!(
            allowed.resolve("127.0.0.1", 80).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(allowed.resolve("127.0.0.1", 81).is_err());
    }

    #[test]
    fn localhost_resolves_to_loopback_and_is_refused() {
        // /etc/hosts answers for localhost: no DNS query leaves the machine.
        let err = Policy::public().resolve("localhost", 80).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        let message = err.to_string();
        assert!(message.starts_with("localhost resolves to "), "{message}");
        assert!(message.contains("a loopback address"), "{message}");
        assert!(message.contains("KILN_ALLOWED_HOSTS"), "{message}");
        // Allowed by name, on that port only.
        let policy = Policy::public().with_allowed(AllowList::parse("localhost:80").unwrap());
        assert!(!policy.resolve("localhost", 80).unwrap().is_empty());
        assert!(policy.resolve("LOCALHOST", 80).is_ok());
        assert!(policy.resolve("localhost", 81).is_err());
        // An IP entry does not open the name.
        let policy = Policy::public().with_allowed(AllowList::parse("127.0.0.1:*").unwrap());
        assert!(policy.resolve("localhost", 80).is_err());
        // Nothing is refused under the open policy.
        assert!(!Policy::open().resolve("localhost", 80).unwrap().is_empty());
    }

    #[tokio::test]
    async fn async_resolution_refuses_the_same() {
        let err = Policy::public()
            .resolve_async("localhost", 80)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        let err = Policy::public()
            .resolve_async("[::ffff:127.0.0.1]", 80)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        assert!(Policy::open().resolve_async("localhost", 80).await.is_ok());
    }
}
