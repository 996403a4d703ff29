//! conda environments (`environment.yml`), at `/srv/conda/envs/notebook` as in repo2docker.
//!
//! The rendered Dockerfile installs with micromamba inside the build: first a base environment with
//! Python and Jupyter (shared by every repository with that Python), then the repository's file.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv};
use crate::error::PlanError;
use crate::options::{MICROMAMBA_VERSION, SUPPORTED_PYTHONS};
use crate::parse::requirements;
use crate::plan::{Cache, RunAs, Step};
use crate::select::Selection;

pub const CONDA_DIR: &str = "/srv/conda";
pub const ENV_PREFIX: &str = "/srv/conda/envs/notebook";
const MICROMAMBA: &str = "/usr/local/bin/micromamba";

/// Returns whether the environment has R packages (the R kernel is then added).
pub fn plan(p: &mut Planner, selection: &Selection) -> Result<bool, PlanError> {
    let files = p.files;
    let (file, env) = match (&files.environment_yml, &selection.conda) {
        (Some(file), Some(env)) => (file, env),
        _ => unreachable!("the conda buildpack is selected only with an environment file"),
    };
    for f in [&files.requirements, &files.runtime_txt]
        .into_iter()
        .flatten()
    {
        p.decide(
            &f.path,
            "ignored",
            &format!(
                "{} decides the environment; repo2docker's conda buildpack ignores this file too",
                file.path
            ),
        );
    }
    let python = match env.python() {
        Some(Some(v)) => {
            if !SUPPORTED_PYTHONS.contains(&v.as_str()) {
                return Err(PlanError::invalid(
                    &file.path,
                    format!(
                        "python={v} is not supported; choose one of {}",
                        SUPPORTED_PYTHONS.join(", ")
                    ),
                ));
            }
            p.decide("python", &v, &format!("{} pins it", file.path));
            v
        }
        pinned => {
            let v = p.opts.base_python.clone();
            let why = if pinned.is_some() {
                "lists python without a minor version"
            } else {
                "does not list python"
            };
            p.decide(
                "python",
                &v,
                &format!("{} {why}: kiln's default Python", file.path),
            );
            v
        }
    };
    let channels = if env.channels.is_empty() {
        p.opts.default_conda_channels.clone()
    } else {
        env.channels.clone()
    };
    p.decide(
        "conda channels",
        &channels.join(", "),
        if env.channels.is_empty() {
            "the file names none: kiln's default"
        } else {
            "the file lists them"
        },
    );

    p.add_base_packages(&["curl"]);
    for (k, v) in [
        ("CONDA_DIR", CONDA_DIR),
        ("MAMBA_ROOT_PREFIX", CONDA_DIR),
        ("NB_PYTHON_PREFIX", ENV_PREFIX),
        ("KERNEL_PYTHON_PREFIX", ENV_PREFIX),
        ("CONDA_DEFAULT_ENV", ENV_PREFIX),
    ] {
        p.env.insert(k.into(), v.into());
    }
    p.path.insert(0, format!("{ENV_PREFIX}/bin"));
    p.runtime_steps.push(Step {
        name: format!("micromamba {MICROMAMBA_VERSION}"),
        run_as: RunAs::Root,
        inputs: vec![],
        commands: vec![
            argv(&[
                "curl", "--fail", "--silent", "--show-error", "--location", "--output", MICROMAMBA,
                &format!("https://github.com/mamba-org/micromamba-releases/releases/download/{MICROMAMBA_VERSION}/micromamba-linux-64"),
            ]),
            argv(&["chmod", "0755", MICROMAMBA]),
        ],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    });
    let mut create = argv(&["micromamba", "create", "--yes", "--prefix", ENV_PREFIX]);
    for channel in &p.opts.default_conda_channels {
        create.extend(["--channel".to_string(), channel.clone()]);
    }
    create.push(format!("python={python}"));
    create.push("pip".into());
    create.extend(p.opts.jupyter_conda_packages.iter().cloned());
    p.decide("jupyter", &p.opts.jupyter_conda_packages.join(" "), "kiln's pinned Jupyter from conda-forge, in the base environment before the repository's file");
    p.runtime_steps.push(Step {
        name: format!("conda environment: Python {python} and Jupyter"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![create],
        env: BTreeMap::new(),
        caches: vec![Cache::Conda],
        network: true,
    });

    let mut install = argv(&[
        "micromamba",
        "install",
        "--yes",
        "--prefix",
        ENV_PREFIX,
        "--file",
        &p.in_repo(&file.path),
    ]);
    let has_r = env.has_r();
    if has_r {
        install.push("r-irkernel".into());
        p.decide(
            "R kernel",
            "r-irkernel from conda",
            &format!("{} lists R packages", file.path),
        );
    }
    let mut step = Step {
        name: file.path.clone(),
        run_as: RunAs::User,
        inputs: vec![file.path.clone()],
        commands: vec![install],
        env: BTreeMap::new(),
        caches: vec![Cache::Conda],
        network: true,
    };
    match requirements::local_reference(&env.pip.join("\n")) {
        Some((_, line)) => {
            p.decide(
                &file.path,
                "installed after the repository copy",
                &format!("its pip section refers to repository files ({line})"),
            );
            step.inputs.clear();
            p.after_copy.push(step);
        }
        None => p.steps.push(step),
    }
    Ok(has_r)
}
