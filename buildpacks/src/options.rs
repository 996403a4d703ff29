//! What an operator can choose when planning, and the pinned versions kiln installs by default.
//! Every pinned version lives here, in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The image every plan builds on by default: Debian bookworm, made locally by `kiln base bootstrap`.
pub const DEFAULT_BASE_IMAGE: &str = "kiln/base:bookworm";
/// The Python that the default base image ships (Debian bookworm's `python3`). A plan that asks for it
/// uses the base image's interpreter; any other version is a uv-managed CPython.
pub const BASE_PYTHON: &str = "3.11";
/// The R version that the default base image's Debian release packages (bookworm: 4.2.2).
pub const BASE_R: &str = "4.2";
/// Python versions kiln accepts (`runtime.txt`, `requires-python`), oldest first.
pub const SUPPORTED_PYTHONS: &[&str] = &["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"];
/// Pythons too old for JupyterLab: as in repo2docker, they come from conda as the kernel's
/// environment (`/srv/conda/envs/notebook`, with ipykernel), while JupyterLab runs in `/srv/venv`
/// on the base image's Python.
pub const KERNEL_ENV_PYTHONS: &[&str] = &["2.7", "3.5", "3.6", "3.7"];

/// The `jupyterhub` release whose `jupyterhub-singleuser` kiln installs (the pins below use it); an
/// operator can choose another with [`PlanOptions::with_jupyterhub`] to match their hub's major version.
pub const JUPYTERHUB_VERSION: &str = "6.1.1";
/// Jupyter, installed into every Python-based image. `jupyterhub` provides `jupyterhub-singleuser`;
/// its major version must match the hub's.
pub const JUPYTER_PACKAGES: &[&str] =
    &["jupyterlab==4.6.6", "notebook==7.6.5", "jupyterhub==6.1.1"];
/// What notebooks on mybinder.org use without asking for it, because repo2docker's default
/// environment has it: widgets (`ipywidgets`) and the memory and CPU meter in JupyterLab's status
/// bar (`jupyter-resource-usage`). Installed with Jupyter into every Python environment kiln makes
/// (the default one and those of `requirements.txt`, `Pipfile`, `pyproject.toml`); a conda
/// environment brings what it lists.
pub const DEFAULT_ENVIRONMENT_EXTRAS: &[&str] =
    &["ipywidgets==8.1.9", "jupyter-resource-usage==1.3.0"];
/// The conda-forge names of the same packages, for conda environments.
pub const JUPYTER_CONDA_PACKAGES: &[&str] = &[
    "jupyterlab=4.6.6",
    "notebook=7.6.5",
    "jupyterhub-singleuser=6.1.1",
];
pub const UV_VERSION: &str = "0.13.9";
pub const PIPENV_VERSION: &str = "2026.10.3";
pub const NIX_VERSION: &str = "2.24.10";
/// Full R versions for each `runtime.txt` minor version, as repo2docker maps them.
pub const R_VERSIONS: &[(&str, &str)] = &[
    ("4.6", "4.6.1"),
    ("4.5", "4.5.1"),
    ("4.4", "4.4.2"),
    ("4.3", "4.3.3"),
    ("4.2", "4.2.3"),
    ("4.1", "4.1.3"),
    ("4.0", "4.0.5"),
    ("3.6", "3.6.3"),
    ("3.5", "3.5.3"),
    ("3.4", "3.4.4"),
    ("3.3", "3.3.3"),
];
/// The R version used when `runtime.txt` gives a date but no version.
pub const DEFAULT_R: &str = "4.4";
/// Julia releases kiln knows without the official list (when it cannot be fetched), newest first.
pub const JULIA_VERSIONS: &[&str] = &[
    "1.12.1", "1.11.7", "1.10.10", "1.9.4", "1.8.5", "1.7.3", "1.6.7",
];
/// The official list of Julia releases, with each file's URL and sha256.
pub const DEFAULT_JULIA_VERSIONS_URL: &str = "https://julialang-s3.julialang.org/bin/versions.json";
/// Posit Package Manager's dated CRAN snapshots for Debian bookworm; `{date}` is a date or `latest`.
pub const DEFAULT_CRAN_URL: &str = "https://packagemanager.posit.co/cran/__linux__/bookworm/{date}";

/// Choices of the operator that shape a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    pub base_image: String,
    /// The Python version of the base image (used as is, without a download).
    pub base_python: String,
    /// The R version of the base image's Debian release.
    pub base_r: String,
    pub user: String,
    pub uid: u32,
    /// Where the repository goes in the image (repo2docker's `--target-repo-dir`); `None` is the
    /// user's home.
    pub repo_dir: Option<String>,
    /// pip requirement strings for Jupyter in Python environments.
    pub jupyter_packages: Vec<String>,
    /// conda specs for Jupyter in conda environments.
    pub jupyter_conda_packages: Vec<String>,
    /// CRAN snapshot URL template with `{date}`.
    pub cran_url: String,
    /// Conda channels used when `environment.yml` names none.
    pub default_conda_channels: Vec<String>,
    /// Where the builder fetches the list of Julia releases from (`versions.json`, or a mirror of
    /// it; `file://` works too).
    #[serde(default = "default_julia_versions_url")]
    pub julia_versions_url: String,
    /// The Julia releases to choose from, as the builder fetched them; without them, kiln's
    /// built-in list ([`JULIA_VERSIONS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub julia_releases: Option<JuliaReleases>,
    /// What an earlier image held, installed again instead of resolving the repository's files
    /// (`kiln build --locked IMAGE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<Locked>,
    /// Resolve the repository's own dependencies again: a value the steps that download them get
    /// as `KILN_REFRESH`, so they run again instead of coming from a cache, and the environment key
    /// moves with it (the runtime and Jupyter layers stay shared). A catalogue entry's
    /// `rebuild.lock_change` sets it for environments that resolve in their steps (pip, R, Julia).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

fn default_julia_versions_url() -> String {
    DEFAULT_JULIA_VERSIONS_URL.to_string()
}

/// The Julia releases a plan may choose from: the stable releases of the official list that have
/// an x86_64 Linux archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JuliaReleases {
    /// Where the list came from, for the plan's reasons.
    pub source: String,
    /// Newest first.
    pub releases: Vec<JuliaRelease>,
}

/// One Julia release: its version and its x86_64 Linux archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JuliaRelease {
    pub version: String,
    pub url: String,
    /// The archive's sha256, checked before it is unpacked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl JuliaRelease {
    /// A release of the built-in list: the official download URL, no checksum.
    pub fn built_in(version: &str) -> JuliaRelease {
        let minor: Vec<&str> = version.split('.').take(2).collect();
        JuliaRelease {
            version: version.to_string(),
            url: format!(
                "https://julialang-s3.julialang.org/bin/linux/x64/{}/julia-{version}-linux-x86_64.tar.gz",
                minor.join(".")
            ),
            sha256: None,
        }
    }
}

/// The packages of an earlier image, to install exactly (`--locked IMAGE`). The builder reads them
/// from the image's contents record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locked {
    /// The image they come from, for decisions and messages.
    pub from: String,
    /// A requirements file that pins the Python environment at `/srv/venv` (`name==version`, with
    /// `--hash` lines when every pin has one, after the index options), when the image had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Debian package versions by name (the image's native architecture).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deb: BTreeMap<String, String>,
    /// The date of the CRAN snapshot R's packages came from (`YYYY-MM-DD`), when the image had a
    /// dated one: R's packages are installed from the same snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r_snapshot: Option<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            base_image: DEFAULT_BASE_IMAGE.to_string(),
            base_python: BASE_PYTHON.to_string(),
            base_r: BASE_R.to_string(),
            user: "jovyan".to_string(),
            uid: 1000,
            repo_dir: None,
            jupyter_packages: JUPYTER_PACKAGES.iter().map(|s| s.to_string()).collect(),
            jupyter_conda_packages: JUPYTER_CONDA_PACKAGES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            cran_url: DEFAULT_CRAN_URL.to_string(),
            default_conda_channels: vec!["conda-forge".to_string()],
            julia_versions_url: default_julia_versions_url(),
            julia_releases: None,
            locked: None,
            refresh: None,
        }
    }
}

impl PlanOptions {
    pub fn home(&self) -> String {
        format!("/home/{}", self.user)
    }

    /// Where the repository goes: `repo_dir`, else the home.
    pub fn repo_dir(&self) -> String {
        self.repo_dir
            .as_deref()
            .map(|d| d.trim_end_matches('/').to_string())
            .unwrap_or_else(|| self.home())
    }
}

/// Package servers the build's steps use instead of the public ones (`KILN_PYPI_MIRROR`,
/// `KILN_NPM_REGISTRY`, `KILN_JULIA_PKG_SERVER`), for institutions behind firewalls. They are
/// exported to the steps that download only: not the image's settings, and not part of any key (a
/// mirror serves the same packages). They are written into the build's steps, so they may not
/// carry credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageMirrors {
    /// A Python simple index (PEP 503) for pip, uv and pipenv (whose Pipfile sources naming PyPI,
    /// also as pypi.python.org, are redirected to it).
    pub pypi: Option<String>,
    /// An npm registry.
    pub npm: Option<String>,
    /// A Julia package server (Pkg's `JULIA_PKG_SERVER`).
    pub julia: Option<String>,
}

impl PackageMirrors {
    /// Each given URL checked: http(s), a host, no credentials, no query or fragment.
    pub fn new(
        pypi: Option<&str>,
        npm: Option<&str>,
        julia: Option<&str>,
    ) -> Result<PackageMirrors, String> {
        let check = |variable: &str, url: Option<&str>| {
            url.map(|u| check_mirror(u).map_err(|e| format!("{variable}: {e}")))
                .transpose()
        };
        Ok(PackageMirrors {
            pypi: check("KILN_PYPI_MIRROR", pypi)?,
            npm: check("KILN_NPM_REGISTRY", npm)?,
            julia: check("KILN_JULIA_PKG_SERVER", julia)?,
        })
    }

    /// The variables the package managers read, with their values.
    pub fn exports(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(pypi) = &self.pypi {
            for var in ["PIP_INDEX_URL", "UV_DEFAULT_INDEX", "PIPENV_PYPI_MIRROR"] {
                out.push((var, pypi.as_str()));
            }
        }
        if let Some(npm) = &self.npm {
            out.push(("NPM_CONFIG_REGISTRY", npm.as_str()));
        }
        if let Some(julia) = &self.julia {
            out.push(("JULIA_PKG_SERVER", julia.as_str()));
        }
        out
    }
}

/// A package server's URL, such as `https://mirror.example.org/pypi/simple/`.
fn check_mirror(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the mirror's URL carries credentials, which would be written into the build's steps: use a mirror that needs none here".into(),
        );
    }
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{url:?} is not an http(s) URL of a package server (such as https://mirror.example.org/pypi/simple/)"
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{url:?}: a package server's URL has no query or fragment"
        ));
    }
    Ok(url.to_string())
}

/// A `jupyterhub` version an operator may choose: `6`, `5.4` or `5.4.6`.
pub fn check_jupyterhub_version(version: &str) -> Result<String, String> {
    let parts: Vec<&str> = version.trim().split('.').collect();
    if parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{version:?} is not a version such as 6, 5.4 or 5.4.6"
        ));
    }
    Ok(version.trim().to_string())
}

/// The major version of a `jupyterhub` version (`"6.1.1"` gives 6).
pub fn major_version(version: &str) -> Option<u64> {
    version.trim().split('.').next()?.parse().ok()
}

impl PlanOptions {
    /// Install this `jupyterhub` version (checked with [`check_jupyterhub_version`]) instead of kiln's pin.
    pub fn with_jupyterhub(mut self, version: &str) -> Self {
        let exact = version.split('.').count() == 3;
        let pip = if exact {
            format!("jupyterhub=={version}")
        } else {
            format!("jupyterhub=={version}.*")
        };
        for spec in &mut self.jupyter_packages {
            if spec.starts_with("jupyterhub==") {
                *spec = pip.clone();
            }
        }
        for spec in &mut self.jupyter_conda_packages {
            if spec.starts_with("jupyterhub-singleuser=") {
                *spec = format!("jupyterhub-singleuser={version}");
            }
        }
        self
    }
}

#[cfg(test)]
mod jupyterhub_tests {
    use super::*;

    #[test]
    fn the_pins_use_the_jupyterhub_version() {
        let defaults = PlanOptions::default();
        assert!(
            defaults
                .jupyter_packages
                .contains(&format!("jupyterhub=={JUPYTERHUB_VERSION}"))
        );
        assert!(
            defaults
                .jupyter_conda_packages
                .contains(&format!("jupyterhub-singleuser={JUPYTERHUB_VERSION}"))
        );
    }

    #[test]
    fn an_operator_chooses_another_jupyterhub() {
        let o = PlanOptions::default().with_jupyterhub("5.4");
        assert!(
            o.jupyter_packages
                .contains(&"jupyterhub==5.4.*".to_string())
        );
        assert!(
            o.jupyter_conda_packages
                .contains(&"jupyterhub-singleuser=5.4".to_string())
        );
        assert_eq!(
            o.jupyter_packages.len(),
            PlanOptions::default().jupyter_packages.len()
        );
        assert!(check_jupyterhub_version("5.x").is_err());
        assert!(check_jupyterhub_version("1.2.3.4").is_err());
        assert_eq!(major_version("6.1.1"), Some(6));
    }
}
