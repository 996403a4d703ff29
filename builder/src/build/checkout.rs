//! The repository on disk: a git ref resolved without cloning, then exactly that commit fetched
//! (shallowly, with its submodules) into a working folder; or a local folder as it is.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::git::{FetchSettings, GitBackend, Resolved};
use crate::source::Source;

/// The repository, fetched or as it is.
pub struct Checkout {
    pub dir: PathBuf,
    /// The commit, for a git source (a local folder has none).
    pub commit: Option<String>,
    /// The commit time (seconds since the epoch); every file of the image gets it as its mtime.
    pub time: i64,
    /// What the image's source label says: the URL, or `local`.
    pub source_label: String,
    /// Removed with the checkout.
    _workdir: Option<tempfile::TempDir>,
}

/// Resolve a git source's ref to a commit (`None` for a local folder). With
/// `default_branch_fallback`, a `master` or `main` that the repository does not have is retried as
/// `HEAD` (its default branch), with a `waiting` event saying so, as BinderHub keeps old links
/// working.
pub async fn resolve(
    git: &Arc<dyn GitBackend>,
    source: &Source,
    reference: Option<&str>,
    default_branch_fallback: bool,
    settings: &FetchSettings,
    sink: &mut dyn EventSink,
) -> Result<Option<Resolved>, BuildError> {
    let Source::Git(git_source) = source else {
        return Ok(None);
    };
    sink.emit(Event::new(
        Phase::Fetching,
        format!(
            "Resolving {} in {}",
            reference.unwrap_or("HEAD"),
            git_source.url
        ),
    ));
    let resolve = |reference: Option<&str>| {
        let (git, git_source, reference, settings) = (
            git.clone(),
            git_source.clone(),
            reference.map(str::to_string),
            settings.clone(),
        );
        async move {
            tokio::task::spawn_blocking(move || {
                git.resolve(&git_source, reference.as_deref(), &settings)
            })
            .await
            .map_err(|e| BuildError::Invalid(format!("ref resolution stopped: {e}")))?
        }
    };
    let resolved = match resolve(reference).await {
        Err(BuildError::UnknownRef { .. })
            if default_branch_fallback && matches!(reference, Some("master" | "main")) =>
        {
            sink.emit(Event::new(
                Phase::Waiting,
                format!(
                    "{} has no branch {:?}; trying HEAD (its default branch) instead. Please update your links: HEAD always names the default branch",
                    git_source.url,
                    reference.unwrap_or_default()
                ),
            ));
            resolve(None).await?
        }
        other => other?,
    };
    sink.emit(Event::new(
        Phase::Fetching,
        format!("Resolved to commit {}", resolved.commit),
    ));
    Ok(Some(resolved))
}

/// A folder of the repository (`--subdir`): relative, inside it (no `..`, no link out), a folder.
pub fn subdir(root: &std::path::Path, subdir: &str) -> Result<PathBuf, BuildError> {
    let refused = |reason: &str| BuildError::Invalid(format!("--subdir {subdir:?}: {reason}"));
    let rel = std::path::Path::new(subdir.trim_matches('/'));
    if subdir.starts_with('/')
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(refused(
            "give a folder of the repository, relative to its root, without ..",
        ));
    }
    let dir = root.join(rel);
    let real =
        std::fs::canonicalize(&dir).map_err(|_| refused("the repository has no such folder"))?;
    let real_root =
        std::fs::canonicalize(root).map_err(|e| BuildError::io("reading the checkout", e))?;
    if !real.starts_with(&real_root) {
        return Err(refused("it is a link out of the repository"));
    }
    if !real.is_dir() {
        return Err(refused("it is not a folder"));
    }
    Ok(dir)
}

/// Fetch the resolved commit into a new working folder, or take a local folder as it is.
pub async fn fetch(
    git: &Arc<dyn GitBackend>,
    source: &Source,
    resolved: Option<Resolved>,
    record: Option<&crate::records::Record>,
    settings: &FetchSettings,
    sink: &mut dyn EventSink,
) -> Result<Checkout, BuildError> {
    if let Some(record) = record {
        let workdir = tempfile::Builder::new()
            .prefix("kiln-build-")
            .tempdir()
            .map_err(|e| BuildError::io("creating a working folder", e))?;
        let dest = workdir.path().join("repo");
        crate::records::fetch(record, &dest, settings, sink).await?;
        return Ok(Checkout {
            dir: dest,
            commit: Some(record.version.clone()),
            time: record.time,
            source_label: record.url.clone(),
            _workdir: Some(workdir),
        });
    }
    match (source, resolved) {
        (Source::Local(path), _) => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Using the local folder {}", path.display()),
            ));
            Ok(Checkout {
                dir: path.clone(),
                commit: None,
                time: git.local_commit_time(path),
                source_label: "local".into(),
                _workdir: None,
            })
        }
        (Source::Git(git_source), Some(resolved)) => {
            let workdir = tempfile::Builder::new()
                .prefix("kiln-build-")
                .tempdir()
                .map_err(|e| BuildError::io("creating a working folder", e))?;
            let dest = workdir.path().join("repo");
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Fetching commit {} (shallow)", resolved.commit),
            ));
            let (git, task_source, task_resolved, task_dest, settings) = (
                git.clone(),
                git_source.clone(),
                resolved.clone(),
                dest.clone(),
                settings.clone(),
            );
            let time = tokio::task::spawn_blocking(move || {
                git.fetch(&task_source, &task_resolved, &task_dest, &settings)
            })
            .await
            .map_err(|e| BuildError::Invalid(format!("fetch stopped: {e}")))??;
            Ok(Checkout {
                dir: dest,
                commit: Some(resolved.commit),
                time,
                source_label: git_source.url.clone(),
                _workdir: Some(workdir),
            })
        }
        (Source::Git(git_source), None) => Err(BuildError::Invalid(format!(
            "{} was not resolved to a commit before fetching",
            git_source.url
        ))),
        (Source::Record(_), _) => Err(BuildError::Invalid(format!(
            "{source} was not resolved to a record before fetching"
        ))),
    }
}
