//! A record's single archive (zip, or tar.gz as Software Heritage's vault gives), unpacked inside
//! its folder: no entry outside it, no links, the file and byte limits counted on what comes out
//! (not on the archive's word), modes reduced to 644 and 755; a single folder at the top is
//! flattened, as repo2docker does.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::BuildError;
use crate::git::FetchLimits;

/// Whether `key` names an archive kiln unpacks.
pub(super) fn is_archive(key: &str) -> bool {
    let key = key.to_lowercase();
    key.ends_with(".zip") || key.ends_with(".tar.gz") || key.ends_with(".tgz")
}

/// Unpack `archive` into `dest` (then remove it), within `limits` and the `budget` of bytes left.
pub(super) fn unpack(
    archive: &Path,
    dest: &Path,
    limits: &FetchLimits,
    budget: u64,
) -> Result<(), BuildError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unpacked = tempfile::Builder::new()
        .prefix(".kiln-unpack-")
        .tempdir_in(dest)
        .map_err(|e| BuildError::io("unpacking the archive", e))?;
    let mut out = Output {
        root: unpacked.path().to_path_buf(),
        name: name.clone(),
        limits: limits.clone(),
        left: budget,
        files: 0,
    };
    let file =
        std::fs::File::open(archive).map_err(|e| BuildError::io("opening the archive", e))?;
    if name.to_lowercase().ends_with(".zip") {
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| out.bad(format!("is not a zip file: {e}")))?;
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| out.bad(format!("cannot be read: {e}")))?;
            let entry_name = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let kind = if entry.is_symlink() {
                Kind::Link
            } else if entry.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            };
            let (relative, mode) = (entry.enclosed_name(), entry.unix_mode());
            out.entry(&entry_name, relative, kind, mode, &mut entry)?;
        }
    } else {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let entries = tar
            .entries()
            .map_err(|e| out.bad(format!("is not a tar.gz file: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| out.bad(format!("cannot be read: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| out.bad(format!("cannot be read: {e}")))?
                .into_owned();
            let entry_name = path.display().to_string();
            let kind = match entry.header().entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
                _ => Kind::Link,
            };
            let mode = entry.header().mode().ok();
            out.entry(&entry_name, Some(path), kind, mode, &mut entry)?;
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

/// What an archive entry is; anything but folders and plain files (links, devices) is refused.
enum Kind {
    Dir,
    File,
    Link,
}

/// Where entries go, and what is left of the limits.
struct Output {
    root: PathBuf,
    name: String,
    limits: FetchLimits,
    left: u64,
    files: u64,
}

impl Output {
    fn bad(&self, reason: String) -> BuildError {
        BuildError::Invalid(format!("the archive {} {reason}", self.name))
    }

    fn entry(
        &mut self,
        entry_name: &str,
        relative: Option<PathBuf>,
        kind: Kind,
        mode: Option<u32>,
        content: &mut dyn Read,
    ) -> Result<(), BuildError> {
        let Some(relative) = relative.filter(|p| {
            p.components().next().is_some()
                && p.components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        }) else {
            return Err(self.bad(format!(
                "has the entry {entry_name:?}, which would land outside the folder it is unpacked into"
            )));
        };
        let target = self.root.join(&relative);
        match kind {
            Kind::Link => {
                return Err(self.bad(format!(
                    "has the link or special file {entry_name:?}: only folders and files are unpacked"
                )));
            }
            Kind::Dir => {
                return std::fs::create_dir_all(&target)
                    .map_err(|e| BuildError::io("unpacking", e));
            }
            Kind::File => {}
        }
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(BuildError::TooLarge {
                limit: self.limits.max_files,
                unit: "files",
                option: "--max-repo-files",
            });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io("unpacking", e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| BuildError::io("unpacking", e))?;
        // The sizes in the archive's headers are the archive's word: count what comes out.
        let written = std::io::copy(&mut content.take(self.left + 1), &mut out)
            .map_err(|e| self.bad(format!("cannot be unpacked: {e}")))?;
        if written > self.left {
            return Err(BuildError::TooLarge {
                limit: self.limits.max_bytes,
                unit: "bytes",
                option: "--max-repo-bytes",
            });
        }
        self.left -= written;
        // An executable file (a postBuild, a start) stays executable; nothing else of the mode is
        // kept (no setuid, no world-writable files).
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| BuildError::io("unpacking", e))?;
        }
        Ok(())
    }
}

/// Keep only `root` of what was unpacked into `dest`: its files move to the top, everything else
/// goes (a HydroShare bag keeps the resource's files in `data/contents`, beside its manifests).
pub(super) fn keep_only(dest: &Path, root: &str) -> Result<(), BuildError> {
    let inner = dest.join(root);
    if !inner.is_dir() {
        return Err(BuildError::Invalid(format!(
            "the archive has no {root} folder, where this repository keeps a record's files"
        )));
    }
    let kept = tempfile::Builder::new()
        .prefix(".kiln-kept-")
        .tempdir_in(dest)
        .map_err(|e| BuildError::io("unpacking", e))?;
    let kept_path = kept.keep();
    std::fs::rename(&inner, kept_path.join("content"))
        .map_err(|e| BuildError::io("unpacking", e))?;
    for entry in std::fs::read_dir(dest).map_err(|e| BuildError::io("unpacking", e))? {
        let entry = entry.map_err(|e| BuildError::io("unpacking", e))?;
        if entry.path() == kept_path {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| BuildError::io("unpacking", e))?;
    }
    for entry in
        std::fs::read_dir(kept_path.join("content")).map_err(|e| BuildError::io("unpacking", e))?
    {
        let entry = entry.map_err(|e| BuildError::io("unpacking", e))?;
        std::fs::rename(entry.path(), dest.join(entry.file_name()))
            .map_err(|e| BuildError::io("unpacking", e))?;
    }
    std::fs::remove_dir_all(&kept_path).map_err(|e| BuildError::io("unpacking", e))
}
