//! What a fetch may reach and whose credentials it may use. Every URL is checked against the policy
//! before libgit2 sees it; credentials are bound to the hosts they were given for.
//!
//! - Credentials in the source URL go to that URL's origin (scheme, host and port) only.
//! - The operator's credentials (`KILN_GIT_USERNAME`/`KILN_GIT_PASSWORD`), git's credential helpers
//!   and the SSH agent are used only for the hosts the operator names (`KILN_GIT_CREDENTIAL_HOSTS`),
//!   and on the command line for the host of the source given there.
//! - `http`, `https` and `git` go through kiln-net's transports (checked addresses, no rebinding,
//!   redirects checked, one byte budget and deadline). `ssh` and local paths are libgit2's own: the
//!   command line may use them; a public service only for `ssh` hosts on its allow-list.

use git2::{Cred, CredentialType, RemoteCallbacks};
use kiln_net::{AllowList, HostKey, Policy};

use crate::error::BuildError;
use crate::source::Credentials;

/// What a fetch may reach, what it may bring, and whose credentials it may use.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    pub limits: super::FetchLimits,
    /// The addresses fetches may reach: [`Policy::open`] on the command line, [`Policy::public`]
    /// (with the operator's allow-list) in the service.
    pub policy: Policy,
    pub operator: OperatorCredentials,
    /// Where archived records are looked up (the DOI resolver, the InvenioRDM installations).
    pub records: crate::records::RecordSettings,
}

impl Default for FetchSettings {
    /// The command line's: any address, the default limits, no operator credentials.
    fn default() -> Self {
        FetchSettings {
            limits: super::FetchLimits::default(),
            policy: Policy::open(),
            operator: OperatorCredentials::default(),
            records: crate::records::RecordSettings::from_env(),
        }
    }
}

/// The operator's git credentials and the hosts they may be used for.
#[derive(Clone, Debug, Default)]
pub struct OperatorCredentials {
    /// `KILN_GIT_USERNAME` and `KILN_GIT_PASSWORD`.
    pub basic: Option<Credentials>,
    /// Hosts the basic credentials, git's credential helpers and the SSH agent may be used for
    /// (`host`, `host:port`, `host:*`; a bare host means its well-known ports).
    pub hosts: AllowList,
}

impl OperatorCredentials {
    /// `KILN_GIT_USERNAME`/`KILN_GIT_PASSWORD`, for the hosts of `KILN_GIT_CREDENTIAL_HOSTS` and, on
    /// the command line, the host of the source given there (`also`).
    pub fn from_env(also: Option<&str>) -> Result<OperatorCredentials, BuildError> {
        let basic = match (
            std::env::var("KILN_GIT_USERNAME"),
            std::env::var("KILN_GIT_PASSWORD"),
        ) {
            (Ok(username), Ok(secret)) if !secret.is_empty() => {
                Some(Credentials { username, secret })
            }
            _ => None,
        };
        let mut entries: Vec<String> = std::env::var("KILN_GIT_CREDENTIAL_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(host) = also.and_then(host_of) {
            entries.push(format!("{host}:*"));
        }
        let hosts = AllowList::from_entries(entries.iter().map(String::as_str))
            .map_err(|e| BuildError::Invalid(format!("KILN_GIT_CREDENTIAL_HOSTS: {e}")))?;
        Ok(OperatorCredentials { basic, hosts })
    }

    /// Whether the operator's credentials may be used for `url`.
    fn covers(&self, url: &url::Url) -> bool {
        let port = url
            .port()
            .or_else(|| kiln_net::policy::default_port(url.scheme()));
        let (Some(host), Some(port)) = (HostKey::of_url(url), port) else {
            return false;
        };
        self.hosts.allows(&host, port)
    }

    fn covers_str(&self, url: &str) -> bool {
        parse_any(url).is_some_and(|u| self.covers(&u))
    }
}

/// The host of a URL or of a scp-like `user@host:path`, bracketed for IPv6.
fn host_of(url: &str) -> Option<String> {
    let parsed = parse_any(url)?;
    match parsed.host()? {
        url::Host::Ipv6(ip) => Some(format!("[{ip}]")),
        host => Some(host.to_string()),
    }
}

/// A URL, reading scp-like `user@host:path` as `ssh://user@host/path`.
fn parse_any(url: &str) -> Option<url::Url> {
    if let Ok(parsed) = url::Url::parse(url)
        && parsed.has_host()
    {
        return Some(parsed);
    }
    let (user_host, path) = url.split_once(':')?;
    (user_host.contains('@') && !user_host.contains('/'))
        .then(|| url::Url::parse(&format!("ssh://{user_host}/{path}")).ok())?
}

/// Whether a remote URL may be fetched under `policy`: `http`, `https` and `git` by kiln-net's
/// rules; `ssh` (and scp-like addresses) only where the policy refuses nothing or lists the host;
/// local paths and `file://` only where the policy refuses nothing.
pub fn check_url(policy: &Policy, url: &str) -> Result<(), BuildError> {
    let refused = |reason: String| BuildError::Refused {
        url: crate::source::redact(url),
        reason,
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https" | "git") => {
            kiln_net::git::check_remote(policy, url).map_err(|e| refused(e.to_string()))
        }
        _ if policy.is_open() => Ok(()),
        Some("ssh") | None if parse_any(url).is_some_and(|u| u.scheme() == "ssh") => {
            let parsed = parse_any(url).ok_or_else(|| refused("not a URL".into()))?;
            let host = HostKey::of_url(&parsed).ok_or_else(|| refused("no host".into()))?;
            let port = parsed.port().unwrap_or(22);
            if policy.allowed().allows(&host, port) {
                Ok(())
            } else {
                Err(refused(format!(
                    "ssh is fetched without kiln's address checks, so this service fetches it only from hosts the operator allows ({host}:{port} is not in KILN_ALLOWED_HOSTS)"
                )))
            }
        }
        _ => Err(refused(
            "local paths and file:// URLs are not fetched by this service".into(),
        )),
    }
}

/// The credential provider of one fetch's scope: what the source URL carried, bound to its
/// origin; then the operator's, for the hosts they cover; then git's credential helpers, for the
/// same hosts.
pub fn provider(
    source_url: &str,
    given: Option<Credentials>,
    operator: OperatorCredentials,
) -> impl Fn(&url::Url) -> Option<kiln_net::git::Credentials> + Send + Sync + 'static {
    let origin = url::Url::parse(source_url).ok().map(|u| u.origin());
    move |url: &url::Url| {
        if let (Some(given), Some(origin)) = (&given, &origin)
            && url.origin() == *origin
        {
            return Some(kiln_net::git::Credentials::new(
                &given.username,
                &given.secret,
            ));
        }
        if !operator.covers(url) {
            return None;
        }
        if let Some(basic) = &operator.basic {
            return Some(kiln_net::git::Credentials::new(
                &basic.username,
                &basic.secret,
            ));
        }
        let config = git2::Config::open_default().ok()?;
        let (username, password) = git2::CredentialHelper::new(url.as_str())
            .config(&config)
            .execute()?;
        Some(kiln_net::git::Credentials::new(username, password))
    }
}

/// libgit2's callbacks for what kiln-net does not carry (ssh): the SSH agent, offered once, only
/// to hosts the operator's credentials cover.
pub fn ssh_callbacks(operator: &OperatorCredentials) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |url, username, allowed| {
        attempts += 1;
        if !operator.covers_str(url) {
            return Err(git2::Error::from_str(&format!(
                "no credentials for {}: the operator's are for other hosts (KILN_GIT_CREDENTIAL_HOSTS)",
                crate::source::redact(url)
            )));
        }
        if allowed.contains(CredentialType::SSH_KEY) && attempts == 1 {
            Cred::ssh_key_from_agent(username.unwrap_or("git"))
        } else if allowed.contains(CredentialType::USERNAME) && attempts == 1 {
            Cred::username(username.unwrap_or("git"))
        } else {
            Err(git2::Error::from_str("authentication failed"))
        }
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(hosts: &str) -> OperatorCredentials {
        OperatorCredentials {
            basic: Some(Credentials {
                username: "kiln".into(),
                secret: "operator-s3cret".into(),
            }),
            hosts: AllowList::parse(hosts).unwrap(),
        }
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn operator_credentials_go_only_to_their_hosts() {
        let provide = provider("https://evil.example/x", None, operator("git.example"));
        assert!(provide(&url("https://evil.example/x/info/refs")).is_none());
        assert!(provide(&url("https://git.example/x/info/refs")).is_some());
        assert!(
            provide(&url("https://git.example:8443/x")).is_none(),
            "a bare host means its well-known ports"
        );
    }

    #[test]
    fn url_credentials_go_only_to_their_origin() {
        let given = Some(Credentials {
            username: "alice".into(),
            secret: "alice-s3cret".into(),
        });
        let provide = provider(
            "https://git.example/team/repo.git",
            given,
            OperatorCredentials::default(),
        );
        let on_origin = provide(&url("https://git.example/team/sub.git/info/refs")).unwrap();
        assert_eq!(on_origin.password(), "alice-s3cret");
        assert!(provide(&url("http://git.example/team/sub.git")).is_none());
        assert!(provide(&url("https://git.example:444/team/sub.git")).is_none());
        assert!(provide(&url("https://other.example/x")).is_none());
    }

    #[test]
    fn the_command_line_binds_the_operator_to_the_source_host() {
        let operator = OperatorCredentials {
            basic: None,
            hosts: AllowList::from_entries(
                host_of("git@git.example:team/repo.git")
                    .map(|h| format!("{h}:*"))
                    .iter()
                    .map(String::as_str),
            )
            .unwrap(),
        };
        assert!(operator.covers_str("ssh://git@git.example/team/repo.git"));
        assert!(!operator.covers_str("ssh://git@evil.example/x"));
    }

    #[test]
    fn urls_a_public_service_refuses() {
        let public = Policy::public();
        for refused in [
            "file:///etc",
            "/srv/repo",
            "ssh://git@github.com/org/repo",
            "git@github.com:org/repo.git",
            "git://127.0.0.1/repo",
            "http://[::ffff:127.0.0.1]/repo",
        ] {
            assert!(check_url(&public, refused).is_err(), "{refused}");
        }
        let allowed = Policy::public().with_allowed(AllowList::parse("git.internal").unwrap());
        assert!(check_url(&allowed, "ssh://git@git.internal/org/repo").is_ok());
        assert!(check_url(&allowed, "git@git.internal:org/repo.git").is_ok());
        assert!(check_url(&Policy::open(), "/srv/repo").is_ok());
        assert!(check_url(&Policy::open(), "file:///srv/repo").is_ok());
    }
}
