//! The crate's one error type. Every message says what went wrong and what to do; URLs in messages
//! have their user name and password removed (see [`redact`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::ranges::Refusal;

/// The hint every refusal ends with: how an operator opens a host despite the ranges.
pub const ALLOW_HINT: &str = "the operator can allow a host with KILN_ALLOWED_HOSTS=host:port";

/// What can go wrong when kiln-net checks, resolves, connects or transfers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An allow-list entry could not be read.
    #[error("allow-list entry {entry:?}: {reason}; write host, host:port, host:* or [v6addr]:port")]
    AllowList { entry: String, reason: String },

    /// The URL could not be parsed.
    #[error("{url:?} is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The URL's scheme is not one the caller fetches over.
    #[error("{url}: the scheme {scheme:?} is not allowed here; use {allowed}")]
    Scheme {
        url: String,
        scheme: String,
        allowed: String,
    },

    /// The URL names no host.
    #[error("{url} has no host; give a URL such as https://host/path")]
    NoHost { url: String },

    /// The URL has no port and its scheme has no well-known one.
    #[error("{url} has no port and its scheme has no well-known port; give host:port")]
    NoPort { url: String },

    /// An address (written in the URL, or resolved from its name) is in a refused range.
    #[error(
        "{}; kiln's service does not fetch from private or special-purpose networks ({ALLOW_HINT})",
        refused_sentence(host, *addr, refusal)
    )]
    Refused {
        host: String,
        addr: IpAddr,
        refusal: Refusal,
    },

    /// The allow-list opens this host on other ports only.
    #[error(
        "{host} is allowed by the operator on {ports} only, not on port {port}; the operator can add {host}:{port} to KILN_ALLOWED_HOSTS"
    )]
    PortNotAllowed {
        host: String,
        port: u16,
        ports: String,
    },

    /// The name could not be resolved.
    #[error("cannot resolve {host}: {source}; check the host name")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },

    /// The name resolved to no address at all.
    #[error("{host} resolves to no address; check the host name")]
    NoAddress { host: String },

    /// No connection could be opened to any checked address.
    #[error("cannot connect to {host}:{port} ({addrs}): {source}; check that the server is up")]
    Connect {
        host: String,
        port: u16,
        addrs: String,
        #[source]
        source: std::io::Error,
    },

    /// A redirect was refused: the hop is named.
    #[error("{from} redirected to {hop}, which is refused: {reason}")]
    Redirect {
        from: String,
        hop: String,
        reason: String,
    },

    /// A redirect hop's address check failed (an IP literal in a refused range, a scheme, a port).
    #[error("{from} redirected to {hop}, which is refused: {source}")]
    RedirectRefused {
        from: String,
        hop: String,
        #[source]
        source: Box<Error>,
    },

    /// More redirects than allowed.
    #[error("{url} redirected more than {limit} times; kiln gives up (check the URL)")]
    TooManyRedirects { url: String, limit: usize },

    /// More bytes arrived than the scope's budget allows.
    #[error("the download exceeded its limit of {limit} bytes and was stopped")]
    TooLarge { limit: u64 },

    /// The scope's deadline passed while the transfer was still running.
    #[error("the download did not finish within its limit of {}s and was stopped", limit.as_secs_f64())]
    TimedOut { limit: Duration },

    /// The server sent nothing for too long.
    #[error("{url}: the server sent nothing for {}s; try again later", idle.as_secs_f64())]
    Stalled { url: String, idle: Duration },

    /// The server asked for credentials and none were given for it, or it refused the ones given.
    #[error("{url}: {reason}")]
    Authentication { url: String, reason: String },

    /// The server answered with an unexpected HTTP status.
    #[error("{url} answered HTTP {status}; {hint}")]
    HttpStatus {
        url: String,
        status: u16,
        hint: String,
    },

    /// The server does not speak git's smart HTTP protocol.
    #[error(
        "{url} does not speak git's smart HTTP protocol (it sent content type {content_type:?}); kiln does not fetch over git's dumb HTTP protocol"
    )]
    NotSmartHttp { url: String, content_type: String },

    /// The git transports only fetch.
    #[error("{url}: kiln's git transports only fetch; pushing is not supported")]
    PushNotSupported { url: String },

    /// A libgit2 transport ran outside [`crate::git::with_scope`].
    #[error(
        "a libgit2 network call for {url} ran outside kiln_net::git::with_scope; wrap every libgit2 fetch, ls-remote and submodule update in a scope (kiln refuses to connect without one)"
    )]
    NoScope { url: String },

    /// Registering the libgit2 transports failed.
    #[error("cannot register kiln's libgit2 transports: {0}")]
    Register(String),

    /// The HTTP client or its runtime could not be set up.
    #[error("cannot set up kiln's HTTP client: {0}")]
    Setup(String),

    /// An HTTP client error (TLS, protocol, I/O).
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// An I/O error on an open connection.
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },

    /// libgit2 failed for a reason of its own (not one of kiln-net's guards).
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
}

fn refused_sentence(host: &str, addr: IpAddr, refusal: &Refusal) -> String {
    let written = match addr {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    if host.trim_matches(['[', ']']) == addr.to_string() {
        format!("{written} is {refusal}")
    } else {
        format!("{host} resolves to {addr}, {refusal}")
    }
}

impl Error {
    /// Whether this error is one of the address guards (a refused address, port, scheme or redirect),
    /// as opposed to a network failure or a limit.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. }
                | Error::PortNotAllowed { .. }
                | Error::Scheme { .. }
                | Error::Redirect { .. }
                | Error::RedirectRefused { .. }
                | Error::TooManyRedirects { .. }
                | Error::NoScope { .. }
        )
    }
}

impl Error {
    /// A copy of a guard or limit error (to take it out of a `reqwest::Error` chain); `None` for the
    /// variants that carry a library error (`Http`, `Io`, `Git`, `Connect`).
    pub fn try_clone(&self) -> Option<Error> {
        Some(match self {
            Error::AllowList { entry, reason } => Error::AllowList {
                entry: entry.clone(),
                reason: reason.clone(),
            },
            Error::InvalidUrl { url, reason } => Error::InvalidUrl {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::Scheme {
                url,
                scheme,
                allowed,
            } => Error::Scheme {
                url: url.clone(),
                scheme: scheme.clone(),
                allowed: allowed.clone(),
            },
            Error::NoHost { url } => Error::NoHost { url: url.clone() },
            Error::NoPort { url } => Error::NoPort { url: url.clone() },
            Error::Refused {
                host,
                addr,
                refusal,
            } => Error::Refused {
                host: host.clone(),
                addr: *addr,
                refusal: *refusal,
            },
            Error::PortNotAllowed { host, port, ports } => Error::PortNotAllowed {
                host: host.clone(),
                port: *port,
                ports: ports.clone(),
            },
            Error::Resolve { host, source } => Error::Resolve {
                host: host.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::NoAddress { host } => Error::NoAddress { host: host.clone() },
            Error::Redirect { from, hop, reason } => Error::Redirect {
                from: from.clone(),
                hop: hop.clone(),
                reason: reason.clone(),
            },
            Error::RedirectRefused { from, hop, source } => Error::RedirectRefused {
                from: from.clone(),
                hop: hop.clone(),
                source: Box::new(source.try_clone()?),
            },
            Error::TooManyRedirects { url, limit } => Error::TooManyRedirects {
                url: url.clone(),
                limit: *limit,
            },
            Error::TooLarge { limit } => Error::TooLarge { limit: *limit },
            Error::TimedOut { limit } => Error::TimedOut { limit: *limit },
            Error::Stalled { url, idle } => Error::Stalled {
                url: url.clone(),
                idle: *idle,
            },
            Error::Authentication { url, reason } => Error::Authentication {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::HttpStatus { url, status, hint } => Error::HttpStatus {
                url: url.clone(),
                status: *status,
                hint: hint.clone(),
            },
            Error::NotSmartHttp { url, content_type } => Error::NotSmartHttp {
                url: url.clone(),
                content_type: content_type.clone(),
            },
            Error::PushNotSupported { url } => Error::PushNotSupported { url: url.clone() },
            Error::NoScope { url } => Error::NoScope { url: url.clone() },
            Error::Register(message) => Error::Register(message.clone()),
            Error::Setup(message) => Error::Setup(message.clone()),
            Error::Http { .. } | Error::Io { .. } | Error::Git(_) | Error::Connect { .. } => {
                return None;
            }
        })
    }
}

/// A URL as text without its user name and password, for messages and logs.
pub fn redact(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.to_string()
}

/// A URL given as text, redacted when it parses (and shown as "(an unparsable URL)" when it does not,
/// since it may hold a secret).
pub fn redact_str(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => redact(&parsed),
        Err(_) if url.contains('@') => "(an unparsable URL)".to_string(),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_user_and_password() {
        let url = url::Url::parse("https://alice:hunter2@git.example/r.git").unwrap();
        assert_eq!(redact(&url), "https://git.example/r.git");
        assert_eq!(
            redact_str("https://tok@git.example/r"),
            "https://git.example/r"
        );
        assert!(!redact_str("::alice:hunter2@").contains("hunter2"));
    }
}
