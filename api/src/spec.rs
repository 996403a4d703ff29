//! BinderHub's build specs: `/build/<provider>/<spec>`.
//!
//! - `gh`: `<owner>/<repo>/<ref>` (the ref may contain `/`)
//! - `gl`: `<url-escaped namespace>/<ref>` (on gitlab.com, or the host of `KILN_GITLAB_HOST`)
//! - `git`: `<url-escaped repository URL>/<ref>`
//! - `gist`: `<user>/<id>[/<ref>]`
//! - `zenodo`, `figshare`, `dataverse`: a DOI (`10.5281/zenodo.3242074`) that lands on a record
//!   of that provider; `doi`: any DOI kiln can fetch (all without a ref: a record version never
//!   changes)
//!
//! Specs are read from the raw (still percent-encoded) path, so an escaped URL keeps its slashes.
//! They are judged after decoding: a name that decodes to a path (`x%2F..%2Fevil`) is refused, and
//! credentials in a `git` URL are split off: they never appear in the spec kiln stores, shows or
//! sends on.

use kiln_builder::Source;
use kiln_builder::git::check_url;
use kiln_net::Policy;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Why a spec cannot be built; shown to the caller as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// A parsed spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub provider: String,
    /// The spec as requested, without credentials (for `binder_request`, the records, the API).
    pub raw: String,
    /// The same, decoded: what allowed and banned patterns are compared with.
    pub decoded: String,
    /// The repository, with any credentials it carried.
    pub source: Source,
    /// The repository URL, without credentials.
    pub repo_url: String,
    pub reference: String,
    /// The hub user a private build belongs to (set by [`crate::credentials`]).
    pub owner: Option<String>,
    /// What a private build's image is named after instead of the repository: a keyed digest of
    /// its owner (or credentials) and the repository, so nobody else can find it.
    pub image_slug: Option<String>,
}

impl Spec {
    /// Whether the request carried credentials: a private build, never shared with a request that
    /// lacks the same credentials and never listed.
    pub fn private(&self) -> bool {
        matches!(&self.source, Source::Git(git) if git.credentials.is_some())
    }

    /// `<provider>/<decoded spec>`: what spec patterns (allowed, banned, `spec_config`) are
    /// compared with.
    pub fn pattern_name(&self) -> String {
        format!("{}/{}", self.provider, self.decoded)
    }
}

const MAX_SPEC: usize = 2048;

/// Where `gh` and `gl` repositories live: BinderHub's `GitHubRepoProvider.hostname` and
/// `GitLabRepoProvider.hostname` (GitHub Enterprise, a GitLab of one's own). Each is a URL
/// without a path (`https://gitlab.example.org`); a bare host name means `https://`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderHosts {
    pub github: String,
    pub gitlab: String,
}

impl Default for ProviderHosts {
    fn default() -> Self {
        ProviderHosts {
            github: "https://github.com".into(),
            gitlab: "https://gitlab.com".into(),
        }
    }
}

impl ProviderHosts {
    /// A host setting as the URL repositories are found under: `https://` for a bare name;
    /// a path, query or credentials are refused.
    pub fn base_url(setting: &str) -> Result<String, SpecError> {
        let setting = setting.trim().trim_end_matches('/');
        let with_scheme = if setting.contains("://") {
            setting.to_string()
        } else {
            format!("https://{setting}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| SpecError(format!("{setting:?} is not a host or URL: {e}")))?;
        let plain = url.host_str().is_some()
            && url.path().trim_end_matches('/').is_empty()
            && url.query().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && ["https", "http", "git", "ssh"].contains(&url.scheme());
        if !plain {
            return Err(SpecError(format!(
                "{setting:?} must be a host name or a URL without a path or credentials (https, http, git or ssh)"
            )));
        }
        Ok(with_scheme)
    }
}

fn decode(s: &str) -> Result<String, SpecError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| SpecError("the spec is not valid UTF-8".into()))
}

/// An owner, repository or gist name: letters, digits, `-`, `_` and `.`, never `.` or `..`.
fn name(part: &str, what: &str) -> Result<String, SpecError> {
    let decoded = decode(part)?;
    let plain = !decoded.is_empty()
        && decoded != "."
        && decoded != ".."
        && decoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if plain {
        Ok(decoded)
    } else {
        Err(SpecError(format!(
            "{decoded:?} is not a valid {what}: letters, digits, '-', '_' and '.' only"
        )))
    }
}

/// A path of names (a GitLab namespace), none of them `.` or `..`.
fn namespace(part: &str) -> Result<String, SpecError> {
    let decoded = decode(part)?;
    if decoded.is_empty()
        || decoded
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p.chars().any(|c| c.is_control()))
    {
        return Err(SpecError(format!(
            "{decoded:?} is not a valid namespace: group/project, without . or .. parts"
        )));
    }
    Ok(decoded)
}

pub fn parse(provider: &str, raw: &str, hosts: &ProviderHosts) -> Result<Spec, SpecError> {
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
    if ["doi", "swhid", "ckan"].contains(&provider)
        || kiln_builder::source::RECORD_PROVIDERS.contains(&provider)
    {
        return record(provider, raw);
    }
    let parts: Vec<&str> = raw.split('/').collect();
    let (repo_url, reference) = match provider {
        "gh" => {
            if parts.len() < 3 {
                return Err(SpecError("a gh spec is <owner>/<repo>/<ref>".into()));
            }
            (
                format!(
                    "{}/{}/{}",
                    hosts.github,
                    name(parts[0], "GitHub owner")?,
                    name(parts[1], "GitHub repository")?
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
                format!("{}/{}", hosts.gitlab, namespace(parts[0])?),
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
            if parts.len() < 2 {
                return Err(SpecError("a gist spec is <user>/<id>[/<ref>]".into()));
            }
            (
                format!(
                    "https://gist.github.com/{}/{}",
                    name(parts[0], "gist user")?,
                    name(parts[1], "gist id")?
                ),
                decode(&parts[2..].join("/"))?,
            )
        }
        other => {
            return Err(SpecError(format!(
                "unknown provider {other:?}; kiln serves gh, gl, git, gist, zenodo, figshare, dataverse, hydroshare, doi, swhid and ckan"
            )));
        }
    };
    if reference
        .split('/')
        .any(|p| p == ".." || p.chars().any(|c| c.is_control()))
    {
        return Err(SpecError(format!("{reference:?} is not a valid ref")));
    }
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
            "{:?} is not a remote git URL (https, http, git or ssh); local paths and file:// are refused",
            kiln_builder::source::redact(&url)
        )));
    }
    if url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').any(|p| p == ".." || p == "."))
    {
        return Err(SpecError(format!(
            "{:?} holds a path traversal",
            kiln_builder::source::redact(&url)
        )));
    }
    let source = Source::parse(&url).map_err(|e| SpecError(e.to_string()))?;
    let Source::Git(_) = &source else {
        return Err(SpecError(
            "local folders cannot be built through the service".into(),
        ));
    };
    let repo_url = source.to_string();
    // The spec without credentials: a `git` spec that carried some is re-escaped without them.
    let raw = match (
        provider,
        matches!(&source, Source::Git(g) if g.credentials.is_some()),
    ) {
        ("git", true) => format!(
            "{}/{}",
            utf8_percent_encode(&repo_url, NON_ALPHANUMERIC),
            parts[1..].join("/")
        ),
        _ => raw.to_string(),
    };
    let decoded = match provider {
        "git" => format!("{repo_url}/{reference}"),
        _ => decode(&raw)?,
    };
    Ok(Spec {
        provider: provider.to_string(),
        raw,
        decoded,
        repo_url,
        source,
        reference,
        owner: None,
        image_slug: None,
    })
}

/// A record's spec, without a ref (a record version never changes): a DOI for `zenodo`,
/// `figshare`, `dataverse` and `doi` (escaped or not; BinderHub's links give it as is), a resource
/// id, its URL or a DOI for `hydroshare`, a SWHID for `swhid`, an escaped dataset URL for `ckan`.
fn record(provider: &str, raw: &str) -> Result<Spec, SpecError> {
    use kiln_builder::source::RecordSource;
    let decoded = decode(raw)?;
    let hex_id = decoded.len() == 32 && decoded.bytes().all(|b| b.is_ascii_hexdigit());
    let url = decoded.starts_with("https://") || decoded.starts_with("http://");
    let (decoded, source) = match provider {
        "ckan" => {
            let source =
                Source::parse(&format!("ckan:{decoded}")).map_err(|e| SpecError(e.to_string()))?;
            (decoded, source)
        }
        "swhid" => {
            let swhid = kiln_builder::records::swh::parse(&decoded).ok_or_else(|| {
                SpecError(format!(
                    "{decoded:?} is not a SWHID of a directory or revision (swh:1:dir:<40 hex>)"
                ))
            })?;
            (swhid.clone(), Source::Record(RecordSource::Swhid(swhid)))
        }
        "hydroshare" if hex_id || url => {
            let url = if hex_id {
                format!("https://www.hydroshare.org/resource/{decoded}/")
            } else {
                decoded
            };
            (url.clone(), Source::Record(RecordSource::Url(url)))
        }
        _ => {
            let doi = kiln_builder::source::normalize_doi(&decoded).ok_or_else(|| {
                SpecError(format!(
                    "{decoded:?} is not a DOI: a {provider} spec is a DOI such as 10.5281/zenodo.3242074"
                ))
            })?;
            let source = Source::Record(RecordSource::Doi {
                doi: doi.clone(),
                provider: (provider != "doi").then(|| provider.to_string()),
            });
            (doi, source)
        }
    };
    Ok(Spec {
        provider: provider.to_string(),
        raw: raw.to_string(),
        decoded,
        repo_url: source.to_string(),
        source,
        reference: "HEAD".into(),
        owner: None,
        image_slug: None,
    })
}

/// The spec of a catalogue entry's source: any source `kiln build` takes but a local folder or
/// `file://` (a community file names what the service fetches, not what is on its disk).
pub fn for_entry(source: &str, reference: &str) -> Result<Spec, SpecError> {
    let parsed = if source.contains("://") || source.contains(':') {
        Source::parse(source).map_err(|e| SpecError(e.to_string()))?
    } else {
        return Err(SpecError(format!(
            "{source:?} is not a repository URL, a shorthand (gh:org/repo) or a record (doi:..., zenodo:...)"
        )));
    };
    match &parsed {
        Source::Local(_) => Err(SpecError(
            "local folders cannot be catalogue sources".into(),
        )),
        Source::Git(git) if git.url.starts_with("file:") => Err(SpecError(
            "file:// repositories cannot be catalogue sources".into(),
        )),
        _ => {
            let repo_url = parsed.to_string();
            Ok(Spec {
                provider: "catalog".into(),
                raw: kiln_builder::source::redact(source),
                decoded: format!("{repo_url}/{reference}"),
                repo_url,
                source: parsed,
                reference: reference.to_string(),
                owner: None,
                image_slug: None,
            })
        }
    }
}

impl Spec {
    /// [`check_reachable`] for a git repository. A record is judged request by request while it
    /// is resolved (the resolver, the installation's API, every file and redirect).
    pub async fn check_reachable(&self, policy: &Policy) -> Result<(), SpecError> {
        match &self.source {
            Source::Record(_) => Ok(()),
            _ => check_reachable(&self.repo_url, policy).await,
        }
    }
}

/// Whether the repository may be fetched under `policy`: its URL checked, and a name resolved now
/// (all its addresses checked) so that a refusal comes at once, with a clear message. The fetch
/// itself connects only to checked addresses again: this is the early answer, not the guard.
pub async fn check_reachable(repo_url: &str, policy: &Policy) -> Result<(), SpecError> {
    check_url(policy, repo_url).map_err(|e| SpecError(e.to_string()))?;
    let Ok(url) = url::Url::parse(repo_url) else {
        return Ok(());
    };
    if policy.is_open() || !matches!(url.scheme(), "http" | "https" | "git") {
        return Ok(());
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default().or(Some(9418)))
    else {
        return Ok(());
    };
    let host = host.trim_matches(['[', ']']);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(()); // an IP literal was judged by check_url
    }
    policy
        .resolve_async(host, port)
        .await
        .map(|_| ())
        .map_err(|e| SpecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(provider: &str, raw: &str) -> Result<Spec, SpecError> {
        parse(provider, raw, &ProviderHosts::default())
    }

    #[test]
    fn providers() {
        let s = p("gh", "binder-examples/octave/feature/x").unwrap();
        assert_eq!(s.repo_url, "https://github.com/binder-examples/octave");
        assert_eq!(s.reference, "feature/x");
        let s = p("git", "git%3A%2F%2F127.0.0.1%3A9418%2Frepo/HEAD").unwrap();
        assert_eq!(s.repo_url, "git://127.0.0.1:9418/repo");
        assert_eq!(s.reference, "HEAD");
        assert_eq!(s.decoded, "git://127.0.0.1:9418/repo/HEAD");
        let s = p("gl", "group%2Fproject/main").unwrap();
        assert_eq!(s.repo_url, "https://gitlab.com/group/project");
        assert!(p("zz", "a/b/c").is_err());
        assert!(p("gh", "a/../c").is_err());
        assert!(p("git", "file%3A%2F%2F%2Fetc/HEAD").is_err());
        assert!(p("git", "%2Fetc%2Fpasswd/HEAD").is_err());
        assert!(p("gh", "only-owner").is_err());
        let s = p("zenodo", "10.5281/zenodo.3242074").unwrap();
        assert_eq!(s.repo_url, "zenodo:10.5281/zenodo.3242074");
        assert_eq!(s.pattern_name(), "zenodo/10.5281/zenodo.3242074");
        let s = p("doi", "10.5281%2Fzenodo.3242074").unwrap();
        assert_eq!(s.repo_url, "doi:10.5281/zenodo.3242074");
        let s = p("figshare", "10.6084/m9.figshare.9782777.v2").unwrap();
        assert_eq!(s.repo_url, "figshare:10.6084/m9.figshare.9782777.v2");
        let s = p(
            "swhid",
            "swh:1:dir:0123456789abcdef0123456789abcdef01234567",
        )
        .unwrap();
        assert_eq!(
            s.repo_url,
            "swh:1:dir:0123456789abcdef0123456789abcdef01234567"
        );
        assert!(
            p(
                "swhid",
                "swh:1:cnt:0123456789abcdef0123456789abcdef01234567"
            )
            .is_err()
        );
        let s = p("ckan", "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample").unwrap();
        assert_eq!(s.repo_url, "ckan:https://demo.ckan.org/dataset/sample");
        assert!(p("ckan", "https%3A%2F%2Fdemo.ckan.org%2Fnot-a-dataset").is_err());
        let s = p("hydroshare", "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            s.repo_url,
            "https://www.hydroshare.org/resource/0123456789abcdef0123456789abcdef/"
        );
        assert!(p("zenodo", "not-a-doi").is_err());
        assert!(p("doi", "11.1/x").is_err());
    }

    #[test]
    fn gitlab_and_github_on_hosts_of_ones_own() {
        let hosts = ProviderHosts {
            github: ProviderHosts::base_url("github.example.org").unwrap(),
            gitlab: ProviderHosts::base_url("git://127.0.0.1:9418/").unwrap(),
        };
        let s = parse("gl", "group%2Fproject/main", &hosts).unwrap();
        assert_eq!(s.repo_url, "git://127.0.0.1:9418/group/project");
        let s = parse("gh", "o/r/HEAD", &hosts).unwrap();
        assert_eq!(s.repo_url, "https://github.example.org/o/r");
        for bad in [
            "https://gitlab.example.org/some/path",
            "https://user:pw@gitlab.example.org",
            "file:///srv/git",
            "https://h.example?x=1",
        ] {
            assert!(ProviderHosts::base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoded_traversal_is_refused() {
        for (provider, spec) in [
            ("gh", "ok/x%2F..%2F..%2Fevil%2Fr/HEAD"),
            ("gh", "%2E%2E/x/HEAD"),
            ("gh", "ok%2Fevil/r/HEAD"),
            ("gl", "ok%2F..%2Fevil/HEAD"),
            ("gist", "u/%2E%2E/HEAD"),
            ("git", "https%3A%2F%2Fh.example%2Fok%2F..%2Fevil/HEAD"),
            ("gh", "ok/r/main%2F..%2F..%2Fx"),
        ] {
            assert!(p(provider, spec).is_err(), "{provider}/{spec}");
        }
    }

    #[test]
    fn credentials_are_split_off_the_spec() {
        let s = p(
            "git",
            "https%3A%2F%2Falice%3As3cret-token%40git.example%2Fteam%2Frepo.git/main",
        )
        .unwrap();
        assert!(s.private());
        for shown in [&s.raw, &s.decoded, &s.repo_url] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("alice"),
                "{shown}"
            );
        }
        assert_eq!(s.repo_url, "https://git.example/team/repo.git");
        assert!(!p("gh", "o/r/HEAD").unwrap().private());
    }

    #[tokio::test]
    async fn private_hosts_are_refused_unless_allowed() {
        let public = Policy::public();
        for refused in [
            "git://127.0.0.1:9418/x",
            "http://10.1.2.3/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://100.64.0.1/x",
            "http://localhost/x",
        ] {
            assert!(
                check_reachable(refused, &public).await.is_err(),
                "{refused}"
            );
        }
        let allowed =
            Policy::public().with_allowed(kiln_net::AllowList::parse("127.0.0.1:*").unwrap());
        assert!(
            check_reachable("git://127.0.0.1:9418/x", &allowed)
                .await
                .is_ok()
        );
        assert!(
            check_reachable("ssh://git@github.com/x", &public)
                .await
                .is_err()
        );
    }
}
