//! Re-solving a repository's unpinned conda dependencies without building: does the solve today
//! give the lock an earlier image holds? A catalogue entry with `rebuild.lock_change` asks this on
//! each check, and builds a new version only when the answer is no.
//!
//! The solve is the build's own (the same channels, mirrors and virtual packages of the base
//! image), on the host; only the repository is fetched, and nothing runs in a container. pip's
//! requirements (and R's, Julia's) are resolved by the build's own steps, inside the image: for
//! them this says so ([`Relocked::InSteps`]), and the caller builds them again with
//! [`kiln_buildpacks::PlanOptions::refresh`] to compare what they install.

use std::sync::Arc;

use super::{BuildRequest, conda_stage, labels::LABEL_CONDA_LOCK_DIGEST};
use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::EventSink;
use crate::git::GitBackend;

/// What re-solving found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relocked {
    /// Nothing resolves the repository's dependencies (a Dockerfile, or only kiln's own Jupyter).
    Nothing,
    /// The plan's own steps resolve them (pip, R, Julia, postBuild): these steps download, and
    /// only running them again tells what they install now.
    InSteps(usize),
    /// The repository ships its lock (this path): the lock cannot move.
    Shipped(String),
    /// Solved again.
    Solved {
        /// The new lock's digest (`sha256:...`) and its number of packages.
        digest: String,
        packages: usize,
        /// The lock digest the image's label gives, when it has one.
        image_digest: Option<String>,
    },
}

/// Fetch the request's source at its reference, plan it, and solve its conda environment again;
/// the result is compared with the lock digest of `image` (read from the registry when the
/// request pushes, else from the engine).
pub async fn relock(
    engine: &Engine,
    git: Arc<dyn GitBackend>,
    request: &BuildRequest,
    image: &str,
    sink: &mut dyn EventSink,
) -> Result<Relocked, BuildError> {
    let source = request
        .source
        .clone()
        .ok_or_else(|| BuildError::Invalid("no source given".into()))?;
    let (source, resolved, record) = super::resolve(&git, request, source, sink).await?;
    let checkout = super::fetch(&git, request, &source, resolved, record.as_ref(), sink).await?;
    let mut plan = kiln_buildpacks::plan(&checkout.dir, &request.plan_options)?;
    let shipped = plan
        .layers()
        .and_then(|l| l.environment.conda.as_ref())
        .map(|c| c.lock_file.clone());
    match shipped {
        None => return Ok(in_steps(&plan)),
        Some(Some(path)) => return Ok(Relocked::Shipped(path)),
        Some(None) => {}
    }
    let unlocked = BuildRequest {
        locked: None,
        ..request.clone()
    };
    let Some((lock, _)) = conda_stage::lock(engine, &unlocked, &mut plan, sink).await? else {
        return Ok(in_steps(&plan));
    };
    let labels = match &request.push {
        Some(push) => crate::contents::registry_labels(&push.registry, image).await?,
        None => engine.image_labels(image).await?,
    };
    Ok(Relocked::Solved {
        digest: lock.digest(),
        packages: lock.packages.len(),
        image_digest: labels.and_then(|mut l| l.remove(LABEL_CONDA_LOCK_DIGEST)),
    })
}

/// A plan without a conda environment: how many of its steps download what the repository asks
/// for (the steps [`kiln_buildpacks::PlanOptions::refresh`] runs again).
fn in_steps(plan: &kiln_buildpacks::BuildPlan) -> Relocked {
    let steps = plan.layers().map_or(0, |layers| {
        layers
            .environment
            .steps
            .iter()
            .chain(&layers.after_copy)
            .filter(|step| step.network)
            .count()
    });
    if steps == 0 {
        Relocked::Nothing
    } else {
        Relocked::InSteps(steps)
    }
}
