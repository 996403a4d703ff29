//! conda environments (`environment.yml`), at `/srv/conda/envs/notebook` as in repo2docker.
//!
//! kiln solves and installs the environment itself (the builder does it with rattler, on the host):
//! the plan says what to solve (channels and specs) or which lock to install, and the environment's
//! layers go right after `apt.txt`, with no Dockerfile step. What must run inside the image comes
//! after them as steps: Jupyter from PyPI when the environment lacks it, then the `pip:` section.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv};
use crate::error::PlanError;
use crate::options::{DEFAULT_ENVIRONMENT_EXTRAS, KERNEL_ENV_PYTHONS, SUPPORTED_PYTHONS};
use crate::parse::requirements;
use crate::plan::{Cache, CondaEnvironment, RunAs, Step};
use crate::select::Selection;

pub const CONDA_DIR: &str = "/srv/conda";
pub const ENV_PREFIX: &str = "/srv/conda/envs/notebook";
/// An old Python's environment: the notebooks' kernel, not JupyterLab's. kiln installs conda
/// environments at one place (repo2docker names this one `kernel`; JupyterLab is in `/srv/venv`).
pub const KERNEL_PREFIX: &str = ENV_PREFIX;

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
    if let Some(Some(v)) = env.python()
        && KERNEL_ENV_PYTHONS.contains(&v.as_str())
    {
        p.decide(
            "python",
            &v,
            &format!(
                "{} pins it: too old for JupyterLab, so it is the kernel's environment ({KERNEL_PREFIX}) and JupyterLab runs on the base image's Python, as in repo2docker",
                file.path
            ),
        );
        let channels = channels_of(p, &env.channels);
        let (lock_file, lock) = lock_of(p, files, &file.path);
        let pip = (!env.pip.is_empty()).then(|| {
            let requirements = p.helper_file(
                "conda-pip-requirements.txt",
                &format!("{}\n", env.pip.join("\n")),
                0o644,
            );
            (
                format!("{}: its pip section", file.path),
                requirements,
                Vec::new(),
            )
        });
        kernel_environment(
            p,
            &v,
            &file.path,
            specs,
            env.lists("pip"),
            env.lists("ipykernel"),
            channels,
            lock_file,
            lock,
            pip,
        );
        return Ok(false);
    }
    match env.python() {
        Some(Some(v)) => {
            if !SUPPORTED_PYTHONS.contains(&v.as_str()) {
                return Err(PlanError::invalid(
                    &file.path,
                    format!(
                        "python={v} is not supported; choose one of {}, {}",
                        KERNEL_ENV_PYTHONS.join(", "),
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
    let channels = channels_of(p, &env.channels);
    let (lock_file, lock) = lock_of(p, files, &file.path);
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

    // Jupyter, when the environment lacks it: kiln's pinned versions from PyPI; and what notebooks
    // on mybinder.org import without asking (repo2docker updates its default environment, which
    // has them, with the repository's environment.yml).
    let lacks = |reqs: &[String]| -> Vec<String> {
        reqs.iter()
            .filter(|req| {
                let name = requirement_name(req);
                !(env.lists(&name) || (name == "jupyterhub" && env.lists("jupyterhub-singleuser")))
            })
            .cloned()
            .collect()
    };
    let missing_jupyter = lacks(&p.opts.jupyter_packages);
    let extras: Vec<String> = DEFAULT_ENVIRONMENT_EXTRAS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let missing_extras = lacks(&extras);
    if missing_jupyter.is_empty() {
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
            &missing_jupyter.join(" "),
            &format!(
                "{} lacks them: kiln's pinned versions from PyPI, installed with the environment's pip after its layers",
                file.path
            ),
        );
    }
    if missing_extras.is_empty() {
        p.decide(
            "binder extras",
            "from the environment",
            &format!("{} lists ipywidgets and jupyter-resource-usage", file.path),
        );
    } else {
        p.decide(
            "binder extras",
            &missing_extras.join(" "),
            &format!(
                "{} lacks them and notebooks on mybinder.org import them without asking (repo2docker's default environment has them): from PyPI, with Jupyter",
                file.path
            ),
        );
    }
    // kiln's Jupyter from PyPI brings rfc3987-syntax, which costs every server start about 650 ms
    // (see the Python buildpack's overrides); pip cannot leave it out, so it goes after, unless
    // the environment asks for it.
    let slow_import = (!missing_jupyter.is_empty()
        && !env.lists("rfc3987-syntax")
        && !env
            .pip
            .iter()
            .any(|r| requirement_name(r) == "rfc3987-syntax"))
    .then(|| {
        argv(&[
            &format!("{ENV_PREFIX}/bin/python"),
            "-m",
            "pip",
            "uninstall",
            "--yes",
            "--quiet",
            "rfc3987-syntax",
        ])
    });
    let missing: Vec<String> = missing_jupyter.into_iter().chain(missing_extras).collect();
    if !missing.is_empty() {
        let mut args = vec!["--disable-pip-version-check"];
        args.extend(missing.iter().map(String::as_str));
        let mut commands = vec![pip(&args), super::python::without_hub_assets(ENV_PREFIX)];
        commands.extend(slow_import);
        p.steps.push(Step {
            name: format!("Jupyter for the conda environment: {}", missing.join(" ")),
            run_as: RunAs::User,
            inputs: vec![],
            commands,
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
    p.steps.push(bytecode_step(ENV_PREFIX));
    Ok(has_r)
}

/// Bytecode for everything the conda environment holds (kiln installs its packages natively,
/// without compiling them; pip compiles what it installs), so that a session compiles nothing
/// at start and writes nothing into the environment. A file that does not compile (a package's
/// Python 2 test data) is left as it is.
fn bytecode_step(prefix: &str) -> Step {
    Step {
        name: "bytecode for the conda environment".into(),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![argv(&[
            &format!("{prefix}/bin/python"),
            "-c",
            "import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)",
            &format!("{prefix}/lib"),
        ])],
        env: BTreeMap::new(),
        caches: vec![],
        network: false,
    }
}

/// The channels an environment is solved from: its own, else kiln's default.
fn channels_of(p: &mut Planner, listed: &[String]) -> Vec<String> {
    let channels = if listed.is_empty() {
        p.opts.default_conda_channels.clone()
    } else {
        listed.to_vec()
    };
    p.decide(
        "conda channels",
        &channels.join(", "),
        if listed.is_empty() {
            "the file names none: kiln's default"
        } else {
            "the file lists them"
        },
    );
    channels
}

/// A lock shipped with the repository, or the decision to solve.
fn lock_of(
    p: &mut Planner,
    files: &crate::files::RepoFiles,
    source: &str,
) -> (Option<String>, Option<String>) {
    match &files.conda_lock {
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
                source,
                "solved by kiln with rattler",
                "on the host, for the base image's virtual packages; the exact packages (URL and sha256) are recorded as a lock in the image, and the environment's layers are added without a container",
            );
            (None, None)
        }
    }
}

/// `runtime.txt` asks for an old Python: a kernel environment from conda with that Python, and
/// `requirements.txt` installed into it with its pip.
pub fn plan_runtime_kernel(
    p: &mut Planner,
    version: &str,
    runtime_txt: &str,
) -> Result<(), PlanError> {
    p.decide(
        "python",
        version,
        &format!(
            "{runtime_txt} asks for it: too old for JupyterLab, so it comes from conda as the kernel's environment ({KERNEL_PREFIX}) and JupyterLab runs on the base image's Python, as in repo2docker"
        ),
    );
    let channels = channels_of(p, &[]);
    let files = p.files;
    let (lock_file, lock) = lock_of(p, files, runtime_txt);
    let pip = files.requirements.as_ref().map(|f| {
        (
            format!("{}: installed with the kernel's pip", f.path),
            p.in_repo(&f.path),
            vec![f.path.clone()],
        )
    });
    let others = [
        files.pyproject.as_ref().map(|f| f.path.clone()),
        files.setup_py.clone(),
    ];
    for other in others.into_iter().flatten() {
        p.decide(
            &other,
            "not installed",
            &format!("Python {version} comes from conda: kiln installs its requirements.txt only"),
        );
    }
    kernel_environment(
        p,
        version,
        runtime_txt,
        vec![format!("python={version}")],
        false,
        false,
        channels,
        lock_file,
        lock,
        pip,
    );
    Ok(())
}

/// The kernel environment of an old Python: solved and installed natively at [`KERNEL_PREFIX`]
/// with ipykernel and pip; JupyterLab in `/srv/venv` on the base image's Python; the kernel
/// registered there as `python2` or `python3` (replacing JupyterLab's own `python3`, so notebooks
/// saved with it get the old Python); then `pip` (a step's name, the requirements file in the
/// image, and its repository path as the step's input).
#[allow(clippy::too_many_arguments)]
fn kernel_environment(
    p: &mut Planner,
    version: &str,
    source: &str,
    mut specs: Vec<String>,
    lists_pip: bool,
    lists_ipykernel: bool,
    channels: Vec<String>,
    lock_file: Option<String>,
    lock: Option<String>,
    pip: Option<(String, String, Vec<String>)>,
) {
    if !lists_ipykernel {
        specs.push("ipykernel".into());
    }
    if !lists_pip {
        specs.push("pip".into());
    }
    p.decide(
        "kernel",
        "ipykernel and pip added to the kernel's environment",
        "the notebooks' kernel runs in it; JupyterLab talks to it",
    );
    p.conda = Some(CondaEnvironment {
        file: source.to_string(),
        prefix: KERNEL_PREFIX.to_string(),
        channels,
        specs,
        lock_file,
        lock,
    });
    let base = p.opts.base_python.clone();
    super::python::runtime_and_jupyter(p, &base);
    for (k, v) in [
        ("CONDA_DIR", CONDA_DIR),
        ("KERNEL_PYTHON_PREFIX", KERNEL_PREFIX),
    ] {
        p.env.insert(k.into(), v.into());
    }
    let name = if version.starts_with('2') {
        "python2"
    } else {
        "python3"
    };
    let python = format!("{KERNEL_PREFIX}/bin/python");
    p.steps.push(Step {
        name: format!("the Python {version} kernel"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![argv(&[
            &python,
            "-m",
            "ipykernel",
            "install",
            "--prefix",
            super::python::VENV,
            "--name",
            name,
            "--display-name",
            &format!("Python {version}"),
        ])],
        env: BTreeMap::new(),
        caches: vec![],
        network: false,
    });
    if let Some((name, requirements, inputs)) = pip {
        p.steps.push(Step {
            name,
            run_as: RunAs::User,
            inputs,
            commands: vec![argv(&[
                &python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--requirement",
                &requirements,
            ])],
            env: BTreeMap::new(),
            caches: vec![Cache::Pip],
            network: true,
        });
    }
}

/// The project name of a pip requirement (`jupyterlab==4.6.6` -> `jupyterlab`).
fn requirement_name(req: &str) -> String {
    req.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}
