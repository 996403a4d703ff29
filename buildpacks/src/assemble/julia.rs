//! Julia environments (`Project.toml` / `JuliaProject.toml`), beside the Python environment.

use std::collections::BTreeMap;

use crate::assemble::{Planner, argv, python};
use crate::error::PlanError;
use crate::options::{JULIA_VERSIONS, JuliaRelease};
use crate::parse::julia;
use crate::plan::{RunAs, Step};
use crate::select::Selection;

const JULIA_PATH: &str = "/srv/julia";
const JULIA_DEPOT: &str = "/srv/julia/pkg";

pub fn plan(p: &mut Planner, selection: &Selection) -> Result<(), PlanError> {
    python::plan(p, selection)?;
    let files = p.files;
    let Some(project_file) = &files.julia_project else {
        unreachable!("the Julia buildpack is selected only with a project file")
    };
    if let Some(require) = &files.require {
        p.decide(
            require,
            "ignored",
            &format!(
                "{} takes precedence over the old REQUIRE format",
                project_file.path
            ),
        );
    }
    let project = julia::parse(&project_file.path, &project_file.text)?;
    let compat = project.compat.clone().unwrap_or_else(|| "1".to_string());
    let (releases, list) = match &p.opts.julia_releases {
        Some(known) => (known.releases.clone(), known.source.clone()),
        None => (
            JULIA_VERSIONS
                .iter()
                .map(|v| JuliaRelease::built_in(v))
                .collect(),
            "kiln's built-in list (the official list was not fetched)".to_string(),
        ),
    };
    let versions: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
    let version = julia::select(&project_file.path, &compat, &versions)?;
    let release = releases
        .iter()
        .find(|r| r.version == version)
        .expect("select returns one of the versions")
        .clone();
    p.decide(
        "julia",
        version,
        &match &project.compat {
            Some(c) => format!(
                "{} [compat] julia = {c:?}: the newest release that matches, from {list}",
                project_file.path
            ),
            None => format!("no [compat] julia: the newest Julia 1.x release, from {list}"),
        },
    );
    p.add_base_packages(&["curl"]);
    let project_dir = p.config_dir_in_image();
    for (k, v) in [
        ("JULIA_PATH", JULIA_PATH.to_string()),
        ("JULIA_DEPOT_PATH", JULIA_DEPOT.to_string()),
        ("JULIA_PROJECT", project_dir.clone()),
        ("JUPYTER", format!("{}/bin/jupyter", python::VENV)),
        (
            "JUPYTER_DATA_DIR",
            format!("{}/share/jupyter", python::VENV),
        ),
    ] {
        p.env.insert(k.into(), v);
    }
    p.path.insert(0, format!("{JULIA_PATH}/bin"));
    let installer = p.helper("install-julia", include_str!("../scripts/install-julia"));
    p.runtime_steps.push(Step {
        name: format!("Julia {version}"),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![
            [
                installer,
                release.version,
                JULIA_PATH.to_string(),
                release.url,
            ]
            .into_iter()
            .chain(release.sha256)
            .collect(),
        ],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    });
    p.runtime_steps.push(Step {
        name: "IJulia kernel".into(),
        run_as: RunAs::User,
        inputs: vec![],
        commands: vec![argv(&["julia", "--project=@kiln", "-e", "using Pkg; Pkg.add(\"IJulia\"); using IJulia; installkernel(\"Julia\", \"--project=@.\")"])],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    });

    let instantiate = argv(&[
        "julia",
        &format!("--project={project_dir}"),
        "-e",
        "using Pkg; Pkg.instantiate(); Pkg.precompile()",
    ]);
    let manifest_has_paths = files
        .julia_manifest
        .as_ref()
        .is_some_and(|m| m.text.contains("path = "));
    let mut step = Step {
        name: format!("{} (Pkg.instantiate)", project_file.path),
        run_as: RunAs::User,
        inputs: [Some(project_file), files.julia_manifest.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| f.path.clone())
            .collect(),
        commands: vec![instantiate],
        env: BTreeMap::new(),
        caches: vec![],
        network: true,
    };
    if project.has_sources || manifest_has_paths {
        p.decide(
            &project_file.path,
            "instantiated after the repository copy",
            "it depends on packages by local path, which needs the repository",
        );
        step.inputs.clear();
        p.after_copy.push(step);
    } else {
        p.decide(
            &project_file.path,
            "instantiated before the repository copy",
            "the project and manifest name all its packages, so code-only changes keep this layer",
        );
        p.steps.push(step);
    }
    Ok(())
}
