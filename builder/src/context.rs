//! The build context: a deterministic tar of the repository plus kiln's generated files.
//!
//! Entries are sorted, owned by uid/gid 1000 with no user or group names, and carry the commit time
//! as their mtime, so the same commit always gives the same bytes (and the engine's cache hits).
//! Symbolic links are stored as links and never followed; hard links are stored as plain files.
//! `.git` is left out, and so is whatever the plan's ignore file (`.dockerignore`/`.containerignore`)
//! excludes.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use kiln_buildpacks::render::{CONTEXT_CA_BUNDLE, CONTEXT_FILES_DIR, CONTEXT_REPO_DIR};
use kiln_buildpacks::{Build, BuildPlan};

use crate::error::BuildError;

const OWNER: u64 = 1000;

/// What goes into a context besides the repository.
pub struct ContextOptions<'a> {
    /// mtime of every entry (the commit time; 0 for a folder that is not a git checkout).
    pub mtime: u64,
    /// A CA bundle that downloading steps trust during the build (never copied into a layer).
    pub ca_bundle: Option<&'a [u8]>,
    /// The rendered Dockerfile (kiln's layers only; a repository Dockerfile is in the repository).
    pub dockerfile: Option<&'a str>,
}

/// The context as an uncompressed tar in a temporary file (removed with the last copy of it), and
/// the path of the Dockerfile inside it. A repository can be large: it is never held in memory.
#[derive(Clone)]
pub struct Context {
    pub tar: std::sync::Arc<tempfile::NamedTempFile>,
    /// Bytes of the tar.
    pub size: u64,
    pub dockerfile: String,
    pub files: u64,
}

impl Context {
    pub fn path(&self) -> &Path {
        self.tar.path()
    }
}

/// Build the context for `plan` from the repository at `repo`.
pub fn build_context(
    repo: &Path,
    plan: &BuildPlan,
    options: &ContextOptions<'_>,
) -> Result<Context, BuildError> {
    let mut writer = Writer::new(options.mtime)?;
    let ignore = match layers_ignore_file(plan) {
        Some(file) => Some(ignore_matcher(repo, file)?),
        None => None,
    };
    let (prefix, dockerfile) = match &plan.build {
        Build::Dockerfile(repo_dockerfile) => (None, repo_dockerfile.path.clone()),
        Build::Layers(layers) => {
            writer.file(
                "Dockerfile",
                options.dockerfile.unwrap_or_default().as_bytes(),
                0o644,
            )?;
            for file in &layers.environment.files {
                writer.file(
                    &format!("{CONTEXT_FILES_DIR}{}", file.dest),
                    file.content.as_bytes(),
                    file.mode,
                )?;
            }
            if let Some(ca) = options.ca_bundle {
                writer.file(CONTEXT_CA_BUNDLE, ca, 0o644)?;
            }
            (Some(CONTEXT_REPO_DIR), "Dockerfile".to_string())
        }
    };
    let executables: Vec<String> = plan
        .layers()
        .map(|l| l.repository.executables.clone())
        .unwrap_or_default();
    let always = match &plan.build {
        Build::Dockerfile(d) => Some(d.path.clone()),
        Build::Layers(_) => None,
    };
    writer.tree(
        repo,
        prefix,
        ignore.as_ref(),
        &executables,
        always.as_deref(),
    )?;
    let files = writer.files;
    let (tar, size) = writer.finish()?;
    Ok(Context {
        files,
        tar: std::sync::Arc::new(tar),
        size,
        dockerfile,
    })
}

/// The repository as an image layer: its files under the plan's repository folder (`home/jovyan/`),
/// with the same ignore rules, owner, modes and mtimes as the build context's copy; a tar in a
/// temporary file.
pub fn repository_layer(
    repo: &Path,
    plan: &BuildPlan,
    mtime: u64,
    extra: &[(&str, &[u8])],
) -> Result<tempfile::NamedTempFile, BuildError> {
    let layers = plan.layers().ok_or_else(|| {
        BuildError::Invalid("a repository Dockerfile has no separate repository layer".into())
    })?;
    let mut writer = Writer::new(mtime)?;
    let ignore = match layers_ignore_file(plan) {
        Some(file) => Some(ignore_matcher(repo, file)?),
        None => None,
    };
    let dest = layers.repository.dest.trim_matches('/');
    writer.tree(
        repo,
        Some(dest),
        ignore.as_ref(),
        &layers.repository.executables,
        None,
    )?;
    // kiln's own files (the record of what the image holds), root-owned as in the image's other
    // layers, so that a code-only commit changes this one layer.
    writer.owner = 0;
    for (path, bytes) in extra {
        writer.file(path.trim_start_matches('/'), bytes, 0o644)?;
    }
    Ok(writer.finish()?.0)
}

fn layers_ignore_file(plan: &BuildPlan) -> Option<&str> {
    match &plan.build {
        Build::Layers(layers) => layers.repository.ignore_file.as_deref(),
        // A repository Dockerfile's ignore file sits next to it or at the root, as Docker reads it.
        Build::Dockerfile(_) => None,
    }
}

/// `.dockerignore` rules: patterns are relative to the root (Docker anchors them there), `!` re-includes,
/// `**` matches any depth, and a trailing `/` is dropped as Docker's path cleaning does.
pub fn ignore_matcher(repo: &Path, file: &str) -> Result<Gitignore, BuildError> {
    let text = fs::read_to_string(repo.join(file))
        .map_err(|e| BuildError::io(format!("reading {file}"), e))?;
    let mut builder = GitignoreBuilder::new(repo);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negate, pattern) = match line.strip_prefix('!') {
            Some(rest) => ("!", rest.trim()),
            None => ("", line),
        };
        let pattern = pattern
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        if pattern.is_empty() {
            continue;
        }
        builder
            .add_line(None, &format!("{negate}/{pattern}"))
            .map_err(|e| BuildError::Invalid(format!("{file}: invalid pattern {line:?}: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| BuildError::Invalid(format!("{file}: {e}")))
}

/// The repository's files in the order they enter the context: relative paths, sorted per folder.
struct Writer {
    builder: tar::Builder<std::io::BufWriter<fs::File>>,
    file: tempfile::NamedTempFile,
    mtime: u64,
    /// The uid and gid of the entries written from now on.
    owner: u64,
    files: u64,
    dirs_written: std::collections::BTreeSet<String>,
}

impl Writer {
    fn new(mtime: u64) -> Result<Self, BuildError> {
        let io = |e| BuildError::io("creating the build context", e);
        let file = tempfile::Builder::new()
            .prefix("kiln-context-")
            .suffix(".tar")
            .tempfile()
            .map_err(io)?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file.reopen().map_err(io)?));
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        Ok(Writer {
            builder,
            file,
            mtime,
            owner: OWNER,
            files: 0,
            dirs_written: Default::default(),
        })
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(self.owner);
        header.set_gid(self.owner);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header
    }

    /// Write the parent folders of `path` that are not written yet.
    fn parents(&mut self, path: &str) -> Result<(), BuildError> {
        let mut dirs = Vec::new();
        let mut current = Path::new(path).parent();
        while let Some(dir) = current {
            let d = dir.to_string_lossy().to_string();
            if d.is_empty() || self.dirs_written.contains(&d) {
                break;
            }
            dirs.push(d);
            current = dir.parent();
        }
        for dir in dirs.into_iter().rev() {
            self.dir(&dir)?;
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<(), BuildError> {
        if self.dirs_written.insert(path.to_string()) {
            let mut header = self.header(tar::EntryType::Directory, 0o755, 0);
            self.builder
                .append_data(&mut header, format!("{path}/"), std::io::empty())
                .map_err(|e| BuildError::io("writing the build context", e))?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, bytes: &[u8], mode: u32) -> Result<(), BuildError> {
        self.entry(path, bytes.len() as u64, &mut &bytes[..], mode)
    }

    fn entry(
        &mut self,
        path: &str,
        size: u64,
        data: &mut dyn Read,
        mode: u32,
    ) -> Result<(), BuildError> {
        self.parents(path)?;
        let mut header = self.header(tar::EntryType::Regular, mode, size);
        self.builder
            .append_data(&mut header, path, data)
            .map_err(|e| BuildError::io("writing the build context", e))?;
        self.files += 1;
        Ok(())
    }

    fn tree(
        &mut self,
        repo: &Path,
        prefix: Option<&str>,
        ignore: Option<&Gitignore>,
        executables: &[String],
        always: Option<&str>,
    ) -> Result<(), BuildError> {
        let in_context = |rel: &str| match prefix {
            Some(p) if rel.is_empty() => p.to_string(),
            Some(p) => format!("{p}/{rel}"),
            None => rel.to_string(),
        };
        if let Some(p) = prefix {
            self.dir(p)?;
        }
        let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(rel_dir) = stack.pop() {
            let mut entries: Vec<(String, fs::Metadata)> = Vec::new();
            let dir = repo.join(&rel_dir);
            let read = fs::read_dir(&dir)
                .map_err(|e| BuildError::io(format!("reading {}", dir.display()), e))?;
            for entry in read {
                let entry =
                    entry.map_err(|e| BuildError::io(format!("reading {}", dir.display()), e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if rel_dir.as_os_str().is_empty() && name == ".git" {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| BuildError::io(format!("reading {name}"), e))?;
                entries.push((name, meta));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            // Folders are visited in sorted order after this folder's files: push them reversed.
            let mut subdirs = Vec::new();
            for (name, meta) in entries {
                let rel = rel_dir.join(&name);
                let rel_str = rel.to_string_lossy().replace('\\', "/");
                let file_type = meta.file_type();
                let ignored = ignore.is_some_and(|m| {
                    m.matched_path_or_any_parents(&rel, file_type.is_dir())
                        .is_ignore()
                }) && always != Some(rel_str.as_str());
                if ignored {
                    continue;
                }
                let path = in_context(&rel_str);
                if file_type.is_symlink() {
                    let target = fs::read_link(repo.join(&rel))
                        .map_err(|e| BuildError::io(format!("reading link {rel_str}"), e))?;
                    self.parents(&path)?;
                    let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
                    self.builder
                        .append_link(&mut header, &path, &target)
                        .map_err(|e| BuildError::io("writing the build context", e))?;
                    self.files += 1;
                } else if file_type.is_dir() {
                    self.parents(&path)?;
                    self.dir(&path)?;
                    subdirs.push(rel);
                } else if file_type.is_file() {
                    use std::os::unix::fs::PermissionsExt;
                    let executable = meta.permissions().mode() & 0o111 != 0
                        || executables.iter().any(|e| e == &rel_str);
                    let file = fs::File::open(repo.join(&rel))
                        .map_err(|e| BuildError::io(format!("reading {rel_str}"), e))?;
                    // The size as the tar header says it: a file that grows meanwhile is cut.
                    let mut data = std::io::BufReader::new(file).take(meta.len());
                    self.entry(
                        &path,
                        meta.len(),
                        &mut data,
                        if executable { 0o755 } else { 0o644 },
                    )?;
                }
                // Sockets, pipes and devices are left out.
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// The finished tar file and its size.
    fn finish(self) -> Result<(tempfile::NamedTempFile, u64), BuildError> {
        let io = |e| BuildError::io("writing the build context", e);
        let mut written = self.builder.into_inner().map_err(io)?;
        std::io::Write::flush(&mut written).map_err(io)?;
        drop(written);
        let size = self.file.as_file().metadata().map_err(io)?.len();
        Ok((self.file, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_buildpacks::PlanOptions;

    fn entries(tar: &[u8]) -> Vec<(String, u64, u32, u64)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn deterministic_sorted_owned_and_ignoring() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("requirements.txt"), "six\n").unwrap();
        fs::write(root.join(".dockerignore"), "data/\n*.tmp\n!keep.tmp\n").unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("data/big.csv"), "x").unwrap();
        fs::write(root.join("b.tmp"), "x").unwrap();
        fs::write(root.join("keep.tmp"), "x").unwrap();
        fs::create_dir_all(root.join("z/y")).unwrap();
        fs::write(root.join("z/y/a.py"), "x").unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/config"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        fs::write(root.join("start"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
        let plan = kiln_buildpacks::plan(root, &PlanOptions::default()).unwrap();
        let options = ContextOptions {
            mtime: 1_700_000_000,
            ca_bundle: None,
            dockerfile: Some("FROM x\n"),
        };
        let a = std::fs::read(build_context(root, &plan, &options).unwrap().path()).unwrap();
        let b = std::fs::read(build_context(root, &plan, &options).unwrap().path()).unwrap();
        assert_eq!(a, b, "same input, same bytes");
        let list = entries(&a);
        let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        assert!(names.contains(&"src/requirements.txt"));
        assert!(names.contains(&"src/keep.tmp"));
        assert!(names.contains(&"src/z/y/a.py"));
        assert!(names.contains(&"Dockerfile"));
        assert!(names.contains(&"kiln/files/usr/local/bin/kiln-entrypoint"));
        for absent in ["src/data/big.csv", "src/b.tmp", "src/.git/config"] {
            assert!(
                !names.contains(&absent),
                "{absent} must be left out: {names:?}"
            );
        }
        assert!(list.iter().all(|e| e.1 == 1000 && e.3 == 1_700_000_000));
        let start = list.iter().find(|e| e.0 == "src/start").unwrap();
        assert_eq!(start.2 & 0o777, 0o755, "start is made executable");
        // The link is stored as a link, never followed.
        let mut archive = tar::Archive::new(&a[..]);
        let link = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("link"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(
            link.link_name().unwrap().unwrap().to_string_lossy(),
            "/etc/passwd"
        );
    }

    #[test]
    fn the_repository_layer_holds_kilns_record_root_owned_after_the_users_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notebook.py"), "x").unwrap();
        let plan = kiln_buildpacks::plan(dir.path(), &PlanOptions::default()).unwrap();
        let extra: [(&str, &[u8]); 1] = [("/opt/kiln/contents.json", b"{}")];
        let tar = repository_layer(dir.path(), &plan, 1_700_000_000, &extra).unwrap();
        let list = entries(&std::fs::read(tar.path()).unwrap());
        let owner = |name: &str| {
            list.iter()
                .find(|e| e.0.trim_end_matches('/') == name)
                .map(|e| e.1)
                .unwrap_or_else(|| panic!("no {name} in {list:?}"))
        };
        assert_eq!(owner("home/jovyan/notebook.py"), 1000);
        for root_owned in ["opt", "opt/kiln", "opt/kiln/contents.json"] {
            assert_eq!(owner(root_owned), 0, "{root_owned}");
        }
    }
}
