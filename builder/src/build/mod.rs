//! One build, top to bottom, in the order of the files:
//!
//! 1. resolve the ref ([`checkout`]): a commit names its image, so an image built from it is
//!    reused before anything is fetched;
//! 2. fetch exactly that commit, or take the local folder as it is ([`checkout`]);
//! 3. plan, and lock a conda environment ([`conda_stage`]);
//! 4. name the image and gather the facts (does the registry have it, or its environment?);
//! 5. decide, as a pure function of the facts ([`strategy`]);
//! 6. carry it out: reuse, assemble natively ([`job`] + `kiln-registry`), a short engine build on
//!    the environment, or a full engine build with its conda stage ([`conda_stage`]), pushed
//!    ([`push`]);
//! 7. report `built` with the image name, labelled as [`labels`] says.

mod checkout;
mod conda_stage;
mod job;
mod labels;
mod locked;
mod push;
mod relock;
mod strategy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_buildpacks::{BuildPlan, PlanOptions};

use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};
use crate::git::{FetchSettings, GitBackend};
use crate::source::Source;
use job::Job;

pub use labels::{
    LABEL_COMMIT, LABEL_CONDA_LOCK, LABEL_CONDA_LOCK_DIGEST, LABEL_CREATED, LABEL_ENVIRONMENT,
    LABEL_SOURCE, LABEL_VERSION, rfc3339,
};
pub use push::PushSettings;
pub use relock::{Relocked, relock};
pub use strategy::{Facts, Strategy, decide};

/// What to build.
#[derive(Clone, Default)]
pub struct BuildRequest {
    pub source: Option<Source>,
    pub reference: Option<String>,
    /// A `master` or `main` the repository lacks is retried as `HEAD` (the service does this, as
    /// BinderHub does, so that old links keep working; the CLI builds what it is told).
    pub default_branch_fallback: bool,
    /// The image name; by default `kiln/<slug>:<commit>` (a content hash for a local folder), or the
    /// BinderHub-compatible registry name when pushing.
    pub image_name: Option<String>,
    /// What the image is named after instead of the repository (the service names a private
    /// build's image after a keyed digest, so that nobody else can find it).
    pub image_slug: Option<String>,
    pub plan_options: PlanOptions,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// PEM bundle trusted by the steps that download (from `--ca-bundle` or `SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
    /// What fetches may reach and bring, and whose credentials they may use.
    pub fetch: FetchSettings,
    /// Memory and CPUs of the build's steps (where the engine applies them: the classic builder).
    pub resources: crate::engine::Resources,
    pub push: Option<PushSettings>,
    /// Build this folder of the repository instead of its root (repo2docker's `--subdir`): only
    /// its files count and are copied.
    pub subdir: Option<String>,
    /// Dockerfile instructions added at the very end of kiln's Dockerfile (`--appendix`; not for a
    /// repository's own Dockerfile). The image is then always built by the engine.
    pub appendix: Option<String>,
    /// Install what this earlier image held instead of resolving the repository's files
    /// (`--locked IMAGE`): its Python packages, its conda lock, its versions of apt.txt's packages.
    pub locked: Option<String>,
    /// Channels, mirrors and caches for conda environments (default: from the environment,
    /// `KILN_CONDA_*`).
    pub conda: Option<kiln_conda::CondaSettings>,
    /// Package servers the build's steps use instead of the public ones (`KILN_PYPI_MIRROR`,
    /// `KILN_NPM_REGISTRY`, `KILN_JULIA_PKG_SERVER`).
    pub mirrors: kiln_buildpacks::options::PackageMirrors,
}

impl std::fmt::Debug for BuildRequest {
    /// The request without build arguments' values (they may hold secrets) or credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildRequest")
            .field("source", &self.source)
            .field("reference", &self.reference)
            .field("default_branch_fallback", &self.default_branch_fallback)
            .field("image_name", &self.image_name)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .field("labels", &self.labels)
            .field("no_cache", &self.no_cache)
            .field("ca_bundle", &self.ca_bundle)
            .field("fetch", &self.fetch)
            .field("push", &self.push)
            .field("locked", &self.locked)
            .field("mirrors", &self.mirrors)
            .finish_non_exhaustive()
    }
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
    /// What the image holds, as recorded in it (none when it was reused).
    pub contents: Option<crate::contents::Recorded>,
    /// The digests of its record and SBOM (also for a reused image that has them).
    pub digests: Option<crate::contents::Digests>,
}

/// Build (or reuse) the image for a request. Every outcome is also an event: `built` or `failed`.
pub async fn build(
    engine: &Engine,
    git: Arc<dyn GitBackend>,
    request: BuildRequest,
    sink: &mut dyn EventSink,
) -> Result<Built, BuildError> {
    match run(engine, git, &request, sink).await {
        Ok((built, message)) => {
            let mut event = Event::built(&built.image, message);
            if let Some(digests) = &built.digests {
                event.contents_digest = Some(digests.contents.clone());
                event.sbom_digest = Some(digests.sbom.clone());
            }
            sink.emit(event);
            Ok(built)
        }
        Err(error) => {
            sink.emit(Event::failed(error.status_code(), error.to_string()));
            Err(error)
        }
    }
}

async fn run(
    engine: &Engine,
    git: Arc<dyn GitBackend>,
    request: &BuildRequest,
    sink: &mut dyn EventSink,
) -> Result<(Built, String), BuildError> {
    let source = request
        .source
        .clone()
        .ok_or_else(|| BuildError::Invalid("no source given".into()))?;
    engine.check_network().await?;

    // 1. Resolve: an image built from this commit (or record version) is reused before anything
    //    is fetched.
    let (source, resolved, record) = resolve(&git, request, source, sink).await?;
    let source_url = match (&source, &record) {
        (Source::Git(git_source), _) => Some(git_source.url.clone()),
        (_, Some(record)) => Some(record.url.clone()),
        _ => None,
    };
    if let (Some(resolved), Some(source_url)) = (&resolved, &source_url) {
        let name = labels::image_name(request, &source, Some(&resolved.commit), None)?;
        if !request.no_cache
            && let Some(digests) =
                built_from(engine, request, &name, &resolved.commit, source_url).await?
        {
            let place = if request.push.is_some() {
                "the registry"
            } else {
                "the engine"
            };
            let message = format!("Reusing {name}: {place} has it, built from this commit");
            let built = Built {
                image: name,
                outcome: Outcome::Reused,
                plan: None,
                contents: None,
                digests,
            };
            return Ok((built, message));
        }
    }

    // 2. Fetch exactly that commit, or take the folder as it is.
    let checkout = fetch(&git, request, &source, resolved, record.as_ref(), sink).await?;

    // 3. Plan (with an earlier image's packages for `--locked`); a conda environment's lock
    //    completes the plan and its environment key.
    let locked = locked::read(engine, request, sink).await?;
    let mut options = request.plan_options.clone();
    options.locked = locked.as_ref().map(|l| l.options.clone());
    // A repository that cannot be read is reported by the plan itself, below.
    if options.julia_releases.is_none()
        && kiln_buildpacks::selects_julia(&checkout.dir).unwrap_or(false)
    {
        options.julia_releases = crate::julia::releases(&options.julia_versions_url, sink).await;
    }
    let mut plan = kiln_buildpacks::plan(&checkout.dir, &options)?;
    let conda = conda_stage::lock(engine, request, &mut plan, sink).await?;
    report_plan(&plan, sink);
    if request.appendix.is_some() && plan.layers().is_none() {
        sink.emit(Event::new(
            Phase::Building,
            "Warning: --appendix is added to kiln's Dockerfile only, not to a repository's own Dockerfile (as repo2docker)",
        ));
    }

    // 4. Name the image and gather the facts.
    let job = Job::new(engine, request, &plan, &checkout, conda, sink)?;
    let name = job.image_name(&source).await?;
    let facts = job.facts(&name).await?;

    // 5. Decide, and 6. carry it out.
    let strategy = decide(&facts);
    let carried = job.carry_out(strategy, &name, sink).await?;
    if let (Some(locked), Some(recorded)) = (&locked, &carried.contents) {
        locked::report(locked, &recorded.contents, sink);
    }
    let built = Built {
        image: name,
        outcome: strategy.outcome(),
        plan: Some(plan),
        digests: carried.contents.as_ref().map(|r| r.digests()),
        contents: carried.contents,
    };
    Ok((built, carried.message))
}

/// What the request's source names now: a record's version (with its files), or a git commit.
async fn resolve(
    git: &Arc<dyn GitBackend>,
    request: &BuildRequest,
    source: Source,
    sink: &mut dyn EventSink,
) -> Result<
    (
        Source,
        Option<crate::git::Resolved>,
        Option<crate::records::Record>,
    ),
    BuildError,
> {
    let record = match &source {
        Source::Record(spec) => {
            Some(crate::records::resolve(spec, &request.fetch, &request.fetch.records, sink).await?)
        }
        _ => None,
    };
    let (source, resolved) = match &record {
        Some(record) => {
            sink.emit(Event::new(
                Phase::Fetching,
                format!(
                    "Resolved to record {} ({} files)",
                    record.version,
                    record.files.len()
                ),
            ));
            let resolved = crate::git::Resolved {
                commit: record.version.clone(),
                ref_name: None,
            };
            (Source::Record(record.source.clone()), Some(resolved))
        }
        None => {
            let resolved = checkout::resolve(
                git,
                &source,
                request.reference.as_deref(),
                request.default_branch_fallback,
                &request.fetch,
                sink,
            )
            .await?;
            (source, resolved)
        }
    };
    Ok((source, resolved, record))
}

/// Fetch exactly what [`resolve`] found (or take the folder as it is), narrowed to the request's
/// `subdir`.
async fn fetch(
    git: &Arc<dyn GitBackend>,
    request: &BuildRequest,
    source: &Source,
    resolved: Option<crate::git::Resolved>,
    record: Option<&crate::records::Record>,
    sink: &mut dyn EventSink,
) -> Result<checkout::Checkout, BuildError> {
    let mut checkout = checkout::fetch(git, source, resolved, record, &request.fetch, sink).await?;
    if let Some(subdir) = &request.subdir {
        checkout.dir = checkout::subdir(&checkout.dir, subdir)?;
    }
    Ok(checkout)
}

/// Whether the image of a commit exists: in the registry when pushing, else in the engine with
/// labels naming the same source and commit. `Some` holds its record's digests, when it has them.
async fn built_from(
    engine: &Engine,
    request: &BuildRequest,
    name: &str,
    commit: &str,
    source_url: &str,
) -> Result<Option<Option<crate::contents::Digests>>, BuildError> {
    if let Some(push) = &request.push {
        if push.registry.manifest_digest(name).await?.is_none() {
            return Ok(None);
        }
        // The digests are for the `built` event; an image without them is still reused.
        let digests = crate::contents::registry_digests(&push.registry, name)
            .await
            .unwrap_or(None);
        return Ok(Some(digests));
    }
    Ok(engine.image_labels(name).await?.and_then(|labels| {
        (labels.get(LABEL_COMMIT).map(String::as_str) == Some(commit)
            && labels.get(LABEL_SOURCE).map(String::as_str) == Some(source_url))
        .then(|| crate::contents::Digests::from_labels(&labels))
    }))
}

fn report_plan(plan: &BuildPlan, sink: &mut dyn EventSink) {
    let names: Vec<&str> = plan.buildpacks.iter().map(|b| b.name.name()).collect();
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Buildpacks: {} ({})",
            names.join(", "),
            plan.buildpacks[0].reason
        ),
    ));
}
