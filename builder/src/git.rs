//! Git, behind a small trait: list a remote's refs (no clone), and fetch exactly one commit shallowly
//! with its submodules. The implementation is libgit2 (`git2`); its calls block, so async callers run
//! them in `spawn_blocking`.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::{AutotagOption, Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository};

use crate::error::BuildError;
use crate::source::{Credentials, GitSource};

/// Limits on what a fetch may bring.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    pub max_bytes: u64,
    pub max_files: u64,
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 200_000,
            timeout: Duration::from_secs(600),
        }
    }
}

/// A commit that a ref resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub commit: String,
    /// The ref name that pointed at it, when one did (fetched by name when the server refuses a SHA).
    pub ref_name: Option<String>,
}

/// What kiln needs from git.
pub trait GitBackend: Send + Sync {
    /// Resolve a branch, tag, full or short SHA (or `HEAD` when `None`) without cloning.
    fn resolve(&self, source: &GitSource, reference: Option<&str>) -> Result<Resolved, BuildError>;
    /// Fetch exactly `resolved.commit` into `dest` (created), shallowly, and check out its tree and
    /// submodules. Returns the commit time (seconds since the epoch).
    fn fetch(
        &self,
        source: &GitSource,
        resolved: &Resolved,
        dest: &Path,
        limits: &FetchLimits,
    ) -> Result<i64, BuildError>;
    /// The commit time of a local folder's checked-out commit (seconds since the epoch), or 0 when
    /// it is not a git checkout.
    fn local_commit_time(&self, dir: &Path) -> i64;
}

/// The libgit2 implementation.
#[derive(Default)]
pub struct LibGit;

impl GitBackend for LibGit {
    fn local_commit_time(&self, dir: &Path) -> i64 {
        Repository::open(dir)
            .ok()
            .and_then(|r| {
                r.head()
                    .ok()?
                    .peel_to_commit()
                    .ok()
                    .map(|c| c.time().seconds())
            })
            .unwrap_or(0)
    }

    fn resolve(&self, source: &GitSource, reference: Option<&str>) -> Result<Resolved, BuildError> {
        let mut remote = git2::Remote::create_detached(source.url.as_str())
            .map_err(|e| unreachable(source, &e))?;
        let auth = Auth::new(source);
        let connection = remote
            .connect_auth(git2::Direction::Fetch, Some(auth.callbacks(None)), None)
            .map_err(|e| auth.error(source, &e))?;
        let refs: Vec<(String, String)> = connection
            .list()
            .map_err(|e| unreachable(source, &e))?
            .iter()
            .map(|h| (h.name().to_string(), h.oid().to_string()))
            .collect();
        resolve_in(&source.url, &refs, reference)
    }

    fn fetch(
        &self,
        source: &GitSource,
        resolved: &Resolved,
        dest: &Path,
        limits: &FetchLimits,
    ) -> Result<i64, BuildError> {
        let repo = Repository::init(dest).map_err(|e| fetch_error(source, &e))?;
        let auth = Auth::new(source);
        let budget = Budget::new(limits);
        let mut remote = repo
            .remote_anonymous(&source.url)
            .map_err(|e| unreachable(source, &e))?;
        // libgit2's local transport cannot fetch shallowly; a local repository is read in full.
        let shallow = !source.url.starts_with("file://");
        let fetch_with = |refspec: &str, remote: &mut git2::Remote| {
            let mut options = FetchOptions::new();
            options.remote_callbacks(auth.callbacks(Some(&budget)));
            if shallow {
                options.depth(1);
            }
            options.download_tags(AutotagOption::None);
            remote.fetch(&[refspec], Some(&mut options), None)
        };
        let oid = git2::Oid::from_str(&resolved.commit).map_err(|e| fetch_error(source, &e))?;
        // Ask for the commit itself; servers that refuse a SHA get the ref name that pointed at it.
        let by_sha = fetch_with(&resolved.commit, &mut remote);
        if let Err(e) = &by_sha {
            budget.check()?;
            if auth.failed.get() {
                return Err(auth.error(source, e));
            }
        }
        if repo.find_commit(oid).is_err() {
            if let Some(name) = &resolved.ref_name {
                fetch_with(&format!("+{name}:refs/kiln/fetched"), &mut remote).map_err(|e| {
                    budget
                        .check()
                        .err()
                        .unwrap_or_else(|| auth.error(source, &e))
                })?;
            } else if let Err(e) = by_sha {
                return Err(BuildError::Fetch {
                    url: source.url.clone(),
                    reason: format!(
                        "the server would not send commit {}: {}",
                        resolved.commit,
                        e.message()
                    ),
                });
            }
        }
        let commit = repo.find_commit(oid).map_err(|_| BuildError::Fetch {
            url: source.url.clone(),
            reason: format!(
                "commit {} is no longer what the ref points at; try again",
                resolved.commit
            ),
        })?;
        let time = commit.time().seconds();
        repo.set_head_detached(oid)
            .map_err(|e| fetch_error(source, &e))?;
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .map_err(|e| fetch_error(source, &e))?;
        update_submodules(&repo, &auth, &budget, source)?;
        budget.check_tree(dest)?;
        Ok(time)
    }
}

fn update_submodules(
    repo: &Repository,
    auth: &Auth,
    budget: &Budget,
    source: &GitSource,
) -> Result<(), BuildError> {
    for mut submodule in repo.submodules().map_err(|e| fetch_error(source, &e))? {
        let mut options = git2::SubmoduleUpdateOptions::new();
        let mut fetch = FetchOptions::new();
        fetch.remote_callbacks(auth.callbacks(Some(budget)));
        options.fetch(fetch);
        let name = submodule.name().unwrap_or("?").to_string();
        submodule.update(true, Some(&mut options)).map_err(|e| {
            budget.check().err().unwrap_or_else(|| BuildError::Fetch {
                url: source.url.clone(),
                reason: format!("submodule {name}: {}", e.message()),
            })
        })?;
        let sub_repo = submodule.open().map_err(|e| fetch_error(source, &e))?;
        update_submodules(&sub_repo, auth, budget, source)?;
    }
    Ok(())
}

/// Pick the commit a reference names from a remote's advertised refs.
pub fn resolve_in(
    url: &str,
    refs: &[(String, String)],
    reference: Option<&str>,
) -> Result<Resolved, BuildError> {
    let wanted = reference.unwrap_or("HEAD").trim();
    let find = |name: &str| {
        refs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| oid.clone())
    };
    let found = |commit: String, name: &str| Resolved {
        commit,
        ref_name: Some(name.to_string()),
    };
    if wanted == "HEAD" {
        if let Some(oid) = find("HEAD") {
            return Ok(found(oid, "HEAD"));
        }
    } else {
        for name in [
            format!("refs/heads/{wanted}"),
            format!("refs/tags/{wanted}^{{}}"),
            format!("refs/tags/{wanted}"),
            wanted.to_string(),
        ] {
            if let Some(oid) = find(&name) {
                let name = name.trim_end_matches("^{}").to_string();
                return Ok(found(oid, &name));
            }
        }
    }
    let is_hex =
        wanted.len() >= 4 && wanted.len() <= 40 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let lower = wanted.to_ascii_lowercase();
        let mut tips: Vec<&(String, String)> = refs
            .iter()
            .filter(|(_, oid)| oid.starts_with(&lower))
            .collect();
        tips.dedup_by(|a, b| a.1 == b.1);
        match tips.as_slice() {
            [(name, oid)] => return Ok(found(oid.clone(), name.trim_end_matches("^{}"))),
            [] if lower.len() == 40 => {
                return Ok(Resolved {
                    commit: lower,
                    ref_name: None,
                });
            }
            [] => {}
            _ => {
                return Err(BuildError::UnknownRef {
                    url: url.to_string(),
                    reference: wanted.to_string(),
                    hint: "; it is ambiguous: give more characters of the SHA".into(),
                });
            }
        }
    }
    let mut names: Vec<&str> = refs
        .iter()
        .filter_map(|(n, _)| {
            n.strip_prefix("refs/heads/")
                .or_else(|| n.strip_prefix("refs/tags/"))
        })
        .filter(|n| !n.ends_with("^{}"))
        .collect();
    names.sort();
    names.truncate(10);
    let hint = if is_hex {
        "; a short SHA must be the tip of a branch or tag (give the full 40-character SHA for any other commit)".to_string()
    } else if names.is_empty() {
        "; the repository has no branches or tags".to_string()
    } else {
        format!("; it has: {}", names.join(", "))
    };
    Err(BuildError::UnknownRef {
        url: url.to_string(),
        reference: wanted.to_string(),
        hint,
    })
}

fn unreachable(source: &GitSource, e: &git2::Error) -> BuildError {
    BuildError::Unreachable {
        url: source.url.clone(),
        reason: e.message().to_string(),
    }
}

fn fetch_error(source: &GitSource, e: &git2::Error) -> BuildError {
    BuildError::Fetch {
        url: source.url.clone(),
        reason: e.message().to_string(),
    }
}

const MAX_AUTH_ATTEMPTS: u32 = 6;

/// Credentials for one remote: from the URL, the environment (`KILN_GIT_USERNAME`,
/// `KILN_GIT_PASSWORD`), git's credential helpers, or the SSH agent; each is tried once.
struct Auth {
    given: Option<Credentials>,
    url: String,
    attempts: Cell<u32>,
    failed: Cell<bool>,
}

impl Auth {
    fn new(source: &GitSource) -> Self {
        let from_env = match (
            std::env::var("KILN_GIT_USERNAME"),
            std::env::var("KILN_GIT_PASSWORD"),
        ) {
            (Ok(username), Ok(secret)) if !secret.is_empty() => {
                Some(Credentials { username, secret })
            }
            _ => None,
        };
        Auth {
            given: source.credentials.clone().or(from_env),
            url: source.url.clone(),
            attempts: Cell::new(0),
            failed: Cell::new(false),
        }
    }

    fn callbacks<'a>(&'a self, budget: Option<&'a Budget>) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, username, allowed| {
            let attempt = self.attempts.get() + 1;
            self.attempts.set(attempt);
            let result = if allowed.contains(CredentialType::SSH_KEY) {
                if attempt > 1 {
                    Err(git2::Error::from_str("no usable SSH key"))
                } else {
                    Cred::ssh_key_from_agent(username.unwrap_or("git"))
                }
            } else if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                // libgit2 asks again for every new connection, and again after a refusal: a few
                // attempts cover the first case without looping on wrong credentials.
                match (&self.given, attempt) {
                    (_, n) if n > MAX_AUTH_ATTEMPTS => {
                        Err(git2::Error::from_str("authentication failed"))
                    }
                    (Some(c), _) => Cred::userpass_plaintext(&c.username, &c.secret),
                    (None, _) => git2::Config::open_default()
                        .and_then(|config| Cred::credential_helper(&config, url, username)),
                }
            } else if allowed.contains(CredentialType::USERNAME) {
                Cred::username(username.unwrap_or("git"))
            } else {
                Cred::default()
            };
            if result.is_err() || attempt > 2 {
                self.failed.set(true);
            }
            result
        });
        if let Some(budget) = budget {
            callbacks.transfer_progress(move |progress| {
                budget.transfer(progress.received_bytes() as u64)
            });
        }
        callbacks
    }

    fn error(&self, source: &GitSource, e: &git2::Error) -> BuildError {
        if self.failed.get()
            || e.code() == git2::ErrorCode::Auth
            || e.class() == git2::ErrorClass::Http && e.message().contains("401")
        {
            BuildError::Authentication {
                url: self.url.clone(),
            }
        } else {
            unreachable(source, e)
        }
    }
}

/// The size and time budget of one fetch.
struct Budget {
    limits: FetchLimits,
    started: Instant,
    exceeded: Cell<Option<&'static str>>,
}

impl Budget {
    fn new(limits: &FetchLimits) -> Self {
        Budget {
            limits: limits.clone(),
            started: Instant::now(),
            exceeded: Cell::new(None),
        }
    }

    /// Called as data arrives; returning false cancels the transfer.
    fn transfer(&self, received: u64) -> bool {
        if received > self.limits.max_bytes {
            self.exceeded.set(Some("bytes"));
        } else if self.started.elapsed() > self.limits.timeout {
            self.exceeded.set(Some("time"));
        }
        self.exceeded.get().is_none()
    }

    fn check(&self) -> Result<(), BuildError> {
        match self.exceeded.get() {
            Some("bytes") => Err(BuildError::TooLarge {
                limit: self.limits.max_bytes,
                unit: "bytes",
                option: "--max-repo-bytes",
            }),
            Some(_) => Err(BuildError::FetchTimeout(self.limits.timeout)),
            None => Ok(()),
        }
    }

    /// After checkout: the number of files and their size.
    fn check_tree(&self, dir: &Path) -> Result<(), BuildError> {
        let (mut files, mut bytes) = (0u64, 0u64);
        for entry in walk(dir) {
            files += 1;
            bytes += entry;
            if files > self.limits.max_files {
                return Err(BuildError::TooLarge {
                    limit: self.limits.max_files,
                    unit: "files",
                    option: "--max-repo-files",
                });
            }
            if bytes > self.limits.max_bytes {
                return Err(BuildError::TooLarge {
                    limit: self.limits.max_bytes,
                    unit: "bytes",
                    option: "--max-repo-bytes",
                });
            }
        }
        Ok(())
    }
}

/// Sizes of the regular files under `dir`, outside `.git`, without following links.
fn walk(dir: &Path) -> impl Iterator<Item = u64> {
    let mut stack = vec![dir.to_path_buf()];
    std::iter::from_fn(move || {
        while let Some(path) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if path.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                if let Ok(entries) = std::fs::read_dir(&path) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            } else if meta.is_file() {
                return Some(meta.len());
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Vec<(String, String)> {
        let r = |n: &str, o: &str| (n.to_string(), o.repeat(40 / o.len()));
        vec![
            r("HEAD", "a1"),
            r("refs/heads/main", "a1"),
            r("refs/heads/dev", "b2"),
            r("refs/tags/v1", "c3"),
            r("refs/tags/v1^{}", "d4"),
        ]
    }

    #[test]
    fn names_shas_and_errors() {
        assert_eq!(
            resolve_in("u", &refs(), None).unwrap().commit,
            "a1".repeat(20)
        );
        assert_eq!(
            resolve_in("u", &refs(), Some("dev")).unwrap().commit,
            "b2".repeat(20)
        );
        // An annotated tag resolves to the commit it points at.
        assert_eq!(
            resolve_in("u", &refs(), Some("v1")).unwrap().commit,
            "d4".repeat(20)
        );
        assert_eq!(
            resolve_in("u", &refs(), Some("b2b2b2b"))
                .unwrap()
                .ref_name
                .as_deref(),
            Some("refs/heads/dev")
        );
        let full = "e5".repeat(20);
        assert_eq!(
            resolve_in("u", &refs(), Some(&full)).unwrap(),
            Resolved {
                commit: full,
                ref_name: None
            }
        );
        let err = resolve_in("u", &refs(), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no branch, tag or commit \"nope\"; it has: dev, main, v1"),
            "{err}"
        );
        assert!(resolve_in("u", &refs(), Some("e5e5e5e")).is_err());
    }
}
