//! A record's single zip archive, unpacked inside its folder: no entry outside it, no links, the
//! file and byte limits counted on what comes out (not on the archive's word), modes reduced to
//! 644 and 755; a single folder at the top is flattened, as repo2docker does.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::BuildError;

/// Unpack the zip `archive` into `dest` (then remove it): entries only inside `dest`, no links,
/// at most the file limit and the bytes left of the budget; a single folder at the top is
/// flattened into `dest`, as repo2docker does.
pub(super) fn unpack(
    archive: &Path,
    dest: &Path,
    limits: &crate::git::FetchLimits,
    budget: u64,
) -> Result<(), BuildError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |reason: String| BuildError::Invalid(format!("the archive {name} {reason}"));
    let file =
        std::fs::File::open(archive).map_err(|e| BuildError::io("opening the archive", e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("is not a zip file: {e}")))?;
    if zip.len() as u64 > limits.max_files {
        return Err(BuildError::TooLarge {
            limit: limits.max_files,
            unit: "files",
            option: "--max-repo-files",
        });
    }
    let unpacked = tempfile::Builder::new()
        .prefix(".kiln-unpack-")
        .tempdir_in(dest)
        .map_err(|e| BuildError::io("unpacking the archive", e))?;
    let mut left = budget;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        let entry_name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let Some(relative) = entry
            .enclosed_name()
            .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
        else {
            return Err(bad(format!(
                "has the entry {entry_name:?}, which would land outside the folder it is unpacked into"
            )));
        };
        if entry.is_symlink() {
            return Err(bad(format!(
                "has the link {entry_name:?}: links are not unpacked"
            )));
        }
        let target = unpacked.path().join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| BuildError::io("unpacking", e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io("unpacking", e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| BuildError::io("unpacking", e))?;
        // The sizes in the archive's headers are the archive's word: count what comes out.
        let written = std::io::copy(&mut (&mut entry).take(left + 1), &mut out)
            .map_err(|e| bad(format!("cannot be unpacked: {e}")))?;
        if written > left {
            return Err(BuildError::TooLarge {
                limit: limits.max_bytes,
                unit: "bytes",
                option: "--max-repo-bytes",
            });
        }
        left -= written;
        // An executable file (a postBuild, a start) stays executable; nothing else of the mode is
        // kept (no setuid, no world-writable files).
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| BuildError::io("unpacking", e))?;
        }
    }
    std::fs::remove_file(archive).map_err(|e| BuildError::io("removing the archive", e))?;
    // A single folder at the top is the record's content.
    let top: Vec<PathBuf> = std::fs::read_dir(unpacked.path())
        .map_err(|e| BuildError::io("unpacking", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let from = match top.as_slice() {
        [only] if only.is_dir() => only.clone(),
        _ => unpacked.path().to_path_buf(),
    };
    for entry in std::fs::read_dir(&from).map_err(|e| BuildError::io("unpacking", e))? {
        let entry = entry.map_err(|e| BuildError::io("unpacking", e))?;
        std::fs::rename(entry.path(), dest.join(entry.file_name()))
            .map_err(|e| BuildError::io("unpacking", e))?;
    }
    Ok(())
}
