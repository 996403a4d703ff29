//! Python environments, installed with uv into a virtual environment at `/srv/venv`, with Jupyter.
//! Also the Pipfile buildpack, which installs with pipenv into the same environment.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv};
use crate::error::PlanError;
use crate::files::ConfigFile;
use crate::options::SUPPORTED_PYTHONS;
use crate::options::{DEFAULT_ENVIRONMENT_EXTRAS, PIPENV_VERSION, UV_VERSION};
use crate::parse::{pipfile, pyproject, requirements, runtime};
use crate::plan::{Cache, RunAs, Step};
use crate::select::Selection;

pub const VENV: &str = "/srv/venv";
/// uv's overrides for Jupyter's install: `rfc3987-syntax` (jsonschema's optional IRI checker,
/// asked for by jupyter-events through `jsonschema[format-nongpl]`) builds an Earley parser from
/// its grammar when it is imported, which is about 650 ms of the 1.1 s that a Jupyter server's
/// imports take; a marker that is never true leaves it out. jsonschema skips the formats it checks
/// when it is missing.
const JUPYTER_OVERRIDES: &str = "rfc3987-syntax ; python_version < \"0\"\n";
const UV_TOOL: &str = "/opt/kiln/uv";

/// The Python buildpack: `requirements.txt`, `pyproject.toml`, `uv.lock`, `setup.py`.
pub fn plan(p: &mut Planner, selection: &Selection) -> Result<(), PlanError> {
    if let (Some(runtime::Runtime::Python { version: Some(v) }), Some(file)) =
        (&selection.runtime, &p.files.runtime_txt)
        && crate::options::KERNEL_ENV_PYTHONS.contains(&v.as_str())
    {
        let path = file.path.clone();
        return super::conda::plan_runtime_kernel(p, &v.clone(), &path);
    }
    let version = python_version(p, selection, None)?;
    runtime_and_jupyter(p, &version);
    python_files(p, selection)
}

/// The Pipfile buildpack: `Pipfile` / `Pipfile.lock` installed with pipenv into the environment.
pub fn plan_pipfile(p: &mut Planner, selection: &Selection) -> Result<(), PlanError> {
    let files = p.files;
    let info = pipfile::parse(
        files
            .pipfile
            .as_ref()
            .map(|f| (f.path.as_str(), f.text.as_str())),
        files
            .pipfile_lock
            .as_ref()
            .map(|f| (f.path.as_str(), f.text.as_str())),
    )?;
    let hint = info.python.clone().map(|v| {
        let source = files
            .pipfile_lock
            .as_ref()
            .or(files.pipfile.as_ref())
            .map_or("", |f| f.path.as_str());
        (v, format!("{source} requires it"))
    });
    let version = python_version(p, selection, hint)?;
    runtime_and_jupyter(p, &version);
    if let Some(f) = &files.requirements {
        p.decide(
            &f.path,
            "ignored",
            "the Pipfile buildpack installs only the Pipfile, as in repo2docker",
        );
    }
    let (mut inputs, install_flag) = (
        Vec::new(),
        match &files.pipfile_lock {
            Some(lock) => {
                p.decide(
                    &lock.path,
                    "installed as locked",
                    "pipenv install --ignore-pipfile installs exactly the lock",
                );
                "--ignore-pipfile"
            }
            None => {
                p.decide(
                    "Pipfile.lock",
                    "absent",
                    "pipenv resolves the Pipfile at build time (--skip-lock)",
                );
                "--skip-lock"
            }
        },
    );
    for f in [&files.pipfile, &files.pipfile_lock].into_iter().flatten() {
        inputs.push(f.path.clone());
    }
    let pipfile_path = match &files.pipfile {
        Some(f) => p.in_repo(&f.path),
        // A lock without a Pipfile: pipenv still looks for the Pipfile next to it.
        None => format!("{}/Pipfile", p.config_dir_in_image()),
    };
    let mut env = BTreeMap::from([("PIPENV_PIPFILE".to_string(), pipfile_path)]);
    env.insert("PIPENV_NOSPIN".into(), "1".into());
    let mut step = Step {
        name: "Pipfile (pipenv)".into(),
        run_as: RunAs::User,
        inputs,
        commands: vec![
            uv_pip_install(&[&format!("pipenv=={PIPENV_VERSION}")]),
            argv(&[
                &format!("{VENV}/bin/pipenv"),
                "install",
                install_flag,
                "--system",
                "--dev",
            ]),
        ],
        env,
        caches: vec![Cache::Uv, Cache::Pip],
        network: true,
    };
    if let Some(locked) = &p.opts.locked
        && locked.python.is_some()
    {
        let from = locked.from.clone();
        p.decide(
            "Pipfile",
            "not replaced by --locked",
            &format!("pipenv installs it as it says; the packages of {from} are not imposed on it"),
        );
    }
    p.python_lock = Some(Vec::new());
    if info.installs_local_path {
        p.decide(
            "Pipfile",
            "installed after the repository copy",
            "it installs a local path (path = ...), which needs the repository",
        );
        step.inputs.clear();
        p.after_copy.push(step);
    } else {
        p.steps.push(step);
    }
    Ok(())
}

/// Decide the Python version: `runtime.txt`, then `requires-python`, then a buildpack's own hint
/// (Pipfile), then the base image's Python.
fn python_version(
    p: &mut Planner,
    selection: &Selection,
    hint: Option<(String, String)>,
) -> Result<String, PlanError> {
    let files = p.files;
    let base = p.opts.base_python.clone();
    let requires = match (&selection.pyproject, &files.pyproject) {
        (Some(pyproject), Some(file)) => pyproject
            .requires_python
            .as_ref()
            .map(|spec| {
                Ok::<_, PlanError>((
                    file.path.clone(),
                    spec.clone(),
                    pyproject::specifiers(&file.path, spec)?,
                ))
            })
            .transpose()?,
        _ => None,
    };
    let (version, reason) = match (&selection.runtime, &files.runtime_txt) {
        (Some(runtime::Runtime::Python { version: Some(v) }), Some(file)) => {
            if let Some((path, spec, specs)) = &requires
                && !pyproject::admits(specs, v)
            {
                return Err(PlanError::invalid(
                    &file.path,
                    format!("asks for Python {v}, but {path} requires-python = {spec:?} excludes it; make them agree"),
                ));
            }
            (v.clone(), format!("{} asks for it", file.path))
        }
        (Some(runtime::Runtime::Python { version: None }), Some(file)) => {
            (base.clone(), format!("{} asks for Python 3; the default Python 3 is the base image's", file.path))
        }
        _ => match requires {
            Some((path, spec, specs)) => {
                if pyproject::admits(&specs, &base) {
                    (base.clone(), format!("{path} requires-python = {spec:?} admits the base image's Python, which needs no download"))
                } else {
                    let best = SUPPORTED_PYTHONS.iter().rev().find(|v| pyproject::admits(&specs, v)).ok_or_else(|| {
                        PlanError::invalid(
                            &path,
                            format!("requires-python = {spec:?} admits none of the Python versions kiln supports ({})", SUPPORTED_PYTHONS.join(", ")),
                        )
                    })?;
                    (best.to_string(), format!("{path} requires-python = {spec:?}: the newest supported version it admits"))
                }
            }
            None => match hint {
                Some((v, why)) => (v, why),
                None => (base.clone(), "nothing asks for a version: the base image's Python (set one in runtime.txt, e.g. python-3.12, to keep the repository reproducible)".into()),
            },
        },
    };
    if !SUPPORTED_PYTHONS.contains(&version.as_str()) {
        let path = files
            .runtime_txt
            .as_ref()
            .map_or("runtime.txt", |f| f.path.as_str());
        return Err(PlanError::invalid(
            path,
            format!(
                "Python {version} is not supported here; choose one of {} (Python {} come from conda, through runtime.txt or environment.yml)",
                SUPPORTED_PYTHONS.join(", "),
                crate::options::KERNEL_ENV_PYTHONS.join(", ")
            ),
        ));
    }
    let source = if version == base {
        "the base image's interpreter"
    } else {
        "a uv-managed CPython, downloaded at build time"
    };
    p.decide("python", &version, &format!("{reason}; {source}"));
    Ok(version)
}

/// uv, the virtual environment with the chosen Python, and Jupyter. These layers depend only on the
/// Python version and the pinned Jupyter, so every repository with that version shares them.
pub fn runtime_and_jupyter(p: &mut Planner, version: &str) {
    p.add_base_packages(&["python3", "python3-venv"]);
    for (k, v) in [
        ("NB_PYTHON_PREFIX", VENV),
        ("KERNEL_PYTHON_PREFIX", VENV),
        ("VIRTUAL_ENV", VENV),
        ("UV_PYTHON_INSTALL_DIR", "/srv/python"),
        ("UV_LINK_MODE", "copy"),
        ("UV_PYTHON_DOWNLOADS", "automatic"),
        // Bytecode compiled at install time, so that a new session does not compile Jupyter's
        // imports again (and writes nothing into the environment).
        ("UV_COMPILE_BYTECODE", "1"),
    ] {
        p.env.insert(k.into(), v.into());
    }
    p.path.insert(0, format!("{VENV}/bin"));
    // uv only builds: with BuildKit it stays out of the image (about 60 MB).
    if !p.tools.iter().any(|t| t.name == "uv") {
        p.tools.push(crate::plan::Tool {
            name: "uv".into(),
            step: Step {
                name: format!("uv {UV_VERSION}"),
                run_as: RunAs::Root,
                inputs: vec![],
                commands: vec![
                    argv(&["python3", "-m", "venv", UV_TOOL]),
                    argv(&[
                        &format!("{UV_TOOL}/bin/pip"),
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        &format!("uv=={UV_VERSION}"),
                    ]),
                    argv(&[
                        "ln",
                        "-sf",
                        &format!("{UV_TOOL}/bin/uv"),
                        "/usr/local/bin/uv",
                    ]),
                ],
                env: BTreeMap::new(),
                caches: vec![Cache::Pip],
                network: true,
            },
            file: format!("{UV_TOOL}/bin/uv"),
            target: "/usr/local/bin/uv".into(),
            used_with: Cache::Uv,
        });
    }
    let overrides = p.helper_file("jupyter-overrides.txt", JUPYTER_OVERRIDES, 0o644);
    let mut jupyter: Vec<&str> = vec!["--overrides", &overrides];
    jupyter.extend(p.opts.jupyter_packages.iter().map(String::as_str));
    jupyter.extend(DEFAULT_ENVIRONMENT_EXTRAS);
    p.decide("jupyter", &jupyter[2..].join(" "), "kiln's pinned Jupyter (JupyterLab, notebook, jupyterhub-singleuser) with what notebooks on mybinder.org rely on (ipywidgets, jupyter-resource-usage), installed before the repository's own packages");
    p.decide("rfc3987-syntax", "left out of Jupyter's environment", "an optional checker of jsonschema (through jupyter-events) that builds a parser when it is imported: about 650 ms of every server start; jsonschema checks without it (the repository's own packages may still bring it)");
    p.runtime_steps.push(Step {
        name: format!("Python {version} and Jupyter"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![
            argv(&["uv", "venv", "--seed", "--python", version, VENV]),
            uv_pip_install(&jupyter),
            without_hub_assets(VENV),
            // uv compiles what it installs, not what `--seed` put there (pip, setuptools,
            // packaging, which Jupyter imports at start): compile the rest (compileall skips
            // what is compiled already).
            argv(&[
                &format!("{VENV}/bin/python"),
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                &format!("{VENV}/lib"),
            ]),
        ],
        env: BTreeMap::new(),
        caches: vec![Cache::Uv],
        network: true,
    });
}

/// Removes the hub's own web assets that the `jupyterhub` package installs into `prefix`
/// (`share/jupyterhub/static/components`: Bootstrap, Font Awesome, jQuery, about 60 MB). A
/// session runs only `jupyterhub-singleuser`, whose pages take their logo from the hub and their
/// templates from the package, so no session ever serves them. Run in the step that installs
/// Jupyter, so they never reach a layer.
pub fn without_hub_assets(prefix: &str) -> Vec<String> {
    argv(&[
        "rm",
        "-rf",
        &format!("{prefix}/share/jupyterhub/static/components"),
    ])
}

/// `uv pip install` into the environment.
fn uv_pip_install(args: &[&str]) -> Vec<String> {
    let mut cmd = argv(&[
        "uv",
        "pip",
        "install",
        "--python",
        &format!("{VENV}/bin/python"),
    ]);
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

/// The step that records the environment's lock with hashes (`kiln-lock.txt` in the prefix), run
/// after every environment step: `reads` are the requirements files (in the image) whose index
/// options it uses.
pub fn lock_step(p: &mut Planner, reads: &[String]) -> Step {
    let script = p.helper("lock-python", include_str!("../scripts/lock-python"));
    let mut command = argv(&[&format!("{VENV}/bin/python"), &script, VENV]);
    command.extend(reads.iter().cloned());
    Step {
        name: "the Python lock with hashes (uv pip compile)".into(),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![command],
        env: BTreeMap::new(),
        caches: vec![Cache::Uv],
        network: true,
    }
}

/// With `--locked IMAGE`: install the image's Python packages exactly, in place of the steps that
/// resolve the repository's files before the copy. Returns the lock's path in the image.
fn locked_step(p: &mut Planner, replaced: &[String]) -> Option<String> {
    let (from, lock) = p
        .opts
        .locked
        .as_ref()
        .and_then(|l| l.python.as_ref().map(|t| (l.from.clone(), t.clone())))?;
    let hashed = lock.lines().any(|l| l.trim_start().starts_with("--hash="));
    let file = p.helper_file("python-locked.txt", &lock, 0o644);
    for path in replaced {
        p.decide(
            path,
            "replaced by the lock",
            &format!("--locked {from}: the packages that image held are installed instead"),
        );
    }
    let mut args = vec!["--no-deps"];
    if hashed {
        args.push("--require-hashes");
    }
    args.extend(["-r", file.as_str()]);
    p.decide(
        "python lock",
        &format!("from {from}"),
        if hashed {
            "exact versions with the hashes of their files (--require-hashes)"
        } else {
            "exact versions; the image recorded no hashes for some of them"
        },
    );
    p.steps.push(Step {
        name: format!("the Python packages of {from} (--locked)"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![uv_pip_install(&args)],
        env: BTreeMap::new(),
        caches: vec![Cache::Uv],
        network: true,
    });
    Some(file)
}

/// `requirements.txt`, `pyproject.toml`, `uv.lock` and `setup.py`.
fn python_files(p: &mut Planner, selection: &Selection) -> Result<(), PlanError> {
    let files = p.files;
    let is_package = files.setup_py.is_some()
        || (files.config_dir.is_none()
            && selection.pyproject.as_ref().is_some_and(|x| x.is_package()));
    let environment_steps = p.steps.len();

    if let (Some(lock), Some(project)) = (&files.uv_lock, &files.pyproject) {
        let dir = parent_in_image(p, &project.path);
        let env = BTreeMap::from([("UV_PROJECT_ENVIRONMENT".to_string(), VENV.to_string())]);
        p.decide(&lock.path, "installed as locked", "uv sync --locked installs exactly the lock (beyond repo2docker, which ignores uv.lock)");
        p.steps.push(Step {
            name: format!("{} (uv sync, without the project itself)", lock.path),
            run_as: RunAs::User,
            inputs: vec![project.path.clone(), lock.path.clone()],
            commands: vec![argv(&[
                "uv",
                "sync",
                "--locked",
                "--inexact",
                "--no-install-project",
                "--project",
                &dir,
            ])],
            env: env.clone(),
            caches: vec![Cache::Uv],
            network: true,
        });
        if is_package {
            p.after_copy.push(Step {
                name: "the project itself (uv sync)".into(),
                run_as: RunAs::User,
                inputs: vec![],
                commands: vec![argv(&[
                    "uv",
                    "sync",
                    "--locked",
                    "--inexact",
                    "--project",
                    &dir,
                ])],
                env,
                caches: vec![Cache::Uv],
                network: true,
            });
        }
    } else if let Some(lock) = &files.uv_lock {
        p.decide(
            &lock.path,
            "ignored",
            "a uv.lock needs its pyproject.toml beside it",
        );
    }

    if let Some(req) = &files.requirements {
        requirements_step(p, req);
    }

    if files.uv_lock.is_none()
        && let (Some(pyproject), Some(file)) = (&selection.pyproject, &files.pyproject)
        && !pyproject.dependencies.is_empty()
    {
        if pyproject.dynamic_dependencies {
            p.decide(
                &file.path,
                "dependencies installed with the package",
                "[project].dependencies is dynamic, so it needs the repository",
            );
        } else {
            p.decide(
                &format!("{} dependencies", file.path),
                "installed before the repository copy",
                "[project].dependencies is static, so a code-only change does not reinstall them",
            );
            p.steps.push(Step {
                name: format!("{} [project].dependencies", file.path),
                run_as: RunAs::User,
                inputs: vec![file.path.clone()],
                commands: vec![uv_pip_install(&["-r", &p.in_repo(&file.path)])],
                env: BTreeMap::new(),
                caches: vec![Cache::Uv],
                network: true,
            });
        }
    }

    // `--locked`: the steps above that resolve before the copy give way to the image's packages.
    let mut locked = None;
    if p.opts.locked.as_ref().is_some_and(|l| l.python.is_some()) {
        let replaced: Vec<Step> = p.steps.drain(environment_steps..).collect();
        let mut paths: Vec<String> = replaced.iter().flat_map(|s| s.inputs.clone()).collect();
        paths.dedup();
        locked = locked_step(p, &paths);
    }
    // The lock step reads the index options of the requirements files (or of the lock installed).
    let reads: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter())
        .filter(|path| path.ends_with(".txt"))
        .map(|path| p.in_repo(path))
        .chain(locked)
        .collect();
    p.python_lock = Some(reads);

    if is_package && files.uv_lock.is_none() {
        let what = files
            .setup_py
            .clone()
            .unwrap_or_else(|| "pyproject.toml".into());
        p.decide("package", "pip install . (with uv)", &format!("{what} makes the repository a Python package; installed after the copy, as in repo2docker"));
        p.after_copy.push(Step {
            name: "the repository's package (uv pip install .)".into(),
            run_as: RunAs::User,
            inputs: vec![],
            commands: vec![uv_pip_install(&[&p.repo_dir()])],
            env: BTreeMap::new(),
            caches: vec![Cache::Uv],
            network: true,
        });
    }
    Ok(())
}

fn requirements_step(p: &mut Planner, req: &ConfigFile) {
    let path_in_image = p.in_repo(&req.path);
    let mut step = Step {
        name: req.path.clone(),
        run_as: RunAs::User,
        inputs: vec![req.path.clone()],
        commands: vec![uv_pip_install(&["-r", &path_in_image])],
        env: BTreeMap::new(),
        caches: vec![Cache::Uv],
        network: true,
    };
    match requirements::local_reference(&req.text) {
        Some((line, text)) => {
            p.decide(
                &req.path,
                "installed after the repository copy",
                &format!("line {line} ({text}) refers to files of the repository"),
            );
            step.inputs.clear();
            p.after_copy.push(step);
        }
        None => {
            p.decide(
                &req.path,
                "installed before the repository copy",
                "it refers to no repository files, so its layer survives code-only changes",
            );
            p.steps.push(step);
        }
    }
}

/// The folder holding a repository file, in the image.
fn parent_in_image(p: &Planner, rel: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, _)) => p.in_repo(dir),
        None => p.repo_dir(),
    }
}
