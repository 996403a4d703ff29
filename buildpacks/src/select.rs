//! Which buildpacks apply, in repo2docker's order of precedence:
//! Dockerfile, Julia, Nix, R, conda, Pipfile, Python; Python is the default.

use crate::error::PlanError;
use crate::files::RepoFiles;
use crate::parse::{conda_env, dockerfile, pyproject, runtime};
use crate::plan::{Buildpack, BuildpackUse};

/// The buildpacks that apply, primary first, with the parsed files that decided it.
pub struct Selection {
    pub uses: Vec<BuildpackUse>,
    pub runtime: Option<runtime::Runtime>,
    pub pyproject: Option<pyproject::Pyproject>,
    pub conda: Option<conda_env::CondaEnv>,
}

impl Selection {
    pub fn primary(&self) -> Buildpack {
        self.uses[0].name
    }
}

pub fn select(files: &RepoFiles) -> Result<Selection, PlanError> {
    let mut uses = Vec::new();
    let add = |uses: &mut Vec<BuildpackUse>, name: Buildpack, reason: String| {
        uses.push(BuildpackUse { name, reason })
    };

    if let Some(file) = &files.dockerfile {
        if dockerfile::is_legacy_binder(&file.text) {
            return Err(PlanError::LegacyBinderDockerfile {
                path: file.path.clone(),
            });
        }
        add(
            &mut uses,
            Buildpack::Dockerfile,
            format!(
                "{} exists: it is used as is and every other file is ignored",
                file.path
            ),
        );
        return Ok(Selection {
            uses,
            runtime: None,
            pyproject: None,
            conda: None,
        });
    }
    if let Some(require) = &files.require
        && files.julia_project.is_none()
    {
        return Err(PlanError::JuliaRequire {
            path: require.clone(),
        });
    }

    let runtime = files
        .runtime_txt
        .as_ref()
        .map(|f| runtime::parse(&f.path, &f.text))
        .transpose()?;
    let pyproject = files
        .pyproject
        .as_ref()
        .map(|f| pyproject::parse(&f.path, &f.text))
        .transpose()?;
    let conda = files
        .environment_yml
        .as_ref()
        .map(|f| conda_env::parse(&f.path, &f.text))
        .transpose()?;

    if let Some(project) = &files.julia_project {
        add(
            &mut uses,
            Buildpack::Julia,
            format!("{} exists", project.path),
        );
    }
    if let Some(nix) = &files.default_nix {
        add(&mut uses, Buildpack::Nix, format!("{} exists", nix.path));
    }
    let r_reason = match (&runtime, &files.description, &files.install_r) {
        (Some(runtime::Runtime::R { date: Some(_), .. }), _, _) => Some(format!(
            "{} asks for R with a snapshot date",
            path(&files.runtime_txt)
        )),
        (Some(runtime::Runtime::R { date: None, .. }), _, _) => Some(format!(
            "{} asks for R (repo2docker would silently fall back to Python without a date)",
            path(&files.runtime_txt)
        )),
        (_, Some(description), _) => Some(format!("{} exists (an R package)", description.path)),
        (_, _, Some(install)) => Some(format!(
            "{} exists (repo2docker ignores install.R without runtime.txt; kiln installs R for it)",
            install.path
        )),
        _ => None,
    };
    if let Some(reason) = r_reason {
        add(&mut uses, Buildpack::R, reason);
    }
    if let Some(env) = &files.environment_yml {
        add(&mut uses, Buildpack::Conda, format!("{} exists", env.path));
    }
    let non_python_runtime = matches!(runtime, Some(runtime::Runtime::R { .. }));
    if !non_python_runtime
        && let Some(file) = files.pipfile.as_ref().or(files.pipfile_lock.as_ref())
    {
        add(
            &mut uses,
            Buildpack::Pipfile,
            format!("{} exists", file.path),
        );
    }
    let python_reason = if let Some(runtime::Runtime::Python { .. }) = &runtime {
        Some(format!("{} asks for Python", path(&files.runtime_txt)))
    } else if let Some(setup) = &files.setup_py {
        Some(format!("{setup} exists (a Python package)"))
    } else if let Some(p) = pyproject.as_ref().filter(|p| p.is_package()) {
        let _ = p;
        Some(format!(
            "{} has [project] and [build-system] (a Python package)",
            path(&files.pyproject)
        ))
    } else if let Some(req) = &files.requirements {
        Some(format!("{} exists", req.path))
    } else if let Some(lock) = &files.uv_lock {
        Some(format!("{} exists (a uv project)", lock.path))
    } else if pyproject
        .as_ref()
        .is_some_and(|p| !p.dependencies.is_empty())
    {
        Some(format!(
            "{} lists [project].dependencies (no [build-system] needed)",
            path(&files.pyproject)
        ))
    } else {
        None
    };
    if let Some(reason) = python_reason {
        add(&mut uses, Buildpack::Python, reason);
    }
    if uses.is_empty() {
        uses.push(BuildpackUse {
            name: Buildpack::Python,
            reason: "no environment files found: the default Python environment".to_string(),
        });
    }
    Ok(Selection {
        uses,
        runtime,
        pyproject,
        conda,
    })
}

fn path(file: &Option<crate::files::ConfigFile>) -> &str {
    file.as_ref().map_or("", |f| f.path.as_str())
}
