//! The `BuildPlan`: plain, serialisable data that says how a repository's image is built.
//!
//! A plan is read top to bottom in the order of the image's layers:
//! base image -> kiln's base steps -> system packages (`apt.txt`) -> environment steps (built only from
//! the environment files) -> the repository copy -> steps that need the repository -> runtime settings.
//! Everything before the repository copy is the *environment*; the environment key covers exactly it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The buildpacks kiln knows, in repo2docker's order of precedence (the first that applies is primary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Buildpack {
    Dockerfile,
    Julia,
    Nix,
    R,
    Conda,
    Pipfile,
    Python,
}

impl Buildpack {
    pub fn name(self) -> &'static str {
        match self {
            Buildpack::Dockerfile => "dockerfile",
            Buildpack::Julia => "julia",
            Buildpack::Nix => "nix",
            Buildpack::R => "r",
            Buildpack::Conda => "conda",
            Buildpack::Pipfile => "pipfile",
            Buildpack::Python => "python",
        }
    }
}

impl std::fmt::Display for Buildpack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One buildpack that applies to the repository, with the reason it applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackUse {
    pub name: Buildpack,
    pub reason: String,
}

/// A decision taken while planning (a version, a file honoured or ignored), with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub topic: String,
    pub value: String,
    pub reason: String,
}

/// Who runs a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    Root,
    User,
}

/// A package cache that a step may share between builds (a BuildKit cache mount); without BuildKit the
/// step runs with that cache disabled so that nothing of it lands in a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    Apt,
    Pip,
    Uv,
    Conda,
    /// R packages as installed (binary) packages, kept by kiln's R steps and installed from
    /// again instead of downloading and compiling. The step that fills it runs the repository's
    /// own code (`install.R`), so it is never shared between repositories: its mount is scoped to
    /// one repository and ref (`RenderOptions::cache_scope`), and absent without a scope.
    R,
}

/// One build step: a list of commands run in sequence (`&&`), each an argument vector.
///
/// Arguments are data: the renderer quotes every one of them, so a string that came from the
/// repository can never be read by a shell as anything but a single word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the step does, for people ("apt.txt packages", "requirements.txt").
    pub name: String,
    pub run_as: RunAs,
    /// Repository files (paths relative to the repository root) copied into the image before the step
    /// runs. For environment steps these are the only repository bytes the step can see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    pub commands: Vec<Vec<String>>,
    /// Environment variables set for this step only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<Cache>,
    /// The step downloads packages, so it gets the build-time trust (CA bundle) and proxies.
    pub network: bool,
}

/// A file kiln writes into the build context (scripts, configuration), copied into the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedFile {
    /// Where the file goes in the image.
    pub dest: String,
    /// Unix permission bits.
    pub mode: u32,
    pub content: String,
}

/// The user the image runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: String,
}

/// Everything the environment layers depend on; the environment key is a hash of this and of the
/// bytes of every input file of its steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub base_image: String,
    pub user: User,
    /// Environment variables set for the build and kept in the image (`ENV`).
    pub env: BTreeMap<String, String>,
    /// Files kiln adds (entrypoint, helper scripts), copied right after the base image.
    pub files: Vec<GeneratedFile>,
    /// kiln's own steps: base packages, the user, the language runtimes and Jupyter. They do not
    /// depend on the repository, so every repository with the same runtime shares these layers.
    pub base_steps: Vec<Step>,
    /// Debian packages from `apt.txt`, installed as root.
    pub system_packages: Vec<String>,
    /// A conda environment that kiln solves and installs itself, without a container: its layers
    /// come right after `apt.txt`, before `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda: Option<CondaEnvironment>,
    /// The steps that install the language environment from the environment files.
    pub steps: Vec<Step>,
    /// Programs only building needs (uv), installed after kiln's first two base steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
}

/// A program that only building needs. With BuildKit it is installed in a stage of its own and
/// its file is mounted (read-only) into each step that lists the tool's cache, so it never
/// reaches a layer of the image; the classic builder installs it into the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// Names its stage (`kiln-tool-<name>`).
    pub name: String,
    /// Installs it, as root, on top of kiln's base packages.
    pub step: Step,
    /// The program's file where the step puts it, and where the steps that use it find it.
    pub file: String,
    pub target: String,
    /// The steps that list this cache use the tool.
    pub used_with: Cache,
}

/// A conda environment built natively: solved on the host with rattler (or taken from a lock),
/// installed into a staging root at `prefix`, and added to the image as layers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondaEnvironment {
    /// The environment file (`environment.yml`), relative to the repository root.
    pub file: String,
    /// Where the environment lives in the image.
    pub prefix: String,
    /// Channel names or URLs, in priority order.
    pub channels: Vec<String>,
    /// The match specs solved: the file's dependencies plus kiln's additions.
    pub specs: Vec<String>,
    /// A lock shipped in the repository, installed as is instead of solving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_file: Option<String>,
    /// The lock (an `@EXPLICIT` list with sha256), once known: the shipped lock's text while
    /// planning, then the solved or normalised lock from the builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

/// The copy of the repository into the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryCopy {
    /// Destination in the image (`REPO_DIR`, which is `$HOME`).
    pub dest: String,
    /// The ignore file that applies (`.dockerignore` or `.containerignore`), relative to the root.
    pub ignore_file: Option<String>,
    /// Repository files that must be executable in the image (`start`, `postBuild`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executables: Vec<String>,
}

/// How the image runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub workdir: String,
    /// Environment variables of the running image (set after the repository copy).
    pub env: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    /// The repository's `start` script, run by the entrypoint around the command.
    pub start: Option<String>,
    /// Labels known when planning; the builder adds the source, commit and creation time.
    pub labels: BTreeMap<String, String>,
    pub expose: u16,
}

/// A repository `Dockerfile`, used as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoDockerfile {
    /// Path relative to the repository root; the build context is the repository root.
    pub path: String,
    pub content: String,
}

/// How the image is built: kiln's own layers, or the repository's Dockerfile as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Build {
    /// kiln's layers, in cache order.
    Layers(Box<Layers>),
    /// The repository's own Dockerfile.
    Dockerfile(RepoDockerfile),
}

/// kiln's layers, in the order they are built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    pub environment: Environment,
    pub repository: RepositoryCopy,
    /// Steps that need the whole repository (`pip install .`, `postBuild`): they rerun on every commit.
    pub after_copy: Vec<Step>,
    pub runtime: Runtime,
}

/// The whole plan for one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPlan {
    /// The buildpacks that apply, primary first.
    pub buildpacks: Vec<BuildpackUse>,
    /// The folder whose files count (`binder` or `.binder`), when there is one.
    pub config_dir: Option<String>,
    pub decisions: Vec<Decision>,
    /// sha256 over everything the environment layers depend on; `None` for a repository Dockerfile,
    /// which may read any file of the repository, so no environment can be shared.
    pub environment_key: Option<String>,
    pub build: Build,
}

impl BuildPlan {
    /// The primary buildpack.
    pub fn primary(&self) -> Buildpack {
        self.buildpacks[0].name
    }

    /// kiln's layers, unless the repository's Dockerfile is used.
    pub fn layers(&self) -> Option<&Layers> {
        match &self.build {
            Build::Layers(layers) => Some(layers),
            Build::Dockerfile(_) => None,
        }
    }

    /// Whether finishing the image from an existing environment image needs a container
    /// (a step after the copy), rather than only a copy of the repository and a new configuration.
    pub fn needs_container_after_copy(&self) -> bool {
        self.layers().is_none_or(|l| !l.after_copy.is_empty())
    }
}
