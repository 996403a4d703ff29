//! Packing a staged environment as image layers: deterministic tars (sorted entries, fixed mtimes,
//! owner uid:uid, symbolic links stored as links and never followed).
//!
//! The environment is split in up to four layers, so that a change to one dependency re-uploads
//! little, and layers are shared between environments that share packages:
//! 1. `python`: Python and the packages it depends on (the interpreter, its libraries); they change
//!    only when the Python version does;
//! 2. `large`: every other package of 16 MiB or more, together (numpy, R, compilers…): big, and
//!    rarely changed;
//! 3. `packages`: the rest of the packages (small, and the ones that change most often);
//! 4. `conda-meta`: the package records and the lock. It changes with any package, and is small.
//!
//! Files no package claims (there should be none) go to `packages`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::ENV_PREFIX;
use crate::error::CondaError;

/// Packages of this size or more go to the `large` layer.
pub const LARGE_PACKAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The mtime of every entry: layers depend only on the packages.
pub const MTIME: u64 = 0;

/// One layer: an uncompressed tar, in a file (environments can be large: never held in memory).
#[derive(Clone, Debug)]
pub struct PackedLayer {
    /// `python`, `large`, `packages` or `conda-meta`.
    pub name: &'static str,
    /// The tar file.
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// sha256 of the tar (`sha256:<hex>`): the layer's diff id.
    pub diff_id: String,
    /// Packages whose files it holds.
    pub packages: Vec<String>,
    pub files: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Part {
    Python,
    Large,
    Packages,
    Meta,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Python => "python",
            Part::Large => "large",
            Part::Packages => "packages",
            Part::Meta => "conda-meta",
        }
    }
}

/// Pack the environment staged under `root` (at `root` + [`ENV_PREFIX`]), owned by `uid`:`uid`,
/// into tar files in `out` (`<name>.tar`).
pub fn pack(root: &Path, uid: u64, out: &Path) -> Result<Vec<PackedLayer>, CondaError> {
    let prefix = root.join(ENV_PREFIX.trim_start_matches('/'));
    let records = read_records(&prefix)?;

    // Which part each package goes to.
    let by_name: BTreeMap<&str, &Record> = records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut python_closure = BTreeSet::new();
    let mut stack = vec!["python"];
    while let Some(name) = stack.pop() {
        if let Some(record) = by_name.get(name)
            && python_closure.insert(name)
        {
            stack.extend(record.depends.iter().map(String::as_str));
        }
    }
    let mut owner: BTreeMap<String, (Part, &str)> = BTreeMap::new();
    for record in &records {
        let part = if python_closure.contains(record.name.as_str()) {
            Part::Python
        } else if record.bytes(&prefix) >= LARGE_PACKAGE_BYTES {
            Part::Large
        } else {
            Part::Packages
        };
        for file in &record.files {
            owner.insert(file.clone(), (part, record.name.as_str()));
        }
    }

    // Every path under the prefix, sorted, with its part.
    let mut paths: BTreeMap<Part, BTreeSet<String>> = BTreeMap::new();
    let mut packages: BTreeMap<Part, BTreeSet<String>> = BTreeMap::new();
    walk(&prefix, "", &mut |rel, is_dir| {
        if is_dir {
            return;
        }
        let (part, package) = if rel.starts_with("conda-meta/") {
            (Part::Meta, None)
        } else {
            match owner.get(rel) {
                Some((part, name)) => (*part, Some(*name)),
                None => (Part::Packages, None),
            }
        };
        paths.entry(part).or_default().insert(rel.to_string());
        if let Some(name) = package {
            packages.entry(part).or_default().insert(name.to_string());
        }
    })?;

    std::fs::create_dir_all(out)
        .map_err(|e| CondaError::io(format!("creating {}", out.display()), e))?;
    let mut layers = Vec::new();
    for (part, files) in paths {
        let path = out.join(format!("{}.tar", part.name()));
        let (size, diff_id) = tar_of(root, &files, uid, &path)?;
        layers.push(PackedLayer {
            name: part.name(),
            path,
            size,
            diff_id,
            packages: packages
                .remove(&part)
                .map(|p| p.into_iter().collect())
                .unwrap_or_default(),
            files: files.len(),
        });
    }
    Ok(layers)
}

struct Record {
    name: String,
    depends: Vec<String>,
    files: Vec<String>,
}

impl Record {
    fn bytes(&self, prefix: &Path) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::symlink_metadata(prefix.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn read_records(prefix: &Path) -> Result<Vec<Record>, CondaError> {
    let meta = prefix.join("conda-meta");
    let mut names: Vec<_> = std::fs::read_dir(&meta)
        .map_err(|e| CondaError::io(format!("reading {}", meta.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    names.sort();
    let mut records = Vec::new();
    for path in names {
        let text = std::fs::read(&path)
            .map_err(|e| CondaError::io(format!("reading {}", path.display()), e))?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| CondaError::Install(format!("{}: {e}", path.display())))?;
        let strings = |key: &str| -> Vec<String> {
            value[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        records.push(Record {
            name: value["name"].as_str().unwrap_or_default().to_string(),
            depends: strings("depends")
                .iter()
                .filter_map(|d| d.split_whitespace().next().map(String::from))
                .collect(),
            files: strings("files"),
        });
    }
    Ok(records)
}

/// Visit every entry under `dir` (relative paths, sorted), without following links.
fn walk(dir: &Path, rel: &str, visit: &mut dyn FnMut(&str, bool)) -> Result<(), CondaError> {
    let mut entries: Vec<(String, std::fs::FileType)> = std::fs::read_dir(dir)
        .map_err(|e| CondaError::io(format!("reading {}", dir.display()), e))?
        .map(|e| {
            let e = e.map_err(|e| CondaError::io(format!("reading {}", dir.display()), e))?;
            let name = e.file_name().into_string().map_err(|n| {
                CondaError::Install(format!(
                    "{}: a file name that is not UTF-8: {n:?}",
                    dir.display()
                ))
            })?;
            let kind = e
                .file_type()
                .map_err(|e| CondaError::io(format!("reading {}", dir.display()), e))?;
            Ok((name, kind))
        })
        .collect::<Result<_, CondaError>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in entries {
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        visit(&child, kind.is_dir());
        if kind.is_dir() {
            walk(&dir.join(&name), &child, visit)?;
        }
    }
    Ok(())
}

/// Counts and hashes what is written through it.
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
    written: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A tar of `files` (relative to the prefix) and their parent folders up to `/srv`, written to
/// `out`; returns its size and sha256.
fn tar_of(
    root: &Path,
    files: &BTreeSet<String>,
    uid: u64,
    out: &Path,
) -> Result<(u64, String), CondaError> {
    let base = ENV_PREFIX.trim_start_matches('/');
    let mut entries: BTreeSet<String> = BTreeSet::new();
    for file in files {
        let full = format!("{base}/{file}");
        let mut parent = Path::new(&full).parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                break;
            }
            entries.insert(format!("{}/", p.display()));
            parent = p.parent();
        }
        entries.insert(full);
    }
    let file = std::fs::File::create(out)
        .map_err(|e| CondaError::io(format!("creating {}", out.display()), e))?;
    let mut builder = tar::Builder::new(Hashing {
        inner: std::io::BufWriter::new(file),
        hash: sha2::Digest::new(),
        written: 0,
    });
    builder.mode(tar::HeaderMode::Deterministic);
    for entry in &entries {
        let io = |e| CondaError::io(format!("packing {entry}"), e);
        let path = root.join(entry.trim_end_matches('/'));
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(uid);
        header.set_gid(uid);
        header.set_mtime(MTIME);
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode | 0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, entry.as_str(), std::io::empty())
                .map_err(io)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, entry.as_str(), &target)
                .map_err(io)?;
        } else if meta.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_size(meta.len());
            let file = std::fs::File::open(&path).map_err(io)?;
            builder
                .append_data(&mut header, entry.as_str(), std::io::BufReader::new(file))
                .map_err(io)?;
        }
    }
    let mut written = builder
        .into_inner()
        .map_err(|e| CondaError::io("finishing a layer", e))?;
    std::io::Write::flush(&mut written).map_err(|e| CondaError::io("finishing a layer", e))?;
    Ok((
        written.written,
        format!(
            "sha256:{}",
            hex::encode(sha2::Digest::finalize(written.hash))
        ),
    ))
}
