//! Reading configuration files from an untrusted repository tree.
//!
//! Only named files are looked at (never a walk of the tree), so planning costs the same for a
//! repository of ten files or of a hundred thousand. A symbolic link is followed only when it stays
//! inside the repository.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::PlanError;

/// The most kiln reads from one configuration file.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A repository folder.
pub struct RepoTree {
    root: PathBuf,
    canonical_root: PathBuf,
}

impl RepoTree {
    pub fn open(root: &Path) -> Result<Self, PlanError> {
        let meta = fs::metadata(root).map_err(|source| io_error(root.display(), source))?;
        if !meta.is_dir() {
            return Err(PlanError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let canonical_root =
            fs::canonicalize(root).map_err(|source| io_error(root.display(), source))?;
        Ok(RepoTree {
            root: root.to_path_buf(),
            canonical_root,
        })
    }

    /// Whether `rel` names a directory inside the repository (links out of it do not count).
    pub fn is_dir(&self, rel: &str) -> Result<bool, PlanError> {
        match self.resolve(rel)? {
            Some(path) => Ok(path.is_dir()),
            None => Ok(false),
        }
    }

    /// Whether `rel` exists inside the repository (as anything).
    pub fn exists(&self, rel: &str) -> Result<bool, PlanError> {
        Ok(self.resolve(rel)?.is_some())
    }

    /// The bytes of the file `rel`, or `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, PlanError> {
        let Some(path) = self.resolve(rel)? else {
            return Ok(None);
        };
        let meta = fs::metadata(&path).map_err(|source| io_error(rel, source))?;
        if !meta.is_file() {
            return Err(PlanError::NotAFile {
                path: rel.to_string(),
            });
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(PlanError::TooLarge {
                path: rel.to_string(),
                size: meta.len(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|source| io_error(rel, source))?;
        Ok(Some(bytes))
    }

    /// The file `rel` as UTF-8 text, or `None` when it does not exist.
    pub fn read_text(&self, rel: &str) -> Result<Option<String>, PlanError> {
        match self.read(rel)? {
            None => Ok(None),
            Some(bytes) => text(rel, bytes).map(Some),
        }
    }

    /// The real path of `rel`, checked to stay inside the repository; `None` when nothing is there.
    fn resolve(&self, rel: &str) -> Result<Option<PathBuf>, PlanError> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None);
            }
            Err(source) => return Err(io_error(rel, source)),
            Ok(_) => {}
        }
        match fs::canonicalize(&path) {
            Ok(real) if real.starts_with(&self.canonical_root) => Ok(Some(real)),
            Ok(_) => Err(PlanError::SymlinkOutside {
                path: rel.to_string(),
            }),
            // A dangling link: nothing usable is there.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error(rel, source)),
        }
    }
}

/// Bytes as UTF-8 text, with a clear error naming the first bad byte.
pub fn text(rel: &str, bytes: Vec<u8>) -> Result<String, PlanError> {
    String::from_utf8(bytes).map_err(|e| PlanError::NotText {
        path: rel.to_string(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn io_error(path: impl std::fmt::Display, source: std::io::Error) -> PlanError {
    PlanError::Io {
        path: path.to_string(),
        source,
    }
}
