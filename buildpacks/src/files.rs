//! The configuration files of a repository, found with repo2docker's rules.
//!
//! When `binder/` or `.binder/` exists, only files inside it count: root `setup.py`, `pyproject.toml`,
//! `DESCRIPTION` and `Dockerfile` are then ignored, as are every other root configuration file.

use crate::error::PlanError;
use crate::plan::Decision;
use crate::tree::RepoTree;

/// A configuration file: its path relative to the repository root and its text.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: String,
    pub text: String,
}

/// Every file kiln recognises, as found in the repository.
#[derive(Debug, Default)]
pub struct RepoFiles {
    /// `binder` or `.binder` when one exists.
    pub config_dir: Option<String>,
    pub dockerfile: Option<ConfigFile>,
    pub environment_yml: Option<ConfigFile>,
    /// A conda lock shipped beside `environment.yml` (`conda-linux-64.lock`, an `@EXPLICIT` list,
    /// or `conda-lock.yml`): installed as is, without solving.
    pub conda_lock: Option<ConfigFile>,
    pub pipfile: Option<ConfigFile>,
    pub pipfile_lock: Option<ConfigFile>,
    pub requirements: Option<ConfigFile>,
    pub setup_py: Option<String>,
    pub pyproject: Option<ConfigFile>,
    pub uv_lock: Option<ConfigFile>,
    pub runtime_txt: Option<ConfigFile>,
    pub apt_txt: Option<ConfigFile>,
    pub post_build: Option<String>,
    pub start: Option<String>,
    pub install_r: Option<ConfigFile>,
    pub description: Option<ConfigFile>,
    pub julia_project: Option<ConfigFile>,
    pub julia_manifest: Option<ConfigFile>,
    pub require: Option<String>,
    pub default_nix: Option<ConfigFile>,
    pub ignore_file: Option<String>,
    /// Files that exist but were ignored, with the reason (shown in the plan).
    pub ignored: Vec<Decision>,
}

impl RepoFiles {
    pub fn read(tree: &RepoTree) -> Result<Self, PlanError> {
        let binder = tree.is_dir("binder")?;
        let dot_binder = tree.is_dir(".binder")?;
        let config_dir = match (binder, dot_binder) {
            (true, true) => return Err(PlanError::BothBinderDirs),
            (true, false) => Some("binder".to_string()),
            (false, true) => Some(".binder".to_string()),
            (false, false) => None,
        };
        let at = |name: &str| match &config_dir {
            Some(dir) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        let text = |name: &str| -> Result<Option<ConfigFile>, PlanError> {
            let path = at(name);
            Ok(tree.read_text(&path)?.map(|text| ConfigFile { path, text }))
        };
        let first_text = |names: &[&str]| -> Result<Option<ConfigFile>, PlanError> {
            for name in names {
                if let Some(file) = text(name)? {
                    return Ok(Some(file));
                }
            }
            Ok(None)
        };
        let script = |name: &str| -> Result<Option<String>, PlanError> {
            let path = at(name);
            if !tree.exists(&path)? {
                return Ok(None);
            }
            // Reading checks that it is a regular file inside the repository.
            tree.read(&path)?;
            Ok(Some(path))
        };

        let mut files = RepoFiles {
            dockerfile: text("Dockerfile")?,
            environment_yml: first_text(&["environment.yml", "environment.yaml"])?,
            conda_lock: first_text(&["conda-linux-64.lock", "conda-lock.yml"])?,
            pipfile: text("Pipfile")?,
            pipfile_lock: text("Pipfile.lock")?,
            requirements: text("requirements.txt")?,
            pyproject: text("pyproject.toml")?,
            uv_lock: text("uv.lock")?,
            runtime_txt: text("runtime.txt")?,
            apt_txt: text("apt.txt")?,
            post_build: script("postBuild")?,
            start: script("start")?,
            install_r: text("install.R")?,
            julia_project: first_text(&["Project.toml", "JuliaProject.toml"])?,
            julia_manifest: text("Manifest.toml")?,
            require: script("REQUIRE")?,
            default_nix: text("default.nix")?,
            ..RepoFiles::default()
        };
        // The ignore file is read from the folder whose files count.
        for name in [".dockerignore", ".containerignore"] {
            if files.ignore_file.is_none() && tree.exists(&at(name))? {
                tree.read(&at(name))?;
                files.ignore_file = Some(at(name));
            }
        }

        match &config_dir {
            None => {
                files.setup_py = script("setup.py")?;
                files.description = text("DESCRIPTION")?;
            }
            Some(dir) => {
                for name in [
                    "Dockerfile",
                    "setup.py",
                    "pyproject.toml",
                    "DESCRIPTION",
                    "environment.yml",
                    "requirements.txt",
                    "apt.txt",
                    "postBuild",
                    "runtime.txt",
                ] {
                    if tree.exists(name)? {
                        files.ignored.push(Decision {
                            topic: format!("root {name}"),
                            value: "ignored".into(),
                            reason: format!("{dir}/ exists, so only the files inside it count"),
                        });
                    }
                }
            }
        }
        files.config_dir = config_dir;
        Ok(files)
    }
}

impl RepoFiles {
    /// The configuration file read at `path`, if any.
    pub fn by_path(&self, path: &str) -> Option<&ConfigFile> {
        [
            &self.dockerfile,
            &self.environment_yml,
            &self.conda_lock,
            &self.pipfile,
            &self.pipfile_lock,
            &self.requirements,
            &self.pyproject,
            &self.uv_lock,
            &self.runtime_txt,
            &self.apt_txt,
            &self.install_r,
            &self.description,
            &self.julia_project,
            &self.julia_manifest,
            &self.default_nix,
        ]
        .into_iter()
        .flatten()
        .find(|f| f.path == path)
    }
}
