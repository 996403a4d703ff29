//! kiln's buildpacks: read a repository tree, decide how to build its environment, and say why.
//!
//! `plan()` reads only the configuration files it recognises (never the whole tree), applies
//! repo2docker's rules and precedence, and returns a [`BuildPlan`]: serialisable data with the
//! buildpacks, every decision and its reason, the layers in cache order, and the environment key.
//! [`render::dockerfile`] turns a plan into a Dockerfile. Nothing here touches the network, an engine
//! or the clock.

mod assemble;
pub mod describe;
pub mod error;
mod files;
pub mod key;
pub mod options;
pub mod parse;
pub mod plan;
pub mod render;
mod select;
mod tree;

use std::path::Path;

pub use describe::describe;
pub use error::PlanError;
pub use options::PlanOptions;
pub use plan::*;
pub use render::{RenderOptions, dockerfile};

/// Whether the repository at `root` is planned with Julia, so that the builder fetches the list of
/// Julia releases first ([`PlanOptions::julia_releases`]).
pub fn selects_julia(root: &Path) -> Result<bool, PlanError> {
    let tree = tree::RepoTree::open(root)?;
    let files = files::RepoFiles::read(&tree)?;
    Ok(select::select(&files)?.primary() == Buildpack::Julia)
}

/// Plan the build of the repository at `root`.
pub fn plan(root: &Path, options: &PlanOptions) -> Result<BuildPlan, PlanError> {
    let tree = tree::RepoTree::open(root)?;
    let files = files::RepoFiles::read(&tree)?;
    let selection = select::select(&files)?;
    let (buildpacks, decisions, build) = assemble::assemble(&files, &selection, options)?;
    let environment_key = match &build {
        Build::Dockerfile(_) => None,
        Build::Layers(layers) => {
            let env = key::before_conda_lock(&layers.environment);
            let inputs = env.steps.iter().flat_map(|s| &s.inputs).map(|path| {
                let bytes = files.by_path(path).map_or(&[][..], |f| f.text.as_bytes());
                (path.as_str(), bytes)
            });
            Some(key::environment_key(&env, inputs))
        }
    };
    Ok(BuildPlan {
        buildpacks,
        config_dir: files.config_dir,
        decisions,
        environment_key,
        build,
    })
}
