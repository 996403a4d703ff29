//! Sources: what a user or a badge names, and what it resolves to.
//!
//! A source is a local folder, a git URL (https, http, git, ssh, file, or scp-like `user@host:path`),
//! or a shorthand: `gh:org/repo`, `gl:group/project`, `gist:user/id`; or an archived record
//! (`zenodo:DOI`, `doi:DOI`, `https://doi.org/DOI`, a Zenodo, Figshare or Dataverse landing URL), fetched by
//! [`crate::records`]. Credentials in a URL are split off at parse time: the URL kept for display,
//! logs and errors never holds them.

use std::fmt;
use std::path::PathBuf;

use crate::error::BuildError;

/// Credentials for a private repository. `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, secret: <redacted> }}",
            self.username
        )
    }
}

/// A source before resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A folder on this machine, built as it is (git or not).
    Local(PathBuf),
    /// A git repository.
    Git(GitSource),
    /// An archived record (Zenodo or another InvenioRDM installation), named by a DOI or a URL.
    Record(RecordSource),
}

/// What names an archived record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordSource {
    /// A DOI (`10.5281/zenodo.3242074`), resolved through the DOI resolver to the record it
    /// lands on; `provider` (`zenodo`, `figshare`, `dataverse`: `zenodo:DOI`) is where it must
    /// land, `None` (`doi:DOI`) anywhere kiln fetches records from.
    Doi {
        doi: String,
        provider: Option<String>,
    },
    /// A record's landing URL (`https://zenodo.org/records/3242074`).
    Url(String),
    /// A Software Heritage identifier of a directory or revision (`swh:1:dir:<hash>`).
    Swhid(String),
    /// A CKAN dataset's URL (`ckan:https://portal.example/dataset/<id>`): any portal.
    Ckan(String),
    /// A record as resolved: its provider (`zenodo`, `figshare`, `dataverse`), landing `url`,
    /// what its images are named after (`zenodo-<id>`) and its `version` (a record version never
    /// changes, so it plays the commit's part).
    Resolved {
        provider: String,
        url: String,
        slug: String,
        version: String,
    },
}

/// A git repository's URL, without credentials, and the credentials given in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSource {
    /// The URL with any user info removed: safe to print.
    pub url: String,
    pub credentials: Option<Credentials>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local(path) => write!(f, "{}", path.display()),
            Source::Git(git) => f.write_str(&git.url),
            Source::Record(RecordSource::Doi {
                doi,
                provider: Some(provider),
            }) => write!(f, "{provider}:{doi}"),
            Source::Record(RecordSource::Doi {
                doi,
                provider: None,
            }) => write!(f, "doi:{doi}"),
            Source::Record(
                RecordSource::Url(url)
                | RecordSource::Resolved { url, .. }
                | RecordSource::Swhid(url),
            ) => f.write_str(url),
            Source::Record(RecordSource::Ckan(url)) => write!(f, "ckan:{url}"),
        }
    }
}

impl Source {
    /// Parse what a user typed. An existing folder wins over every other reading.
    pub fn parse(spec: &str) -> Result<Source, BuildError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(BuildError::BadSource {
                spec: String::new(),
                reason: "it is empty".into(),
            });
        }
        if !spec.contains("://") && std::path::Path::new(spec).is_dir() {
            return Ok(Source::Local(PathBuf::from(spec)));
        }
        if let Some(record) = RecordSource::parse(spec)? {
            return Ok(Source::Record(record));
        }
        for (prefix, host) in [
            ("gh:", "https://github.com/"),
            ("gl:", "https://gitlab.com/"),
            ("gist:", "https://gist.github.com/"),
        ] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                let rest = rest.trim_matches('/');
                // GitLab has nested groups: group/subgroup/project.
                let parts = rest.split('/').count();
                let count_ok = if prefix == "gl:" {
                    parts >= 2
                } else {
                    parts == 2
                };
                if !count_ok || rest.split('/').any(|p| !is_slug_part(p)) {
                    return Err(BuildError::BadSource {
                        spec: spec.to_string(),
                        reason: format!(
                            "{prefix} takes owner/name, such as {prefix}jupyterhub/repo2docker"
                        ),
                    });
                }
                return Ok(Source::Git(GitSource {
                    url: format!("{host}{rest}"),
                    credentials: None,
                }));
            }
        }
        if spec.contains("://") {
            let mut url = url::Url::parse(spec).map_err(|e| BuildError::BadSource {
                spec: redact(spec),
                reason: format!("not a valid URL: {e}"),
            })?;
            if !matches!(url.scheme(), "https" | "http" | "git" | "ssh" | "file") {
                return Err(BuildError::BadSource {
                    spec: redact(spec),
                    reason: format!(
                        "the scheme {}:// is not one kiln fetches (https, http, git, ssh, file)",
                        url.scheme()
                    ),
                });
            }
            let credentials = match (url.username(), url.password()) {
                ("", None) => None,
                (user, password) => {
                    let decode = |s: &str| percent_decode(s);
                    Some(Credentials {
                        username: decode(user),
                        secret: password.map(decode).unwrap_or_default(),
                    })
                }
            };
            // ssh keeps its user name (it selects the account, it is not a secret).
            let keep_user = url.scheme() == "ssh" && url.password().is_none();
            if !keep_user {
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            return Ok(Source::Git(GitSource {
                url: url.to_string(),
                credentials: if keep_user { None } else { credentials },
            }));
        }
        // scp-like: user@host:path
        if let Some((user_host, path)) = spec.split_once(':')
            && user_host.contains('@')
            && !path.is_empty()
            && !user_host.contains('/')
        {
            return Ok(Source::Git(GitSource {
                url: spec.to_string(),
                credentials: None,
            }));
        }
        Err(BuildError::BadSource {
            spec: spec.to_string(),
            reason: "it is not an existing folder, a git URL (https, http, git, ssh, file) or a shorthand (gh:org/repo, gl:group/project)".into(),
        })
    }

    /// BinderHub's build slug, from which registry image names are made: `org-repo` for GitHub, the
    /// namespace for GitLab, the gist id for a gist, the URL for any other git repository, and the
    /// folder's name for a local folder.
    pub fn build_slug(&self) -> String {
        match self {
            Source::Record(RecordSource::Resolved { slug, .. }) => slug.clone(),
            Source::Local(_) | Source::Record(_) => self.slug(),
            Source::Git(git) => {
                let url = git.url.trim_end_matches('/');
                let path_of = |host: &str| {
                    url.strip_prefix(host)
                        .map(|p| p.trim_end_matches(".git").to_string())
                };
                if let Some(path) = path_of("https://github.com/")
                    && let Some((org, repo)) = path.split_once('/')
                    && !repo.contains('/')
                {
                    return format!("{org}-{repo}");
                }
                if let Some(path) = path_of("https://gitlab.com/") {
                    return path;
                }
                if let Some(path) = path_of("https://gist.github.com/")
                    && let Some((_, id)) = path.split_once('/')
                {
                    return id.to_string();
                }
                git.url.clone()
            }
        }
    }

    /// A short name for the repository, used in image names: `org-repo` or the folder's name.
    pub fn slug(&self) -> String {
        let raw = match self {
            Source::Local(path) => std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "local".into()),
            Source::Git(git) => {
                let path = git
                    .url
                    .rsplit_once(':')
                    .map_or(git.url.as_str(), |(_, p)| p);
                let parts: Vec<&str> = path
                    .trim_end_matches('/')
                    .trim_end_matches(".git")
                    .rsplit('/')
                    .take(2)
                    .collect();
                parts.into_iter().rev().collect::<Vec<_>>().join("-")
            }
            Source::Record(RecordSource::Doi { doi, .. }) => format!("doi-{doi}"),
            Source::Record(
                RecordSource::Url(url) | RecordSource::Swhid(url) | RecordSource::Ckan(url),
            ) => url.clone(),
            Source::Record(RecordSource::Resolved { slug, .. }) => slug.clone(),
        };
        let slug = slugify(&raw);
        if slug.is_empty() { "repo".into() } else { slug }
    }
}

impl RecordSource {
    /// A record named by `spec`, `None` when `spec` names no record; a `zenodo:` or `doi:` that
    /// is not a DOI or URL is an error.
    pub fn parse(spec: &str) -> Result<Option<RecordSource>, BuildError> {
        let bad = |reason: &str| BuildError::BadSource {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(swhid) = crate::records::swh::parse(spec) {
            return Ok(Some(RecordSource::Swhid(swhid)));
        }
        if let Some(url) = spec.strip_prefix("ckan:") {
            let url = url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || !url.contains("/dataset/")
            {
                return Err(bad(
                    "ckan: takes a dataset's URL: https://portal.example/dataset/<id>",
                ));
            }
            return Ok(Some(RecordSource::Ckan(url.to_string())));
        }
        let named = RECORD_PROVIDERS
            .iter()
            .find_map(|p| spec.strip_prefix(&format!("{p}:")).map(|rest| (rest, p)));
        let (rest, provider) = if let Some((rest, provider)) = named {
            (rest, Some(provider.to_string()))
        } else if let Some(rest) = spec.strip_prefix("doi:") {
            (rest, None)
        } else if let Some(doi) = ["https://doi.org/", "http://doi.org/", "https://dx.doi.org/"]
            .iter()
            .find_map(|p| spec.strip_prefix(p))
        {
            return Ok(Some(RecordSource::Doi {
                doi: normalize_doi(doi).ok_or_else(|| bad("it is not a DOI (10.NNNN/...)"))?,
                provider: None,
            }));
        } else {
            let url = url::Url::parse(spec).ok();
            // Landing URLs of the public repositories (others: `doi:<URL>`).
            let zenodo_record = url.as_ref().is_some_and(|u| {
                let first = u.path_segments().and_then(|mut s| s.next());
                match u.host_str() {
                    Some("zenodo.org" | "sandbox.zenodo.org") => {
                        matches!(first, Some("record" | "records"))
                    }
                    Some("figshare.com") => first == Some("articles"),
                    Some("www.hydroshare.org" | "hydroshare.org") => first == Some("resource"),
                    Some(host) => {
                        crate::records::DATAVERSE_HOSTS.contains(&host)
                            && u.path() == "/dataset.xhtml"
                    }
                    None => false,
                }
            });
            return Ok(zenodo_record.then(|| RecordSource::Url(spec.to_string())));
        };
        let rest = rest.trim();
        if rest.starts_with("https://") || rest.starts_with("http://") {
            return Ok(Some(RecordSource::Url(rest.to_string())));
        }
        let doi = normalize_doi(rest)
            .ok_or_else(|| bad("give a DOI (10.5281/zenodo.3242074) or a record's URL"))?;
        Ok(Some(RecordSource::Doi { doi, provider }))
    }
}

/// The record providers a DOI may be pinned to (`zenodo:DOI`), as BinderHub names them.
pub const RECORD_PROVIDERS: &[&str] = &["zenodo", "figshare", "dataverse", "hydroshare"];

/// A DOI as the resolver takes it (`10.NNNN/suffix`), from a DOI with or without `doi:` or a
/// resolver's prefix; `None` when it is not one.
pub fn normalize_doi(text: &str) -> Option<String> {
    let text = text.trim().trim_start_matches("doi:");
    let (prefix, suffix) = text.split_once('/')?;
    let registrant = prefix.strip_prefix("10.")?;
    let ok = !registrant.is_empty()
        && registrant.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace());
    ok.then(|| text.to_string())
}

/// `raw` in lower case with every character but ASCII letters and digits turned into `-`, without
/// leading or trailing dashes (empty when nothing is left).
pub fn slugify(raw: &str) -> String {
    let slug: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug.trim_matches('-').to_string()
}

fn is_slug_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL-ish string with any `user:password@` removed, for messages.
pub fn redact(spec: &str) -> String {
    match spec.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => spec.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_doi_or_landing_url() {
        let doi = |doi: &str, zenodo: bool| {
            Source::Record(RecordSource::Doi {
                doi: doi.into(),
                provider: zenodo.then(|| "zenodo".to_string()),
            })
        };
        assert_eq!(
            Source::parse("zenodo:10.5281/zenodo.3242074").unwrap(),
            doi("10.5281/zenodo.3242074", true)
        );
        for spec in [
            "doi:10.5281/zenodo.3242074",
            "https://doi.org/10.5281/zenodo.3242074",
            "https://dx.doi.org/10.5281/zenodo.3242074",
        ] {
            assert_eq!(
                Source::parse(spec).unwrap(),
                doi("10.5281/zenodo.3242074", false),
                "{spec}"
            );
        }
        for url in [
            "https://zenodo.org/records/3242074",
            "https://figshare.com/articles/code/analysis/9782777/2",
            "https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:10.7910/DVN/TJCLKP",
        ] {
            assert_eq!(
                Source::parse(url).unwrap(),
                Source::Record(RecordSource::Url(url.into())),
                "{url}"
            );
        }
        // A git repository on the same hosts stays a git repository.
        assert!(matches!(
            Source::parse("https://zenodo.org/zenodo/zenodo.git").unwrap(),
            Source::Git(_)
        ));
        assert!(Source::parse("doi:not-a-doi").is_err());
        assert!(Source::parse("zenodo:11.1/x").is_err());
        assert_eq!(
            Source::parse("doi:10.5281/zenodo.1").unwrap().to_string(),
            "doi:10.5281/zenodo.1"
        );
    }

    #[test]
    fn shorthands_and_urls() {
        assert_eq!(
            Source::parse("gh:jupyterhub/repo2docker").unwrap(),
            Source::Git(GitSource {
                url: "https://github.com/jupyterhub/repo2docker".into(),
                credentials: None
            })
        );
        assert!(Source::parse("gh:only-owner").is_err());
        assert!(Source::parse("gh:../etc/x").is_err());
        let Source::Git(git) =
            Source::parse("https://alice:s3cr%40t@git.example.org/team/repo.git").unwrap()
        else {
            panic!()
        };
        assert_eq!(git.url, "https://git.example.org/team/repo.git");
        let creds = git.credentials.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.secret.as_str()),
            ("alice", "s3cr@t")
        );
        assert!(!format!("{creds:?}").contains("s3cr"));
        assert!(Source::parse("ftp://example.org/x").is_err());
        assert!(matches!(
            Source::parse("git@example.org:team/repo.git").unwrap(),
            Source::Git(_)
        ));
        assert!(matches!(Source::parse(".").unwrap(), Source::Local(_)));
        assert!(Source::parse("no such thing").is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(
            Source::parse("gh:Org/My_Repo").unwrap().slug(),
            "org-my-repo"
        );
        assert_eq!(
            Source::parse("https://h.example/a/b/c.git").unwrap().slug(),
            "b-c"
        );
        assert_eq!(
            Source::parse("git@h:team/repo.git").unwrap().slug(),
            "team-repo"
        );
    }

    #[test]
    fn build_slugs_follow_binderhub() {
        assert_eq!(
            Source::parse("gh:binder-examples/octave")
                .unwrap()
                .build_slug(),
            "binder-examples-octave"
        );
        assert_eq!(
            Source::parse("gl:group/sub/project").unwrap().build_slug(),
            "group/sub/project"
        );
        assert_eq!(
            Source::parse("https://h.example/x/y.git")
                .unwrap()
                .build_slug(),
            "https://h.example/x/y.git"
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://u:p@host/x"), "https://host/x");
        assert_eq!(redact("https://host/x"), "https://host/x");
    }
}
