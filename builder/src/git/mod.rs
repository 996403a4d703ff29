//! Git, behind a small trait: list a remote's refs (no clone), and fetch exactly one commit shallowly
//! with its submodules. The implementation is libgit2 (`git2`) over kiln-net's guarded transports;
//! its calls block, so async callers run them in `spawn_blocking`.
//!
//! - [`access`]: what a fetch may reach and whose credentials it may use;
//! - [`refs`]: which commit a ref names;
//! - [`tree`]: a commit's size, read before checkout;
//! - [`submodules`]: each submodule checked, fetched and counted like the repository.

pub mod access;
mod refs;
mod submodules;
mod tree;

use std::path::Path;
use std::time::Duration;

use git2::{AutotagOption, FetchOptions, Repository};
use kiln_net::git::Scope;

use crate::error::BuildError;
use crate::source::GitSource;
pub use access::{FetchSettings, OperatorCredentials, check_url};
pub use refs::resolve_in;

/// Limits on what a fetch may bring (the repository and its submodules together).
#[derive(Clone, Debug)]
pub struct FetchLimits {
    /// Bytes downloaded, and bytes of the checked-out files.
    pub max_bytes: u64,
    pub max_files: u64,
    pub timeout: Duration,
    /// Submodules in all, and how deep they may nest.
    pub max_submodules: usize,
    pub max_submodule_depth: u32,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 200_000,
            timeout: Duration::from_secs(600),
            max_submodules: 50,
            max_submodule_depth: 4,
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
    fn resolve(
        &self,
        source: &GitSource,
        reference: Option<&str>,
        settings: &FetchSettings,
    ) -> Result<Resolved, BuildError>;
    /// Fetch exactly `resolved.commit` into `dest` (created), shallowly, and check out its tree and
    /// submodules. Returns the commit time (seconds since the epoch).
    fn fetch(
        &self,
        source: &GitSource,
        resolved: &Resolved,
        dest: &Path,
        settings: &FetchSettings,
    ) -> Result<i64, BuildError>;
    /// The commit time of a local folder's checked-out commit (seconds since the epoch), or 0 when
    /// it is not a git checkout.
    fn local_commit_time(&self, dir: &Path) -> i64;
}

/// The libgit2 implementation.
#[derive(Default)]
pub struct LibGit;

/// The scope of one fetch: its policy, its byte budget and deadline, and the credentials bound to
/// their hosts.
fn scope(source: &GitSource, settings: &FetchSettings) -> Scope {
    Scope::builder(settings.policy.clone())
        .credentials(access::provider(
            &source.url,
            source.credentials.clone(),
            settings.operator.clone(),
        ))
        .max_bytes(settings.limits.max_bytes)
        .timeout(settings.limits.timeout)
        .build()
}

impl GitBackend for LibGit {
    fn resolve(
        &self,
        source: &GitSource,
        reference: Option<&str>,
        settings: &FetchSettings,
    ) -> Result<Resolved, BuildError> {
        check_url(&settings.policy, &source.url)?;
        let scope = scope(source, settings);
        let refs = scope
            .run(|| {
                let mut remote = git2::Remote::create_detached(source.url.as_str())?;
                let callbacks = access::ssh_callbacks(&settings.operator);
                let connection =
                    remote.connect_auth(git2::Direction::Fetch, Some(callbacks), None)?;
                Ok(connection
                    .list()?
                    .iter()
                    .map(|h| (h.name().to_string(), h.oid().to_string()))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| net_error(&source.url, e))?;
        resolve_in(&source.url, &refs, reference)
    }

    fn fetch(
        &self,
        source: &GitSource,
        resolved: &Resolved,
        dest: &Path,
        settings: &FetchSettings,
    ) -> Result<i64, BuildError> {
        check_url(&settings.policy, &source.url)?;
        let scope = scope(source, settings);
        let repo = Repository::init(dest).map_err(|e| fetch_error(&source.url, &e))?;
        let oid = fetch_commit(&scope, &repo, &source.url, resolved, settings)?;
        let mut totals = tree::Totals::default();
        tree::count(&repo, oid, &settings.limits, &mut totals)?;
        let time = repo
            .find_commit(oid)
            .map(|c| c.time().seconds())
            .map_err(|e| fetch_error(&source.url, &e))?;
        check_out(&repo, oid, &source.url)?;
        let mut count = 0;
        submodules::update(
            &repo,
            &source.url,
            0,
            &scope,
            settings,
            &mut totals,
            &mut count,
        )?;
        Ok(time)
    }

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
}

/// Fetch one commit into `repo`: by its SHA (shallowly, except from a local repository, which
/// libgit2 cannot read shallowly); a server that refuses a SHA gets the ref that pointed at it, or,
/// without one, all its branches and tags. Returns the commit's id.
fn fetch_commit(
    scope: &Scope,
    repo: &Repository,
    url: &str,
    resolved: &Resolved,
    settings: &FetchSettings,
) -> Result<git2::Oid, BuildError> {
    let oid = git2::Oid::from_str(&resolved.commit).map_err(|e| fetch_error(url, &e))?;
    let shallow = url.contains("://") && !url.starts_with("file://");
    let fetch = |refspecs: &[&str], depth: bool| {
        scope.run(|| {
            let mut remote = repo.remote_anonymous(url)?;
            let mut options = FetchOptions::new();
            options.remote_callbacks(access::ssh_callbacks(&settings.operator));
            if depth && shallow {
                options.depth(1);
            }
            options.download_tags(AutotagOption::None);
            remote.fetch(refspecs, Some(&mut options), None)
        })
    };
    let by_sha = fetch(&[resolved.commit.as_str()], true);
    if repo.find_commit(oid).is_ok() {
        return Ok(oid);
    }
    match by_sha {
        Err(e) if stops_the_fetch(&e) => return Err(net_error(url, e)),
        _ => {}
    }
    let again = match &resolved.ref_name {
        Some(name) => fetch(&[format!("+{name}:refs/kiln/fetched").as_str()], true),
        None => fetch(
            &[
                "+refs/heads/*:refs/kiln/heads/*",
                "+refs/tags/*:refs/kiln/tags/*",
            ],
            false,
        ),
    };
    again.map_err(|e| net_error(url, e))?;
    repo.find_commit(oid)
        .map(|_| oid)
        .map_err(|_| BuildError::Fetch {
            url: crate::source::redact(url),
            reason: format!(
                "the server did not send commit {} (is it still what the ref points at? try again)",
                resolved.commit
            ),
        })
}

/// Check out `commit` in `repo`'s work tree, detached.
fn check_out(repo: &Repository, commit: git2::Oid, url: &str) -> Result<(), BuildError> {
    repo.set_head_detached(commit)
        .map_err(|e| fetch_error(url, &e))?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .map_err(|e| fetch_error(url, &e))
}

/// Whether an error ends the fetch at once (a limit, a refusal, refused credentials), rather than
/// only this way of asking for the commit.
fn stops_the_fetch(e: &kiln_net::Error) -> bool {
    !matches!(e, kiln_net::Error::Git(_))
}

/// A kiln-net error as a build error, with the URL (never its credentials).
fn net_error(url: &str, e: kiln_net::Error) -> BuildError {
    use kiln_net::Error as N;
    let url = crate::source::redact(url);
    match e {
        N::TooLarge { limit } => BuildError::TooLarge {
            limit,
            unit: "bytes",
            option: "--max-repo-bytes",
        },
        N::TimedOut { limit } => BuildError::FetchTimeout(limit),
        N::Authentication { .. } => BuildError::Authentication { url },
        N::Git(e) => {
            if e.code() == git2::ErrorCode::Auth
                || e.class() == git2::ErrorClass::Http && e.message().contains("401")
            {
                BuildError::Authentication { url }
            } else {
                BuildError::Unreachable {
                    url,
                    reason: e.message().to_string(),
                }
            }
        }
        e if e.is_refusal() => BuildError::Refused {
            url,
            reason: e.to_string(),
        },
        e => BuildError::Unreachable {
            url,
            reason: e.to_string(),
        },
    }
}

fn fetch_error(url: &str, e: &git2::Error) -> BuildError {
    BuildError::Fetch {
        url: crate::source::redact(url),
        reason: e.message().to_string(),
    }
}
