//! conda environments (`environment.yml`), at `/srv/conda/envs/notebook` as in repo2docker.
//!
//! kiln solves and installs the environment itself (the builder does it with rattler, on the host):
//! the plan says what to solve (channels and specs) or which lock to install, and the environment's
//! layers go right after `apt.txt`, with no Dockerfile step. What must run inside the image comes
//! after them as steps: Jupyter from PyPI when the environment lacks it, then the `pip:` section.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv};
use crate::error::PlanError;
use crate::options::SUPPORTED_PYTHONS;
use crate::parse::requirements;
use crate::plan::{Cache, CondaEnvironment, RunAs, Step};
use crate::select::Selection;

pub const CONDA_DIR: &str = "/srv/conda";
pub const ENV_PREFIX: &str = "/srv/conda/envs/notebook";

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
    let mut specs = env.dependencies.clone();
    match env.python() {
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
        }
        Some(None) => p.decide(
            "python",
            "the newest the channels offer",
            &format!(
                "{} lists python without a minor version: the solver picks it",
                file.path
            ),
        ),
        None => {
            let v = p.opts.base_python.clone();
            specs.push(format!("python={v}"));
            p.decide(
                "python",
                &v,
                &format!("{} does not list python: kiln's default Python", file.path),
            );
        }
    }
    if !env.lists("pip") {
        specs.push("pip".into());
        p.decide(
            "pip",
            "added to the environment",
            "kiln installs the pip section and Jupyter with the environment's pip",
        );
    }
    let has_r = env.has_r();
    if has_r && !env.lists("r-irkernel") {
        specs.push("r-irkernel".into());
        p.decide(
            "R kernel",
            "r-irkernel from conda",
            &format!("{} lists R packages", file.path),
        );
    }
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
    let (lock_file, lock) = match &files.conda_lock {
        Some(lock) => {
            p.decide(
                &lock.path,
                "installed as is",
                "a lock shipped with the repository: kiln installs exactly its packages, without solving",
            );
            (Some(lock.path.clone()), Some(lock.text.clone()))
        }
        None => {
            p.decide(
                &file.path,
                "solved by kiln with rattler",
                "on the host, for the base image's virtual packages; the exact packages (URL and sha256) are recorded as a lock in the image, and the environment's layers are added without a container",
            );
            (None, None)
        }
    };
    p.conda = Some(CondaEnvironment {
        file: file.path.clone(),
        prefix: ENV_PREFIX.to_string(),
        channels,
        specs,
        lock_file,
        lock,
    });

    for (k, v) in [
        ("CONDA_DIR", CONDA_DIR),
        ("NB_PYTHON_PREFIX", ENV_PREFIX),
        ("KERNEL_PYTHON_PREFIX", ENV_PREFIX),
        ("CONDA_DEFAULT_ENV", ENV_PREFIX),
        ("CONDA_PREFIX", ENV_PREFIX),
    ] {
        p.env.insert(k.into(), v.into());
    }
    p.path.insert(0, format!("{ENV_PREFIX}/bin"));
    let pip = |args: &[&str]| {
        let mut command = argv(&[&format!("{ENV_PREFIX}/bin/python"), "-m", "pip", "install"]);
        command.extend(args.iter().map(|s| s.to_string()));
        command
    };

    // Jupyter, when the environment lacks it: kiln's pinned versions from PyPI.
    let missing: Vec<String> = p
        .opts
        .jupyter_packages
        .iter()
        .filter(|req| {
            let name = requirement_name(req);
            !(env.lists(&name) || (name == "jupyterhub" && env.lists("jupyterhub-singleuser")))
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        p.decide(
            "jupyter",
            "from the environment",
            &format!(
                "{} lists JupyterLab, notebook and jupyterhub-singleuser",
                file.path
            ),
        );
    } else {
        p.decide(
            "jupyter",
            &missing.join(" "),
            &format!(
                "{} lacks them: kiln's pinned versions from PyPI, installed with the environment's pip after its layers",
                file.path
            ),
        );
        let mut args = vec!["--disable-pip-version-check"];
        args.extend(missing.iter().map(String::as_str));
        p.steps.push(Step {
            name: format!("Jupyter for the conda environment: {}", missing.join(" ")),
            run_as: RunAs::User,
            inputs: vec![],
            commands: vec![pip(&args)],
            env: BTreeMap::new(),
            caches: vec![Cache::Pip],
            network: true,
        });
    }

    if !env.pip.is_empty() {
        let requirements_file = p.helper_file(
            "conda-pip-requirements.txt",
            &format!("{}\n", env.pip.join("\n")),
            0o644,
        );
        let mut step = Step {
            name: format!("{}: its pip section", file.path),
            run_as: RunAs::User,
            inputs: vec![],
            commands: vec![pip(&[
                "--disable-pip-version-check",
                "--requirement",
                &requirements_file,
            ])],
            env: BTreeMap::new(),
            caches: vec![Cache::Pip],
            network: true,
        };
        match requirements::local_reference(&env.pip.join("\n")) {
            Some((_, line)) => {
                p.decide(
                    &format!("{}: pip section", file.path),
                    "installed after the repository copy",
                    &format!("it refers to repository files ({line})"),
                );
                step.inputs.clear();
                p.after_copy.push(step);
            }
            None => p.steps.push(step),
        }
    }
    Ok(has_r)
}

/// The project name of a pip requirement (`jupyterlab==4.6.6` -> `jupyterlab`).
fn requirement_name(req: &str) -> String {
    req.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}
