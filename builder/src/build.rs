//! One build, top to bottom:
//! resolve -> exists (registry or engine)? -> fetch -> plan -> environment in the registry?
//!   yes, nothing needs a container after the copy -> assemble natively and push
//!   yes, steps after the copy                    -> short engine build on the environment, push
//!   no                                           -> engine build (environment, then image), push both
//! -> built.
//! A conda environment is locked right after planning (solved with rattler, or a shipped or earlier
//! lock; see [`crate::conda`]); before an engine build needs it, its layers are put on the system
//! stage natively, and the environment stage starts from that image.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_buildpacks::render::{ENVIRONMENT_STAGE, SYSTEM_STAGE};
use kiln_buildpacks::{BuildPlan, PlanOptions, RenderOptions};
use kiln_registry::{ConfigUpdate, Registry};

use crate::context::{ContextOptions, build_context, repository_layer};
use crate::engine::{Engine, EngineBuild};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::git::{FetchLimits, GitBackend};
use crate::source::Source;

/// Label holding the commit an image was built from (with the source URL, it decides reuse).
pub const LABEL_COMMIT: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";
pub const LABEL_VERSION: &str = "io.kiln.version";
pub const LABEL_ENVIRONMENT: &str = "io.kiln.environment-key";

/// Where built images are pushed.
#[derive(Clone)]
pub struct PushSettings {
    /// Prepended to image names (BinderHub's `image_prefix`), e.g. `registry.example/binder-`.
    pub prefix: String,
    pub registry: Arc<Registry>,
    /// Assemble images natively when the environment is in the registry (default true).
    pub native: bool,
}

impl PushSettings {
    /// Push under `prefix` (its registry is the part before the first `/`), with `credentials` or
    /// those of the environment (`KILN_REGISTRY_*`, `~/.docker/config.json`).
    pub fn new(
        prefix: &str,
        credentials: Option<kiln_registry::Credentials>,
        native: bool,
    ) -> Result<PushSettings, BuildError> {
        // Any valid image name under the prefix names the registry.
        let registry = Registry::for_reference(&format!("{prefix}probe:latest"), credentials)?;
        Ok(PushSettings {
            prefix: prefix.to_string(),
            registry: Arc::new(registry),
            native,
        })
    }
}

/// What to build.
#[derive(Clone, Default)]
pub struct BuildRequest {
    pub source: Option<Source>,
    pub reference: Option<String>,
    /// The image name; by default `kiln/<slug>:<commit>` (a content hash for a local folder), or the
    /// BinderHub-compatible registry name when pushing.
    pub image_name: Option<String>,
    pub plan_options: PlanOptions,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// PEM bundle trusted by the steps that download (from `--ca-bundle` or `SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
    pub limits: FetchLimits,
    pub push: Option<PushSettings>,
    /// Install the conda lock stored in this image instead of solving (`--locked IMAGE`).
    pub locked: Option<String>,
    /// Channels, mirrors and caches for conda environments (default: from the environment,
    /// `KILN_CONDA_*`).
    pub conda: Option<kiln_conda::CondaSettings>,
}

/// How the image came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It existed already (in the registry when pushing, else in the engine).
    Reused,
    /// Built by the engine.
    Built,
    /// Assembled natively from the environment image in the registry.
    Assembled,
    /// A short engine build on top of the environment image from the registry.
    BuiltOnEnvironment,
}

/// A finished build.
#[derive(Clone, Debug)]
pub struct Built {
    pub image: String,
    pub outcome: Outcome,
    pub plan: Option<BuildPlan>,
}

/// Build (or reuse) the image for a request. Every outcome is also an event: `built` or `failed`.
pub async fn build(
    engine: &Engine,
    git: Arc<dyn GitBackend>,
    request: BuildRequest,
    sink: &mut dyn EventSink,
) -> Result<Built, BuildError> {
    let result = build_inner(engine, git, request, sink).await;
    if let Err(error) = &result {
        sink.emit(Event::new(Phase::Failed, error.to_string()));
    }
    result
}

/// The repository, fetched or as it is.
struct Checkout {
    dir: PathBuf,
    commit: Option<String>,
    time: i64,
    source_label: String,
    _workdir: tempfile::TempDir,
}

async fn build_inner(
    engine: &Engine,
    git: Arc<dyn GitBackend>,
    request: BuildRequest,
    sink: &mut dyn EventSink,
) -> Result<Built, BuildError> {
    let source = request
        .source
        .clone()
        .ok_or_else(|| BuildError::Invalid("no source given".into()))?;
    engine.check_network().await?;
    let workdir = tempfile::Builder::new()
        .prefix("kiln-build-")
        .tempdir()
        .map_err(|e| BuildError::io("creating a working folder", e))?;

    let checkout = match &source {
        Source::Local(path) => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Using the local folder {}", path.display()),
            ));
            Checkout {
                dir: path.clone(),
                commit: None,
                time: local_commit_time(path),
                source_label: "local".into(),
                _workdir: workdir,
            }
        }
        Source::Git(git_source) => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!(
                    "Resolving {} in {}",
                    request.reference.as_deref().unwrap_or("HEAD"),
                    git_source.url
                ),
            ));
            let resolved = {
                let (git, git_source, reference) =
                    (git.clone(), git_source.clone(), request.reference.clone());
                tokio::task::spawn_blocking(move || git.resolve(&git_source, reference.as_deref()))
                    .await
                    .map_err(|e| BuildError::Invalid(format!("ref resolution stopped: {e}")))??
            };
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Resolved to commit {}", resolved.commit),
            ));
            let name = image_name(&request, &source, Some(&resolved.commit), None)?;
            if !request.no_cache
                && exists(
                    engine,
                    &request,
                    &name,
                    Some(&resolved.commit),
                    &git_source.url,
                )
                .await?
            {
                let place = if request.push.is_some() {
                    "the registry"
                } else {
                    "the engine"
                };
                return finish(
                    sink,
                    format!("Reusing {name}: {place} has it, built from this commit"),
                    name,
                    Outcome::Reused,
                    None,
                );
            }
            let dest = workdir.path().join("repo");
            sink.emit(Event::new(
                Phase::Fetching,
                format!("Fetching commit {} (shallow)", resolved.commit),
            ));
            let time = {
                let (git, git_source, resolved, dest, limits) = (
                    git.clone(),
                    git_source.clone(),
                    resolved.clone(),
                    dest.clone(),
                    request.limits.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    git.fetch(&git_source, &resolved, &dest, &limits)
                })
                .await
                .map_err(|e| BuildError::Invalid(format!("fetch stopped: {e}")))??
            };
            Checkout {
                dir: dest,
                commit: Some(resolved.commit),
                time,
                source_label: git_source.url.clone(),
                _workdir: workdir,
            }
        }
    };

    // Plan.
    let mut plan = kiln_buildpacks::plan(&checkout.dir, &request.plan_options)?;
    // A conda environment: its lock (solved, shipped, or from an earlier image) completes the plan
    // and its environment key.
    let conda = match plan.layers().and_then(|l| l.environment.conda.as_ref()) {
        Some(_) => {
            let mut settings = match &request.conda {
                Some(settings) => settings.clone(),
                None => kiln_conda::CondaSettings::from_env()?,
            };
            let base = &request.plan_options.base_image;
            let note = crate::conda::target_virtual_packages(engine, base, &mut settings).await?;
            sink.emit(Event::new(Phase::Building, format!("Conda: {note}")));
            let locked = match &request.locked {
                Some(image) => Some((
                    image.clone(),
                    crate::conda::lock_of_image(engine, image).await?,
                )),
                None => None,
            };
            let lock = crate::conda::lock_plan(
                &mut plan,
                locked.as_ref().map(|(i, t)| (i.as_str(), t.as_str())),
                &settings,
                sink,
            )
            .await?;
            lock.map(|lock| (lock, settings))
        }
        None => {
            if let Some(image) = &request.locked {
                return Err(BuildError::Invalid(format!(
                    "--locked {image}: the repository has no conda environment (environment.yml) to install a lock into"
                )));
            }
            None
        }
    };
    let names: Vec<&str> = plan.buildpacks.iter().map(|b| b.name.name()).collect();
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Buildpacks: {} ({})",
            names.join(", "),
            plan.buildpacks[0].reason
        ),
    ));
    let mut labels = image_labels(&request, &plan, &checkout);
    if let Some((lock, _)) = &conda {
        labels.extend(crate::conda::lock_labels(lock));
    }
    let conda_image = match (&conda, &plan.environment_key) {
        (Some(_), Some(key)) => Some(conda_image_names(request.push.as_ref(), key)?),
        _ => None,
    };
    let ca_bundle =
        match &request.ca_bundle {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                BuildError::io(format!("reading the CA bundle {}", path.display()), e)
            })?),
            None => None,
        };
    if ca_bundle.is_some() && !engine.buildkit {
        sink.emit(Event::new(
            Phase::Building,
            "Warning: the engine has no BuildKit, so the CA bundle cannot be trusted during the build without copying it into a layer; building without it",
        ));
    }
    let job = Job {
        engine,
        request: &request,
        plan: &plan,
        checkout: &checkout,
        labels,
        ca_bundle,
        full_context: std::sync::OnceLock::new(),
        conda,
        conda_image,
    };

    // A local folder is named after its content, so it can only be checked once its context exists.
    let content_hash = job.local_content_hash()?;
    let name = image_name(
        &request,
        &source,
        checkout.commit.as_deref(),
        content_hash.as_deref(),
    )?;
    if let Some(push) = &request.push {
        let env_name = match &plan.environment_key {
            Some(key) => Some(kiln_registry::environment_image_name(&push.prefix, key)?),
            None => None,
        };
        let env_present = match &env_name {
            Some(env) => push.registry.manifest_digest(env).await?.is_some(),
            None => false,
        };
        if checkout.commit.is_none()
            && !request.no_cache
            && push.registry.manifest_digest(&name).await?.is_some()
        {
            return finish(
                sink,
                format!("Reusing {name}: the registry has it, and the folder has not changed"),
                name,
                Outcome::Reused,
                Some(plan),
            );
        }
        // Without reuse (--no-native), the image is built whole on the engine, as BinderHub does.
        if let (Some(env), true, true) = (&env_name, env_present, push.native) {
            if !plan.needs_container_after_copy() && !request.no_cache {
                job.assemble(push, env, &name, sink).await?;
                return finish(
                    sink,
                    format!(
                        "Pushed {name}, assembled on the environment {env} without a container"
                    ),
                    name,
                    Outcome::Assembled,
                    Some(plan),
                );
            }
            sink.emit(Event::new(Phase::Building, format!("The environment {env} is in the registry: building only the repository and what follows it")));
            job.build_and_push(&name, Some(env), None, push, sink)
                .await?;
            return finish(
                sink,
                format!("Pushed {name}"),
                name,
                Outcome::BuiltOnEnvironment,
                Some(plan),
            );
        }
        job.ensure_conda_image(Some(push), sink).await?;
        if let (Some(env), true) = (&env_name, push.native) {
            job.build_and_push(env, None, Some(ENVIRONMENT_STAGE), push, sink)
                .await?;
        }
        job.build_and_push(&name, None, None, push, sink).await?;
        return finish(
            sink,
            format!("Built and pushed {name}"),
            name,
            Outcome::Built,
            Some(plan),
        );
    }

    if checkout.commit.is_none() && !request.no_cache && engine.image_labels(&name).await?.is_some()
    {
        return finish(
            sink,
            format!("Reusing the existing image {name}: the folder has not changed"),
            name,
            Outcome::Reused,
            Some(plan),
        );
    }
    job.ensure_conda_image(None, sink).await?;
    job.engine_build(&name, None, None, sink).await?;
    sink.emit(Event::built(&name, format!("Built {name}")));
    Ok(Built {
        image: name,
        outcome: Outcome::Built,
        plan: Some(plan),
    })
}

/// Report `built` and return the outcome.
fn finish(
    sink: &mut dyn EventSink,
    message: String,
    image: String,
    outcome: Outcome,
    plan: Option<BuildPlan>,
) -> Result<Built, BuildError> {
    sink.emit(Event::built(&image, message));
    Ok(Built {
        image,
        outcome,
        plan,
    })
}

/// Whether the image exists for this commit: in the registry when pushing, else in the engine with
/// labels naming the same source and commit.
async fn exists(
    engine: &Engine,
    request: &BuildRequest,
    name: &str,
    commit: Option<&str>,
    source: &str,
) -> Result<bool, BuildError> {
    if let Some(push) = &request.push {
        return Ok(push.registry.manifest_digest(name).await?.is_some());
    }
    Ok(engine.image_labels(name).await?.is_some_and(|labels| {
        labels.get(LABEL_COMMIT).map(String::as_str) == commit
            && labels.get(LABEL_SOURCE).map(String::as_str) == Some(source)
    }))
}

/// Everything one image build needs, once planned.
struct Job<'a> {
    engine: &'a Engine,
    request: &'a BuildRequest,
    plan: &'a BuildPlan,
    checkout: &'a Checkout,
    labels: BTreeMap<String, String>,
    ca_bundle: Option<Vec<u8>>,
    /// The context of the whole image, built once: it names a local folder's image and serves
    /// both the environment stage and the image.
    full_context: std::sync::OnceLock<crate::context::Context>,
    /// The conda lock and the settings to install it, for a plan with a conda environment.
    conda: Option<(kiln_conda::Lock, kiln_conda::CondaSettings)>,
    /// (system stage, conda image): the image of the system stage, and that image plus the conda
    /// layers, which the Dockerfile starts the environment stage from.
    conda_image: Option<(String, String)>,
}

/// The names of the system stage and of the conda image for an environment key: in the registry
/// under the prefix when pushing, else local names.
fn conda_image_names(
    push: Option<&PushSettings>,
    key: &str,
) -> Result<(String, String), BuildError> {
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    let (system, conda) = match push {
        Some(push) => {
            let prefix = push.prefix.to_lowercase();
            (
                format!("{prefix}kiln-system:{hex}"),
                format!("{prefix}kiln-conda:{hex}"),
            )
        }
        None => (
            format!("kiln/conda-system:{hex}"),
            format!("kiln/conda-environment:{hex}"),
        ),
    };
    kiln_registry::name::validate(&system)?;
    kiln_registry::name::validate(&conda)?;
    Ok((system, conda))
}

impl Job<'_> {
    fn render(&self, environment_image: Option<&str>) -> Result<String, BuildError> {
        Ok(kiln_buildpacks::dockerfile(
            self.plan,
            &RenderOptions {
                buildkit: self.engine.buildkit,
                build_trust: self.ca_bundle.is_some() && self.engine.buildkit,
                labels: BTreeMap::new(),
                environment_image: environment_image.map(String::from),
                conda_image: self.conda_image.as_ref().map(|(_, conda)| conda.clone()),
            },
        )?)
    }

    /// The build context; the whole image's is built once and reused.
    fn context(
        &self,
        environment_image: Option<&str>,
    ) -> Result<crate::context::Context, BuildError> {
        if environment_image.is_none() {
            if let Some(context) = self.full_context.get() {
                return Ok(context.clone());
            }
            let context = self.build_context(None)?;
            return Ok(self.full_context.get_or_init(|| context).clone());
        }
        self.build_context(environment_image)
    }

    fn build_context(
        &self,
        environment_image: Option<&str>,
    ) -> Result<crate::context::Context, BuildError> {
        let dockerfile = self.render(environment_image)?;
        build_context(
            &self.checkout.dir,
            self.plan,
            &ContextOptions {
                mtime: self.checkout.time.max(0) as u64,
                ca_bundle: self.ca_bundle.as_deref(),
                dockerfile: Some(&dockerfile),
            },
        )
    }

    /// For a local folder (no commit), a short hash of its build context, which names its image.
    fn local_content_hash(&self) -> Result<Option<String>, BuildError> {
        if self.checkout.commit.is_some() {
            return Ok(None);
        }
        use sha2::Digest;
        self.context(None)?;
        let tar = &self.full_context.get().expect("built just above").tar;
        Ok(Some(hex::encode(&sha2::Sha256::digest(tar)[..8])))
    }

    /// Build on the engine: the whole image, one stage (`target`), or only what follows the
    /// environment when `environment_image` is given.
    async fn engine_build(
        &self,
        tag: &str,
        environment_image: Option<&str>,
        target: Option<&str>,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let context = self.context(environment_image)?;
        let what = match (target, environment_image) {
            (Some(_), _) => "the environment",
            (None, Some(_)) => "the repository layers",
            (None, None) => "the image",
        };
        sink.emit(Event::new(
            Phase::Building,
            format!(
                "Building {what} as {tag} with {} ({} files, {} KiB of context)",
                if self.engine.buildkit {
                    "BuildKit"
                } else {
                    "the classic builder"
                },
                context.files,
                context.tar.len() / 1024
            ),
        ));
        let labels = match target {
            // The environment image is shared by every commit with this key: it names none of them.
            Some(_) => self
                .labels
                .iter()
                .filter(|(k, _)| {
                    [
                        LABEL_ENVIRONMENT,
                        LABEL_VERSION,
                        crate::conda::LABEL_CONDA_LOCK,
                        crate::conda::LABEL_CONDA_LOCK_DIGEST,
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => self.labels.clone().into_iter().collect(),
        };
        let mut build_args: HashMap<String, String> = proxy_args();
        build_args.extend(self.request.build_args.clone());
        let credentials = self.request.push.as_ref().and_then(|p| {
            docker_credentials(&p.registry).map(|c| HashMap::from([(p.registry.host.clone(), c)]))
        });
        self.engine
            .build(
                context.tar,
                &EngineBuild {
                    tag: tag.to_string(),
                    dockerfile: context.dockerfile,
                    labels,
                    build_args,
                    no_cache: self.request.no_cache,
                    target: target.map(String::from),
                    credentials,
                },
                sink,
            )
            .await
    }

    /// Build on the engine, then push the result.
    async fn build_and_push(
        &self,
        tag: &str,
        environment_image: Option<&str>,
        target: Option<&str>,
        push: &PushSettings,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        self.engine_build(tag, environment_image, target, sink)
            .await?;
        sink.emit(Event::new(Phase::Pushing, format!("Pushing {tag}")));
        self.engine
            .push(tag, docker_credentials(&push.registry), sink)
            .await
    }

    /// For a conda environment: make the image the environment stage starts from, the system stage
    /// plus the conda layers, unless it exists. The system stage is built on the engine; the conda
    /// layers are installed and packed on the host, then appended in the registry (pushing) or
    /// loaded into the engine (local builds).
    async fn ensure_conda_image(
        &self,
        push: Option<&PushSettings>,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let (Some((lock, settings)), Some((system, image))) = (&self.conda, &self.conda_image)
        else {
            return Ok(());
        };
        if !self.request.no_cache {
            let present = match push {
                Some(push) => push.registry.manifest_digest(image).await?.is_some(),
                None => self.engine.image_labels(image).await?.is_some(),
            };
            if present {
                sink.emit(Event::new(
                    Phase::Building,
                    format!("Conda: reusing {image}, which holds this lock's environment"),
                ));
                return Ok(());
            }
        }
        // The packages first: a bad lock or an unreachable channel fails before any engine work.
        let uid = self.plan.layers().map_or(1000, |l| l.environment.user.uid);
        let packed = crate::conda::install_and_pack(settings, lock, uid, sink).await?;
        self.engine_build(system, None, Some(SYSTEM_STAGE), sink)
            .await?;
        match push {
            None => {
                crate::conda::load_onto(self.engine, system, &packed, image).await?;
                sink.emit(Event::new(
                    Phase::Building,
                    format!(
                        "Conda: loaded {image} into the engine ({system} plus {} layers)",
                        packed.len()
                    ),
                ));
            }
            Some(push) => {
                sink.emit(Event::new(Phase::Pushing, format!("Pushing {system}")));
                self.engine
                    .push(system, docker_credentials(&push.registry), sink)
                    .await?;
                let blobs = settings.cache_dir.join("layers");
                let layers = tokio::task::spawn_blocking(move || {
                    let layers = crate::conda::compress_layers(&packed, &blobs)?;
                    Ok::<_, std::io::Error>(
                        layers
                            .into_iter()
                            .zip(&packed)
                            .map(|(l, p)| (l, crate::conda::created_by(p)))
                            .collect::<Vec<_>>(),
                    )
                })
                .await
                .map_err(|e| BuildError::Invalid(format!("compressing stopped: {e}")))?
                .map_err(|e| BuildError::io("compressing the conda layers", e))?;
                let new_layers: Vec<kiln_registry::NewLayer> = layers
                    .iter()
                    .map(|(layer, created_by)| kiln_registry::NewLayer {
                        layer,
                        created_by: created_by.clone(),
                    })
                    .collect();
                let update = ConfigUpdate {
                    created: crate::conda::CREATED.into(),
                    ..Default::default()
                };
                let mut progress = |message: String| sink.emit(Event::new(Phase::Pushing, message));
                kiln_registry::assemble(
                    &push.registry,
                    &kiln_registry::Assembly {
                        base: system,
                        target: image,
                        layers: &new_layers,
                        config: &update,
                    },
                    &mut progress,
                )
                .await?;
            }
        }
        // The system stage stays in the engine's build cache; its tag is not needed any more.
        let _ = self.engine.remove_image(system).await;
        Ok(())
    }

    /// Assemble the image natively: the environment image plus one layer holding the repository.
    async fn assemble(
        &self,
        push: &PushSettings,
        environment: &str,
        name: &str,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let layers = self
            .plan
            .layers()
            .ok_or_else(|| BuildError::Invalid("no layers to assemble".into()))?;
        sink.emit(Event::new(Phase::Building, format!("The environment {environment} is in the registry: assembling the image without a container")));
        let (dir, plan, mtime) = (
            self.checkout.dir.clone(),
            self.plan.clone(),
            self.checkout.time.max(0) as u64,
        );
        let layer = tokio::task::spawn_blocking(move || {
            let tar = repository_layer(&dir, &plan, mtime)?;
            kiln_registry::Layer::from_tar(&tar)
                .map_err(|e| BuildError::io("compressing the repository layer", e))
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("layer stopped: {e}")))??;
        let runtime = &layers.runtime;
        let created_by = format!("COPY the repository to {} (kiln)", layers.repository.dest);
        let update = ConfigUpdate {
            env: runtime.env.clone(),
            entrypoint: runtime.entrypoint.clone(),
            cmd: runtime.command.clone(),
            working_dir: runtime.workdir.clone(),
            user: layers.environment.user.name.clone(),
            exposed_port: Some(runtime.expose),
            labels: self.labels.clone(),
            created: rfc3339(self.checkout.time),
        };
        let new_layers = [kiln_registry::NewLayer {
            layer: &layer,
            created_by,
        }];
        let mut progress = |message: String| sink.emit(Event::new(Phase::Pushing, message));
        kiln_registry::assemble(
            &push.registry,
            &kiln_registry::Assembly {
                base: environment,
                target: name,
                layers: &new_layers,
                config: &update,
            },
            &mut progress,
        )
        .await?;
        Ok(())
    }
}

/// Labels of the final image: source, commit, created time, kiln's version, the environment key,
/// repo2docker's labels, the plan's and the user's.
fn image_labels(
    request: &BuildRequest,
    plan: &BuildPlan,
    checkout: &Checkout,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = plan
        .layers()
        .map(|l| l.runtime.labels.clone())
        .unwrap_or_default();
    labels.insert(LABEL_SOURCE.into(), checkout.source_label.clone());
    labels.insert("repo2docker.repo".into(), checkout.source_label.clone());
    if let Some(commit) = &checkout.commit {
        labels.insert(LABEL_COMMIT.into(), commit.clone());
        labels.insert("repo2docker.ref".into(), commit.clone());
    }
    labels.insert(LABEL_CREATED.into(), rfc3339(checkout.time));
    labels.insert(LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
    if let Some(key) = &plan.environment_key {
        labels.insert(LABEL_ENVIRONMENT.into(), key.clone());
    }
    labels.extend(request.labels.clone());
    labels
}

/// The engine's credentials for the registry, from the registry client's.
fn docker_credentials(registry: &Registry) -> Option<bollard::auth::DockerCredentials> {
    match &registry.credentials {
        Some(kiln_registry::Credentials::Basic { username, password }) => {
            Some(bollard::auth::DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.clone()),
                serveraddress: Some(registry.host.clone()),
                ..Default::default()
            })
        }
        Some(kiln_registry::Credentials::Bearer(token)) => Some(bollard::auth::DockerCredentials {
            registrytoken: Some(token.clone()),
            serveraddress: Some(registry.host.clone()),
            ..Default::default()
        }),
        None => None,
    }
}

/// The image name: `--image-name`; when pushing, BinderHub's scheme under the prefix; otherwise
/// `kiln/<slug>:<commit>`, or `kiln/<slug>:local-<content hash>`.
fn image_name(
    request: &BuildRequest,
    source: &Source,
    commit: Option<&str>,
    content: Option<&str>,
) -> Result<String, BuildError> {
    if let Some(name) = &request.image_name {
        kiln_registry::name::validate(name)?;
        return Ok(name.clone());
    }
    let tag = match (commit, content) {
        (Some(commit), _) => commit.to_string(),
        (None, Some(hash)) => format!("local-{hash}"),
        (None, None) => "latest".into(),
    };
    match &request.push {
        Some(push) => Ok(kiln_registry::image_name(
            &push.prefix,
            &source.build_slug(),
            &tag,
        )?),
        None => Ok(format!("kiln/{}:{tag}", source.slug())),
    }
}

/// Proxy settings pass through as build arguments (Docker's predefined ones: not kept in the image).
fn proxy_args() -> HashMap<String, String> {
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ftp_proxy",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

/// The commit time of a local git checkout's HEAD, or 0.
fn local_commit_time(path: &Path) -> i64 {
    git2::Repository::open(path)
        .ok()
        .and_then(|r| {
            r.head()
                .ok()?
                .peel_to_commit()
                .ok()
                .map(|c| c.time().seconds())
        })
        .unwrap_or(0)
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
