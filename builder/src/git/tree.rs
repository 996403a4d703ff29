//! The size of a commit's tree, read from the object database before anything is checked out: a
//! small pack that expands into a huge tree (a checkout bomb) is refused before it touches the disk.

use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};

use super::FetchLimits;
use crate::error::BuildError;

/// Files and bytes checked out so far by one fetch (the repository and its submodules together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

/// Add the files of `commit`'s tree to `totals`, failing as soon as a limit is passed. Submodules
/// (commit entries) are counted when they are fetched.
pub fn count(
    repo: &Repository,
    commit: git2::Oid,
    limits: &FetchLimits,
    totals: &mut Totals,
) -> Result<(), BuildError> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| {
            BuildError::Invalid(format!("reading the tree of {commit}: {}", e.message()))
        })?;
    let odb = repo.odb().map_err(|e| {
        BuildError::Invalid(format!("opening the object database: {}", e.message()))
    })?;
    let mut over: Option<BuildError> = None;
    let mut unreadable: Option<String> = None;
    tree.walk(TreeWalkMode::PreOrder, |_, entry| {
        if entry.kind() != Some(ObjectType::Blob) {
            return TreeWalkResult::Ok;
        }
        match odb.read_header(entry.id()) {
            Ok((size, _)) => {
                totals.files += 1;
                totals.bytes += size as u64;
            }
            Err(e) => {
                unreadable = Some(e.message().to_string());
                return TreeWalkResult::Abort;
            }
        }
        if totals.files > limits.max_files {
            over = Some(BuildError::TooLarge {
                limit: limits.max_files,
                unit: "files",
                option: "--max-repo-files",
            });
            TreeWalkResult::Abort
        } else if totals.bytes > limits.max_bytes {
            over = Some(BuildError::TooLarge {
                limit: limits.max_bytes,
                unit: "bytes",
                option: "--max-repo-bytes",
            });
            TreeWalkResult::Abort
        } else {
            TreeWalkResult::Ok
        }
    })
    .ok();
    if let Some(error) = over {
        return Err(error);
    }
    if let Some(reason) = unreadable {
        return Err(BuildError::Invalid(format!(
            "the fetched commit {commit} is missing objects: {reason}"
        )));
    }
    Ok(())
}
