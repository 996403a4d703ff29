//! The default base image, made locally when it cannot be pulled: `debootstrap --variant=minbase`
//! of a Debian suite, with its updates and security suites enabled, imported into the engine.
//!
//! It is trimmed of what sessions never read (unless `keep_docs`): documentation but the copyright
//! files, manual pages, info, translations, and apt's package lists and caches (every kiln step
//! that installs packages runs `apt-get update` first). A dpkg setting keeps later installs
//! (kiln's own packages, `apt.txt`) trimmed the same way.

use std::path::Path;
use std::process::Stdio;

use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// What to bootstrap.
#[derive(Clone, Debug)]
pub struct BaseSpec {
    pub image: String,
    pub suite: String,
    pub mirror: String,
    /// Keep documentation, manual pages and translations.
    pub keep_docs: bool,
}

/// The label that says how the base image was trimmed (`true`, or `false` with `keep_docs`).
pub const LABEL_TRIMMED: &str = "io.kiln.base.trimmed";

/// What sessions never read: (folder, what stays in it, whether what stays is one level down, in
/// each package's folder). Removed from the base, and left out by dpkg of every later install.
const NEVER_READ: [(&str, &[&str], bool); 5] = [
    ("usr/share/doc", &["copyright"], true),
    ("usr/share/man", &[], false),
    ("usr/share/info", &[], false),
    ("usr/share/locale", &["locale.alias"], false),
    ("usr/share/lintian", &[], false),
];

/// dpkg's settings that leave [`NEVER_READ`] out of packages installed later.
fn dpkg_excludes() -> String {
    let mut out = String::from(
        "# kiln: what sessions never read is not installed (kiln base bootstrap --keep-docs keeps it)\n",
    );
    for (folder, keep, per_package) in NEVER_READ {
        out.push_str(&format!("path-exclude=/{folder}/*\n"));
        for k in keep {
            let at = if per_package { "*/" } else { "" };
            out.push_str(&format!("path-include=/{folder}/{at}{k}\n"));
        }
    }
    out
}

impl Default for BaseSpec {
    fn default() -> Self {
        BaseSpec {
            image: kiln_buildpacks::options::DEFAULT_BASE_IMAGE.to_string(),
            suite: "bookworm".to_string(),
            mirror: "http://deb.debian.org/debian".to_string(),
            keep_docs: false,
        }
    }
}

/// Make the base image unless the engine has it. Returns whether it was made.
pub async fn bootstrap(
    engine: &Engine,
    spec: &BaseSpec,
    sink: &mut dyn EventSink,
) -> Result<bool, BuildError> {
    let trimmed = if spec.keep_docs { "false" } else { "true" };
    if let Some(labels) = engine.image_labels(&spec.image).await? {
        if labels.get(LABEL_TRIMMED).map(String::as_str) == Some(trimmed) {
            sink.emit(Event::new(
                Phase::Built,
                format!("{} exists already; nothing to do", spec.image),
            ));
            return Ok(false);
        }
        sink.emit(Event::new(
            Phase::Building,
            format!(
                "{} exists, made {}; making it again",
                spec.image,
                match labels.get(LABEL_TRIMMED) {
                    None => "by an earlier kiln, untrimmed",
                    Some(_) if spec.keep_docs => "trimmed, and --keep-docs asks for all of it",
                    Some(_) => "with --keep-docs",
                }
            ),
        ));
    }
    let (repo, tag) = spec
        .image
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((spec.image.as_str(), "latest"));
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| BuildError::Invalid("debootstrap is not installed; install it (apt-get install debootstrap) and run kiln base bootstrap again".into()))?;
    let dir = tempfile::Builder::new()
        .prefix("kiln-rootfs-")
        .tempdir_in(std::env::var("KILN_ROOTFS_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .map_err(|e| BuildError::io("creating the root file system folder", e))?;
    let root = dir.path().join("root");
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "debootstrap --variant=minbase {} from {} (about 30 s)",
            spec.suite, spec.mirror
        ),
    ));
    let output = tokio::process::Command::new(debootstrap)
        .arg("--variant=minbase")
        .arg(&spec.suite)
        .arg(&root)
        .arg(&spec.mirror)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| BuildError::io("running debootstrap", e))?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(BuildError::BuildFailed {
            message: format!(
                "debootstrap exited with {} (it needs root and the Debian mirror)",
                output.status
            ),
            tail: format!("\n  {}", tail.join("\n  ")),
        });
    }
    let sources = format!(
        "deb {m} {s} main\ndeb {m} {s}-updates main\ndeb http://deb.debian.org/debian-security {s}-security main\n",
        m = spec.mirror,
        s = spec.suite
    );
    tokio::fs::write(root.join("etc/apt/sources.list"), sources)
        .await
        .map_err(|e| BuildError::io("writing sources.list", e))?;
    if !spec.keep_docs {
        let root = root.clone();
        let freed = tokio::task::spawn_blocking(move || trim(&root))
            .await
            .map_err(|e| BuildError::Invalid(format!("trimming stopped: {e}")))??;
        sink.emit(Event::new(
            Phase::Building,
            format!(
                "Trimmed {:.1} MB of documentation, translations and package lists (--keep-docs keeps them)",
                freed as f64 / 1e6
            ),
        ));
    }
    sink.emit(Event::new(
        Phase::Building,
        format!("Importing the root file system as {}", spec.image),
    ));
    // tar keeps owners, modes, links and device nodes exactly; its output is the import's body.
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| BuildError::io("running tar", e))?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| BuildError::Engine("tar gave no output stream".into()))?;
    let body = tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024);
    let imported = engine
        .import_root(repo, tag, &[(LABEL_TRIMMED, trimmed)], body)
        .await;
    let status = tar
        .wait()
        .await
        .map_err(|e| BuildError::io("running tar", e))?;
    imported?;
    if !status.success() {
        return Err(BuildError::Engine(format!(
            "tar of the root file system exited with {status}"
        )));
    }
    sink.emit(Event::new(Phase::Built, format!("{} is ready", spec.image)));
    Ok(true)
}

/// Remove what sessions never read from a root file system and keep dpkg from installing it again;
/// returns the bytes freed.
fn trim(root: &Path) -> Result<u64, BuildError> {
    let io = |what: &str, e: std::io::Error| BuildError::io(format!("trimming {what}"), e);
    let dpkg = root.join("etc/dpkg/dpkg.cfg.d");
    std::fs::create_dir_all(&dpkg).map_err(|e| io("dpkg's settings", e))?;
    std::fs::write(dpkg.join("kiln-trim"), dpkg_excludes())
        .map_err(|e| io("dpkg's settings", e))?;
    // And apt's lists and caches (every kiln step that installs runs `apt-get update` first).
    let apt: [(&str, &[&str], bool); 3] = [
        ("var/lib/apt/lists", &["lock", "partial"], false),
        ("var/cache/apt", &["archives"], false),
        ("var/cache/apt/archives", &["lock", "partial"], false),
    ];
    let mut freed = 0;
    for (folder, keep, per_package) in NEVER_READ.into_iter().chain(apt) {
        freed += remove_below(&root.join(folder), keep, per_package).map_err(|e| io(folder, e))?;
    }
    Ok(freed)
}

/// Remove everything below `dir` but the entries named in `keep` (at the top, or, with `nested`,
/// at any depth under a subfolder too: `usr/share/doc/<package>/copyright`). Returns the bytes
/// freed. Symbolic links are removed, never followed.
fn remove_below(dir: &Path, keep: &[&str], nested: bool) -> std::io::Result<u64> {
    let mut freed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if keep.iter().any(|k| name == *k) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() && nested && keep.iter().any(|k| entry.path().join(k).exists()) {
            freed += remove_below(&entry.path(), keep, false)?;
        } else if kind.is_dir() {
            freed += size_of(&entry.path())?;
            std::fs::remove_dir_all(entry.path())?;
        } else {
            freed += entry.metadata()?.len();
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(freed)
}

fn size_of(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() {
            size_of(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_copyrights_the_locale_alias_and_apts_locks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (path, bytes) in [
            ("usr/share/doc/bash/copyright", 10),
            ("usr/share/doc/bash/changelog.gz", 100),
            ("usr/share/doc/bash/examples/x", 100),
            ("usr/share/man/man1/ls.1.gz", 100),
            ("usr/share/locale/locale.alias", 10),
            ("usr/share/locale/de/LC_MESSAGES/apt.mo", 100),
            (
                "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
                100,
            ),
            ("var/lib/apt/lists/lock", 0),
            ("var/lib/apt/lists/partial/x", 0),
            ("var/cache/apt/pkgcache.bin", 100),
            ("var/cache/apt/archives/bash.deb", 100),
            ("var/cache/apt/archives/lock", 0),
            ("usr/bin/bash", 10),
        ] {
            let path = r.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![b'x'; bytes]).unwrap();
        }
        // A link out of the tree is removed, not followed.
        std::os::unix::fs::symlink("/etc", r.join("usr/share/man/etc")).unwrap();
        let freed = trim(r).unwrap();
        // Seven files of 100 bytes, and the link (its own length: "/etc").
        assert_eq!(freed, 704);
        for kept in [
            "usr/share/doc/bash/copyright",
            "usr/share/locale/locale.alias",
            "var/lib/apt/lists/lock",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/lock",
            "usr/bin/bash",
            "etc/dpkg/dpkg.cfg.d/kiln-trim",
        ] {
            assert!(r.join(kept).exists(), "{kept} was removed");
        }
        for gone in [
            "usr/share/doc/bash/changelog.gz",
            "usr/share/doc/bash/examples",
            "usr/share/man/man1",
            "usr/share/locale/de",
            "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
            "var/cache/apt/pkgcache.bin",
            "var/cache/apt/archives/bash.deb",
        ] {
            assert!(!r.join(gone).exists(), "{gone} is still there");
        }
        assert!(Path::new("/etc").exists());
    }
}
