//! The conda stage of a build: the lock that completes the plan, then the image the environment
//! stage starts from (the system stage plus the conda layers, installed on the host with
//! [`crate::conda`]).

use std::collections::BTreeMap;

use kiln_buildpacks::BuildPlan;
use kiln_buildpacks::render::SYSTEM_STAGE;
use kiln_registry::ConfigUpdate;

use super::BuildRequest;
use super::job::Job;
use super::labels::{LABEL_CONDA_LOCK, LABEL_CONDA_LOCK_DIGEST};
use super::push::PushSettings;
use crate::conda;
use crate::engine::Engine;
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// For a plan with a conda environment: its lock (solved, shipped by the repository, or from the
/// image `--locked` names), written into the plan with an environment key that covers it.
pub(super) async fn lock(
    engine: &Engine,
    request: &BuildRequest,
    plan: &mut BuildPlan,
    sink: &mut dyn EventSink,
) -> Result<Option<(kiln_conda::Lock, kiln_conda::CondaSettings)>, BuildError> {
    if plan
        .layers()
        .and_then(|l| l.environment.conda.as_ref())
        .is_none()
    {
        return Ok(None);
    }
    let mut settings = match &request.conda {
        Some(settings) => settings.clone(),
        None => kiln_conda::CondaSettings::from_env()?,
    };
    // Channels and package URLs come from the repository: they are fetched under the request's
    // policy (the operator's mirrors are allowed).
    settings.policy = request.fetch.policy.clone();
    let base = &request.plan_options.base_image;
    let note = conda::target_virtual_packages(engine, base, &mut settings).await?;
    sink.emit(Event::new(Phase::Building, format!("Conda: {note}")));
    let locked = match &request.locked {
        Some(image) => Some((image.clone(), conda::lock_of_image(engine, image).await?)),
        None => None,
    };
    let lock = conda::lock_plan(
        plan,
        locked.as_ref().map(|(i, t)| (i.as_str(), t.as_str())),
        &settings,
        sink,
    )
    .await?;
    Ok(lock.map(|lock| (lock, settings)))
}

/// The labels that name the lock in the image.
pub(super) fn lock_labels(lock: &kiln_conda::Lock) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_CONDA_LOCK.to_string(),
            format!("{}/{}", kiln_conda::ENV_PREFIX, kiln_conda::LOCK_FILE),
        ),
        (LABEL_CONDA_LOCK_DIGEST.to_string(), lock.digest()),
    ])
}

impl Job<'_> {
    /// Make the image the environment stage starts from, the system stage plus the conda layers,
    /// unless it exists. The system stage is built on the engine; the conda layers are installed
    /// and packed on the host, then appended in the registry (pushing) or loaded into the engine
    /// (local builds).
    pub(super) async fn ensure_conda_image(
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
        let packed = conda::install_and_pack(settings, lock, uid, sink).await?;
        self.engine_build(system, None, Some(SYSTEM_STAGE), sink)
            .await?;
        match push {
            None => {
                conda::load_onto(self.engine, system, &packed.layers, image).await?;
                sink.emit(Event::new(
                    Phase::Building,
                    format!(
                        "Conda: loaded {image} into the engine ({system} plus {} layers)",
                        packed.layers.len()
                    ),
                ));
            }
            Some(push) => {
                sink.emit(Event::new(Phase::Pushing, format!("Pushing {system}")));
                self.engine
                    .push(system, push.docker_credentials(), sink)
                    .await?;
                append_in_registry(push, system, image, packed, &settings.cache_dir, sink).await?;
            }
        }
        // The system stage stays in the engine's build cache; its tag is not needed any more.
        if let Err(e) = self.engine.remove_image(system).await {
            tracing::debug!("cannot untag {system}: {e}");
        }
        Ok(())
    }
}

/// Compress the packed conda layers (cached by content) and append them to `system` in the
/// registry as `image`.
async fn append_in_registry(
    push: &PushSettings,
    system: &str,
    image: &str,
    packed: conda::Packed,
    cache_dir: &std::path::Path,
    sink: &mut dyn EventSink,
) -> Result<(), BuildError> {
    let blobs = cache_dir.join("layers");
    let layers = tokio::task::spawn_blocking(move || {
        let layers = conda::compress_layers(&packed.layers, &blobs)?;
        Ok::<_, std::io::Error>(
            layers
                .into_iter()
                .zip(&packed.layers)
                .map(|(l, p)| (l, conda::created_by(p)))
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
        created: conda::CREATED.into(),
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
    Ok(())
}
