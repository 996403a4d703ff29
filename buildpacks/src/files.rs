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
    /// What in `postBuild` needs Node.js (`jupyter labextension install`, `jupyter lab build`,
    /// `node`, `npm`, `yarn`), when something does, and whether it calls npm itself.
    pub post_build_node: Option<(String, bool)>,
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
        if let Some(path) = &files.post_build {
            let text = tree.read(path)?.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            files.post_build_node = needs_node(&text).map(|line| (line, calls_npm(&text)));
        }
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

/// The first command of a script that needs Node.js: a JupyterLab extension built from source
/// (`jupyter labextension install`, `jupyter lab build`) or npm and yarn themselves.
pub fn needs_node(script: &str) -> Option<String> {
    script
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(3)
                .any(|w| w == ["jupyter", "labextension", "install"])
                || words.windows(3).any(|w| w == ["jupyter", "lab", "build"])
                || words
                    .iter()
                    .any(|w| matches!(*w, "npm" | "npx" | "yarn" | "node"))
        })
        .map(str::to_string)
}

/// Whether a script calls npm or npx (JupyterLab builds extensions with its own yarn: Node.js
/// alone is enough for them).
fn calls_npm(script: &str) -> bool {
    script.lines().any(|l| {
        l.split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .any(|w| matches!(w, "npm" | "npx"))
    })
}

#[cfg(test)]
mod node_tests {
    use super::{calls_npm, needs_node};

    #[test]
    fn a_lab_extension_built_in_post_build_needs_node() {
        assert_eq!(
            needs_node(
                "#!/bin/bash\nset -e\njupyter labextension install @jupyter-widgets/jupyterlab-manager\n"
            ),
            Some("jupyter labextension install @jupyter-widgets/jupyterlab-manager".into())
        );
        assert!(needs_node("npm install && jupyter lab build --minimize=False").is_some());
        assert_eq!(
            needs_node("# npm is not needed\npip install nodeenv\njupyter lab --version\n"),
            None
        );
        assert!(calls_npm("npm ci\n") && !calls_npm("jupyter lab build # not npm\n"));
    }
}
