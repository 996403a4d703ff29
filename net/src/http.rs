//! A guarded reqwest client: every name it resolves goes through the [`Policy`] (on the first
//! request and after every redirect), every redirect hop passes [`Policy::check_url`], no system
//! proxy is used.
//!
//! One caveat, from how hyper connects: a URL whose host is an IP literal is connected to without
//! calling any resolver. Redirect hops are checked here, but the first URL of a request is the
//! caller's: pass it through [`Policy::check_url`] (with [`HTTP_SCHEMES`]) before sending it, or use
//! [`check`] which does the same.

use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::allow::HostKey;
use crate::error::{Error, redact};
use crate::policy::{HTTP_SCHEMES, Policy};

/// Settings of a guarded client.
#[derive(Clone)]
pub struct Options {
    /// The most redirects one request follows (default 5).
    pub max_redirects: usize,
    /// Follow redirects only to the host of the first URL (default false).
    pub same_host_only: bool,
    /// How long opening a connection may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long the server may send nothing while a response is read (default 60 s).
    pub read_timeout: Option<Duration>,
    /// A limit on a whole request, response body included (default none).
    pub timeout: Option<Duration>,
    pub user_agent: String,
    /// Certificate authorities trusted besides the platform's (a `--ca-bundle`, a TLS-inspecting
    /// proxy's CA); the platform's roots honour `SSL_CERT_FILE` and `SSL_CERT_DIR` on Linux.
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("max_redirects", &self.max_redirects)
            .field("same_host_only", &self.same_host_only)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_redirects: 5,
            same_host_only: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(60)),
            timeout: None,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_string(),
            extra_roots: Vec::new(),
        }
    }
}

/// A reqwest client that reaches only what `policy` allows.
pub fn guarded_client(policy: &Policy, options: &Options) -> Result<reqwest::Client, Error> {
    client_builder(policy, options)
        .build()
        .map_err(|e| Error::Setup(e.to_string()))
}

/// The builder behind [`guarded_client`], for callers that add settings of their own (TLS roots,
/// headers). Do not replace its resolver, redirect policy or proxy settings: they are the guard.
pub fn client_builder(policy: &Policy, options: &Options) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(PolicyResolver::new(policy.clone()))
        .redirect(redirect_policy(
            policy.clone(),
            options.max_redirects,
            options.same_host_only,
        ))
        .connect_timeout(options.connect_timeout)
        .user_agent(options.user_agent.clone());
    if let Some(read) = options.read_timeout {
        builder = builder.read_timeout(read);
    }
    if let Some(total) = options.timeout {
        builder = builder.timeout(total);
    }
    if !options.extra_roots.is_empty() {
        builder = builder.tls_certs_merge(options.extra_roots.clone());
    }
    builder
}

/// Check the first URL of a request (IP literals do not reach the resolver): the same as
/// `policy.check_url(url, HTTP_SCHEMES)`.
pub fn check(policy: &Policy, url: &Url) -> Result<(), Error> {
    policy.check_url(url, HTTP_SCHEMES).map(|_| ())
}

/// A redirect policy: at most `max` hops, http and https only, never from https down to http,
/// every hop through [`Policy::check_url`], and with `same_host_only` no hop to another host.
/// A refused hop ends the request; its error (found with [`guard_error`]) names the hop.
pub fn redirect_policy(
    policy: Policy,
    max: usize,
    same_host_only: bool,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let hop = attempt.url().clone();
        let first = attempt.previous().first().cloned();
        let from = attempt
            .previous()
            .last()
            .map(redact)
            .unwrap_or_else(|| "(the first URL)".to_string());
        match judge_hop(
            &policy,
            first.as_ref(),
            attempt.previous().len(),
            &hop,
            max,
            same_host_only,
        ) {
            Ok(()) => attempt.follow(),
            Err(HopError::Limit) => attempt.error(Error::TooManyRedirects {
                url: first.as_ref().map(redact).unwrap_or_default(),
                limit: max,
            }),
            Err(HopError::Reason(reason)) => attempt.error(Error::Redirect {
                from,
                hop: redact(&hop),
                reason,
            }),
            Err(HopError::Check(source)) => attempt.error(Error::RedirectRefused {
                from,
                hop: redact(&hop),
                source: Box::new(source),
            }),
        }
    })
}

pub(crate) enum HopError {
    Limit,
    Reason(String),
    Check(Error),
}

/// The rules for one redirect hop, shared with the git HTTP transport.
pub(crate) fn judge_hop(
    policy: &Policy,
    first: Option<&Url>,
    hops_so_far: usize,
    hop: &Url,
    max: usize,
    same_host_only: bool,
) -> Result<(), HopError> {
    if hops_so_far > max {
        return Err(HopError::Limit);
    }
    if !HTTP_SCHEMES.contains(&hop.scheme()) {
        return Err(HopError::Reason(format!(
            "only http and https redirects are followed, not {}",
            hop.scheme()
        )));
    }
    if let Some(first) = first {
        if first.scheme() == "https" && hop.scheme() == "http" {
            return Err(HopError::Reason(
                "a redirect from https down to http is not followed".to_string(),
            ));
        }
        if same_host_only && HostKey::of_url(first) != HostKey::of_url(hop) {
            return Err(HopError::Reason(format!(
                "only redirects to the same host ({}) are followed here",
                first.host_str().unwrap_or("?")
            )));
        }
    }
    policy
        .check_url(hop, HTTP_SCHEMES)
        .map_err(HopError::Check)?;
    Ok(())
}

/// A `reqwest` resolver backed by a [`Policy`]: each name is resolved once and every address checked;
/// reqwest then connects to exactly these addresses.
///
/// reqwest does not tell a resolver the port: a name that the allow-list lists is opened on any port
/// here, and the port rule is enforced by [`Policy::check_url`] on the first URL and every redirect.
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    policy: Arc<Policy>,
}

impl PolicyResolver {
    pub fn new(policy: Policy) -> PolicyResolver {
        PolicyResolver {
            policy: Arc::new(policy),
        }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let key = HostKey::parse(&name).ok_or_else(|| Error::InvalidUrl {
                url: name.clone(),
                reason: "not a valid host name".to_string(),
            })?;
            let addrs = match key {
                // reqwest hands IP literals to no resolver, but be safe if one arrives.
                HostKey::Ip(ip) => {
                    policy.check_addr_on(&key, None, ip)?;
                    vec![std::net::SocketAddr::new(ip, 0)]
                }
                HostKey::Name(_) => policy.resolve_name(&key, None).await?,
            };
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The kiln-net error inside an error chain (a `reqwest::Error` from a guarded client, for instance):
/// a refused address or redirect hop, so the caller can tell a refusal from a network failure.
pub fn guard_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<Error>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AllowList;

    fn judge(
        policy: &Policy,
        first: &str,
        hops: usize,
        hop: &str,
        same_host: bool,
    ) -> Result<(), String> {
        let first = Url::parse(first).unwrap();
        let hop = Url::parse(hop).unwrap();
        judge_hop(policy, Some(&first), hops, &hop, 5, same_host).map_err(|e| match e {
            HopError::Limit => "limit".to_string(),
            HopError::Reason(r) => r,
            HopError::Check(e) => e.to_string(),
        })
    }

    #[test]
    fn hops_are_judged() {
        let public = Policy::public();
        assert!(
            judge(
                &public,
                "https://a.example/",
                1,
                "https://b.example/x",
                false
            )
            .is_ok()
        );
        assert!(judge(&public, "http://a.example/", 1, "https://a.example/x", true).is_ok());
        let err = judge(
            &public,
            "https://a.example/",
            1,
            "file:///etc/passwd",
            false,
        )
        .unwrap_err();
        assert!(err.contains("only http and https"), "{err}");
        let err = judge(&public, "https://a.example/", 1, "http://a.example/", false).unwrap_err();
        assert!(err.contains("https down to http"), "{err}");
        let err = judge(&public, "https://a.example/", 1, "https://b.example/", true).unwrap_err();
        assert!(err.contains("same host"), "{err}");
        assert_eq!(
            judge(
                &public,
                "https://a.example/",
                6,
                "https://a.example/",
                false
            )
            .unwrap_err(),
            "limit"
        );
        assert!(
            judge(
                &public,
                "https://a.example/",
                5,
                "https://a.example/",
                false
            )
            .is_ok()
        );
        let err = judge(
            &public,
            "https://a.example/",
            1,
            "https://[::ffff:169.254.169.254]/",
            false,
        )
        .unwrap_err();
        assert!(err.contains("link-local"), "{err}");
        let open = Policy::public().with_allowed(AllowList::parse("169.254.169.254:443").unwrap());
        assert!(
            judge(
                &open,
                "https://a.example/",
                1,
                "https://169.254.169.254/",
                false
            )
            .is_ok()
        );
    }
}
