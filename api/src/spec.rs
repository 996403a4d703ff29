//! BinderHub's build specs: `/build/<provider>/<spec>`.
//!
//! - `gh`: `<owner>/<repo>/<ref>` (the ref may contain `/`)
//! - `gl`: `<url-escaped namespace>/<ref>`
//! - `git`: `<url-escaped repository URL>/<ref>`
//! - `gist`: `<user>/<id>[/<ref>]`
//!
//! Specs are read from the raw (still percent-encoded) path, so an escaped URL keeps its slashes.

use kiln_builder::Source;
use percent_encoding::percent_decode_str;

/// Why a spec cannot be built; shown to the caller as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// A parsed spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub provider: String,
    /// The raw spec as requested (for `binder_request`).
    pub raw: String,
    pub source: Source,
    pub repo_url: String,
    pub reference: String,
}

const MAX_SPEC: usize = 2048;

pub fn parse(provider: &str, raw: &str) -> Result<Spec, SpecError> {
    if raw.len() > MAX_SPEC {
        return Err(SpecError(format!(
            "the spec is longer than {MAX_SPEC} characters"
        )));
    }
    if raw.split('/').any(|p| p == ".." || p == ".") || raw.chars().any(|c| c.is_control()) {
        return Err(SpecError(
            "the spec holds a path traversal or control characters".into(),
        ));
    }
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| SpecError("the spec is not valid UTF-8".into()))
    };
    let parts: Vec<&str> = raw.split('/').collect();
    let (repo_url, reference) = match provider {
        "gh" => {
            if parts.len() < 3 || parts[..2].iter().any(|p| p.is_empty()) {
                return Err(SpecError("a gh spec is <owner>/<repo>/<ref>".into()));
            }
            (
                format!(
                    "https://github.com/{}/{}",
                    decode(parts[0])?,
                    decode(parts[1])?
                ),
                decode(&parts[2..].join("/"))?,
            )
        }
        "gl" => {
            if parts.len() < 2 || parts[0].is_empty() {
                return Err(SpecError(
                    "a gl spec is <url-escaped namespace>/<ref>".into(),
                ));
            }
            (
                format!("https://gitlab.com/{}", decode(parts[0])?),
                decode(&parts[1..].join("/"))?,
            )
        }
        "git" => {
            if parts.len() < 2 || parts[0].is_empty() {
                return Err(SpecError(
                    "a git spec is <url-escaped repository URL>/<ref>".into(),
                ));
            }
            (decode(parts[0])?, decode(&parts[1..].join("/"))?)
        }
        "gist" => {
            if parts.len() < 2 || parts[..2].iter().any(|p| p.is_empty()) {
                return Err(SpecError("a gist spec is <user>/<id>[/<ref>]".into()));
            }
            (
                format!(
                    "https://gist.github.com/{}/{}",
                    decode(parts[0])?,
                    decode(parts[1])?
                ),
                decode(&parts[2..].join("/"))?,
            )
        }
        other => {
            return Err(SpecError(format!(
                "unknown provider {other:?}; kiln serves gh, gl, git and gist"
            )));
        }
    };
    let reference = if reference.is_empty() {
        "HEAD".to_string()
    } else {
        reference
    };
    // scp-like user@host:path becomes ssh://, as BinderHub does.
    let url = match repo_url.split_once(':') {
        Some((user_host, path)) if user_host.contains('@') && !repo_url.contains("://") => {
            format!("ssh://{user_host}/{path}")
        }
        _ => repo_url.clone(),
    };
    if !["https://", "http://", "git://", "ssh://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(SpecError(format!(
            "{url:?} is not a remote git URL (https, http, git or ssh); local paths and file:// are refused"
        )));
    }
    let source = Source::parse(&url).map_err(|e| SpecError(e.to_string()))?;
    let Source::Git(_) = &source else {
        return Err(SpecError(
            "local folders cannot be built through the service".into(),
        ));
    };
    Ok(Spec {
        provider: provider.to_string(),
        raw: raw.to_string(),
        repo_url: source.to_string(),
        source,
        reference,
    })
}

/// Whether the repository's host is allowed: hosts that resolve to loopback, private, link-local
/// or unspecified addresses are refused unless the operator lists them (`KILN_ALLOWED_HOSTS`).
pub async fn check_host(repo_url: &str, allowed: &[String]) -> Result<(), SpecError> {
    let url = url::Url::parse(repo_url).map_err(|e| SpecError(format!("invalid URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| SpecError("the URL has no host".into()))?
        .trim_matches(['[', ']'])
        .to_string();
    if allowed.iter().any(|a| a == &host) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(9418);
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| SpecError(format!("cannot resolve {host}: {e}")))?;
    for addr in addrs {
        let ip = addr.ip();
        let private = match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
            }
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if private {
            return Err(SpecError(format!(
                "{host} resolves to {ip}, a loopback, private or link-local address; the operator can allow it with KILN_ALLOWED_HOSTS"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers() {
        let s = parse("gh", "binder-examples/octave/feature/x").unwrap();
        assert_eq!(s.repo_url, "https://github.com/binder-examples/octave");
        assert_eq!(s.reference, "feature/x");
        let s = parse("git", "git%3A%2F%2F127.0.0.1%3A9418%2Frepo/HEAD").unwrap();
        assert_eq!(s.repo_url, "git://127.0.0.1:9418/repo");
        assert_eq!(s.reference, "HEAD");
        let s = parse("gl", "group%2Fproject/main").unwrap();
        assert_eq!(s.repo_url, "https://gitlab.com/group/project");
        assert!(parse("zz", "a/b/c").is_err());
        assert!(parse("gh", "a/../c").is_err());
        assert!(parse("git", "file%3A%2F%2F%2Fetc/HEAD").is_err());
        assert!(parse("git", "%2Fetc%2Fpasswd/HEAD").is_err());
        assert!(parse("gh", "only-owner").is_err());
    }

    #[tokio::test]
    async fn private_hosts_are_refused_unless_allowed() {
        assert!(check_host("git://127.0.0.1:9418/x", &[]).await.is_err());
        assert!(
            check_host("git://127.0.0.1:9418/x", &["127.0.0.1".into()])
                .await
                .is_ok()
        );
        assert!(check_host("http://10.1.2.3/x", &[]).await.is_err());
    }
}
