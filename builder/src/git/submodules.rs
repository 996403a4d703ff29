//! Submodules, fetched like the repository itself: each URL is resolved against the parent's URL
//! (never against the local folder), checked against the policy, fetched within the same scope (one
//! byte budget and deadline for everything), its tree counted before checkout, and the nesting and
//! number of submodules bounded. A submodule's name and path must stay inside the work tree.

use std::path::{Component, Path};

use git2::Repository;
use kiln_net::git::Scope;

use super::tree::{self, Totals};
use super::{FetchSettings, Resolved, check_out, check_url, fetch_commit};
use crate::error::BuildError;

/// Fetch and check out every submodule of `repo` (whose remote is `parent_url`), recursively.
pub fn update(
    repo: &Repository,
    parent_url: &str,
    depth: u32,
    scope: &Scope,
    settings: &FetchSettings,
    totals: &mut Totals,
    count: &mut usize,
) -> Result<(), BuildError> {
    let limits = &settings.limits;
    let submodules = repo
        .submodules()
        .map_err(|e| invalid(parent_url, e.message()))?;
    if submodules.is_empty() {
        return Ok(());
    }
    if depth >= limits.max_submodule_depth {
        return Err(BuildError::Invalid(format!(
            "submodules nest deeper than {} levels; kiln does not fetch deeper ones",
            limits.max_submodule_depth
        )));
    }
    let workdir = repo
        .workdir()
        .ok_or_else(|| invalid(parent_url, "the repository has no work tree"))?
        .to_path_buf();
    for mut submodule in submodules {
        *count += 1;
        if *count > limits.max_submodules {
            return Err(BuildError::Invalid(format!(
                "the repository has more than {} submodules; kiln fetches at most that many",
                limits.max_submodules
            )));
        }
        let name = submodule.name().unwrap_or_default().to_string();
        let path = submodule.path().to_path_buf();
        check_inside(&workdir, &name, &path)?;
        let raw = submodule
            .url()
            .ok()
            .flatten()
            .ok_or_else(|| invalid(parent_url, &format!("submodule {name} has no URL")))?
            .to_string();
        let url = absolute_url(parent_url, &raw)?;
        check_url(&settings.policy, &url).map_err(|e| match e {
            BuildError::Refused { url, reason } => BuildError::Refused {
                url,
                reason: format!("submodule {name}: {reason}"),
            },
            other => other,
        })?;
        let Some(commit) = submodule.index_id().or_else(|| submodule.head_id()) else {
            return Err(invalid(
                parent_url,
                &format!("submodule {name} records no commit"),
            ));
        };
        // The superproject's configuration gets the resolved URL, so libgit2 never resolves a
        // relative one against the local folder.
        submodule
            .init(true)
            .and_then(|_| repo.config())
            .and_then(|mut config| config.set_str(&format!("submodule.{name}.url"), &url))
            .map_err(|e| invalid(parent_url, &format!("submodule {name}: {}", e.message())))?;
        let sub_repo = submodule
            .repo_init(true)
            .map_err(|e| invalid(parent_url, &format!("submodule {name}: {}", e.message())))?;
        let resolved = Resolved {
            commit: commit.to_string(),
            ref_name: None,
        };
        fetch_commit(scope, &sub_repo, &url, &resolved, settings)?;
        tree::count(&sub_repo, commit, limits, totals)?;
        check_out(&sub_repo, commit, &url)?;
        update(&sub_repo, &url, depth + 1, scope, settings, totals, count)?;
    }
    Ok(())
}

/// A submodule's URL as git reads it: `./x` and `../x` are relative to the parent's remote URL
/// (taken as a folder); anything else is as written.
fn absolute_url(parent_url: &str, raw: &str) -> Result<String, BuildError> {
    if !(raw.starts_with("./") || raw.starts_with("../")) {
        return Ok(raw.to_string());
    }
    let base = url::Url::parse(&format!("{}/", parent_url.trim_end_matches('/'))).map_err(|e| {
        BuildError::Invalid(format!(
            "cannot resolve the submodule URL {raw:?} against {}: {e}",
            crate::source::redact(parent_url)
        ))
    })?;
    base.join(raw)
        .map(|u| u.to_string())
        .map_err(|e| BuildError::Invalid(format!("cannot resolve the submodule URL {raw:?}: {e}")))
}

/// A submodule's name (its folder under `.git/modules/`) and path must be plain relative paths, and
/// no folder on the way to the path may be a symbolic link (it could lead out of the work tree).
fn check_inside(workdir: &Path, name: &str, path: &Path) -> Result<(), BuildError> {
    let plain = |p: &Path| {
        !p.as_os_str().is_empty()
            && p.components().all(|c| match c {
                Component::Normal(part) => part != ".git",
                _ => false,
            })
    };
    if !plain(Path::new(name)) || !plain(path) {
        return Err(BuildError::Invalid(format!(
            "submodule {name:?} at {} leaves the repository's folder; kiln does not fetch it",
            path.display()
        )));
    }
    let mut current = workdir.to_path_buf();
    for part in path.components() {
        current.push(part);
        if std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(BuildError::Invalid(format!(
                "submodule {name:?}: {} is a symbolic link; kiln does not fetch a submodule through a link",
                path.display()
            )));
        }
    }
    Ok(())
}

fn invalid(url: &str, reason: &str) -> BuildError {
    BuildError::Fetch {
        url: crate::source::redact(url),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_against_the_parent_url() {
        assert_eq!(
            absolute_url("https://h.example/org/repo.git", "../lib.git").unwrap(),
            "https://h.example/org/lib.git"
        );
        assert_eq!(
            absolute_url("git://h.example/org/repo", "./sub").unwrap(),
            "git://h.example/org/repo/sub"
        );
        // Climbing stops at the host: it never reaches the local folder.
        assert_eq!(
            absolute_url("git://h.example/repo", "../../../../etc/passwd").unwrap(),
            "git://h.example/etc/passwd"
        );
        assert_eq!(
            absolute_url("git://h.example/repo", "file:///etc").unwrap(),
            "file:///etc"
        );
    }

    #[test]
    fn names_and_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_inside(dir.path(), "lib", Path::new("vendor/lib")).is_ok());
        for (name, path) in [
            ("../../hooks", "lib"),
            ("lib", "../outside"),
            ("lib", "/etc"),
            ("lib", ".git/hooks"),
            ("", "lib"),
        ] {
            assert!(
                check_inside(dir.path(), name, Path::new(path)).is_err(),
                "{name} {path}"
            );
        }
        std::os::unix::fs::symlink("/tmp", dir.path().join("link")).unwrap();
        assert!(check_inside(dir.path(), "lib", Path::new("link/lib")).is_err());
    }
}
