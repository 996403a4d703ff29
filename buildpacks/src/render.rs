//! Rendering a plan as a Dockerfile.
//!
//! The build context kiln sends with it holds the repository under `src/` and kiln's generated files
//! under `kiln/files/<path in the image>`. A repository Dockerfile is returned as is (its context is
//! the repository root). Every argument of every command is shell-quoted here.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::assemble::apt_step;
use crate::error::PlanError;
use crate::plan::{Build, BuildPlan, Cache, Layers, RunAs, Step};

/// Where the repository sits in kiln's build context.
pub const CONTEXT_REPO_DIR: &str = "src";
/// Where kiln's generated files sit in the build context (followed by their path in the image).
pub const CONTEXT_FILES_DIR: &str = "kiln/files";
/// Where the CA bundle trusted during the build sits in the build context. Steps that download mount
/// it read-only for their own duration (a BuildKit bind mount), so it never lands in a layer.
pub const CONTEXT_CA_BUNDLE: &str = "kiln/build-trust/ca-bundle.pem";
const CA_MOUNT_PATH: &str = "/run/kiln/ca-bundle.pem";

/// How to render.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Use BuildKit features: cache mounts for package caches, the CA bundle as a secret.
    pub buildkit: bool,
    /// Trust the CA bundle at `CONTEXT_CA_BUNDLE` in steps that download (BuildKit only).
    pub build_trust: bool,
    /// Labels added after the plan's own (source, commit, created time, `--label`).
    pub labels: BTreeMap<String, String>,
    /// Start from this environment image (built earlier for the plan's environment key) instead of
    /// building the environment: the Dockerfile then holds only the repository and what follows it.
    pub environment_image: Option<String>,
    /// For a plan with a conda environment: the image holding the system stage plus the conda
    /// environment's layers, which kiln assembles natively (no Dockerfile step installs them).
    pub conda_image: Option<String>,
    /// A secret part of the package caches' mount ids, so that a repository's own Dockerfile
    /// cannot name (and poison) the caches kiln's builds share.
    pub cache_salt: Option<String>,
    /// What a cache filled by a repository's own code is kept for (a digest of the repository,
    /// ref and owner): builds of that repository share it, nobody else can reach it
    /// ([`Cache::R`]). Without one those caches are disabled.
    pub cache_scope: Option<String>,
    /// Dockerfile instructions added verbatim at the very end (repo2docker's `--appendix`); they
    /// run as the image's user, on the finished image.
    pub appendix: Option<String>,
    /// Package servers that the steps which download use instead of the public ones (exported
    /// for those steps only).
    pub mirrors: crate::options::PackageMirrors,
}

/// Which package caches a step may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CacheUse {
    /// kiln's own steps (the base packages, Python and Jupyter at kiln's pins, the tools): the
    /// caches every build shares.
    Shared,
    /// The environment's steps, which install what the repository's files name (and so may run
    /// code it chose: a package's build, a conda package's scripts): caches of the repository's
    /// own scope ([`RenderOptions::cache_scope`]), so that nothing they leave reaches another
    /// repository's or ref's build; none without a scope.
    Repository,
    /// Steps after the repository copy (setup.py, postBuild): no cache but [`Cache::R`]'s scoped
    /// one.
    None,
}

/// Where kiln's R steps find and keep installed R packages ([`Cache::R`]).
const R_CACHE: &str = "/var/cache/kiln/r";

/// The name of the build stage that holds the environment (build it alone with this target).
pub const ENVIRONMENT_STAGE: &str = "kiln-environment";
/// With a conda environment, the stage before its layers (the base, kiln's steps and `apt.txt`):
/// kiln builds it alone, then adds the conda layers to it natively.
pub const SYSTEM_STAGE: &str = "kiln-system";

/// With BuildKit and build tools: the stage of kiln's base packages and user, which the tools'
/// stages and the environment start from.
pub const BASE_STAGE: &str = "kiln-base";

/// The stage a tool is installed in.
fn tool_stage(name: &str) -> String {
    format!("kiln-tool-{name}")
}

/// The Dockerfile for a plan.
pub fn dockerfile(plan: &BuildPlan, options: &RenderOptions) -> Result<String, PlanError> {
    match &plan.build {
        Build::Dockerfile(repo) => Ok(repo.content.clone()),
        Build::Layers(layers) => {
            if options.build_trust && !options.buildkit {
                return Err(PlanError::invalid(
                    "build",
                    "a CA bundle can only be trusted during a build with BuildKit (it is mounted for the steps that download, never copied into a layer); use an engine with BuildKit",
                ));
            }
            Renderer::new(plan, layers, options).render()
        }
    }
}

struct Renderer<'a> {
    plan: &'a BuildPlan,
    layers: &'a Layers,
    options: &'a RenderOptions,
    out: String,
    user: Option<RunAs>,
}

impl<'a> Renderer<'a> {
    fn new(plan: &'a BuildPlan, layers: &'a Layers, options: &'a RenderOptions) -> Self {
        Renderer {
            plan,
            layers,
            options,
            out: String::new(),
            user: None,
        }
    }

    fn render(mut self) -> Result<String, PlanError> {
        let env = &self.layers.environment;
        let uid = env.user.uid;
        let names: Vec<&str> = self.plan.buildpacks.iter().map(|b| b.name.name()).collect();
        self.line(&format!(
            "# Generated by kiln; buildpacks: {}.",
            names.join(", ")
        ));
        self.line(&format!(
            "# Build context: {CONTEXT_REPO_DIR}/ holds the repository, {CONTEXT_FILES_DIR}/ kiln's files."
        ));
        if let Some(key) = &self.plan.environment_key {
            self.line(&format!("# Environment key: {key}"));
        }
        match &self.options.environment_image {
            Some(image) => {
                // The environment image has kiln's base packages: the tools' stages start there.
                if self.tools_apart() {
                    self.tool_stages(image, uid)?;
                }
                self.line(&format!("FROM {image}"));
                // The image's last user is not known here: every step names its own.
                self.user = None;
            }
            None => {
                self.environment()?;
                self.line(&format!("FROM {ENVIRONMENT_STAGE}"));
            }
        }
        let repo = &self.layers.repository;
        self.line("# The repository.");
        self.line(&format!(
            "COPY --chown={uid}:{uid} {CONTEXT_REPO_DIR}/ {}/",
            repo.dest.trim_end_matches('/')
        ));
        // These steps run the repository's own code (setup.py, postBuild): no shared cache is
        // mounted into them, so nothing they do can reach another repository's build (only the
        // repository's own scoped cache, `Cache::R`).
        for step in &self.layers.after_copy {
            self.step(step, uid, CacheUse::None)?;
        }
        let runtime = &self.layers.runtime;
        self.env(&runtime.env);
        self.switch(RunAs::User);
        self.line(&format!("WORKDIR {}", runtime.workdir));
        self.line(&format!("EXPOSE {}", runtime.expose));
        self.line(&format!("ENTRYPOINT {}", json_strings(&runtime.entrypoint)));
        self.line(&format!("CMD {}", json_strings(&runtime.command)));
        let mut labels = runtime.labels.clone();
        if let Some(key) = &self.plan.environment_key {
            labels.insert("io.kiln.environment-key".into(), key.clone());
        }
        labels.extend(self.options.labels.clone());
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{}={}", env_quote(k), env_quote(v)))
                .collect();
            self.line(&format!("LABEL {}", parts.join(" \\\n      ")));
        }
        if let Some(appendix) = &self.options.appendix {
            self.line("# --appendix:");
            self.line(appendix.trim_end());
        }
        Ok(self.out)
    }

    /// The environment stage: everything the environment key covers.
    fn environment(&mut self) -> Result<(), PlanError> {
        let env = &self.layers.environment;
        let uid = env.user.uid;
        let first_stage = if env.conda.is_some() {
            SYSTEM_STAGE
        } else {
            ENVIRONMENT_STAGE
        };
        // With tools kept apart, the base packages and the user are a stage of their own, which
        // the tools' stages and the environment both start from.
        let opening = if self.tools_apart() {
            BASE_STAGE
        } else {
            first_stage
        };
        self.line(&format!("FROM {} AS {opening}", env.base_image));
        self.env(&env.env);
        self.switch(RunAs::Root);
        for file in &env.files {
            let src = format!("{CONTEXT_FILES_DIR}{}", file.dest);
            self.line(&format!(
                "COPY {}",
                json(&[src.as_str(), file.dest.as_str()])
            ));
        }
        let mut workdir_set = false;
        for (i, step) in env.base_steps.iter().enumerate() {
            self.step(step, uid, CacheUse::Shared)?;
            // The user and its home exist after kiln's second step; the tools come then.
            if i == 1 {
                self.line(&format!("WORKDIR {}", env.user.home));
                workdir_set = true;
                self.tools(first_stage, uid)?;
            }
        }
        if !workdir_set {
            self.line(&format!("WORKDIR {}", env.user.home));
            self.tools(first_stage, uid)?;
        }
        if !env.system_packages.is_empty() {
            let step = apt_step("apt.txt", &env.system_packages);
            self.step(&step, uid, CacheUse::Shared)?;
        }
        if let Some(conda) = &env.conda {
            self.line(&format!(
                "# The conda environment from {} ({} packages solved by kiln with rattler, or its lock):",
                conda.file.replace('\n', " "),
                conda.specs.len()
            ));
            self.line(&format!(
                "# kiln installs it on the host at {} and adds it to {SYSTEM_STAGE} as layers, without a container.",
                conda.prefix
            ));
            match &self.options.conda_image {
                Some(image) => self.line(&format!("FROM {image} AS {ENVIRONMENT_STAGE}")),
                None => {
                    self.line(
                        "# (kiln build replaces the next line with the image holding those layers)",
                    );
                    self.line(&format!("FROM {SYSTEM_STAGE} AS {ENVIRONMENT_STAGE}"));
                }
            }
            // The image's last user is not known here: every step names its own.
            self.user = None;
        }
        for step in &env.steps {
            self.step(step, uid, CacheUse::Repository)?;
        }
        Ok(())
    }

    /// Whether the plan's tools are installed in stages of their own and mounted (BuildKit),
    /// rather than into the image.
    fn tools_apart(&self) -> bool {
        self.options.buildkit && !self.layers.environment.tools.is_empty()
    }

    /// The tools, after kiln's base packages and user: into the image (classic builder), or a
    /// stage each on top of [`BASE_STAGE`], the environment going on as `first_stage`.
    fn tools(&mut self, first_stage: &str, uid: u32) -> Result<(), PlanError> {
        if !self.tools_apart() {
            for tool in &self.layers.environment.tools {
                self.step(&tool.step, uid, CacheUse::Shared)?;
            }
            return Ok(());
        }
        self.tool_stages(BASE_STAGE, uid)?;
        let user = self.user;
        self.line(&format!("FROM {BASE_STAGE} AS {first_stage}"));
        self.user = user;
        Ok(())
    }

    /// A stage per tool, on top of `from` (which has kiln's base packages).
    fn tool_stages(&mut self, from: &str, uid: u32) -> Result<(), PlanError> {
        let user = self.user;
        for tool in &self.layers.environment.tools {
            self.line(&format!(
                "# {}: only building needs it; steps mount it from its stage.",
                tool.name
            ));
            self.line(&format!("FROM {from} AS {}", tool_stage(&tool.name)));
            self.user = user;
            self.step(&tool.step, uid, CacheUse::Shared)?;
        }
        self.user = user;
        Ok(())
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn env(&mut self, env: &BTreeMap<String, String>) {
        if env.is_empty() {
            return;
        }
        let parts: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", env_quote(v)))
            .collect();
        self.line(&format!("ENV {}", parts.join(" \\\n    ")));
    }

    fn switch(&mut self, to: RunAs) {
        if self.user != Some(to) {
            let name = match to {
                RunAs::Root => "root".to_string(),
                RunAs::User => self.layers.environment.user.name.clone(),
            };
            self.line(&format!("USER {name}"));
            self.user = Some(to);
        }
    }

    fn step(&mut self, step: &Step, uid: u32, caches: CacheUse) -> Result<(), PlanError> {
        self.switch(step.run_as);
        self.line(&format!("# {}", step.name.replace('\n', " ")));
        let home = &self.layers.environment.user.home;
        for input in &step.inputs {
            let src = format!("{CONTEXT_REPO_DIR}/{input}");
            let dest = format!("{home}/{input}");
            self.line(&format!(
                "COPY --chown={uid}:{uid} {}",
                json(&[src.as_str(), dest.as_str()])
            ));
        }
        let step_uid = match step.run_as {
            RunAs::Root => 0,
            RunAs::User => uid,
        };
        let mut mounts = Vec::new();
        let mut exports = step.env.clone();
        let mut cleanup: Vec<Vec<String>> = Vec::new();
        for cache in &step.caches {
            self.cache(
                *cache,
                step_uid,
                caches,
                &mut mounts,
                &mut exports,
                &mut cleanup,
            );
        }
        if self.tools_apart() {
            for tool in &self.layers.environment.tools {
                if step.caches.contains(&tool.used_with) {
                    mounts.push(format!(
                        "--mount=type=bind,from={},source={},target={}",
                        tool_stage(&tool.name),
                        tool.file,
                        tool.target
                    ));
                }
            }
        }
        if self.options.build_trust && step.network {
            mounts.push(format!(
                "--mount=type=bind,source={CONTEXT_CA_BUNDLE},target={CA_MOUNT_PATH}"
            ));
            for var in [
                "SSL_CERT_FILE",
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO",
                "CONDA_SSL_VERIFY",
                "MAMBA_SSL_VERIFY",
                "JULIA_SSL_CA_ROOTS_PATH",
                "NIX_SSL_CERT_FILE",
            ] {
                exports.insert(var.into(), CA_MOUNT_PATH.into());
            }
        }
        if step.network {
            for (var, url) in self.options.mirrors.exports() {
                exports.insert(var.into(), url.into());
            }
        }
        let mut commands: Vec<String> = Vec::new();
        if !exports.is_empty() {
            let assignments: Vec<String> = exports
                .iter()
                .map(|(k, v)| Ok(format!("{k}={}", quote(v)?)))
                .collect::<Result<_, PlanError>>()?;
            commands.push(format!("export {}", assignments.join(" ")));
        }
        for command in step.commands.iter().chain(cleanup.iter()) {
            let words: Vec<String> = command.iter().map(|w| quote(w)).collect::<Result<_, _>>()?;
            commands.push(words.join(" "));
        }
        let mut run = String::from("RUN ");
        for mount in &mounts {
            let _ = write!(run, "{mount} \\\n    ");
        }
        run.push_str(&commands.join(" \\\n && "));
        self.line(&run);
        Ok(())
    }

    /// A package cache: a cache mount with BuildKit (`shared` steps only), disabled (and cleaned)
    /// otherwise.
    fn cache(
        &self,
        cache: Cache,
        uid: u32,
        caches: CacheUse,
        mounts: &mut Vec<String>,
        exports: &mut BTreeMap<String, String>,
        cleanup: &mut Vec<Vec<String>>,
    ) {
        // A repository's packages are kept in caches of its own scope (Debian's, which apt.txt
        // cannot add sources to, stay shared).
        let scope = match caches {
            CacheUse::Shared => Some(String::new()),
            CacheUse::Repository if cache == Cache::Apt => Some(String::new()),
            CacheUse::Repository => self.options.cache_scope.as_ref().map(|s| format!("-{s}")),
            CacheUse::None => None,
        };
        let buildkit = self.options.buildkit && scope.is_some();
        let scope = scope.unwrap_or_default();
        let salt = self
            .options
            .cache_salt
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        let mount = |id: &str, target: &str| {
            format!(
                "--mount=type=cache,id={id}{salt}-{uid},target={target},uid={uid},gid={uid},sharing=locked"
            )
        };
        match cache {
            Cache::Apt if buildkit => {
                mounts.push(mount("kiln-apt", "/var/cache/apt"));
                mounts.push(mount("kiln-apt-lists", "/var/lib/apt/lists"));
            }
            Cache::Apt => {
                cleanup.push(vec!["apt-get".into(), "clean".into()]);
                cleanup.push(
                    ["find", "/var/lib/apt/lists", "-mindepth", "1", "-delete"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                );
            }
            Cache::Pip if buildkit => {
                mounts.push(mount(&format!("kiln-pip{scope}"), "/var/cache/kiln/pip"));
                exports.insert("PIP_CACHE_DIR".into(), "/var/cache/kiln/pip".into());
            }
            Cache::Pip => {
                exports.insert("PIP_NO_CACHE_DIR".into(), "1".into());
            }
            Cache::Uv if buildkit => {
                mounts.push(mount(&format!("kiln-uv{scope}"), "/var/cache/kiln/uv"));
                exports.insert("UV_CACHE_DIR".into(), "/var/cache/kiln/uv".into());
            }
            Cache::Uv => {
                exports.insert("UV_NO_CACHE".into(), "1".into());
            }
            Cache::Conda if buildkit => {
                mounts.push(mount(
                    &format!("kiln-conda{scope}"),
                    "/var/cache/kiln/conda-pkgs",
                ));
                exports.insert(
                    "CONDA_PKGS_DIRS".into(),
                    "/var/cache/kiln/conda-pkgs".into(),
                );
            }
            Cache::R => match &self.options.cache_scope {
                Some(scope) if self.options.buildkit => {
                    mounts.push(mount(&format!("kiln-r-{scope}"), R_CACHE));
                    exports.insert("KILN_R_CACHE".into(), R_CACHE.into());
                }
                _ => {}
            },
            Cache::Conda => {
                exports.insert("CONDA_PKGS_DIRS".into(), "/tmp/kiln-conda-pkgs".into());
                cleanup.push(vec![
                    "rm".into(),
                    "-rf".into(),
                    "/tmp/kiln-conda-pkgs".into(),
                ]);
            }
        }
    }
}

/// Quote one shell word.
fn quote(word: &str) -> Result<String, PlanError> {
    shlex::try_quote(word).map(|q| q.into_owned()).map_err(|_| {
        PlanError::invalid(
            "plan",
            format!("{word:?} cannot be passed to a shell (it holds a NUL byte)"),
        )
    })
}

/// A JSON array of strings (exec form).
fn json_strings(words: &[String]) -> String {
    serde_json::to_string(words).expect("strings serialise")
}

fn json(words: &[&str]) -> String {
    serde_json::to_string(words).expect("strings serialise")
}

/// A double-quoted Dockerfile `ENV`/`LABEL` value, with `$` kept literal.
fn env_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}
