//! The kiln contents record (`"schema": "kiln.contents/v1"`): what one image holds, read from the
//! built environment, not from its inputs.
//!
//! Shape (JSON, canonical: RFC 8785, so sorted keys and no white space; absent managers and empty
//! optional fields are omitted):
//!
//! ```json
//! {"schema": "kiln.contents/v1", "kiln_version": "0.1.0",
//!  "source": {"url": "https://…/repo", "commit": "…", "content_hash": "sha256:…", "commit_time": "2026-01-01T00:00:00Z"},
//!  "image": "registry/name:tag", "base_image": {"name": "kiln/base:bookworm", "digest": "sha256:…"},
//!  "environment_key": "sha256:…", "os": {"id": "debian", "version_id": "12", …}, "architecture": "amd64",
//!  "deb": [{"name", "version", "architecture", "source", "source_version"?}],
//!  "python": [{"prefix": "/srv/venv", "python_version", "implementation",
//!              "indexes"?, "packages": [{"name" (PEP 503), "version", "installer"?, "requested"?, "direct_url"?, "hashes"?, "lock_hashes"?}]}],
//!  "conda": [{"prefix", "packages": [{"name", "version", "build", "channel"?, "subdir"?, "url"?, "sha256"?}]}],
//!  "r": {"version", "repos": {"CRAN": "…"}, "snapshot_date"?, "packages": [{"name", "version", "library", …}]},
//!  "julia": [{"manifest", "julia_version"?, "packages": [{"name", "uuid", "version"?, "git_tree_sha1"?, …}]}],
//!  "npm": [{"name", "version"}]}
//! ```
//!
//! Every list is sorted and free of duplicates, so the same environment always gives the same bytes
//! and the same [`Contents::digest`]. URLs never carry credentials (user information is removed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SbomError;

/// The schema name and version of the record.
pub const SCHEMA: &str = "kiln.contents/v1";
/// The OCI media type of the record (as a referrer or a layer).
pub const MEDIA_TYPE: &str = "application/vnd.kiln.contents.v1+json";
/// Where kiln stores the record inside an image.
pub const IMAGE_PATH: &str = "/opt/kiln/contents.json";

/// What an image holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    pub schema: String,
    pub kiln_version: String,
    #[serde(default)]
    pub source: Source,
    /// The image's name (`registry/repository:tag`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    /// The image's Debian architecture (`amd64`), or `uname -m` without dpkg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deb: Vec<DebPackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python: Vec<PythonEnvironment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda: Vec<CondaEnvironment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<REnvironment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub julia: Vec<JuliaEnvironment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub npm: Vec<NpmPackage>,
}

/// Where the image comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The repository URL, without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// For a source without a commit (a local folder): the hash of its build context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The commit time, RFC 3339 (the SBOM's timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// From `/etc/os-release`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DebPackage {
    pub name: String,
    pub architecture: String,
    pub version: String,
    /// The source package.
    pub source: String,
    /// The source version, only when it differs from `version` (a binNMU such as `+b1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonEnvironment {
    /// `sys.prefix` of the environment (`/srv/venv`, a conda prefix).
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    /// The package indexes of kiln's build-time lock, as `uv pip compile` gave them
    /// (`--index-url …`, `--extra-index-url …`, `--find-links …`), without credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<String>,
    #[serde(default)]
    pub packages: Vec<PythonPackage>,
}

/// One installed distribution.
///
/// What the installed metadata can tell (and so what the record keeps): the `INSTALLER` file
/// (`uv`, `pip`, `conda`), whether it was `REQUESTED` (asked for rather than pulled in), and for
/// URL, VCS and local installs the PEP 610 `direct_url.json`, whose `archive_info.hashes` are the
/// only archive hashes that pip or uv leave behind. Neither records the index a wheel came from
/// nor its hash for ordinary index installs (PEP 710's `provenance_url.json` is a draft), and a
/// `RECORD` file hashes the installed files, not the archive, so it cannot be a pin.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PythonPackage {
    /// Normalised as PEP 503 says: lowercase, runs of `-`, `_`, `.` as one `-`.
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_url: Option<DirectUrl>,
    /// Archive hashes by algorithm (`sha256` → hex), when the installer recorded them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hashes: BTreeMap<String, String>,
    /// The sha256 (hex) of the files of this version that install on the image (the wheels whose
    /// tags match the installed one's, else the source archives), from the lock kiln made at build
    /// time: any of them installs exactly this version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_hashes: Vec<String>,
}

/// A PEP 610 direct URL, without credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DirectUrl {
    pub url: String,
    /// `vcs`, `archive` or `dir`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdirectory: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub editable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondaEnvironment {
    pub prefix: String,
    #[serde(default)]
    pub packages: Vec<CondaPackage>,
}

/// A conda package. Those from kiln's `@EXPLICIT` lock have `url` and `sha256`; a package that
/// `conda-meta` lists but the lock does not (installed after the lock, e.g. by `postBuild`) has
/// only name, version and build.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CondaPackage {
    pub name: String,
    pub version: String,
    pub build: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// The channel URL (`https://conda.anaconda.org/conda-forge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct REnvironment {
    /// `R.version`: `4.2.2`.
    pub version: String,
    /// `getOption("repos")`, by name, without credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, String>,
    /// The dated snapshot the CRAN repository points at (`YYYY-MM-DD`), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_date: Option<String>,
    #[serde(default)]
    pub packages: Vec<RPackage>,
}

/// An installed R package, as the first library of `.libPaths()` that has it gives it (the one
/// `library()` loads).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RPackage {
    pub name: String,
    pub version: String,
    pub library: String,
    /// `base` or `recommended` for R's own packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// The R version it was built under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<String>,
    /// The `Repository` field: `CRAN`, `RSPM`, `BioCsoft`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RRemote>,
}

/// Where `remotes`/`pak` installed a package from (`Remote*` fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RRemote {
    /// `RemoteType`: `github`, `gitlab`, `git`, `url`, `local`, `standard`…
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `RemoteUsername/RemoteRepo` for hosted git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JuliaEnvironment {
    /// The manifest's path in the image.
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub julia_version: Option<String>,
    #[serde(default)]
    pub packages: Vec<JuliaPackage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JuliaPackage {
    pub name: String,
    pub uuid: String,
    /// Absent for standard libraries in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_tree_sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NpmPackage {
    pub name: String,
    pub version: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the builder knows about an image beside what the collection prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMeta {
    pub kiln_version: String,
    pub source: Source,
    pub image: Option<String>,
    pub base_image: Option<BaseImage>,
    pub environment_key: Option<String>,
}

/// A package manager of the record, in the order tables and diffs show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Deb,
    Conda,
    Python,
    R,
    Julia,
    Npm,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Deb => "deb",
            Manager::Conda => "conda",
            Manager::Python => "python",
            Manager::R => "r",
            Manager::Julia => "julia",
            Manager::Npm => "npm",
        }
    }
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One package of any manager, for tables and diffs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub manager: Manager,
    /// The environment (Python or conda prefix, Julia manifest); `None` for deb, R and npm.
    pub environment: Option<String>,
    /// The package's key within its environment: the name, and for a deb package of a foreign
    /// architecture `name:arch`.
    pub name: String,
    pub version: String,
}

impl Contents {
    /// An empty record for `meta`.
    pub fn new(meta: ImageMeta) -> Contents {
        let mut source = meta.source;
        source.url = source.url.as_deref().map(without_credentials);
        Contents {
            schema: SCHEMA.to_string(),
            kiln_version: meta.kiln_version,
            source,
            image: meta.image,
            base_image: meta.base_image,
            environment_key: meta.environment_key,
            ..Default::default()
        }
    }

    /// Sort every list and drop duplicates (the first of a name wins where the environment itself
    /// would load the first: Python's `sys.path`, R's `.libPaths()`).
    pub fn normalise(&mut self) {
        self.deb.sort();
        self.deb
            .dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
        for env in &mut self.python {
            dedup_first(&mut env.packages, |p| p.name.clone());
        }
        self.python.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        self.python.dedup_by(|a, b| a.prefix == b.prefix);
        for env in &mut self.conda {
            env.packages.sort();
            env.packages.dedup_by(|a, b| a.name == b.name);
        }
        self.conda.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        self.conda.dedup_by(|a, b| a.prefix == b.prefix);
        if let Some(r) = &mut self.r {
            dedup_first(&mut r.packages, |p| p.name.clone());
        }
        for env in &mut self.julia {
            env.packages.sort();
            env.packages.dedup_by(|a, b| a.uuid == b.uuid);
        }
        self.julia.sort_by(|a, b| a.manifest.cmp(&b.manifest));
        self.julia.dedup_by(|a, b| a.manifest == b.manifest);
        self.npm.sort();
        self.npm.dedup_by(|a, b| a.name == b.name);
    }

    /// The record as canonical JSON (RFC 8785: sorted keys, no white space), normalised first.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut record = self.clone();
        record.normalise();
        let value = serde_json::to_value(&record).expect("a record serialises");
        serde_json_canonicalizer::to_vec(&value).expect("a JSON value canonicalises")
    }

    /// `sha256:<hex>` of [`Contents::to_canonical_json`].
    pub fn digest(&self) -> String {
        sha256(&self.to_canonical_json())
    }

    /// Read a record, refusing another schema.
    pub fn from_json(bytes: &[u8]) -> Result<Contents, SbomError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| SbomError::Invalid(format!("the contents record is not JSON: {e}")))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(SbomError::Invalid(format!(
                    "the contents record has schema {other:?}; this kiln reads {SCHEMA:?} (upgrade kiln)"
                )));
            }
            None => {
                return Err(SbomError::Invalid(format!(
                    "not a kiln contents record: no \"schema\": {SCHEMA:?}"
                )));
            }
        }
        let mut record: Contents = serde_json::from_value(value)
            .map_err(|e| SbomError::Invalid(format!("the contents record is invalid: {e}")))?;
        record.normalise();
        Ok(record)
    }

    /// Every package, ordered by manager, environment and name.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let native = self.architecture.as_deref().unwrap_or_default();
        for p in &self.deb {
            out.push(Entry {
                manager: Manager::Deb,
                environment: None,
                name: deb_key(p, native),
                version: p.version.clone(),
            });
        }
        for env in &self.conda {
            for p in &env.packages {
                out.push(Entry {
                    manager: Manager::Conda,
                    environment: Some(env.prefix.clone()),
                    name: p.name.clone(),
                    version: format!("{} {}", p.version, p.build),
                });
            }
        }
        for env in &self.python {
            for p in &env.packages {
                out.push(Entry {
                    manager: Manager::Python,
                    environment: Some(env.prefix.clone()),
                    name: p.name.clone(),
                    version: p.version.clone(),
                });
            }
        }
        if let Some(r) = &self.r {
            for p in &r.packages {
                out.push(Entry {
                    manager: Manager::R,
                    environment: None,
                    name: p.name.clone(),
                    version: p.version.clone(),
                });
            }
        }
        for env in &self.julia {
            for p in &env.packages {
                out.push(Entry {
                    manager: Manager::Julia,
                    environment: Some(env.manifest.clone()),
                    name: p.name.clone(),
                    version: p.version.clone().unwrap_or_else(|| "(stdlib)".into()),
                });
            }
        }
        for p in &self.npm {
            out.push(Entry {
                manager: Manager::Npm,
                environment: None,
                name: p.name.clone(),
                version: p.version.clone(),
            });
        }
        out.sort();
        out
    }
}

/// A deb package's key: its name, or `name:arch` when its architecture is neither the image's nor
/// `all` (multiarch).
pub(crate) fn deb_key(p: &DebPackage, native: &str) -> String {
    if p.architecture == native || p.architecture == "all" || native.is_empty() {
        p.name.clone()
    } else {
        format!("{}:{}", p.name, p.architecture)
    }
}

/// Sort by key, keeping the first of each key in the original order.
fn dedup_first<T, K: Ord + Clone>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let mut seen = std::collections::BTreeSet::new();
    items.retain(|item| seen.insert(key(item)));
    items.sort_by_key(|item| key(item));
}

/// PEP 503 normalisation: lowercase, and every run of `-`, `_` and `.` as one `-`.
pub fn normalise_python_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A URL without its user information (user name, password or token); anything that is not a URL
/// with a host is kept as it is.
pub fn without_credentials(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.has_host() && (!u.username().is_empty() || u.password().is_some()) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names_are_normalised_as_pep_503_says() {
        assert_eq!(normalise_python_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalise_python_name("jupyter_server"), "jupyter-server");
        assert_eq!(
            normalise_python_name("ruamel.yaml.clib"),
            "ruamel-yaml-clib"
        );
        assert_eq!(normalise_python_name("A-_.b"), "a-b");
    }

    #[test]
    fn credentials_never_stay_in_urls() {
        assert_eq!(
            without_credentials("https://user:s3cret@git.example.org/r.git"),
            "https://git.example.org/r.git"
        );
        assert_eq!(
            without_credentials("https://tok3n@git.example.org/r.git"),
            "https://git.example.org/r.git"
        );
        assert_eq!(without_credentials("/home/me/repo"), "/home/me/repo");
        assert_eq!(
            without_credentials("git+https://x-token:abc@h.example/p@v1"),
            "git+https://h.example/p@v1"
        );
    }

    #[test]
    fn records_of_another_schema_are_refused() {
        let e = Contents::from_json(br#"{"schema":"kiln.contents/v9"}"#).unwrap_err();
        assert!(e.to_string().contains("upgrade kiln"), "{e}");
        let e = Contents::from_json(br#"{"a":1}"#).unwrap_err();
        assert!(e.to_string().contains("not a kiln contents record"), "{e}");
    }
}
