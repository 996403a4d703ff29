//! The lock: every package of a solved environment, by URL and sha256.
//!
//! It is written as an `@EXPLICIT` list (conda's explicit format, which `conda create --file` and
//! micromamba also read), one `URL#sha256` per line, sorted by package name, with canonical channel
//! URLs (never a mirror's), so the same environment gives the same bytes on every machine. kiln
//! stores it in the image at `<prefix>/conda-meta/kiln-lock.txt` and installs a lock exactly: no
//! solve, and a package whose sha256 differs is refused.
//!
//! A repository may ship its own lock: an `@EXPLICIT` list with sha256 fragments, or a
//! `conda-lock.yml` (its `linux-64` conda packages).

use serde::Deserialize;
use url::Url;

use crate::error::CondaError;

/// Where the lock is stored, relative to the environment's prefix.
pub const LOCK_FILE: &str = "conda-meta/kiln-lock.txt";

/// One package of a lock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub build: String,
    pub subdir: String,
    /// The canonical URL of the archive (`.conda` or `.tar.bz2`).
    pub url: Url,
    /// Lowercase hex sha256 of the archive.
    pub sha256: String,
}

/// The packages of an environment, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    pub packages: Vec<LockedPackage>,
}

impl LockedPackage {
    /// A package from its URL and sha256; name, version and build come from the file name.
    pub fn from_url(url: Url, sha256: &str) -> Result<LockedPackage, String> {
        // Locks may come from repositories: never let one read the build host's files.
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{url}: not an http(s) URL (a local channel can only be a mirror, KILN_CONDA_MIRRORS)"
            ));
        }
        let file = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_string();
        let stem = file
            .strip_suffix(".conda")
            .or_else(|| file.strip_suffix(".tar.bz2"))
            .ok_or_else(|| format!("{url}: not a conda package (.conda or .tar.bz2)"))?;
        let mut parts = stem.rsplitn(3, '-');
        let (build, version, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(b), Some(v), Some(n)) if !n.is_empty() => (b, v, n),
            _ => return Err(format!("{url}: the file name is not NAME-VERSION-BUILD")),
        };
        let subdir = url
            .path_segments()
            .and_then(|s| s.rev().nth(1).map(str::to_string))
            .unwrap_or_default();
        let sha256 = sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{url}: {sha256:?} is not a sha256 (64 hex digits)"));
        }
        Ok(LockedPackage {
            name: name.to_string(),
            version: version.to_string(),
            build: build.to_string(),
            subdir,
            url,
            sha256,
        })
    }
}

impl Lock {
    pub fn new(mut packages: Vec<LockedPackage>) -> Lock {
        packages.sort();
        packages.dedup();
        Lock { packages }
    }

    /// The lock as an `@EXPLICIT` list: `URL#sha256`, one per line.
    pub fn to_explicit(&self) -> String {
        let mut out = String::from(
            "# kiln conda lock: install with `conda create --file` or `kiln build --locked`\n# platform: linux-64\n@EXPLICIT\n",
        );
        for p in &self.packages {
            out.push_str(&format!("{}#sha256:{}\n", p.url, p.sha256));
        }
        out
    }

    /// sha256 of the `@EXPLICIT` text.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(self.to_explicit().as_bytes()))
        )
    }

    pub fn get(&self, name: &str) -> Option<&LockedPackage> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Read a lock: an `@EXPLICIT` list, or a `conda-lock.yml` (by its content).
    pub fn parse(path: &str, text: &str) -> Result<Lock, CondaError> {
        if text.lines().any(|l| l.trim() == "@EXPLICIT") {
            Self::parse_explicit(path, text)
        } else {
            Self::parse_conda_lock(path, text)
        }
    }

    /// An `@EXPLICIT` list; every package needs a sha256 (`#sha256:HEX` or a bare `#HEX` of 64 digits).
    pub fn parse_explicit(path: &str, text: &str) -> Result<Lock, CondaError> {
        let error = |line: usize, reason: String| CondaError::Lock {
            path: format!("{path}:{line}"),
            reason,
        };
        let mut packages = Vec::new();
        let mut seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "@EXPLICIT" {
                seen = true;
                continue;
            }
            if !seen {
                return Err(error(
                    i + 1,
                    "package lines come after an @EXPLICIT line".into(),
                ));
            }
            let (url, hash) = line.split_once('#').ok_or_else(|| {
                error(
                    i + 1,
                    "the package has no sha256: write URL#sha256:HEX (md5 is not enough)".into(),
                )
            })?;
            let hash = hash.strip_prefix("sha256:").unwrap_or(hash);
            let url = Url::parse(url.trim())
                .map_err(|e| error(i + 1, format!("{url:?} is not a URL: {e}")))?;
            packages.push(LockedPackage::from_url(url, hash).map_err(|e| error(i + 1, e))?);
        }
        if !seen {
            return Err(error(1, "no @EXPLICIT line".into()));
        }
        Ok(Lock::new(packages))
    }

    /// The `linux-64` conda packages of a `conda-lock.yml`.
    pub fn parse_conda_lock(path: &str, text: &str) -> Result<Lock, CondaError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            package: Vec<Package>,
        }
        #[derive(Deserialize)]
        struct Package {
            name: String,
            #[serde(default)]
            manager: String,
            #[serde(default)]
            platform: String,
            url: String,
            #[serde(default)]
            hash: Hash,
        }
        #[derive(Deserialize, Default)]
        struct Hash {
            #[serde(default)]
            sha256: Option<String>,
        }
        let file: File = serde_saphyr::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            CondaError::Lock {
                path: format!("{path}{at}"),
                reason: e.to_string().lines().next().unwrap_or_default().to_string(),
            }
        })?;
        let mut packages = Vec::new();
        for p in file.package {
            if p.platform != "linux-64" {
                continue;
            }
            if p.manager != "conda" {
                return Err(CondaError::Lock {
                    path: path.to_string(),
                    reason: format!(
                        "{} is a {} package; kiln installs only the conda packages of a lock (list pip packages in environment.yml's pip section)",
                        p.name, p.manager
                    ),
                });
            }
            let bad = |reason: String| CondaError::Lock {
                path: path.to_string(),
                reason,
            };
            let sha256 = p
                .hash
                .sha256
                .ok_or_else(|| bad(format!("{} has no sha256", p.name)))?;
            let url = Url::parse(&p.url).map_err(|e| bad(format!("{}: {e}", p.url)))?;
            packages.push(LockedPackage::from_url(url, &sha256).map_err(bad)?);
        }
        if packages.is_empty() {
            return Err(CondaError::Lock {
                path: path.to_string(),
                reason: "no linux-64 conda packages".into(),
            });
        }
        Ok(Lock::new(packages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn explicit_round_trip() {
        let text = format!(
            "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/noarch/kiln-greet-0.1.0-pyh4616a5c_0.conda#{SHA}\nhttps://conda.anaconda.org/conda-forge/linux-64/python-3.11.2-debian12_2.conda#sha256:{SHA}\n"
        );
        let lock = Lock::parse("l.txt", &text).unwrap();
        assert_eq!(lock.packages[0].name, "kiln-greet");
        assert_eq!(lock.packages[0].version, "0.1.0");
        assert_eq!(lock.packages[0].subdir, "noarch");
        assert_eq!(lock.packages[1].build, "debian12_2");
        let again = Lock::parse("l.txt", &lock.to_explicit()).unwrap();
        assert_eq!(lock, again);
    }

    #[test]
    fn explicit_errors_name_the_line() {
        let e = Lock::parse(
            "conda.lock",
            "@EXPLICIT\nhttps://x.example/noarch/a-1-0.conda#md5:abc\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("conda.lock:2"), "{e}");
        let e = Lock::parse(
            "conda.lock",
            "@EXPLICIT\nhttps://x.example/noarch/a-1-0.conda\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no sha256"), "{e}");
        let e = Lock::parse(
            "conda.lock",
            &format!("@EXPLICIT\nfile:///etc/noarch/a-1-0.conda#{SHA}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn conda_lock_yml() {
        let text = format!(
            "version: 1\npackage:\n- name: a\n  version: '1'\n  manager: conda\n  platform: linux-64\n  url: https://x.example/noarch/a-1-0.conda\n  hash:\n    md5: x\n    sha256: {SHA}\n- name: a\n  version: '1'\n  manager: conda\n  platform: osx-arm64\n  url: https://x.example/noarch/a-1-0.conda\n  hash:\n    sha256: {SHA}\n"
        );
        let lock = Lock::parse("conda-lock.yml", &text).unwrap();
        assert_eq!(lock.packages.len(), 1);
    }
}
