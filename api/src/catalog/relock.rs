//! `rebuild.lock_change`: would the newest version's commit, built today, install other
//! packages? Asked only when nothing else gives a reason to build.
//!
//! - A conda environment is solved again on the host, building nothing
//!   ([`kiln_builder::build::relock`]), and the lock compared with the one the image's label
//!   names.
//! - Dependencies resolved by the build's own steps (pip requirements, R's and Julia's packages)
//!   can only be known by running those steps again: the check builds the commit with a new
//!   [`kiln_buildpacks::PlanOptions::refresh`] (through the service's builds, counted as the
//!   community's, its image kept in the engine and removed afterwards), compares the packages it
//!   recorded with the newest version's, and passes the refresh on, so that the version it builds
//!   is that build again (every step comes from the engine's cache) and later builds keep it.

use kiln_builder::Source;
use kiln_builder::build::Relocked;
use kiln_catalog::{Community, Entry, Version};

use crate::admission::ClientKey;
use crate::builds::Target;
use crate::state::AppState;

use super::runner::{community_push, finished};

/// What re-solving an entry's environment found.
pub enum LockCheck {
    /// Other packages: the reason to build, and the refresh the version is built with.
    Moved {
        reason: String,
        refresh: Option<String>,
    },
    /// Nothing to build: why.
    Same(String),
}

/// Re-solve the newest version's commit and compare with what its image holds.
pub async fn lock_check(
    state: &AppState,
    community: &Community,
    entry: &Entry,
    spec: &crate::spec::Spec,
    newest: &Version,
) -> Result<LockCheck, String> {
    let mut spec = spec.clone();
    if matches!(spec.source, Source::Git(_)) {
        spec.reference = newest.commit.clone();
    }
    let push = community_push(state, community).map_err(|e| e.to_string())?;
    let target = Target {
        image_name: None,
        push: push.clone(),
        refresh: newest.refresh.clone(),
    };
    let request = state.builds.request_for(&spec, Some(target));
    let relocked = state
        .engine
        .relock(request, &newest.image)
        .await
        .map_err(|e| e.to_string())?;
    let n = newest.number;
    Ok(match relocked {
        Relocked::Nothing => LockCheck::Same(
            "nothing in the environment resolves the repository's dependencies (rebuild.lock_change re-solves environment.yml, and the packages that requirements, R and Julia files ask for)".into(),
        ),
        Relocked::InSteps(steps) => {
            return rebuilt(state, community, entry, &spec, newest, push, steps).await;
        }
        Relocked::Shipped(path) => LockCheck::Same(format!(
            "its lock {path} pins every package, so re-solving cannot change it"
        )),
        Relocked::Solved {
            digest,
            packages,
            image_digest,
        } if image_digest.as_ref() == Some(&digest) => LockCheck::Same(format!(
            "re-solving the environment gives version {n}'s lock again ({packages} packages)"
        )),
        Relocked::Solved {
            digest,
            packages,
            image_digest,
        } => LockCheck::Moved {
            reason: format!(
                "re-solving the environment gives another lock than version {n}'s ({packages} packages, {} instead of {})",
                short_digest(&digest),
                image_digest.as_deref().map_or("none recorded", short_digest)
            ),
            refresh: newest.refresh.clone(),
        },
    })
}

/// The commit built again with a new refresh, its packages compared with the newest version's.
async fn rebuilt(
    state: &AppState,
    community: &Community,
    entry: &Entry,
    spec: &crate::spec::Spec,
    newest: &Version,
    push: Option<kiln_builder::PushSettings>,
    steps: usize,
) -> Result<LockCheck, String> {
    let refresh = state.catalogs.now().to_string();
    let image = format!("kiln/relock-{}-{}:{refresh}", community.id, entry.slug);
    let target = Target {
        image_name: Some(image.clone()),
        push: None,
        refresh: Some(refresh.clone()),
    };
    let shared = state
        .builds
        .build_to(
            spec,
            ClientKey::Community(community.id.clone()),
            Some(community.quotas.concurrent_builds.unwrap_or(0)),
            Some(target),
        )
        .await
        .map_err(|e| e.to_string())?;
    let build_id = shared.id.clone();
    let compared = async {
        finished(&shared)
            .await
            .map_err(|e| format!("building it again (build {build_id}) failed: {e}"))?;
        let fresh = state
            .engine
            .contents(&image, None)
            .await
            .map_err(|e| format!("what the build of today holds: {e}"))?;
        let held = state
            .engine
            .contents(&newest.image, push.as_ref().map(|p| &*p.registry))
            .await
            .map_err(|e| format!("what version {} holds: {e}", newest.number))?;
        Ok::<_, String>(changes(&held.contents, &fresh.contents))
    }
    .await;
    state.engine.remove_image(&image).await;
    let changes = compared?;
    let n = newest.number;
    Ok(if changes.is_empty() {
        LockCheck::Same(format!(
            "running the {steps} steps that resolve the repository's dependencies again (build {build_id}) installs version {n}'s packages again"
        ))
    } else {
        LockCheck::Moved {
            reason: format!(
                "running the {steps} steps that resolve the repository's dependencies again (build {build_id}) installs other packages than version {n}'s: {}",
                changes.join(", ")
            ),
            refresh: Some(refresh),
        }
    })
}

/// The packages that differ, as `manager name old -> new` (at most ten, then how many more).
fn changes(held: &kiln_sbom::record::Contents, fresh: &kiln_sbom::record::Contents) -> Vec<String> {
    let diff = kiln_sbom::diff::diff(held, fresh);
    let mut all = Vec::new();
    for manager in &diff.packages {
        let m = manager.manager.as_str();
        all.extend(
            manager
                .changed
                .iter()
                .map(|c| format!("{m} {} {} -> {}", c.name, c.old, c.new)),
        );
        all.extend(
            manager
                .added
                .iter()
                .map(|p| format!("{m} {} {} added", p.name, p.version)),
        );
        all.extend(
            manager
                .removed
                .iter()
                .map(|p| format!("{m} {} {} removed", p.name, p.version)),
        );
    }
    if all.len() > 10 {
        let more = all.len() - 10;
        all.truncate(10);
        all.push(format!("{more} more"));
    }
    all
}

fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sbom::record::{Contents, ImageMeta, PythonEnvironment, PythonPackage};

    fn with(packages: &[(&str, &str)]) -> Contents {
        let mut contents = Contents::new(ImageMeta::default());
        contents.python.push(PythonEnvironment {
            prefix: "/srv/venv".into(),
            packages: packages
                .iter()
                .map(|(name, version)| PythonPackage {
                    name: name.to_string(),
                    version: version.to_string(),
                    ..PythonPackage::default()
                })
                .collect(),
            ..PythonEnvironment::default()
        });
        contents
    }

    #[test]
    fn changes_name_each_package_that_moved_came_or_went() {
        let held = with(&[("six", "1.16.0"), ("gone", "1.0")]);
        assert!(changes(&held, &held).is_empty());
        let fresh = with(&[("six", "1.17.0"), ("new", "2.0")]);
        assert_eq!(
            changes(&held, &fresh),
            [
                "python six 1.16.0 -> 1.17.0",
                "python new 2.0 added",
                "python gone 1.0 removed"
            ]
        );
    }
}
