//! One build, top to bottom: resolve -> reuse? -> fetch -> plan -> context -> engine build -> built.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_buildpacks::{BuildPlan, PlanOptions, RenderOptions};

use crate::context::{ContextOptions, build_context};
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

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    pub source: Option<Source>,
    pub reference: Option<String>,
    /// The image name; by default `kiln/<slug>:<commit>` (a content hash for a local folder).
    pub image_name: Option<String>,
    pub plan_options: PlanOptions,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// PEM bundle trusted by the steps that download (from `--ca-bundle` or `SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
    pub limits: FetchLimits,
}

/// A finished build.
#[derive(Clone, Debug)]
pub struct Built {
    pub image: String,
    /// The engine already had the image: nothing was built.
    pub reused: bool,
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

    // Resolve and fetch (git), or take the folder as it is.
    let (repo_dir, commit, commit_time, source_label): (PathBuf, Option<String>, i64, String) =
        match &source {
            Source::Local(path) => {
                sink.emit(Event::new(
                    Phase::Fetching,
                    format!("Using the local folder {}", path.display()),
                ));
                let time = local_commit_time(path);
                (path.clone(), None, time, "local".to_string())
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
                    tokio::task::spawn_blocking(move || {
                        git.resolve(&git_source, reference.as_deref())
                    })
                    .await
                    .map_err(|e| BuildError::Invalid(format!("ref resolution stopped: {e}")))??
                };
                sink.emit(Event::new(
                    Phase::Fetching,
                    format!("Resolved to commit {}", resolved.commit),
                ));
                let name = image_name(&request, &source, Some(&resolved.commit), None);
                if let Some(labels) = engine.image_labels(&name).await?
                    && labels.get(LABEL_COMMIT) == Some(&resolved.commit)
                    && labels.get(LABEL_SOURCE) == Some(&git_source.url)
                    && !request.no_cache
                {
                    sink.emit(Event::built(
                        &name,
                        format!("Reusing the existing image {name}: it was built from this commit"),
                    ));
                    return Ok(Built {
                        image: name,
                        reused: true,
                        plan: None,
                    });
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
                (dest, Some(resolved.commit), time, git_source.url.clone())
            }
        };

    // Plan and render.
    let plan = kiln_buildpacks::plan(&repo_dir, &request.plan_options)?;
    let names: Vec<&str> = plan.buildpacks.iter().map(|b| b.name.name()).collect();
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Buildpacks: {} ({})",
            names.join(", "),
            plan.buildpacks[0].reason
        ),
    ));
    let ca_bundle =
        match &request.ca_bundle {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                BuildError::io(format!("reading the CA bundle {}", path.display()), e)
            })?),
            None => None,
        };
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert(LABEL_SOURCE.into(), source_label.clone());
    labels.insert("repo2docker.repo".into(), source_label);
    if let Some(commit) = &commit {
        labels.insert(LABEL_COMMIT.into(), commit.clone());
        labels.insert("repo2docker.ref".into(), commit.clone());
    }
    labels.insert(LABEL_CREATED.into(), rfc3339(commit_time));
    labels.insert(LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into());
    if let Some(key) = &plan.environment_key {
        labels.insert("io.kiln.environment-key".into(), key.clone());
    }
    labels.extend(request.labels.clone());
    let dockerfile = kiln_buildpacks::dockerfile(
        &plan,
        &RenderOptions {
            buildkit: engine.buildkit,
            build_trust: ca_bundle.is_some() && engine.buildkit,
            labels: BTreeMap::new(),
        },
    )?;
    if ca_bundle.is_some() && !engine.buildkit {
        sink.emit(Event::new(
            Phase::Building,
            "Warning: the engine has no BuildKit, so the CA bundle cannot be trusted during the build without copying it into a layer; building without it",
        ));
    }

    // The context; a local folder's image is named after its content.
    let context = {
        let (repo_dir, plan, dockerfile, ca) = (
            repo_dir.clone(),
            plan.clone(),
            dockerfile.clone(),
            ca_bundle.clone(),
        );
        let mtime = commit_time.max(0) as u64;
        tokio::task::spawn_blocking(move || {
            build_context(
                &repo_dir,
                &plan,
                &ContextOptions {
                    mtime,
                    ca_bundle: ca.as_deref(),
                    dockerfile: Some(&dockerfile),
                },
            )
        })
        .await
        .map_err(|e| BuildError::Invalid(format!("context stopped: {e}")))??
    };
    let content_hash = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(&context.tar)[..8])
    };
    let name = image_name(&request, &source, commit.as_deref(), Some(&content_hash));
    if commit.is_none() && !request.no_cache && engine.image_labels(&name).await?.is_some() {
        sink.emit(Event::built(
            &name,
            format!("Reusing the existing image {name}: the folder has not changed"),
        ));
        return Ok(Built {
            image: name,
            reused: true,
            plan: Some(plan),
        });
    }
    sink.emit(Event::new(
        Phase::Building,
        format!(
            "Building {name} with {} ({} files, {} KiB of context)",
            if engine.buildkit {
                "BuildKit"
            } else {
                "the classic builder"
            },
            context.files,
            context.tar.len() / 1024
        ),
    ));
    let mut build_args: HashMap<String, String> = proxy_args();
    build_args.extend(request.build_args.clone());
    engine
        .build(
            context.tar,
            &EngineBuild {
                tag: name.clone(),
                dockerfile: context.dockerfile,
                labels: labels.into_iter().collect(),
                build_args,
                no_cache: request.no_cache,
            },
            sink,
        )
        .await?;
    sink.emit(Event::built(&name, format!("Built {name}")));
    Ok(Built {
        image: name,
        reused: false,
        plan: Some(plan),
    })
}

/// The default image name: `kiln/<slug>:<commit>`, or `kiln/<slug>:local-<content hash>`.
fn image_name(
    request: &BuildRequest,
    source: &Source,
    commit: Option<&str>,
    content: Option<&str>,
) -> String {
    if let Some(name) = &request.image_name {
        return name.clone();
    }
    let tag = match (commit, content) {
        (Some(commit), _) => commit.to_string(),
        (None, Some(hash)) => format!("local-{hash}"),
        (None, None) => "latest".into(),
    };
    format!("kiln/{}:{tag}", source.slug())
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
