//! One planned image and the steps that make it: the facts the decision needs, then the engine
//! builds, pushes and native assembly that carry the decision out.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use kiln_buildpacks::plan::Build;
use kiln_buildpacks::render::ENVIRONMENT_STAGE;
use kiln_buildpacks::{BuildPlan, RenderOptions};
use kiln_registry::ConfigUpdate;
use kiln_sbom::ImageMeta;

use super::BuildRequest;
use super::checkout::Checkout;
use super::labels::{self, environment_image_name, rfc3339};
use super::push::PushSettings;
use super::strategy::{Facts, Strategy};
use crate::contents::{self, Recorded};
use crate::context::{Context, ContextOptions, build_context, repository_layer};
use crate::engine::{Engine, EngineBuild};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::source::Source;

/// Everything one image build needs, once planned.
pub(super) struct Job<'a> {
    pub(super) engine: &'a Engine,
    pub(super) request: &'a BuildRequest,
    pub(super) plan: &'a BuildPlan,
    pub(super) checkout: &'a Checkout,
    pub(super) labels: BTreeMap<String, String>,
    ca_bundle: Option<Vec<u8>>,
    /// The context of the whole image, built once: it names a local folder's image and serves
    /// both the environment stage and the image.
    full_context: OnceLock<Context>,
    /// The conda lock and the settings to install it, for a plan with a conda environment.
    pub(super) conda: Option<(kiln_conda::Lock, kiln_conda::CondaSettings)>,
    /// (system stage, conda image): the image of the system stage, and that image plus the conda
    /// layers, which the Dockerfile starts the environment stage from.
    pub(super) conda_image: Option<(String, String)>,
    /// A local folder's content hash (it names the image and its record).
    content_hash: OnceLock<String>,
}

/// What carrying a decision out gave: the `built` event's message, and the image's record of what
/// it holds (none when reused, or assembled on an environment that has none).
pub(super) struct CarriedOut {
    pub(super) message: String,
    pub(super) contents: Option<Recorded>,
}

impl CarriedOut {
    fn new(message: String, contents: Option<Recorded>) -> CarriedOut {
        CarriedOut { message, contents }
    }
}

/// What the caches that a repository's own code fills are kept for: the repository as asked for,
/// the ref as asked for and, for a private build, its owner's image name. A pull request's head is
/// another ref, so its `install.R` cannot leave packages for the default branch's builds.
fn cache_scope(request: &BuildRequest) -> String {
    use sha2::Digest;
    let source = request.source.as_ref().map(|s| s.to_string());
    let digest = sha2::Sha256::digest(
        [
            source.as_deref().unwrap_or(""),
            request.reference.as_deref().unwrap_or(""),
            request.image_slug.as_deref().unwrap_or(""),
        ]
        .join("\n"),
    );
    hex::encode(&digest[..12])
}

impl<'a> Job<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        request: &'a BuildRequest,
        plan: &'a BuildPlan,
        checkout: &'a Checkout,
        conda: Option<(kiln_conda::Lock, kiln_conda::CondaSettings)>,
        sink: &mut dyn EventSink,
    ) -> Result<Job<'a>, BuildError> {
        let mut labels = labels::image_labels(request, plan, checkout);
        if let Some((lock, _)) = &conda {
            labels.extend(super::conda_stage::lock_labels(lock));
        }
        let conda_image = match (&conda, &plan.environment_key) {
            (Some(_), Some(key)) => Some(labels::conda_image_names(request.push.as_ref(), key)?),
            _ => None,
        };
        let ca_bundle = match &request.ca_bundle {
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
        Ok(Job {
            engine,
            request,
            plan,
            checkout,
            labels,
            ca_bundle,
            full_context: OnceLock::new(),
            conda,
            conda_image,
            content_hash: OnceLock::new(),
        })
    }

    /// The image's name. A local folder is named after its content, so its context is built here.
    pub(super) async fn image_name(&self, source: &Source) -> Result<String, BuildError> {
        let content_hash = match self.checkout.commit {
            Some(_) => None,
            None => {
                let context = self.context(None).await?;
                let path = context.path().to_path_buf();
                let digest =
                    tokio::task::spawn_blocking(move || kiln_registry::layer::sha256_file(&path))
                        .await
                        .map_err(|e| BuildError::Invalid(format!("hashing stopped: {e}")))?
                        .map_err(|e| BuildError::io("hashing the build context", e))?;
                // The build arguments make another image of the same context.
                let args = self.build_args(false);
                let hex = if args.is_empty() {
                    digest.trim_start_matches("sha256:").to_string()
                } else {
                    use sha2::Digest;
                    let mut hash = sha2::Sha256::new();
                    hash.update(digest.as_bytes());
                    for (k, v) in args {
                        hash.update(format!("\n{k}={v}").as_bytes());
                    }
                    hex::encode(hash.finalize())
                };
                let short = hex[..16.min(hex.len())].to_string();
                let _ = self.content_hash.set(short.clone());
                Some(short)
            }
        };
        labels::image_name(
            self.request,
            source,
            self.checkout.commit.as_deref(),
            content_hash.as_deref(),
        )
    }

    /// The build arguments, with the proxy settings of kiln's own environment when `proxies`. A
    /// repository's own Dockerfile gets the user as repo2docker gives it (`ARG NB_USER`, `ARG
    /// NB_UID`); `--build-arg` may set them otherwise.
    fn build_args(&self, proxies: bool) -> BTreeMap<String, String> {
        let mut args = BTreeMap::new();
        if proxies {
            args.extend(proxy_args());
        }
        if let Build::Dockerfile(_) = &self.plan.build {
            let options = &self.request.plan_options;
            args.insert("NB_USER".into(), options.user.clone());
            args.insert("NB_UID".into(), options.uid.to_string());
        }
        args.extend(self.request.build_args.clone());
        args
    }

    /// Whether a container must run after the repository copy (`postBuild`, `pip install .`, an
    /// appendix), so that the image cannot be assembled natively.
    fn steps_after_copy(&self) -> bool {
        self.plan.needs_container_after_copy() || self.request.appendix.is_some()
    }

    fn environment_image(&self) -> Result<Option<String>, BuildError> {
        let tools = self
            .plan
            .layers()
            .is_some_and(|l| !l.environment.tools.is_empty());
        environment_image_name(
            self.request.push.as_ref(),
            self.plan.environment_key.as_deref(),
            tools && !self.engine.buildkit,
        )
    }

    /// What the decision needs: the registry (or the engine) is asked what it has.
    pub(super) async fn facts(&self, name: &str) -> Result<Facts, BuildError> {
        let push = self.request.push.as_ref();
        let local_folder = self.checkout.commit.is_none();
        let image_exists = match (local_folder, push) {
            (false, _) => false,
            (true, Some(push)) => push.registry.manifest_digest(name).await?.is_some(),
            (true, None) => self.engine.image_labels(name).await?.is_some(),
        };
        let environment_in_registry = match (push, self.environment_image()?) {
            (Some(push), Some(env)) => push.registry.manifest_digest(&env).await?.is_some(),
            _ => false,
        };
        Ok(Facts {
            pushing: push.is_some(),
            native: push.is_some_and(|p| p.native),
            no_cache: self.request.no_cache,
            image_exists,
            has_environment: self.plan.environment_key.is_some(),
            environment_in_registry,
            steps_after_copy: self.steps_after_copy(),
            conda: self.conda.is_some(),
        })
    }

    /// Carry the decision out.
    pub(super) async fn carry_out(
        &self,
        strategy: Strategy,
        name: &str,
        sink: &mut dyn EventSink,
    ) -> Result<CarriedOut, BuildError> {
        let push = self.request.push.as_ref();
        let env = self.environment_image()?;
        match (strategy, push, env.as_deref()) {
            (Strategy::Reuse, Some(_), _) => Ok(CarriedOut::new(
                format!("Reusing {name}: the registry has it, and the folder has not changed"),
                None,
            )),
            (Strategy::Reuse, None, _) => Ok(CarriedOut::new(
                format!("Reusing the existing image {name}: the folder has not changed"),
                None,
            )),
            (Strategy::Assemble, Some(push), Some(env)) => {
                let recorded = self.assemble(push, env, name, sink).await?;
                Ok(CarriedOut::new(
                    format!(
                        "Pushed {name}, assembled on the environment {env} without a container"
                    ),
                    recorded,
                ))
            }
            (Strategy::OnEnvironment, Some(push), Some(env)) => {
                sink.emit(Event::new(
                    Phase::Building,
                    format!("The environment {env} is in the registry: building only the repository and what follows it"),
                ));
                let recorded = self
                    .build_and_push(name, Some(env), None, push, sink)
                    .await?;
                Ok(CarriedOut::new(format!("Pushed {name}"), recorded))
            }
            (
                Strategy::Full {
                    conda_stage,
                    environment_stage,
                    push: pushing,
                },
                _,
                _,
            ) => {
                if conda_stage {
                    self.ensure_conda_image(push, sink).await?;
                }
                match (push, pushing) {
                    (Some(push), true) => {
                        if let (Some(env), true) = (&env, environment_stage) {
                            self.build_and_push(env, None, Some(ENVIRONMENT_STAGE), push, sink)
                                .await?;
                            // The image goes on the environment just pushed, as every later
                            // commit's does: it shares the environment's blobs, so a node that
                            // has this image pulls only the repository layer for the next commit.
                            let recorded = if self.steps_after_copy() {
                                self.build_and_push(name, Some(env), None, push, sink)
                                    .await?
                            } else {
                                self.assemble(push, env, name, sink).await?
                            };
                            return Ok(CarriedOut::new(
                                format!("Built the environment {env}, and pushed {name} on it"),
                                recorded,
                            ));
                        }
                        let recorded = self.build_and_push(name, None, None, push, sink).await?;
                        Ok(CarriedOut::new(
                            format!("Built and pushed {name}"),
                            recorded,
                        ))
                    }
                    _ => {
                        let recorded = self.engine_build(name, None, None, sink).await?;
                        Ok(CarriedOut::new(format!("Built {name}"), recorded))
                    }
                }
            }
            (strategy, _, _) => Err(BuildError::Invalid(format!(
                "{strategy:?} needs a registry and an environment image"
            ))),
        }
    }

    /// What the builder knows of an image besides its packages. An environment image is shared
    /// by every commit with its key, so its record names no source.
    async fn image_meta(&self, image: &str, environment: bool) -> ImageMeta {
        let source = match environment {
            true => kiln_sbom::Source::default(),
            false => kiln_sbom::Source {
                url: Some(self.checkout.source_label.clone()),
                commit: self.checkout.commit.clone(),
                content_hash: self.content_hash.get().cloned(),
                commit_time: self
                    .checkout
                    .commit
                    .as_ref()
                    .map(|_| rfc3339(self.checkout.time)),
            },
        };
        let base_image = match self.plan.layers() {
            Some(layers) => {
                let name = layers.environment.base_image.clone();
                let digest = match self.engine.inspect_image(&name).await {
                    Ok(Some(info)) => info
                        .repo_digests
                        .iter()
                        .find_map(|d| d.split_once('@').map(|(_, d)| d.to_string()))
                        .or(Some(info.id).filter(|id| !id.is_empty())),
                    _ => None,
                };
                Some(kiln_sbom::BaseImage { name, digest })
            }
            None => None,
        };
        // The repository without the tag: a tag only points at the image, and the same commit
        // under two tags is the same image (native assembly is byte-for-byte reproducible).
        let repository = match image.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => repository,
            _ => image,
        };
        ImageMeta {
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            source,
            image: Some(repository.to_string()),
            base_image,
            environment_key: self.plan.environment_key.clone(),
        }
    }

    fn render(&self, environment_image: Option<&str>) -> Result<String, BuildError> {
        Ok(kiln_buildpacks::dockerfile(
            self.plan,
            &RenderOptions {
                buildkit: self.engine.buildkit,
                build_trust: self.ca_bundle.is_some() && self.engine.buildkit,
                labels: BTreeMap::new(),
                environment_image: environment_image.map(String::from),
                conda_image: self.conda_image.as_ref().map(|(_, conda)| conda.clone()),
                cache_salt: Some(crate::random::cache_salt()?),
                cache_scope: Some(cache_scope(self.request)),
                appendix: self.request.appendix.clone(),
                mirrors: self.request.mirrors.clone(),
            },
        )?)
    }

    /// The build context; the whole image's is built once and reused (it is a file: copies share
    /// it).
    async fn context(&self, environment_image: Option<&str>) -> Result<Context, BuildError> {
        if environment_image.is_some() {
            return self.build_context(environment_image).await;
        }
        if let Some(context) = self.full_context.get() {
            return Ok(context.clone());
        }
        let context = self.build_context(None).await?;
        Ok(self.full_context.get_or_init(|| context).clone())
    }

    /// Write the context, off the async threads (it reads the whole repository).
    async fn build_context(&self, environment_image: Option<&str>) -> Result<Context, BuildError> {
        let dockerfile = self.render(environment_image)?;
        let (dir, plan, ca, mtime) = (
            self.checkout.dir.clone(),
            self.plan.clone(),
            self.ca_bundle.clone(),
            self.checkout.time.max(0) as u64,
        );
        tokio::task::spawn_blocking(move || {
            build_context(
                &dir,
                &plan,
                &ContextOptions {
                    mtime,
                    ca_bundle: ca.as_deref(),
                    dockerfile: Some(&dockerfile),
                },
            )
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("writing the build context stopped: {e}")))?
    }

    /// Build on the engine: the whole image, one stage (`target`), or only what follows the
    /// environment when `environment_image` is given.
    pub(super) async fn engine_build(
        &self,
        tag: &str,
        environment_image: Option<&str>,
        target: Option<&str>,
        sink: &mut dyn EventSink,
    ) -> Result<Option<Recorded>, BuildError> {
        let context = self.context(environment_image).await?;
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
                context.size / 1024
            ),
        ));
        let labels = match target {
            Some(_) => labels::environment_labels(&self.labels),
            None => self.labels.clone(),
        };
        let build_args: HashMap<String, String> = self.build_args(true).into_iter().collect();
        let credentials = self.request.push.as_ref().and_then(|p| {
            p.docker_credentials()
                .map(|c| HashMap::from([(p.registry.host.clone(), c)]))
        });
        self.engine
            .build(
                context.path(),
                &EngineBuild {
                    tag: tag.to_string(),
                    dockerfile: context.dockerfile.clone(),
                    labels: labels.into_iter().collect(),
                    build_args,
                    no_cache: self.request.no_cache,
                    target: target.map(String::from),
                    credentials,
                    resources: self.request.resources.clone(),
                },
                sink,
            )
            .await?;
        // What the image holds, from the image itself, put into it.
        // Only images that are kept: an image, or an environment (not the conda system stage).
        if target.is_some_and(|t| t != ENVIRONMENT_STAGE) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let meta = self.image_meta(tag, target.is_some()).await;
        // An image without a shell (a repository's own Dockerfile may make one) cannot be listed:
        // it is built all the same, without a record, and the warning says why.
        let recorded = match contents::collect(self.engine, tag, meta).await {
            Ok(recorded) => recorded,
            Err(e) => {
                sink.emit(Event::new(
                    Phase::Building,
                    format!("Warning: {e}; {tag} has no record of what it holds"),
                ));
                return Ok(None);
            }
        };
        contents::stamp(self.engine, tag, &recorded).await?;
        contents::report(&recorded, started.elapsed(), sink);
        Ok(Some(recorded))
    }

    /// Build on the engine, then push the result.
    async fn build_and_push(
        &self,
        tag: &str,
        environment_image: Option<&str>,
        target: Option<&str>,
        push: &PushSettings,
        sink: &mut dyn EventSink,
    ) -> Result<Option<Recorded>, BuildError> {
        let recorded = self
            .engine_build(tag, environment_image, target, sink)
            .await?;
        sink.emit(Event::new(Phase::Pushing, format!("Pushing {tag}")));
        self.engine
            .push(tag, push.docker_credentials(), sink)
            .await?;
        if let Some(recorded) = &recorded {
            contents::attach(&push.registry, tag, recorded, sink).await;
        }
        Ok(recorded)
    }

    /// Assemble the image natively: the environment image plus one layer holding the repository,
    /// and one holding the record of what it holds (the environment's packages: the repository
    /// layer installs none).
    async fn assemble(
        &self,
        push: &PushSettings,
        environment: &str,
        name: &str,
        sink: &mut dyn EventSink,
    ) -> Result<Option<Recorded>, BuildError> {
        let layers = self
            .plan
            .layers()
            .ok_or_else(|| BuildError::Invalid("no layers to assemble".into()))?;
        sink.emit(Event::new(
            Phase::Building,
            format!("The environment {environment} is in the registry: assembling the image without a container"),
        ));
        let started = std::time::Instant::now();
        let recorded = match contents::from_registry(&push.registry, environment).await {
            Ok(Some(held)) => {
                let meta = self.image_meta(name, false).await;
                Some(Recorded::for_image(&held, meta)?)
            }
            Ok(None) => {
                sink.emit(Event::new(
                    Phase::Building,
                    format!("Warning: the environment {environment} has no record of what it holds (an older kiln built it), so {name} has none; rebuild it with --no-cache to get one"),
                ));
                None
            }
            Err(e) => {
                sink.emit(Event::new(
                    Phase::Building,
                    format!("Warning: cannot read the record of what {environment} holds ({e}), so {name} has none"),
                ));
                None
            }
        };
        let recording = started.elapsed();
        // The record goes into the repository's layer: a code-only commit changes one layer.
        let extra: Vec<(&'static str, Vec<u8>)> = recorded
            .as_ref()
            .map(|r| {
                r.files()
                    .map(|(path, bytes)| (path, bytes.to_vec()))
                    .to_vec()
            })
            .unwrap_or_default();
        let (dir, plan, mtime) = (
            self.checkout.dir.clone(),
            self.plan.clone(),
            self.checkout.time.max(0) as u64,
        );
        // The layer is compressed into a file in `scratch`, kept until it is pushed.
        let scratch = tempfile::Builder::new()
            .prefix("kiln-layer-")
            .tempdir()
            .map_err(|e| BuildError::io("creating a folder for the repository layer", e))?;
        let blob = scratch.path().join("repository.tar.gz");
        let layer = tokio::task::spawn_blocking(move || {
            let extra: Vec<(&str, &[u8])> = extra.iter().map(|(p, b)| (*p, b.as_slice())).collect();
            let tar = repository_layer(&dir, &plan, mtime, &extra)?;
            kiln_registry::Layer::from_tar_file(tar.path(), &blob, 6)
                .map_err(|e| BuildError::io("compressing the repository layer", e))
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("layer stopped: {e}")))??;
        let mut labels = self.labels.clone();
        if let Some(r) = &recorded {
            labels.extend(r.labels());
        }
        let runtime = &layers.runtime;
        let update = ConfigUpdate {
            env: runtime.env.clone(),
            entrypoint: runtime.entrypoint.clone(),
            cmd: runtime.command.clone(),
            working_dir: runtime.workdir.clone(),
            user: layers.environment.user.name.clone(),
            exposed_port: Some(runtime.expose),
            labels,
            created: rfc3339(self.checkout.time),
        };
        let created_by = match &recorded {
            Some(_) => format!(
                "COPY the repository to {} and what the image holds to {} (kiln)",
                layers.repository.dest,
                contents::IMAGE_PATH
            ),
            None => format!("COPY the repository to {} (kiln)", layers.repository.dest),
        };
        let new_layers = vec![kiln_registry::NewLayer {
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
        if let Some(r) = &recorded {
            contents::report(r, recording, sink);
            contents::attach(&push.registry, name, r, sink).await;
        }
        Ok(recorded)
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
